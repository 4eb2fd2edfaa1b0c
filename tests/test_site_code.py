"""Every piece of code the site shows runs, as shown, for a reader who installed the package.

What runs: every ```python block of every page (``docs/**/*.md``) and of README.md, and the code of every
"Checked by SymPy" box (``DerivationSpec.source()``, the text the build puts in the box).

Where: the Python of the installed wheel (conftest's ``wheel_python``: a venv in which only the wheel provides
``diffusion_core``), started isolated (``-I``: no PYTHONPATH, no script folder on ``sys.path``) in a temporary
folder outside the repository. The runner (tests/site_code_runner.py) refuses to start if any ``sys.path``
entry lies in the checkout, and two control snippets check the set-up itself: ``import derivations`` (the
boxes' old import, with docs/ on the path) must fail there, and a box with one statement removed must fail with
``NameError``.

How, and why that is as strict as a fresh interpreter per snippet: one runner process runs every snippet in a
child forked for it, which executes the snippet in an empty ``__main__`` namespace, so a name the snippet does
not define or import raises ``NameError``, and whatever a snippet changes dies with its child. The page blocks
fork from an interpreter that has imported only the standard library, which is a fresh interpreter. The boxes
fork from one that has imported ``diffusion_core.derivations``, the import every box starts with; what that
import loads (SymPy, torch, the library) is what the box's own first line would load. (A fresh interpreter per
box would pay that import 140 times: minutes on 2 cores.)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from diffusion_core.derivations import discover

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUNNER = Path(__file__).with_name("site_code_runner.py")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$", re.M)
CONTROL_DOCS = "control: docs/ is not importable"
CONTROL_NAME = "control: a box without one of its statements"


def python_blocks(text: str):
    """``(line number, code)`` for each fenced block whose language is python/py."""
    pos = 0
    while True:
        start = FENCE.search(text, pos)
        if start is None:
            return
        fence, indent = start.group("fence"), start.group("indent")
        close = re.compile(rf"^{re.escape(indent)}{fence[0]}{{{len(fence)},}}[ \t]*$", re.M)
        end = close.search(text, start.end())
        if end is None:
            return
        words = start.group("info").strip().lstrip("{").split()
        language = words[0].lstrip(".").lower() if words else ""
        if language in ("python", "py", "python3"):
            body = textwrap.dedent(text[start.end() + 1:end.start()])
            yield text.count("\n", 0, start.start()) + 1, body
        pos = end.end()


def page_blocks() -> dict[str, str]:
    pages = [p for p in sorted(DOCS.rglob("*.md")) if p.relative_to(DOCS).parts[0] != "hooks"]
    return {f"{page.relative_to(ROOT).as_posix()}:{line}": code for page in [*pages, ROOT / "README.md"]
            for line, code in python_blocks(page.read_text(encoding="utf-8"))}


BLOCKS = page_blocks()
SPECS = discover()
BOXES = {ref: spec.source() for ref, spec in SPECS.items()}


def without_statement(code: str, start: str) -> str:
    """``code`` without the statement that begins with the line ``start`` (up to the next blank line)."""
    head, found, tail = code.partition("\n" + start)
    assert found, f"no line {start!r}"
    return head + "\n" + tail.split("\n\n", 1)[1]


@pytest.fixture(scope="module")
def ran(wheel_python, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("site-code")
    assert not work.resolve().is_relative_to(ROOT)
    pages = [{"id": f"page {i}", "code": code} for i, code in BLOCKS.items()]
    pages.append({"id": CONTROL_DOCS, "code": "import derivations"})
    boxes = [{"id": f"box {ref}", "code": code} for ref, code in BOXES.items()]
    boxes.append({"id": CONTROL_NAME, "code": without_statement(BOXES["background.kl:definition"], "NORMALS = ")})
    groups = [{"preload": [], "jobs": pages}, {"preload": ["diffusion_core.derivations"], "jobs": boxes}]
    (work / "jobs.json").write_text(json.dumps({"groups": groups}))
    proc = subprocess.run([str(wheel_python), "-I", str(RUNNER), str(ROOT), "jobs.json", "results.json"],
                          cwd=work, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"the runner failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads((work / "results.json").read_text())


def _report(result: dict) -> str:
    return f"{result['error']}\n--- output ---\n{result['output']}"


def test_blocks_and_boxes_were_found():
    assert len(BLOCKS) >= 10 and any(i.startswith("docs/errata.md:") for i in BLOCKS)
    assert len(BOXES) >= 100


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_page_code_block_runs(ran, block):
    result = ran["results"][f"page {block}"]
    assert result["ok"], _report(result)


@pytest.mark.parametrize("ref", sorted(BOXES))
def test_derivation_box_runs_as_shown(ran, ref):
    result = ran["results"][f"box {ref}"]
    assert result["ok"], _report(result)


def test_the_code_ran_against_the_wheel_outside_the_checkout(ran, wheel_python):
    env = ran["environment"]
    assert Path(env["diffusion_core"]).is_relative_to(wheel_python.parents[1]), env["diffusion_core"]
    assert not Path(env["cwd"]).is_relative_to(ROOT)
    control = ran["results"][CONTROL_DOCS]
    assert not control["ok"] and "ModuleNotFoundError: No module named 'derivations'" in control["error"]


def test_a_box_missing_a_statement_fails(ran):
    control = ran["results"][CONTROL_NAME]
    assert not control["ok"] and "NameError: name 'NORMALS' is not defined" in control["error"], control


def test_extractor_handles_indented_and_other_languages():
    text = "x\n```bash\nls\n```\n!!! note\n    ```python\n    y = 1\n    ```\n~~~py\nz = 2\n~~~\n"
    blocks = list(python_blocks(text))
    assert [code.strip() for _, code in blocks] == ["y = 1", "z = 2"]
