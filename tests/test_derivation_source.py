"""What a derivation's box shows (diffusion_core/derivations/_source.py): the statements its function needs,
found by name wherever they are in the module, imports cut to the names used, and nothing else.
tests/test_site_code.py runs every real box; this checks the rules on a small module."""
from __future__ import annotations

import importlib.util
import sys

import pytest

MODULE = '''\
"""A page module."""
import math

import sympy as sp

from diffusion_core.derivations import Cov, E, Model, Var, derivation, random_variables

X = random_variables("X")
a, b = sp.symbols("a b", real=True)
unused = sp.Symbol("unused")
# the scale, shown with its statement
SCALE = 2
FACTS = {E(X): 0}
FACTS[E(X**2)] = 1                                 # changes FACTS: shown wherever FACTS is


def helper(x):
    a = 3                                          # a local: the module's `a` is not needed for this
    return a * x + math.pi * 0


@derivation("Variance of a scaled variable", models=[Model(facts=FACTS)])
def scaled(d):
    d.start(Var(SCALE * X))
    d.eq(SCALE**2 * Var(X), "constants come out squared")
    d.eq(LATER, "with Var[X] = 1")
    helper(1)


LATER = SCALE**2
'''


@pytest.fixture
def page(tmp_path, monkeypatch):
    (tmp_path / "page_under_test.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.spec_from_file_location("page_under_test", tmp_path / "page_under_test.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "page_under_test", module)
    spec.loader.exec_module(module)
    return module


def test_the_box_holds_what_the_function_needs_in_module_order(page):
    """The module less its docstring, the statements nothing needs (sympy is only used by them) and the unused
    imported name, then the call."""
    expected = MODULE
    for unneeded in ('"""A page module."""\n', "import sympy as sp\n\n", 'a, b = sp.symbols("a b", real=True)\n',
                     'unused = sp.Symbol("unused")\n', "Cov, "):
        assert unneeded in expected
        expected = expected.replace(unneeded, "", 1)
    code = page.scaled.source()
    assert code == expected + "\n\nscaled.check()\n"
    exec(compile(code, "box", "exec", dont_inherit=True), {"__name__": "__main__"})  # noqa: S102


def test_a_function_missing_from_the_module_text_is_refused(page):
    from diffusion_core.derivations._source import function_source

    def uses_nothing(d):
        d.start(1)

    uses_nothing.__module__ = page.__name__
    page.uses_nothing = uses_nothing
    with pytest.raises(LookupError, match="no top-level function 'uses_nothing' in page_under_test"):
        function_source(uses_nothing)


def test_a_top_level_loop_is_refused_with_its_line(tmp_path, monkeypatch):
    from diffusion_core.derivations._source import function_source

    (tmp_path / "looping_page.py").write_text(MODULE + "for k in range(3):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("looping_page")
    monkeypatch.setitem(sys.modules, "looping_page", module)
    line = len(MODULE.splitlines()) + 1
    with pytest.raises(ValueError, match=f"looping_page, line {line}: .* not For"):
        function_source(module.scaled.fn)
