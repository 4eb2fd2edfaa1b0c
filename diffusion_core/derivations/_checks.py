"""How a single step is verified.  Every step has exactly one ``Check``.

* ``ModelCheck`` (the default): evaluate both sides under each model of the
  derivation; ``=`` needs a zero difference, ``<=``/``>=`` a difference SymPy
  proves non-negative.
* ``under(*models)``: the same, under other models than the derivation's.
* ``jensen(f, u)``: the step is ``E[f(Y)]`` vs ``f(E[Y])``; checks that shape and
  the sign of ``f''`` on the domain (concave for ``E f <= f E``, convex the other way).
* ``antiderivative(F)``: the step is a definite integral against ``F(b) - F(a)``; checks
  ``F' = f`` and the evaluation at the limits.
* ``ratio_is_one()``: for positive sides (densities): their ratio simplifies to 1 under each model.
* ``uses("module:name")``: the step's gap is exactly the gap of an already
  checked derivation (e.g. ``KL >= 0``), evaluated under this derivation's models.
* ``definition(what)`` / ``assumption(what)``: the step restates a definition, or a hypothesis that a model
  binds (the left side is the right side by construction). It must still hold under the models, but it
  verifies nothing: readers see "by definition" / "by assumption", and it is not counted as a checked step.

A check's ``verify`` returns a sentence for readers and raises ``StepFailure``.
"""
from __future__ import annotations

import importlib

import sympy as sp

from ._notation import Expectation, GaussPdf
from ._printing import tex


class StepFailure(Exception):
    """Raised by a check; the message says why the step does not hold."""


class Check:
    verifies = True  # False: the step is a definition or an assumption, shown as such and not counted

    def verify(self, step, derivation) -> str:
        raise NotImplementedError


def simplify(expr):
    """``sympy.simplify`` without ``doit``: abstract integrals must stay as they are."""
    return sp.simplify(expr, doit=False)


def _exp_normal(expr):
    """Combine exponentials and expand their exponents, so equal Gaussians look equal."""
    expr = sp.powsimp(sp.expand(expr), combine="exp")
    return expr.replace(lambda e: isinstance(e, sp.exp), lambda e: sp.exp(sp.expand(e.args[0])))


def _log_expand(expr):
    """Factor inside logs, split them, and bring everything over one denominator."""
    expr = expr.replace(lambda e: isinstance(e, sp.log), lambda e: sp.log(sp.factor(e.args[0])))
    return sp.cancel(sp.expand(sp.expand_log(expr, force=True)))


def is_zero(expr, cheap_only=False) -> bool:
    """True when SymPy can show ``expr == 0`` (cheap normal forms first)."""
    if expr == 0:
        return True
    forms = (sp.expand, _log_expand) if cheap_only else \
        (sp.expand, _log_expand, simplify, lambda e: simplify(_log_expand(e)))
    for form in forms:
        try:
            if form(expr) == 0:
                return True
        except Exception:  # a normal form that SymPy cannot build is just not used
            continue
    return False


def are_equal(a, b) -> bool:
    """True when SymPy can show ``a == b``; products of exponentials are compared by ratio."""
    if is_zero(a - b, cheap_only=True):
        return True
    if b.has(sp.exp) and b.is_positive:
        for form in (lambda r: _log_expand(sp.log(r)), lambda r: _exp_normal(r) - 1):
            try:
                if simplify(form(a / b)) == 0:
                    return True
            except Exception:
                continue
    return is_zero(a - b)


def is_nonnegative(expr) -> bool:
    for form in (lambda e: e, simplify, sp.factor):
        try:
            if form(expr).is_nonnegative:
                return True
        except Exception:
            continue
    return False


def evaluate(derivation, model, expr):
    cache = derivation.__dict__.setdefault("_evaluations", {})
    key = (id(model), expr)
    if key not in cache:
        try:
            cache[key] = model.evaluate(expr)
        except StepFailure:
            raise
        except Exception as exc:
            raise StepFailure(
                f"under model {model.label!r}, could not evaluate {expr}: {exc}") from exc
    return cache[key]


def gap(step):
    """``(greater, lesser)`` for inequalities, ``(lhs, rhs)`` for ``=``."""
    return (step.lhs, step.rhs) if step.relation in ("=", ">=") else (step.rhs, step.lhs)


