"""Probability spaces a model can bind random variables to.

``E`` over a bound variable is computed from its definition -- a finite sum
``sum_i p_i g(x_i)`` or an exact integral ``int g(t) f(t) dt`` -- never from
properties of ``E`` itself, so these spaces can check linearity honestly.
"""
from __future__ import annotations

import sympy as sp

from ._notation import Density, GaussPdf, Pdf
from ._printing import tex

_INTEGRALS: dict = {}


def integrate_exact(integrand, var, lower=-sp.oo, upper=sp.oo):
    """``int integrand d var`` term by term (linearity of the integral), each term cached.

    Raises ``ValueError`` when SymPy leaves a term unevaluated.
    """
    if not isinstance(var, sp.Symbol):  # e.g. an Indexed x[i]: integrate over a stand-in
        t = sp.Dummy("t", real=True)
        integrand, var = integrand.xreplace({var: t}), t
    total = 0
    for term in sp.Add.make_args(sp.expand(integrand)):
        const, rest = term.as_independent(var, as_Add=False)
        key = (rest, var, lower, upper)
        if key not in _INTEGRALS:
            value = None
            if (lower, upper) == (-sp.oo, sp.oo):
                value = gaussian_integral(rest, var)
            if value is None:
                value = sp.integrate(sp.powsimp(rest), (var, lower, upper), conds="none")
            if value.has(sp.Integral):
                raise ValueError(f"SymPy could not integrate {rest} over {var}")
            _INTEGRALS[key] = value
        total += const * _INTEGRALS[key]
    return total


def gaussian_integral(expr, u):
    """``int_R u^k exp(a u^2 + b u + c) du`` in closed form when ``a < 0``, else ``None``.

    Completing the square, ``a u^2 + b u + c = -alpha (u - mu)^2 + c + alpha mu^2`` with
    ``alpha = -a``, so the integral is ``sqrt(pi/alpha) exp(c + alpha mu^2)`` times
    ``E[(mu + Z / sqrt(2 alpha))^k]`` for a standard normal ``Z`` (``E[Z^j] = (j-1)!!``
    for even ``j``, zero for odd ``j``).  Exact; much faster than ``sympy.integrate``.
    """
    k, exponent = 0, 0
    for factor in sp.Mul.make_args(sp.powsimp(expr, combine="exp")):
        if factor == u:
            k += 1
        elif factor.is_Pow and factor.base == u and factor.exp.is_Integer and factor.exp > 0:
            k += int(factor.exp)
        elif isinstance(factor, sp.exp):
            exponent += factor.args[0]
        elif factor.has(u):
            return None
        else:
            return None  # constants were split off by the caller
    try:
        poly = sp.Poly(sp.expand(exponent), u)
    except sp.PolynomialError:
        return None
    if poly.degree() != 2:
        return None
    a, b, c = poly.all_coeffs()
    alpha = sp.factor(-a)
    if not alpha.is_positive:
        return None
    mu = sp.cancel(b / (2 * alpha))
    scale = 1 / sp.sqrt(2 * alpha)
    moment = sum(sp.binomial(k, j) * mu ** (k - j) * scale**j * sp.factorial2(j - 1)
                 for j in range(0, k + 1, 2))
    return sp.sqrt(sp.pi / alpha) * sp.exp(sp.factor(c + alpha * mu**2)) * moment


class Space:
    """A distribution for one or more random variables (``arity`` of them, jointly)."""

    arity = 1

    def expect(self, h, rvs):
        """``E[h]`` where ``h`` depends only on the random variables ``rvs`` of this space."""
        raise NotImplementedError

    def tex(self) -> str:
        raise NotImplementedError


class Finite(Space):
    """Finitely many outcomes with (possibly symbolic) probabilities."""

    def __init__(self, table: dict):
        self.table = {k: sp.sympify(v) for k, v in table.items()}
        first = next(iter(self.table))
        self.arity = len(first) if isinstance(first, tuple) else 1

    def expect(self, h, rvs):
        total = 0
        for outcome, prob in self.table.items():
            values = outcome if isinstance(outcome, tuple) else (outcome,)
            total += prob * h.xreplace(dict(zip(rvs, values, strict=True)))
        return total

    def tex(self):
        if self.arity == 1:
            pairs = ", ".join(f"{tex(v)}: {tex(p)}" for v, p in self.table.items())
            return rf"\text{{a distribution on {len(self.table)} points}}\ \{{{pairs}\}}"
        return rf"\text{{a joint distribution on {len(self.table)} points}}"


class Continuous(Space):
    """A density over real variables; explicit (integrated exactly) or abstract."""

    def __init__(self, density_of, variables, support=(-sp.oo, sp.oo), label=None):
        self.variables = tuple(variables)
        self.arity = len(self.variables)
        self.density = density_of(*self.variables)
        self.support = support
        self._label = label

    @property
    def abstract(self) -> bool:
        return any(isinstance(f, sp.core.function.AppliedUndef) or isinstance(f, Pdf)
                   for f in sp.preorder_traversal(self.density))

    def expect(self, h, rvs):
        h = h.xreplace(dict(zip(rvs, self.variables, strict=True)))
        return integrate_density(h, self.density, self.variables, self.support)

    def tex(self):
        return self._label if self._label else tex(self.density)


