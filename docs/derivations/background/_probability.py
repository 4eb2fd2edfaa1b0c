"""``Pr(lhs, rhs, noise)``: the probability of ``lhs <= rhs``, an inequality in one noise variable.

Printed ``\\Pr[a + b\\epsilon \\le t]``. Checked as the noise's distribution function: the
event is solved for the noise (which needs the sign of ``b``: positive keeps the direction,
negative flips it, unknown fails), then the noise density is integrated over the solution.
So a step that moves the noise to one side of the inequality is checked, not assumed.
"""
import sympy as sp

from derivations import GaussPdf
from derivations._notation import Notation

_S = sp.Symbol("s", real=True)  # the integration variable, as in the density derivations


class Pr(Notation):
    """``Pr(lhs, rhs, eps)``: the probability that ``lhs <= rhs``, with ``eps ~ N(0, 1)``."""

    nargs = 3

    def unfold(self):
        lhs, rhs, eps = self.args
        side = sp.expand(lhs - rhs)  # the event is side <= 0
        slope = side.coeff(eps)
        rest = sp.expand(side - slope * eps)
        if slope == 0 or rest.has(eps):
            raise ValueError(f"{lhs} <= {rhs} is not linear in {eps}")
        bound = -rest / slope
        if slope.is_positive:       # eps <= bound
            return sp.Integral(GaussPdf(_S, 0, 1), (_S, -sp.oo, bound))
        if slope.is_negative:       # eps >= bound
            return sp.Integral(GaussPdf(_S, 0, 1), (_S, bound, sp.oo))
        raise ValueError(f"the sign of {slope} is unknown: cannot solve {lhs} <= {rhs} for {eps}")

    def _tex(self, printer):
        lhs, rhs = (printer._print(a) for a in self.args[:2])
        return rf"\Pr\left[{lhs} \le {rhs}\right]"
