"""Notation for checked derivations: real SymPy objects that print as textbook LaTeX.

Each class is a small ``sympy.Function`` subclass.  It never evaluates on its
own (so ``E(a*X + b)`` stays ``E(a*X + b)`` for display); the checker in
``_evaluate.py`` rewrites it into something SymPy can decide.

* ``E(g)``                expectation over random variables (see ``random_variables``)
* ``E(g, q(z))``          expectation of ``g`` over ``z ~ q``: a density argument
* ``Var(X)``, ``Cov(X, Y)``
* ``KL(q(x), p(x))``      Kullback-Leibler divergence between two densities
* ``H(q(x))``, ``H(q(x), p(x))``  entropy and cross-entropy
* ``ELBO(p(x, z), q(z))`` evidence lower bound of the joint ``p(x, z)`` under ``q(z)``
* ``Pdf("p", z, given=x)`` an abstract density, printed ``p(z \\mid x)``
* ``GaussPdf(x, mean, var)`` the normal density, printed ``\\mathcal{N}(x; mean, var)``
* ``Pr(lhs, rhs, eps)``   the probability that ``lhs <= rhs`` for standard normal noise ``eps``
"""
from __future__ import annotations

import sympy as sp
from sympy.core.symbol import Str


class RandomVariable(sp.Symbol):
    """A symbol marked as random: ``E`` averages over it, constants pass through."""


def random_variables(names: str, **assumptions) -> tuple[RandomVariable, ...] | RandomVariable:
    """``X, Y = random_variables("X Y")`` -- real-valued random variables."""
    assumptions.setdefault("real", True)
    out = tuple(RandomVariable(n, **assumptions) for n in names.replace(",", " ").split())
    return out[0] if len(out) == 1 else out


class Notation(sp.Function):
    """Base class: stays unevaluated, knows how to unfold into simpler notation."""

    @classmethod
    def eval(cls, *args):
        return None

    def unfold(self):
        """One rewriting step towards expectations (``Var -> E[(X - E[X])^2]``)."""
        return self

    def _tex(self, printer) -> str:
        return printer._print_Function(self)

    def _latex(self, printer, exp=None):
        out = self._tex(printer)
        return out if exp is None else f"{out}^{{{exp}}}"


# --------------------------------------------------------------- densities
class Density(Notation):
    """A probability density; ``variables`` are what it integrates over."""

    is_positive = True

    @property
    def variables(self) -> tuple:
        raise NotImplementedError

    def label(self, printer) -> str:
        """Short name used in subscripts and KL arguments."""
        return printer._print(self)


def _as_tuple(items) -> sp.Tuple:
    if isinstance(items, sp.Tuple):
        return items
    if isinstance(items, (tuple, list)):
        return sp.Tuple(*items)
    return sp.Tuple(items)


class Pdf(Density):
    """Abstract density ``name(vars | given)``; normalized in ``vars``."""

    def __new__(cls, name, variables, given=()):
        name = Str(name) if isinstance(name, str) else name
        return super().__new__(cls, name, _as_tuple(variables), _as_tuple(given))

    @property
    def variables(self):
        return tuple(self.args[1])

    def _eval_derivative(self, s):
        # stays symbolic: an abstract density has no formula to differentiate
        return sp.Derivative(self, s, evaluate=False) if self.has(s) else sp.S.Zero

    def _tex(self, printer):
        name, variables, given = self.args
        inner = ", ".join(printer._print(v) for v in variables)
        if given:
            inner += r" \mid " + ", ".join(printer._print(g) for g in given)
        return rf"{name.name}({inner})"