class ModelCheck(Check):
    def __init__(self, models=None):
        self.models = models

    def verify(self, step, derivation):
        models = self.models or derivation.models
        for model in models:
            hi, lo = (evaluate(derivation, model, e) for e in gap(step))
            diff = hi - lo
            if step.relation == "=" and not are_equal(hi, lo):
                raise StepFailure(
                    f"under model {model.label!r} the left side evaluates to {hi}, the right "
                    f"side to {lo}; the difference {simplify(diff)} is not zero")
            if step.relation != "=" and not is_nonnegative(diff):
                raise StepFailure(
                    f"under model {model.label!r}, SymPy cannot show that {simplify(diff)} "
                    f"(greater side minus lesser side) is >= 0; give a justification with by=")
        return "both sides agree under: " + "; ".join(m.label for m in models) \
            if step.relation == "=" else "the gap is non-negative under: " + \
            "; ".join(m.label for m in models)


def under(*models) -> Check:
    """Check this step under ``models`` instead of the derivation's models."""
    return ModelCheck(list(models))


class Stated(Check):
    """A step that holds by a definition or an assumption (see ``definition`` and ``assumption``)."""

    verifies = False

    def __init__(self, kind: str, what: str, models):
        self.kind, self.what, self.inner = kind, what, ModelCheck(list(models) if models else None)

    def verify(self, step, derivation):
        self.inner.verify(step, derivation)  # as written, it must hold: a typo still stops the build
        return f"by {self.kind}" + (f" ({self.what})" if self.what else "") + \
            "; it holds under the models, and is not counted as a checked step"


def definition(what: str = "", models=None) -> Check:
    """The step restates a definition (the models bind one side to the other): shown, not counted."""
    return Stated("definition", what, models)


def assumption(what: str = "", models=None) -> Check:
    """The step uses a hypothesis the models state (e.g. a density's form): shown, not counted."""
    return Stated("assumption", what, models)


class Jensen(Check):
    def __init__(self, f, u, domain):
        self.f, self.u, self.domain = sp.sympify(f), u, domain

    def _shape(self, outer, other):
        """If ``outer == E[f(Y)]`` and ``other == f(E[Y])``, return ``Y``."""
        if not isinstance(outer, Expectation):
            return None
        w = sp.Wild("w")
        match = outer.args[0].match(self.f.subs(self.u, w))
        if not match or w not in match:
            return None
        y = match[w]
        target = self.f.subs(self.u, Expectation(y, *outer.args[1:]))
        return y if (other == target or are_equal(other, target)) else None

    def verify(self, step, derivation):
        if step.relation == "=":
            raise StepFailure("Jensen's inequality justifies <= or >=, not =")
        y, e_of_f = self._shape(step.lhs, step.rhs), True
        if y is None:
            y, e_of_f = self._shape(step.rhs, step.lhs), False
        if y is None:
            raise StepFailure(f"Jensen needs one side E[f(Y)] and the other f(E[Y]) "
                              f"with f(u) = {self.f}")
        if not self.domain.contains(y) == sp.true:
            raise StepFailure(f"cannot confirm that {y} takes values in {self.domain}")
        # E[f(Y)] <= f(E[Y]) needs f concave; E[f(Y)] >= f(E[Y]) needs f convex
        small_is_e = (step.relation == "<=") == e_of_f
        d2 = simplify(sp.diff(self.f, self.u, 2))
        bad = d2 > 0 if small_is_e else d2 < 0
        if sp.solveset(bad, self.u, self.domain) != sp.S.EmptySet:
            shape = "concave" if small_is_e else "convex"
            raise StepFailure(f"f(u) = {self.f} is not {shape} on {self.domain}: f'' = {d2}")
        shape, sign = ("concave", r"\le") if small_is_e else ("convex", r"\ge")
        return (f"Jensen's inequality: $f({tex(self.u)}) = {tex(self.f)}$ is {shape} on "
                f"${tex(self.domain)}$ since $f'' = {tex(d2)} {sign} 0$ there")


POSITIVE_REALS = sp.Interval.open(0, sp.oo)


def jensen(f, u, domain=POSITIVE_REALS) -> Check:
    """Jensen's inequality for the function ``f`` of the symbol ``u`` on ``domain``."""
    return Jensen(f, u, domain)


class Antiderivative(Check):
    def __init__(self, F):
        self.F = sp.sympify(F)

    def verify(self, step, derivation):
        integral = step.lhs
        if step.relation != "=" or not isinstance(integral, sp.Integral) or len(integral.limits) != 1 \
                or len(integral.limits[0]) != 3:
            raise StepFailure("an antiderivative justifies `integral from a to b = F(b) - F(a)`, "
                              "with the definite integral on the left")
        var, a, b = integral.limits[0]
        f = integral.function.replace(lambda e: isinstance(e, GaussPdf), lambda e: e.unfold())
        if not is_zero(sp.diff(self.F, var) - f):
            raise StepFailure(f"d/d{var} of {self.F} is {simplify(sp.diff(self.F, var))}, not {f}")
        if not is_zero(step.rhs - (self.F.subs(var, b) - self.F.subs(var, a))):
            raise StepFailure(f"the right side is not F({b}) - F({a}) with F = {self.F}")
        return (f"the fundamental theorem of calculus: ${tex(self.F)}$ has derivative "
                f"${tex(integral.function)}$ in ${tex(var)}$, evaluated at both limits")