def integrate_density(h, density, variables, support=(-sp.oo, sp.oo)):
    """``int h * density`` over ``variables`` for a normalized ``density``."""
    if not any(h.has(v) for v in variables):
        return h  # the density integrates to one
    if isinstance(density, GaussPdf) and tuple(support) == (-sp.oo, sp.oo):
        return gauss_expect(h, density)
    explicit = density.replace(lambda e: isinstance(e, GaussPdf), lambda e: e.unfold())
    if _is_abstract(explicit):
        limits = [(v, *support) for v in variables]
        return normalize_integrals(sp.Integral(h * density, *limits))
    integrand = h * explicit
    for v in variables:
        integrand = integrate_exact(integrand, v, *support)
    return integrand


_U = sp.Dummy("u", real=True)


def gauss_expect(h, gauss: GaussPdf):
    """``int h(x) N(x; m, v) dx`` exactly, after the change of variables ``x = m + sqrt(v) u``.

    The integrand becomes ``h(m + sqrt(v) u) exp(-u^2/2) / sqrt(2 pi)``: for polynomial
    ``h`` only the standard moments ``int u^k exp(-u^2/2) du`` are left, which are cached.
    """
    x, mean, var = gauss.args
    h = h.xreplace({x: mean + sp.sqrt(var) * _U})
    h = h.replace(lambda e: isinstance(e, GaussPdf), lambda e: e.unfold())
    return integrate_exact(h * sp.exp(-_U**2 / 2) / sp.sqrt(2 * sp.pi), _U)


def _is_abstract(expr) -> bool:
    kinds = (Pdf, sp.core.function.AppliedUndef)
    return any(isinstance(e, kinds) for e in sp.preorder_traversal(expr))


def normalize_integrals(expr):
    """``int c * p(x, z) dz -> c * p(x)``: densities sharing a name are one joint's marginals."""
    def rule(integral):
        over = [lim[0] for lim in integral.limits]
        if not all(len(lim) == 3 and (lim[1], lim[2]) == (-sp.oo, sp.oo)
                   for lim in integral.limits):
            return integral
        const, rest = integral.function.as_independent(*over, as_Add=False)
        if isinstance(rest, Pdf) and set(over) <= set(rest.variables):
            name, variables, given = rest.args
            left = [v for v in variables if v not in over]
            return const * (Pdf(name, left, given) if left else 1)
        return _one_at_a_time(integral)
    return expr.replace(lambda e: isinstance(e, sp.Integral), rule)


def _one_at_a_time(integral):
    """A multiple integral whose integrand depends on some variable only through one joint density:
    integrate that variable out of the density and keep the rest (``int int f(y) p(x, y) dx dy ->
    int f(y) p(y) dy``)."""
    function, limits = integral.function, list(integral.limits)
    changed = True
    while changed and len(limits) > 1:
        changed = False
        for lim in limits:
            v = lim[0]
            const, rest = function.as_independent(v, as_Add=False)
            if isinstance(rest, Pdf) and v in rest.variables:
                name, variables, given = rest.args
                left = [u for u in variables if u != v]
                function = const * (Pdf(name, left, given) if left else 1)
                limits.remove(lim)
                changed = True
                break
    if len(limits) == len(integral.limits):
        return integral
    return sp.Integral(function, *limits) if limits else function


# ------------------------------------------------------------------ builders
def normal(mean, var) -> Continuous:
    """``X ~ N(mean, var)``; expectations are exact Gaussian integrals."""
    t = sp.Dummy("t", real=True)
    label = rf"\mathcal{{N}}({tex(mean)}, {tex(var)})"
    return Continuous(lambda x: GaussPdf(x, mean, var), (t,), label=label)


def discrete(table: dict) -> Finite:
    """``X`` takes value ``v`` with probability ``table[v]``; keys may be tuples (joint)."""
    return Finite(table)


def density(f, *variables, support=(-sp.oo, sp.oo), label=None) -> Continuous:
    """A density ``f`` (callable or ``sympy.Function('f')``) in ``variables``.

    With an undefined function ``f`` the space stands for *any* density: integrals
    stay symbolic except ``int f = 1``.
    """
    if not variables:
        variables = (sp.Symbol("x", real=True),)
    name = getattr(f, "__name__", "f")
    default = rf"\text{{any density }} {name}"
    return Continuous(f, variables, support=support, label=label or default)


def density_spaces(dens):
    """Split a density expression into independent ``(variables, density)`` blocks."""
    blocks = []
    for factor in sp.Mul.make_args(dens):
        if not isinstance(factor, Density):
            raise ValueError(f"the density {dens} must be a product of Density objects, "
                             f"found factor {factor}")
        blocks.append((tuple(factor.variables), factor))
    return blocks


class StatsSpace(Space):
    """A ``sympy.stats`` random symbol; expectations by ``sympy.stats.E``."""

    def __init__(self, random_symbol, label=None):
        self.random_symbol = random_symbol
        self._label = label

    def expect(self, h, rvs):
        import sympy.stats as stats
        return stats.E(h.xreplace({rvs[0]: self.random_symbol}))

    def tex(self):
        if self._label:
            return self._label
        dist = self.random_symbol.pspace.distribution
        name = type(dist).__name__.removesuffix("Distribution")
        params = ", ".join(tex(a) for a in dist.args)
        return rf"\operatorname{{{name}}}({params})\ \text{{(sympy.stats)}}"


def from_stats(random_symbol, label=None) -> StatsSpace:
    """Bind to a ``sympy.stats`` variable, e.g. ``from_stats(stats.Exponential("L", lam))``."""
    return StatsSpace(random_symbol, label)