class GaussPdf(Density):
    """Normal density ``N(x; mean, var)`` (``var`` is the variance)."""

    def __new__(cls, x, mean, var):
        return super().__new__(cls, x, mean, var)

    @property
    def variables(self):
        return (self.args[0],)

    def unfold(self):
        x, mean, var = self.args
        return sp.exp(-((x - mean) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)

    def label(self, printer):
        _, mean, var = self.args
        return rf"\mathcal{{N}}({printer._print(mean)}, {printer._print(var)})"

    def _tex(self, printer):
        x, mean, var = (printer._print(a) for a in self.args)
        return rf"\mathcal{{N}}({x}; {mean}, {var})"


class Pr(Notation):
    """``Pr(lhs, rhs, eps)``: the probability that ``lhs <= rhs``, an inequality linear in the noise
    ``eps ~ N(0, 1)``, printed ``\\Pr[lhs \\le rhs]``.

    Unfolds to the noise's distribution function: the event is solved for the noise (a positive
    coefficient keeps the direction, a negative one flips it, an unknown sign is refused), then the
    normal density is integrated over the solution. So a step that moves the noise to one side of
    the inequality is checked, not assumed.
    """

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


_S = sp.Symbol("s", real=True)  # Pr's integration variable, as in the density derivations


def density_variables(dens) -> tuple:
    """Integration variables of a density expression (a product of densities allowed)."""
    found = []
    for factor in sp.Mul.make_args(dens):
        if isinstance(factor, Density):
            found.extend(v for v in factor.variables if v not in found)
    return tuple(found)


# --------------------------------------------------------------- moments
class Expectation(Notation):
    r"""``E(g)`` over random variables, or ``E(g, dens)`` over the variables of ``dens``."""

    nargs = (1, 2)
    is_commutative = True

    def _tex(self, printer):
        body = printer._print(self.args[0])
        if len(self.args) == 1:
            return rf"\mathbb{{E}}\left[{body}\right]"
        dens = self.args[1]
        sub = _density_subscript(dens, printer)
        return rf"\mathbb{{E}}_{{{sub}}}\left[{body}\right]"


def _density_subscript(dens, printer) -> str:
    if isinstance(dens, GaussPdf):
        return rf"{printer._print(dens.args[0])} \sim {dens.label(printer)}"
    return printer._print(dens)


E = Expectation


class Var(Notation):
    """Variance ``Var[X] := E[(X - E[X])^2]``."""

    nargs = 1

    def unfold(self):
        x = self.args[0]
        return E((x - E(x)) ** 2)

    def _tex(self, printer):
        return rf"\operatorname{{Var}}\left[{printer._print(self.args[0])}\right]"


class Cov(Notation):
    """Covariance ``Cov[X, Y] := E[(X - E[X])(Y - E[Y])]``."""

    nargs = 2

    def unfold(self):
        x, y = self.args
        return E((x - E(x)) * (y - E(y)))

    def _tex(self, printer):
        x, y = (printer._print(a) for a in self.args)
        return rf"\operatorname{{Cov}}\left[{x}, {y}\right]"


class KL(Notation):
    r"""``KL(q, p) := E_q[log q - log p]`` for densities ``q``, ``p`` in the same variables."""

    nargs = 2

    def unfold(self):
        q, p = self.args
        return E(sp.log(q) - sp.log(p), q)

    def _tex(self, printer):
        q, p = (_kl_arg(a, printer) for a in self.args)
        return rf"D_{{\mathrm{{KL}}}}\left({q} \,\middle\|\, {p}\right)"


def _kl_arg(dens, printer):
    return dens.label(printer) if isinstance(dens, GaussPdf) else printer._print(dens)


class H(Notation):
    """Entropy ``H(q) := -E_q[log q]``; cross-entropy ``H(q, p) := -E_q[log p]``."""

    nargs = (1, 2)

    def unfold(self):
        q = self.args[0]
        p = self.args[-1]
        return -E(sp.log(p), q)

    def _tex(self, printer):
        names = ", ".join(_short_name(a, printer) for a in self.args)
        return rf"\mathrm{{H}}({names})"


def _short_name(dens, printer):
    if isinstance(dens, Pdf):
        return dens.args[0].name
    return _kl_arg(dens, printer)


class ELBO(Notation):
    """Evidence lower bound ``ELBO(p(x,z), q(z)) := E_q[log p(x,z) - log q(z)]``."""

    nargs = 2

    def unfold(self):
        joint, q = self.args
        return E(sp.log(joint) - sp.log(q), q)

    def _tex(self, printer):
        return rf"\operatorname{{ELBO}}({_short_name(self.args[1], printer)})"
