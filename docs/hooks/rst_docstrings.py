"""Griffe extension: the docstrings' reStructuredText math and tables, as the API page's Markdown.

The library's docstrings are written for ``help()`` and Sphinx: ``:math:`...``` roles, ``.. math::``
blocks and simple tables (rows between ``====  ====`` rules). mkdocstrings renders docstrings as
Markdown, where those show as literal text. This extension rewrites each docstring when mkdocstrings
loads it (the source files are not touched, so ``help()`` is unchanged):

* ``:math:`x```  becomes inline math ``$x$``;
* a ``.. math::`` block that only names a checked derivation (the line ``.. math::``, then the indented
  line ``:checked-by: part.page:name`` and no formula) becomes that derivation's result display (first
  line, relation, last line), checked by SymPy at this build and linked to the page that derives it
  (``derivation_hook.docstring_result``). The docstring holds no LaTeX for it, so ``help()`` shows the
  reference, not a formula printed by SymPy; a block with both the option and a formula, or one that names
  a derivation that does not exist, stops the build;
* any other ``.. math::`` block becomes a display marked as not machine-checked, so the site's count
  of checked displays stays true (see ``docs/hooks/equation_hook.py``);
* a simple table becomes a Markdown table;
* Sphinx cross-references (``:class:`Denoiser```) become code.

Registered in ``mkdocs.yml`` under the python handler's ``extensions``.
"""
from __future__ import annotations

import re
import sys

import griffe
from mkdocs.exceptions import PluginError

ROLE = re.compile(r":math:`([^`]+)`")
XREF = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`~?([^`]+)`")
CHECKED_BY = re.compile(r"^:checked-by:\s*(\S+)$")
RULE = re.compile(r"^(\s*)(=+)(\s+=+)+\s*$")
NOTE = ('<p class="unchecked-note">A formula the code implements, quoted from its docstring; '
        "not machine-checked on this page (the theory pages derive it).</p>")


def _math_blocks(lines: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if not stripped.startswith(".. math::"):
            out.append(line)
            i += 1
            continue
        indent = line[:len(line) - len(stripped)]
        body = [stripped[len(".. math::"):].strip()]
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i].strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        option = CHECKED_BY.match(next((b for b in body if b), ""))
        if option:
            formula = [b for b in body if b and not CHECKED_BY.match(b)]
            if formula:
                raise PluginError(f"a docstring's `.. math::` block with `:checked-by: {option.group(1)}` names its "
                                  "derivation and holds no formula (the API page shows the derivation's checked "
                                  "result); remove the lines\n    " + "\n    ".join(formula))
            out += [f"{indent}{row}" for row in _checked(option.group(1)).split("\n")] + [""]
            continue
        out += [f'{indent}<div class="unchecked" data-kind="docstring" markdown>', "", f"{indent}$$",
                *[f"{indent}{b}" for b in body if b], f"{indent}$$", "", f"{indent}{NOTE}", "",
                f"{indent}</div>", ""]
    return out


def _checked(ref: str) -> str:
    # MkDocs registers a hook module under its path as written in mkdocs.yml's `hooks:`
    hook = next((module for name, module in list(sys.modules.items())
                 if name.replace("\\", "/").rsplit("/", 1)[-1] == "derivation_hook.py"), None)
    if hook is None:
        raise PluginError(f"the docstring formula checked by {ref!r} needs docs/hooks/derivation_hook.py "
                          "in mkdocs.yml's hooks")
    return hook.docstring_result(ref, f"API reference, docstring formula checked by {ref!r}")


def _tables(lines: list[str]) -> list[str]:
    """RST simple tables as Markdown tables: a rule, rows, a rule; the table ends at the rule followed by a
    blank line (or the end), and a rule before it separates the header rows from the body."""
    out, i = [], 0
    while i < len(lines):
        rule = RULE.match(lines[i])
        end = next((k for k in range(i + 1, len(lines)) if RULE.match(lines[k])
                    and (k + 1 == len(lines) or not lines[k + 1].strip())), None) if rule else None
        if not rule or end is None:
            out.append(lines[i])
            i += 1
            continue
        starts = [m.start() for m in re.finditer(r"=+", lines[i])]
        header, rows = None, []
        for row in lines[i + 1:end]:
            if RULE.match(row):                       # the header rule: the rows so far are the header
                header, rows = rows, []
                continue
            if not row.strip():
                continue
            cells = [row[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
            if rows and not cells[0]:                 # a continuation line of the previous row
                rows[-1] = [f"{p} {c}".strip() for p, c in zip(rows[-1], cells)]
            else:
                rows.append(cells)
        if header:
            head = [" ".join(col).strip() for col in zip(*header)]
        else:
            head = ["Code", "Symbol"] if len(starts) == 2 else [""] * len(starts)
        out += ["", "| " + " | ".join(c.replace("|", "\\|") for c in head) + " |", "|" + "---|" * len(starts)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        out.append("")
        i = end + 1
    return out


def markdown(text: str) -> str:
    lines = _tables(_math_blocks(text.split("\n")))
    text = ROLE.sub(lambda m: f"${m.group(1)}$", "\n".join(lines))
    return XREF.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1] if m.group(0).count('~') else m.group(1)}`", text)


class RstDocstrings(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
