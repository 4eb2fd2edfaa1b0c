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

A derivation whose every step is a definition or an assumption (``by=definition(...)``, ``by=assumption(...)``)
is shown with the class ``stated``: it verifies nothing, so it is counted apart from the checked displays.

After the build the count of displays per kind (checked; stated by definition or assumption; marked, per
marker kind) is logged and written into the home page where it says ``{{ equation_count }}``.
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
HTML_STATED = ('<div class="derivation stated"', '<div class="derivation-result stated"')
HTML_UNCHECKED = re.compile(r'<div class="unchecked" data-kind="([a-z]+)"')

_counts: dict[str, dict[str, int]] = {}      # page URL -> {"checked": n, "stated": n, marker kind: n}


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
            kind = marker.group(1).partition(":")[0].strip()
            out += [f'{indent}<div class="unchecked" data-kind="{kind}" markdown>', ""] + lines[j:end + 1] + [
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


def count_html(html: str, notebook: bool) -> tuple[dict[str, int], int]:
    """({"checked": n, "stated": n, marker kind: n, ...}, unmarked) for the displayed equations of one page."""
    counts = {"checked": sum(html.count(tag) for tag in HTML_CHECKED),
              "stated": sum(html.count(tag) for tag in HTML_STATED)}
    for kind in HTML_UNCHECKED.findall(html):
        counts[kind] = counts.get(kind, 0) + 1
    unmarked = html.count(HTML_DISPLAY) - sum(counts.values())
    if notebook:                       # nbconvert leaves $$ for the browser to typeset
        unmarked += html.count("$$") // 2
    return counts, unmarked


def on_post_page(output, page, config):
    notebook = page.file.src_uri.endswith(".py")
    counts, unmarked = count_html(output, notebook)
    if unmarked:
        raise PluginError(f"page {page.file.src_uri}: {unmarked} displayed equation(s) neither "
                          "checked nor marked" + (" (notebooks: use inline $...$, not $$)"
                                                  if notebook else ""))
    if any(counts.values()):
        _counts[page.url] = counts
    return output


def totals() -> dict[str, int]:
    """Displays per kind over the site: "checked", "stated", then each marker kind."""
    total: dict[str, int] = {"checked": 0, "stated": 0}
    for counts in _counts.values():
        for kind, n in counts.items():
            total[kind] = total.get(kind, 0) + n
    return total


_WORDS = {"definition": "definitions", "notation": "notation", "algorithm": "algorithms",
          "cited": "cited results", "restated": "checked results restated in another form",
          "docstring": "formulas quoted from the library's docstrings (API reference)"}


def sentence(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    checked, stated = counts["checked"], counts["stated"]
    marked = [f"{n} {_WORDS.get(k, k)}" for k, n in counts.items() if k not in ("checked", "stated") and n]
    return (f"{checked} of the {total} displayed equations on this site ({100 * checked / total:.1f}%) are "
            f"machine-checked by SymPy when the site is built: at least one of their relations is verified from "
            f"the lines before it. {stated} more are derivations whose every step restates a definition or an "
            f"assumption, shown as such; the other {total - checked - stated} are marked under the equation "
            f"with the reason they are not checked: " + ", ".join(marked) + ".")


def on_post_build(config):
    counts = totals()
    if not sum(counts.values()):
        return
    text = sentence(counts)
    log.info("equations: %s", ", ".join(f"{n} {kind}" for kind, n in counts.items()))
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