def antiderivative(F) -> Check:
    """Justify ``Integral(f, (y, a, b)) = F(b) - F(a)`` by ``F' = f`` (checked)."""
    return Antiderivative(F)


def _factor_bases(expr):
    """Bring the base of every power (square roots included) over one denominator and factor it."""
    return expr.replace(lambda e: e.is_Pow and not e.exp.is_Integer,
                        lambda e: sp.Pow(sp.factor(sp.together(e.base)), e.exp))


def _positive_factor(f) -> bool:
    """``f > 0`` as SymPy sees it; ``exp(u)`` also when ``u`` is a real numerator over a signed denominator."""
    if f.is_positive:
        return True
    if isinstance(f, sp.exp):
        top, bottom = sp.fraction(sp.together(f.args[0]))
        bottom = sp.expand(bottom)
        return bool(top.is_real and (bottom.is_positive or bottom.is_negative))
    return False


def _is_positive(expr) -> bool:
    for form in (lambda e: e, _factor_bases, simplify):
        try:
            if all(_positive_factor(factor) for factor in sp.Mul.make_args(form(expr))):
                return True
        except Exception:
            continue
    return False


class RatioIsOne(Check):
    def verify(self, step, derivation):
        if step.relation != "=":
            raise StepFailure("a ratio of 1 justifies =, not an inequality")
        for model in derivation.models:
            lhs, rhs = (evaluate(derivation, model, e) for e in (step.lhs, step.rhs))
            if not _is_positive(rhs):
                raise StepFailure(f"under model {model.label!r}, SymPy cannot confirm that {rhs} is positive")
            ratio = simplify(lhs / rhs)
            if ratio != 1 and not (isinstance(ratio, sp.exp) and is_zero(ratio.args[0])):
                raise StepFailure(f"under model {model.label!r} the ratio of the sides is {ratio}, not 1")
        return "the right side is positive and the ratio of the sides simplifies to 1 under: " + \
            "; ".join(m.label for m in derivation.models)


def ratio_is_one() -> Check:
    """Justify ``=`` between positive expressions (densities) by a ratio that simplifies to 1."""
    return RatioIsOne()


_CHECKED: dict = {}


def resolve(ref: str):
    """The ``DerivationSpec`` named ``"part.page:function"`` (in ``diffusion_core/derivations/part/page.py``)."""
    module, _, name = ref.partition(":")
    spec = getattr(importlib.import_module(f"{__package__}.{module}"), name, None)
    if spec is None:
        where = f"{__package__}.{module}".replace(".", "/")
        raise LookupError(f"no derivation {name!r} in {where}.py")
    return spec


class Uses(Check):
    def __init__(self, ref, subs=None):
        self.ref, self.subs = ref, dict(subs or {})

    def verify(self, step, derivation):
        spec = resolve(self.ref)
        if self.ref not in _CHECKED:
            _CHECKED[self.ref] = spec.check()
        used = spec.build()
        first, last = (line.xreplace(self.subs) for line in (used.lines[0], used.lines[-1]))
        rel = used.relation
        if rel != "=" and step.relation == "=":
            raise StepFailure(f"{self.ref} proves an inequality; it cannot justify =")
        known = (first - last) if rel in ("=", ">=") else (last - first)
        hi, lo = gap(step)
        for model in derivation.models:
            mine = evaluate(derivation, model, hi - lo)
            theirs = evaluate(derivation, model, known)
            if not (are_equal(mine, theirs) or (rel == "=" and is_zero(mine + theirs))):
                raise StepFailure(f"under model {model.label!r} the step's gap {simplify(mine)} "
                                  f"is not the gap {simplify(theirs)} proved by {self.ref}")
        sym = {"=": "=", "<=": r"\le", ">=": r"\ge"}[rel]
        return f"uses [{self.ref}]: ${tex(used.lines[0])} {sym} {tex(used.lines[-1])}$"


def uses(ref: str, subs: dict | None = None) -> Check:
    """Justify a step by an earlier derivation ``"module:name"``."""
    return Uses(ref, subs)
