"""Models: how displayed notation is turned into something SymPy can decide.

A ``Model`` first substitutes its bindings (random variables to spaces,
abstract densities or symbols to concrete expressions), then rewrites the
expression bottom-up:

* ``Var``, ``Cov``, ``KL``, ``H``, ``ELBO`` unfold into expectations;
* ``E(g)`` over random variables bound to a space is computed by definition
  (sum or exact integral); over unbound random variables ``E`` is a linear
  operator with independence where the model declares it, leaving atoms such
  as ``E[X**2]`` that both sides of a step must agree on;
* ``E(g, q(z))`` is ``int q(z) g dz``: exact for explicit densities, symbolic
  (with ``int q = 1`` and marginals) for abstract ``Pdf`` densities;
* derivatives, sums and products are carried out after their insides.
"""
from __future__ import annotations

import sympy as sp

from ._notation import (Density, Expectation, GaussPdf, Notation, Pdf, RandomVariable,
                        density_variables)
from ._printing import tex
from ._spaces import Space, density_spaces, integrate_density, integrate_exact, normalize_integrals


class Model:
    """One interpretation under which every step of a derivation must hold.

    ``bind`` maps a random variable (or a tuple of them) to a ``Space`` such as
    ``normal(mu, sigma**2)``; any other key (a symbol, an abstract ``Pdf``) is
    replaced by its value.  ``independent`` lists tuples of unbound random
    variables that are mutually independent.  ``label`` is shown to readers
    (Markdown, ``$...$`` math allowed); a label is generated when omitted.
    """

    def __init__(self, label: str | None = None, *, bind: dict | None = None,
                 independent=(), facts: dict | None = None):
        self.spaces: dict[tuple, Space] = {}
        self.subs: dict = {}
        for key, value in (bind or {}).items():
            if isinstance(value, Space):
                rvs = key if isinstance(key, tuple) else (key,)
                if len(rvs) != value.arity:
                    raise ValueError(f"{value} binds {value.arity} variables, got {rvs}")
                self.spaces[rvs] = value
            else:
                self.subs[sp.sympify(key)] = sp.sympify(value)
        self.independent = [tuple(group) for group in independent]
        self.facts = dict(facts or {})
        self.label = label or self._auto_label()

    def _auto_label(self) -> str:
        parts = [f"${', '.join(tex(r) for r in rvs)} \\sim {space.tex()}$"
                 for rvs, space in self.spaces.items()]
        parts += [f"${tex(k)} = {tex(v)}$" for k, v in self.subs.items()]
        parts += [f"${', '.join(tex(r) for r in group)}$ independent" for group in self.independent]
        parts += [f"${tex(k)} = {tex(v)}$" for k, v in self.facts.items()]
        general = "any distribution ($\\mathbb{E}$ as a linear operator)"
        return "; ".join(parts) if parts else general

    def __repr__(self):
        return f"Model({self.label!r})"

    # ------------------------------------------------------------ pipeline
    def evaluate(self, expr):
        """Rewrite ``expr`` into plain SymPy (plus opaque atoms) under this model."""
        expr = sp.sympify(expr)
        for _ in range(8):
            new = expr.xreplace(self.subs) if self.subs else expr
            if new == expr:
                break
            expr = new
        expr = self._walk(expr)
        expr = expr.replace(lambda e: isinstance(e, GaussPdf), lambda e: e.unfold())
        expr = normalize_integrals(_canonical_pdfs(conditional_to_joint(expr)))
        if self.facts:
            expr = expr.xreplace(self.facts)
        return expr

    def _walk(self, expr):
        if expr.is_Atom or isinstance(expr, Pdf) or not expr.args:
            return expr
        args = [self._walk(a) for a in expr.args]
        node = expr.func(*args) if args != list(expr.args) else expr
        return self._visit(node)

    def _visit(self, node):
        if isinstance(node, Expectation):
            return self._expect(node)
        if isinstance(node, Notation) and not isinstance(node, Density):
            return self._walk(node.unfold())
        if isinstance(node, sp.UnevaluatedExpr):  # display-only grouping (ordered, times)
            inner = node.args[0]
            return inner.func(*inner.args) if inner.args else inner
        if isinstance(node, (sp.Derivative, sp.Sum, sp.Product)):
            done = node.doit()
            # a derivative of an abstract density or function stays as it is: walking it again would loop
            return node if done == node else self._walk(done)
        if isinstance(node, sp.Integral):
            return _integral(node)
        return node

    # ------------------------------------------------------------ expectations
    def _expect(self, node):
        g = node.args[0]
        if len(node.args) == 2:
            return self._expect_density(g, node.args[1])
        rvs = free_random(g)
        if not rvs:
            return g
        bound = [r for r in rvs if self._space_of(r) is not None]
        if bound and len(bound) != len(rvs):
            raise ValueError(f"model {self.label!r} binds {bound} but not {set(rvs) - set(bound)}")
        if bound:
            return self._expect_spaces(g, rvs)
        return self._expect_algebra(g, rvs)

    def _space_of(self, rv):
        for rvs in self.spaces:
            if rv in rvs:
                return rvs
        return None

    def _expect_spaces(self, g, rvs):
        keys = {self._space_of(r) for r in rvs}
        blocks = [(key, lambda h, key=key: self.spaces[key].expect(h, key)) for key in keys]
        return _linear_split(sp.expand(g), blocks)

    def _expect_algebra(self, g, rvs):
        groups = _dependence_groups(rvs, self.independent)
        blocks = [(grp, Expectation) for grp in groups]
        return _linear_split(sp.expand(g), blocks)

    def _expect_density(self, g, dens):
        variables = density_variables(dens)
        if not variables:
            raise ValueError(f"cannot tell what {dens} integrates over")
        h = g.replace(lambda e: isinstance(e, GaussPdf), lambda e: e.unfold())
        h = sp.expand(sp.expand_log(_canonical_pdfs(conditional_to_joint(h)), force=True))
        blocks = [(vs, lambda t, d=d, vs=vs: integrate_density(t, _canonical_pdfs(d), vs))
                  for vs, d in density_spaces(dens)]
        return _linear_split(h, blocks)


