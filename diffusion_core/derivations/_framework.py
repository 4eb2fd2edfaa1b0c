"""Derivations whose every step is checked by SymPy, and whose LaTeX is generated.

Write a derivation as a decorated function that fills in the lines::

    @derivation("Variance of an affine map", models=[Model()])
    def variance_affine(d):
        d.start(Var(a*X + b))
        d.eq(E((a*X + b - E(a*X + b))**2), "definition of variance")
        ...

``d.eq`` / ``d.le`` / ``d.ge`` add a line related to the previous one by
``=``, ``<=`` or ``>=``.  ``why`` is the text readers see; ``by`` says how the
step is checked when evaluating both sides under the models is not enough
(see ``_checks.py``).  ``check()`` raises ``DerivationError`` naming the step
and both sides; ``to_latex()`` gives the aligned block readers see.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp

from ._checks import Check, ModelCheck, StepFailure
from ._evaluate import Model
from ._printing import tex
from ._source import function_source

REL_TEX = {"=": "=", "<=": r"\le", ">=": r"\ge"}


class DerivationError(AssertionError):
    """A step (or numeric check) of a derivation does not hold."""

    def __init__(self, ref, step, relation, lhs, rhs, why, reason):
        self.ref, self.step, self.relation = ref, step, relation
        self.lhs, self.rhs, self.why, self.reason = lhs, rhs, why, reason
        where = f"step {step}" + (f" ({why})" if why else "")
        super().__init__(
            f"derivation {ref!r}, {where} does not hold:\n"
            f"    left side:  {lhs}\n    relation:   {relation}\n    right side: {rhs}\n"
            f"    reason: {reason}")


@dataclass
class Step:
    index: int
    lhs: sp.Basic
    relation: str
    rhs: sp.Basic
    why: str
    by: Check
    verified: str = ""


@dataclass
class NumericCheck:
    label: str
    against: object
    at: dict
    expr: object
    rtol: float
    atol: float
    model: Model | None
    symbolic: float | None = None
    numeric: float | None = None


@dataclass
class Report:
    """What was checked; used for the badge readers see."""
    steps: list
    models: list
    numerics: list = field(default_factory=list)

    @property
    def verified(self) -> list:
        """The steps that verify something (not a definition or an assumption restated)."""
        return [s for s in self.steps if s.by.verifies]

    @property
    def stated(self) -> list:
        """The steps that hold by a definition or an assumption."""
        return [s for s in self.steps if not s.by.verifies]


class Derivation:
    """Lines of one derivation, each related to the previous by ``=``, ``<=`` or ``>=``."""

    def __init__(self, title: str, models=None, ref: str = "<unnamed>"):
        self.title, self.ref = title, ref
        self.models = list(models) if models else [Model()]
        self.lines: list = []
        self.steps: list[Step] = []
        self.numerics: list[NumericCheck] = []

    # ------------------------------------------------------------ building
    def start(self, expr):
        if self.lines:
            raise ValueError("start() must come first and only once")
        self.lines.append(sp.sympify(expr))
        return self

    def eq(self, expr, why: str = "", by: Check | None = None):
        return self._add("=", expr, why, by)

    def le(self, expr, why: str = "", by: Check | None = None):
        return self._add("<=", expr, why, by)

    def ge(self, expr, why: str = "", by: Check | None = None):
        return self._add(">=", expr, why, by)

    def _add(self, relation, expr, why, by):
        if not self.lines:
            raise ValueError("call start(expr) before adding steps")
        expr = sp.sympify(expr)
        check = by if by is not None else ModelCheck()
        self.steps.append(Step(len(self.steps) + 1, self.lines[-1], relation, expr, why, check))
        self.lines.append(expr)
        return self

    def numeric(self, against, at: dict, *, expr=None, rtol: float = 1e-9,
                atol: float = 0.0, label: str = "", model: Model | None = None):
        """Compare ``expr`` (default: the last line) at the values ``at`` with ``against()``.

        ``against`` is a zero-argument callable returning a number (a float, a
        0-d NumPy array or a one-element torch tensor), e.g. a Monte Carlo
        estimate or a ``diffusion_core`` function.  The expression is evaluated
        under ``model`` (default: the first model).
        """
        self.numerics.append(NumericCheck(label or getattr(against, "__name__", "callable"),
                                          against, dict(at), expr, rtol, atol, model))
        return self

    # ------------------------------------------------------------ checking
    @property
    def relation(self) -> str:
        """Overall relation between the first and the last line."""
        rels = {s.relation for s in self.steps} - {"="}
        if len(rels) > 1:
            raise ValueError(f"{self.ref}: mixes <= and >= steps, no overall relation")
        return rels.pop() if rels else "="

    def check(self) -> Report:
        if len(self.lines) < 2:
            raise ValueError(f"{self.ref}: a derivation needs at least one step")
        for step in self.steps:
            try:
                step.verified = step.by.verify(step, self)
            except StepFailure as failure:
                raise DerivationError(self.ref, step.index, step.relation, step.lhs,
                                      step.rhs, step.why, str(failure)) from None
        self.relation  # noqa: B018 -- reject mixed directions
        for num in self.numerics:
            self._check_numeric(num)
        return Report(self.steps, self.models, self.numerics)

    def _check_numeric(self, num: NumericCheck):
        model = num.model or self.models[0]
        expr = self.lines[-1] if num.expr is None else sp.sympify(num.expr)
        value = model.evaluate(expr).subs(num.at).evalf()
        try:
            num.symbolic = float(value)
        except TypeError:
            raise DerivationError(self.ref, "numeric", "≈", expr, num.label, "",
                                  f"{value} is not a number at {num.at}") from None
        num.numeric = _to_float(num.against())
        if not math.isclose(num.symbolic, num.numeric, rel_tol=num.rtol, abs_tol=num.atol):
            raise DerivationError(
                self.ref, "numeric", "≈", f"{expr} = {num.symbolic!r} at {num.at}",
                f"{num.label} = {num.numeric!r}", "",
                f"differ by more than rtol={num.rtol}, atol={num.atol}")

    # ------------------------------------------------------------ display
    def to_latex(self) -> str:
        """The aligned block; a step with a reason carries its label, ``\\overset{(1)}{=}``."""
        rows, labels = [], dict(self.reasons())
        for i, step in enumerate(self.steps):
            left = tex(step.lhs) if i == 0 else ""
            rel = REL_TEX[step.relation]
            if step.index in labels:
                rel = rf"\overset{{({labels[step.index]})}}{{{rel}}}"
            rows.append(f"{left} &{rel} {tex(step.rhs)}")
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def reasons(self) -> list[tuple[int, str]]:
        """``[(step index, label number), ...]`` for the steps that give a reason."""
        return [(s.index, n) for n, s in enumerate((s for s in self.steps if s.why), start=1)]


def _to_float(value) -> float:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    if hasattr(value, "item"):
        value = value.item()
    return float(value)


class DerivationSpec:
    """What ``@derivation`` returns: builds and checks the derivation on demand."""

    def __init__(self, fn, title: str, models):
        self.fn, self.title, self.models = fn, title, models
        module = fn.__module__
        prefix = f"{__package__}."
        self.ref = f"{module[len(prefix):] if module.startswith(prefix) else module}:{fn.__name__}"
        self.__doc__ = fn.__doc__

    def build(self) -> Derivation:
        d = Derivation(self.title, self.models, self.ref)
        self.fn(d)
        return d

    def check(self) -> Report:
        return self.build().check()

    def source(self) -> str:
        """Code a reader can copy and run: what the function needs from its module, the function, ``check()``."""
        return function_source(self.fn)

    def __repr__(self):
        return f"<derivation {self.ref}>"


def derivation(title: str, models=None):
    """Decorator: ``@derivation("Title", models=[...])`` on ``def name(d): ...``."""
    def wrap(fn):
        return DerivationSpec(fn, title, models)
    return wrap
