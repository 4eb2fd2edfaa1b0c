"""MkDocs hook: every displayed equation is checked or visibly marked, and the site says how many are checked.

A displayed equation is a ``$$ ... $$`` block.  On a page it is either
produced by a checked derivation (``{{ derivation("...") }}`` or its
one-line result ``{{ result("...") }}``, see ``derivation_hook.py``) or
written by hand; a hand-written block must carry a
marker on the line just before it that says why it is not checked::

    {{ unchecked("definition") }}
    $$
    q(x_t \\mid x_{t-1}) = \\mathcal{N}(\\dots)
    $$

The first word is the kind: ``definition`` and ``notation`` (nothing to
check), ``cited`` (a result taken from a paper: name it, as in
``cited: Anderson (1982), eq. (5.6)``), ``algorithm`` (a procedure, not a
claim) or ``restated`` (a checked result written in another form: say where).  Readers see the reason under the equation.  A plain ``$$`` block
without a marker stops the build, so is display math in a notebook page.

After the build the count of checked and unchecked displays is logged and
written into the home page where it says ``{{ equation_count }}``.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.equations")

KINDS = {
    "definition": "Definition: nothing to check.",
    "notation": "Notation: nothing to check.",
    "algorithm": "Algorithm: a procedure, not a claim; not machine-checked.",
    "cited": "Cited, not machine-checked",
    "restated": "A result of checked derivations on this site, restated in another form; the form "
                "itself is not machine-checked:",
}
UNCHECKED = re.compile(r'^\{\{\s*unchecked\(\s*"([^"]+)"\s*\)\s*\}\}[ \t]*$')
LOOSE = re.compile(r"\{\{\s*(?:unchecked|equation_count)\b")
COUNT_MARKER = "{{ equation_count }}"
COUNT_SLOT = "<!--equation-count-->"
FENCE = re.compile(r"^\s*(```|~~~)")

# In the built HTML (pymdownx.arithmatex, generic mode, wraps display math in this div).
HTML_DISPLAY = '<div class="arithmatex">'
HTML_CHECKED = ('<div class="derivation"', '<div class="derivation-result"')
HTML_UNCHECKED = '<div class="unchecked"'

_counts: dict[str, tuple[int, int]] = {}      # page URL -> (checked, unchecked)


def on_pre_build(config):
    _counts.clear()


def _note(reason: str, where: str) -> str:
    kind, _, detail = reason.partition(":")
    kind, detail = kind.strip(), detail.strip()
    if kind not in KINDS:
        raise PluginError(f"{where}: unchecked(\"{reason}\"): the kind must be one of "
                          f"{', '.join(KINDS)}, then optionally ': details'")
    if kind == "cited":
        if not detail:
            raise PluginError(f"{where}: unchecked(\"cited\") must name the source: "
                              'unchecked("cited: Author (year), eq. (n)")')
        return f"{KINDS['cited']}: {detail}"
    if kind == "restated" and not detail:
        raise PluginError(f"{where}: unchecked(\"restated\") must say where the result is checked")
    return KINDS[kind] + (f" {detail}" if detail else "")


def _wrap(lines: list[str], where: str) -> list[str]:
    """Wrap each marked $$ block; fail on an unmarked one or a marker with no block."""
    out: list[str] = []
    i, fenced = 0, None
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        fence = FENCE.match(line)
        if fence:
            fenced = None if fenced == fence.group(1) else (fenced or fence.group(1))
        if fenced:
            out.append(line)
            i += 1
            continue
        marker = UNCHECKED.match(stripped)
        if marker:
            j = i + 1
            if j >= len(lines) or not lines[j].strip().startswith("$$"):
                raise PluginError(f"{where}, line {i + 1}: an unchecked marker must be followed on "
                                  "the next line by the $$ block it marks")
            indent = lines[j][:len(lines[j]) - len(lines[j].lstrip())]
            end = _block_end(lines, j, where)
            note = _note(marker.group(1), f"{where}, line {i + 1}")
            out += [f'{indent}<div class="unchecked" markdown>', ""] + lines[j:end + 1] + [
                "", f'{indent}<p class="unchecked-note" markdown="span">{note}</p>', "",
                f"{indent}</div>"]
            i = end + 1
            continue
        if stripped.startswith("$$"):
            raise PluginError(
                f"{where}, line {i + 1}: a displayed equation that is neither a checked derivation "
                'nor marked: write it as a derivation, or put {{ unchecked("definition") }} (or '
                '"notation", "algorithm", "cited: source") on the line before it')
        out.append(line)
        i += 1
    return out


def _block_end(lines: list[str], start: int, where: str) -> int:
    first = lines[start].strip()
    if len(first) > 2 and first.endswith("$$"):
        return start                                # $$ ... $$ on one line
    for k in range(start + 1, len(lines)):
        if "$$" in lines[k]:
            return k
    raise PluginError(f"{where}, line {start + 1}: $$ block is never closed")


def on_page_markdown(markdown, page, config, files):
    where = f"page {page.file.src_uri}"
    out = "\n".join(_wrap(markdown.split("\n"), where))
    out = out.replace(COUNT_MARKER, COUNT_SLOT)
    stray = LOOSE.search(out)
    if stray:
        line = out[:stray.start()].count("\n") + 1
        raise PluginError(f"{where}, line {line}: an unchecked marker must stand alone on the line "
                          "before its $$ block, exactly {{ unchecked(\"kind: details\") }}")
    return out


def count_html(html: str, notebook: bool) -> tuple[int, int, int]:
    """(checked, unchecked, unmarked) displayed equations in one built page."""
    checked = sum(html.count(tag) for tag in HTML_CHECKED)
    unchecked = html.count(HTML_UNCHECKED)
    unmarked = html.count(HTML_DISPLAY) - checked - unchecked
    if notebook:                       # nbconvert leaves $$ for the browser to typeset
        unmarked += html.count("$$") // 2
    return checked, unchecked, unmarked


def on_post_page(output, page, config):
    notebook = page.file.src_uri.endswith(".py")
    checked, unchecked, unmarked = count_html(output, notebook)
    if unmarked:
        raise PluginError(f"page {page.file.src_uri}: {unmarked} displayed equation(s) neither "
                          "checked nor marked" + (" (notebooks: use inline $...$, not $$)"
                                                  if notebook else ""))
    if checked or unchecked:
        _counts[page.url] = (checked, unchecked)
    return output


def totals() -> tuple[int, int]:
    return sum(c for c, _ in _counts.values()), sum(u for _, u in _counts.values())


def sentence(checked: int, unchecked: int) -> str:
    total = checked + unchecked
    return (f"{checked} of the {total} displayed equations on this site "
            f"({100 * checked / total:.1f}%) are machine-checked by SymPy when the site is built; "
            f"the other {unchecked} are marked under the equation, each with the reason it is not "
            "(such as an algorithm, a cited theorem or a result restated in another form).")


def on_post_build(config):
    checked, unchecked = totals()
    if checked + unchecked == 0:
        return
    text = sentence(checked, unchecked)
    log.info("equations: %d checked, %d marked unchecked (%.1f%% checked)", checked, unchecked,
             100 * checked / (checked + unchecked))
    site = Path(config.site_dir)
    home = site / "index.html"
    if home.is_file():
        html = home.read_text(encoding="utf-8")
        if COUNT_SLOT in html:
            home.write_text(html.replace(COUNT_SLOT, text), encoding="utf-8")
    index = site / "search" / "search_index.json"
    if index.is_file():
        data = json.loads(index.read_text(encoding="utf-8"))
        for doc in data.get("docs", []):
            doc["text"] = doc.get("text", "").replace(COUNT_SLOT, text)
        index.write_text(json.dumps(data), encoding="utf-8")