def _integral(node):
    """Marginalize abstract densities; integrate explicit integrands over the real line.

    Integrals with other limits stay unevaluated (a surrounding derivative can still
    apply the fundamental theorem of calculus).
    """
    node = normalize_integrals(_canonical_pdfs(node))
    if not isinstance(node, sp.Integral) or _has_abstract(node.function):
        return node
    if any(len(lim) != 3 or (lim[1], lim[2]) != (-sp.oo, sp.oo) for lim in node.limits):
        return node
    body = node.function
    for var, _, _ in node.limits:
        gauss = [f for f in sp.Mul.make_args(body) if isinstance(f, GaussPdf) and f.args[0] == var]
        if gauss:
            body = integrate_density(body / gauss[0], gauss[0], (var,))
        else:
            body = body.replace(lambda e: isinstance(e, GaussPdf), lambda e: e.unfold())
            body = integrate_exact(body, var)
    return body


def _has_abstract(expr) -> bool:
    return any(isinstance(e, (Pdf, sp.core.function.AppliedUndef, Expectation, RandomVariable))
               for e in sp.preorder_traversal(expr))


def free_random(expr) -> list:
    """Random variables of ``expr`` outside any ``E[...]`` (inside, they are averaged out)."""
    found: list = []

    def visit(e):
        if isinstance(e, Expectation):
            return
        if isinstance(e, RandomVariable) and e not in found:
            found.append(e)
        for a in e.args:
            visit(a)
    visit(expr)
    return found


def _dependence_groups(rvs, independent):
    """Variables not declared independent share a group (conservative)."""
    def indep(a, b):
        return any(a in grp and b in grp for grp in independent)
    groups: list[list] = []
    for r in rvs:
        joined = [grp for grp in groups if any(not indep(r, s) for s in grp)]
        merged = [r] + [s for grp in joined for s in grp]
        groups = [grp for grp in groups if grp not in joined] + [merged]
    return [tuple(grp) for grp in groups]


def _linear_split(expanded, blocks):
    """Sum over terms of ``const * prod_block E_block[factor]`` (linearity, independence)."""
    total = 0
    for term in sp.Add.make_args(expanded):
        const, parts = 1, {}
        for factor in sp.Mul.make_args(term):
            touched = [i for i, (vs, _) in enumerate(blocks) if _depends(factor, vs)]
            if not touched:
                const *= factor
                continue
            key = tuple(touched)
            # a factor spanning several blocks ties them together into one joint block
            for other in [k for k in parts if set(k) & set(key) and k != key]:
                factor *= parts.pop(other)
                key = tuple(sorted(set(key) | set(other)))
            parts[key] = parts.get(key, 1) * factor
        value = const
        for key, factor in parts.items():
            value *= _expect_joint(factor, [blocks[i] for i in key])
        total += value
    return total


def _depends(expr, variables) -> bool:
    if isinstance(variables[0], RandomVariable):
        return any(v in free_random(expr) for v in variables)
    return any(expr.has(v) for v in variables)


def _expect_joint(factor, blocks):
    if len(blocks) == 1:
        return blocks[0][1](factor)
    first, rest = blocks[0], blocks[1:]
    inner = _expect_joint(factor, rest)
    return first[1](sp.expand(inner)) if _depends(inner, first[0]) else inner


def _canonical_pdfs(expr):
    """Order the variables inside abstract densities so ``p(x, z)`` and ``p(z, x)`` agree."""
    def fix(p):
        name, variables, given = p.args
        return Pdf(name, sorted(variables, key=str), sorted(given, key=str))
    return expr.replace(lambda e: isinstance(e, Pdf), fix)


def conditional_to_joint(expr):
    """Definition of a conditional density: ``p(z | x) = p(x, z) / p(x)``."""
    def rule(p):
        name, variables, given = p.args
        return Pdf(name, tuple(given) + tuple(variables)) / Pdf(name, given)
    return expr.replace(lambda e: isinstance(e, Pdf) and len(e.args[2]) > 0, rule)
