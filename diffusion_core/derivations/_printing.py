"""LaTeX printing for derivations: textbook notation from the SymPy expressions.

``tex(expr)`` is what pages show; ``ordered`` and ``times`` only affect display.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter

from ._notation import Density, Notation, RandomVariable

class NotationPrinter(LatexPrinter):
    """LaTeX printer for derivations.

    * ``\\log p(x)`` rather than ``\\log{\\left(p(x)\\right)}``;
    * sums list positive terms first (``E[X^2] - E[X]^2``), products put numbers and
      constants before random quantities (``2 \\sigma \\epsilon``);
    * a sum or product built with ``ordered`` or ``times`` keeps the author's order.
    """

    def _print_log(self, expr, exp=None):
        arg = expr.args[0]
        inner = self._print(arg)
        if isinstance(arg, (sp.Symbol, Density, sp.Indexed)) or (arg.is_Integer and arg >= 0):
            out = rf"\log {inner}"
        else:
            out = rf"\log\left({inner}\right)"
        return rf"\left({out}\right)^{{{exp}}}" if exp is not None else out

    def _print_RandomVariable(self, expr):
        return self._print_Symbol(expr)

    def _print_UnevaluatedExpr(self, expr):
        inner = expr.args[0]
        if inner.is_Add:
            return self._print_Add(inner, keep=True)
        if inner.is_Mul:
            return self._print_Mul(inner, keep=True)
        return self._print(inner)

    def _print_Sum(self, expr):
        out = super()._print_Sum(expr)
        body = expr.function
        if isinstance(body, sp.UnevaluatedExpr) and body.args[0].is_Add:
            inner = self._print(body)
            out = out[: -len(inner)] + rf"\left({inner}\right)"
        return out

    def _print_Add(self, expr, order=None, keep=False):
        if not keep:
            terms = list(expr.as_ordered_terms())
            terms = [t for t in terms if not t.could_extract_minus_sign()] + \
                    [t for t in terms if t.could_extract_minus_sign()]
        else:
            terms = list(expr.args)  # built with ordered(): keep the author's order
        out = ""
        for i, term in enumerate(terms):
            if term.is_Add:  # a group inside an ordered sum keeps its parentheses
                sign, body = "+", rf"\left({self._print(term)}\right)"
            elif term.could_extract_minus_sign():
                sign, body = "-", self._print(-term)
                if _is_ordered_sum(-term):  # x - (a + b), not x - a + b
                    body = rf"\left({body}\right)"
            else:
                sign, body = "+", self._print(term)
            out += (("- " if sign == "-" else "") + body) if i == 0 else f" {sign} {body}"
        return out

    def _print_Mul(self, expr, keep=False):
        if not keep:
            if expr.could_extract_minus_sign():
                inner = self._print(-expr)
                return "- " + (rf"\left({inner}\right)" if (-expr).is_Add or _is_ordered_sum(-expr) else inner)
            factors = sorted(expr.as_ordered_factors(), key=_factor_rank)
            expr = sp.Mul(*factors, evaluate=False)
        saved, self._settings["order"] = self._settings["order"], "none"
        try:
            return super()._print_Mul(expr)
        finally:
            self._settings["order"] = saved


def _is_ordered_sum(expr) -> bool:
    return isinstance(expr, sp.UnevaluatedExpr) and expr.args[0].is_Add


def _factor_rank(factor) -> int:
    if factor.is_number:
        return 0
    random = factor.atoms(RandomVariable) or factor.has(Notation)
    return 2 if random else 1


def ordered(*terms):
    """A sum displayed in the order given: ``ordered(E(X**2), -E(X)**2)``.

    A term that is itself a sum is shown in parentheses.  Checking ignores the order
    (the ``UnevaluatedExpr`` wrapper is dropped before evaluation).
    """
    return sp.UnevaluatedExpr(sp.Add(*terms, evaluate=False))


def times(*factors):
    """A product displayed as given, e.g. ``times(2, E(X*Y) - E(X)*E(Y))`` keeps the 2 outside."""
    return sp.UnevaluatedExpr(sp.Mul(*factors, evaluate=False))


def tex(expr) -> str:
    """LaTeX for one expression, using the notation above."""
    return NotationPrinter({"mul_symbol": None}).doprint(expr)
