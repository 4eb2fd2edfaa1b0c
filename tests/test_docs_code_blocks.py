"""Every ```python block on a documentation page runs as it is.

Each fenced block in docs/**/*.md (page sources; not docs/derivations/ or
docs/hooks/, which are not pages) is executed in a fresh namespace, one test
per block, so a reader can copy any of them and run it.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
NOT_PAGES = ("derivations", "hooks")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$", re.M)


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


def collect():
    cases = []
    for page in sorted(DOCS.rglob("*.md")):
        rel = page.relative_to(DOCS)
        if rel.parts[0] in NOT_PAGES:
            continue
        for line, code in python_blocks(page.read_text(encoding="utf-8")):
            cases.append(pytest.param(rel.as_posix(), line, code, id=f"{rel.as_posix()}:{line}"))
    return cases


CASES = collect()


def test_blocks_were_found():
    assert len(CASES) >= 4


@pytest.mark.parametrize(("page", "line", "code"), CASES)
def test_code_block_runs(page, line, code, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(DOCS.parent)
    namespace = {"__name__": "__docs_block__"}
    compiled = compile(code, f"{page}:{line}", "exec")
    exec(compiled, namespace)  # noqa: S102 - running the docs is the point


def test_extractor_handles_indented_and_other_languages():
    text = "x\n```bash\nls\n```\n!!! note\n    ```python\n    y = 1\n    ```\n~~~py\nz = 2\n~~~\n"
    blocks = list(python_blocks(text))
    assert [code.strip() for _, code in blocks] == ["y = 1", "z = 2"]
