"""The library's docstring formulas that are checked by SymPy only NAME their derivation::

    .. math::
        :checked-by: part.page:name

and the API page shows that derivation's checked result display (docs/hooks/rst_docstrings.py,
docs/hooks/derivation_hook.py). So ``help()`` reads the reference, never a formula printed by SymPy.
Checked here without MkDocs: every named derivation exists and is rendered as its result, a block that
names a derivation holds no formula, and an unknown name or a block with a formula stops the build."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

import diffusion_core
from diffusion_core.derivations import discover
from diffusion_core.derivations._render import result_latex

DOCS = Path(__file__).resolve().parents[1] / "docs"

# a `.. math::` block whose first line is the option, and whatever lines are indented under it
BLOCK = re.compile(r"^([ \t]*)\.\. math::[ \t]*\n[ \t]+:checked-by:[ \t]*(\S+)[ \t]*\n((?:[ \t]*\n|\1[ \t]+\S.*\n?)*)",
                   re.M)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / f"{name.split('_under_test')[0]}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hooks():
    """The two hooks as MkDocs loads them: rst_docstrings finds derivation_hook among the loaded modules by
    its file name (MkDocs registers a hook under its path)."""
    derivation_hook = _load("derivation_hook_under_test")
    key = str(DOCS / "hooks" / "derivation_hook.py")
    sys.modules[key] = derivation_hook
    try:
        yield _load("rst_docstrings_under_test"), derivation_hook
    finally:
        del sys.modules[key]


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


DOCSTRINGS = dict(_docstrings())
NAMED = sorted({(where, m.group(2), m.group(3).strip()) for where, doc in DOCSTRINGS.items()
                for m in BLOCK.finditer(doc + "\n")})


def test_docstrings_name_their_derivations():
    """The formulas the redesign had dropped are named again (DPM-Solver++'s and Heun's), with the rest."""
    refs = {(where, ref) for where, ref, _ in NAMED}
    assert {("diffusion_core.samplers.sample_dpmpp_2m", "score.solvers:exact_solution"),
            ("diffusion_core.samplers.sample_dpmpp_2m", "score.solvers:first_order_is_ddim"),
            ("diffusion_core.samplers.sample_heun", "api.solvers:edm_ode"),
            ("diffusion_core.ddpm_samplers.ddim_sample", "ddim.index:update"),
            ("diffusion_core.reverse.q_posterior", "diffusion.reverse:posterior_mean"),
            ("diffusion_core.vlb.normal_kl", "background.kl:gaussian")} <= refs, sorted(refs)
    # every `:checked-by:` in a docstring is such a block: none is written another way
    assert sum(doc.count(":checked-by:") for doc in DOCSTRINGS.values()) == len(NAMED)


@pytest.mark.parametrize("where, ref, body", NAMED, ids=[f"{w}:{r}" for w, r, _ in NAMED])
def test_a_named_derivation_exists_and_the_docstring_holds_no_formula(where, ref, body):
    assert ref in discover(), f"{where} names {ref!r}, which is no derivation"
    assert body == "", f"{where}: the block naming {ref!r} must hold no formula, it holds\n{body}"


@pytest.mark.parametrize("ref", sorted({ref for _, ref, _ in NAMED}))
def test_the_api_page_renders_the_checked_result(hooks, ref):
    rst, _ = hooks
    doc = f"The formula:\n\n.. math::\n    :checked-by: {ref}\n\nAfter it."
    out = rst.markdown(doc)
    assert ":checked-by:" not in out and ".. math::" not in out
    assert '<div class="derivation-result"' in out
    assert result_latex(discover()[ref].build()) in out      # the display is the derivation's own LaTeX
    assert out.index("The formula:") < out.index("derivation-result") < out.index("After it.")


def test_an_unknown_derivation_stops_the_build(hooks):
    rst, derivation_hook = hooks
    with pytest.raises(PluginError, match="cannot load derivation 'score.solvers:no_such_thing'"):
        rst.markdown(".. math::\n    :checked-by: score.solvers:no_such_thing\n")
    with pytest.raises(PluginError, match="cannot load derivation"):
        derivation_hook.docstring_result("no_such_part.page:name", "test")


def test_a_named_block_with_a_formula_stops_the_build(hooks):
    rst, _ = hooks
    with pytest.raises(PluginError, match="holds no formula"):
        rst.markdown(".. math::\n    :checked-by: background.kl:gaussian\n\n    D = 1\n")


def test_an_unnamed_formula_is_marked_unchecked(hooks):
    rst, _ = hooks
    out = rst.markdown(".. math:: a = b\n")
    assert '<div class="unchecked"' in out and "$$" in out and "derivation-result" not in out


def test_help_shows_no_sympy_latex():
    """What the old form put into help(): the derivation's LaTeX as SymPy prints it."""
    for where, doc in DOCSTRINGS.items():
        for printed in (r"{\left(", r"\right)}", r"\operatorname{erf}", r"\dfrac"):
            assert printed not in doc, f"{where} holds SymPy's LaTeX {printed!r}"
