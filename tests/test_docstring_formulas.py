"""The library's docstring formulas that name a derivation (``:checked-by: part.page:name``) are that
derivation's checked result, character for character up to whitespace, and the build refuses one that
is not (docs/hooks/rst_docstrings.py, docs/hooks/derivation_hook.py)."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

import diffusion_core

DOCS = Path(__file__).resolve().parents[1] / "docs"

from diffusion_core.derivations import discover
from diffusion_core.derivations._render import result_latex, same_latex

BLOCK = re.compile(r"^([ \t]*)\.\. math::[ \t]*\n[ \t]+:checked-by:[ \t]*(\S+)[ \t]*\n((?:[ \t]*\n|\1[ \t]+\S.*\n?)+)",
                   re.M)


def _docstrings():
    for info in pkgutil.walk_packages(diffusion_core.__path__, "diffusion_core."):
        if info.name.startswith("diffusion_core.derivations"):
            continue                     # the checked derivations themselves, not the library's API
        module = importlib.import_module(info.name)
        yield info.name, module.__doc__ or ""
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != info.name:
                continue
            yield f"{info.name}.{name}", inspect.getdoc(obj) or ""
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    yield f"{info.name}.{name}.{attr}", inspect.getdoc(member) or ""


FORMULAS = sorted({(where, m.group(2), m.group(3).strip()) for where, doc in _docstrings()
                   for m in BLOCK.finditer(doc + "\n")})


def test_some_docstring_formulas_are_tied_to_derivations():
    assert len(FORMULAS) >= 4, FORMULAS


@pytest.mark.parametrize("where, ref, formula", FORMULAS, ids=[f"{w}:{r}" for w, r, _ in FORMULAS])
def test_docstring_formula_is_the_checked_result(where, ref, formula):
    built = discover()[ref].build()      # its steps are checked in tests/test_derivations.py
    assert same_latex(formula, built), f"{where} says\n{formula}\nbut {ref} prints\n{result_latex(built)}"


def test_build_refuses_a_docstring_formula_that_is_not_the_result(monkeypatch):
    spec = importlib.util.spec_from_file_location("derivation_hook_under_test", DOCS / "hooks" / "derivation_hook.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    ref, formula = FORMULAS[0][1], FORMULAS[0][2]
    assert "derivation-result" in hook.docstring_result(ref, formula, "test")
    with pytest.raises(PluginError, match="not the result of"):
        hook.docstring_result(ref, formula.replace("2", "3", 1), "test")
