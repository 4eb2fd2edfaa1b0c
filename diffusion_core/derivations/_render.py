"""Markdown for one checked derivation: the math, its reasons, the "checked" mark, the code."""
from __future__ import annotations

import textwrap

from ._framework import Derivation, DerivationSpec, Report
from ._printing import tex

REL_WORD = {"=": "=", "<=": r"\le", ">=": r"\ge"}


INSTALL = 'pip install "diffusion-core-torch[derivations]"'


def module_path(ref: str) -> str:
    """The file that holds a derivation, ``diffusion_core/derivations/<part>/<page>.py``."""
    return f"diffusion_core/derivations/{ref.split(':')[0].replace('.', '/')}.py"


def anchor(ref: str) -> str:
    return "derivation-" + ref.replace(":", "-").replace(".", "-").replace("_", "-")


def verifies(derivation: Derivation) -> bool:
    """Whether at least one step verifies something; a derivation whose every step is a definition or an
    assumption is shown with the class ``stated`` and counted apart from the checked displays."""
    return any(step.by.verifies for step in derivation.steps)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def render_markdown(spec: DerivationSpec, derivation: Derivation, report: Report) -> str:
    """Display math, the numbered reasons, then a collapsed success box with the checks.

    Needs the Markdown extensions ``md_in_html``, ``pymdownx.details``,
    ``pymdownx.superfences`` and ``pymdownx.arithmatex``.
    """
    kind = "derivation" if verifies(derivation) else "derivation stated"
    parts = [f'<div class="{kind}" id="{anchor(spec.ref)}" markdown>', "",
             "$$", derivation.to_latex(), "$$", ""]
    labels = dict(derivation.reasons())
    if labels:
        lines = [f"({labels[s.index]}) {s.why}" + ("" if s.by.verifies else f" *(by {s.by.kind}, not a check)*")
                 for s in derivation.steps if s.index in labels]
        parts += ['<div class="derivation-why" markdown>', "", "  \n".join(lines), "", "</div>", ""]
    parts += [_details(spec, report), "", "</div>"]
    return "\n".join(parts)


def result_latex(derivation: Derivation) -> str:
    """``first REL last`` of a derivation, as LaTeX: what a result display shows."""
    return f"{tex(derivation.lines[0])} {REL_WORD[derivation.relation]} {tex(derivation.lines[-1])}"


def render_result(spec: DerivationSpec, derivation: Derivation, here: bool,
                  link: tuple[str, str] | None = None) -> str:
    """The first line, the overall relation and the last line of a checked derivation, as one display.

    Used to restate a result where the text needs it (before or after its derivation, or on the API
    page for a docstring that names it); it is checked because every step of the derivation it
    summarizes is.  ``here``: the derivation is on the same page, so the note links to it; ``link``:
    ``(page name, URL)`` of another page that shows it.
    """
    title = f"[{spec.title}](#{anchor(spec.ref)})" if here else f"*{spec.title}*"
    where = f", derived on the page [{link[0]}]({link[1]})" if link else ""
    checked = verifies(derivation)
    kind, what = ("derivation-result", "Checked by SymPy: the result") if checked else \
        ("derivation-result stated", "By definition or assumption, not a check: the result")
    return "\n".join([
        f'<div class="{kind}" markdown>', "", "$$", result_latex(derivation),
        "$$", "", f'<p class="derivation-result-note" markdown="span">{what} '
        f"of the derivation {title} (`{module_path(spec.ref)}`){where}.</p>",
        "", "</div>"])


def _details(spec: DerivationSpec, report: Report) -> str:
    steps, stated = report.steps, len(report.stated)
    if report.verified:
        title = "Checked by SymPy: " + _plural(len(report.verified), "step")
    else:
        title = "Not a check: every step is a definition or an assumption"
    if stated and report.verified:
        title += f", {stated} more by definition or assumption"
    if report.numerics:
        title += ", " + _plural(len(report.numerics), "numeric check")
    intro = "Every step was verified when this page was built" if not stated else \
        "Every step was evaluated when this page was built; a step marked *by definition* or *by assumption* " \
        "holds because of what it restates, and is not counted as a check"
    body = [f"**{spec.title}.** {intro}:", ""]
    for step in steps:
        body.append(f"{step.index}. ${REL_WORD[step.relation]}$: {step.verified}.")
    for num in report.numerics:
        at = ", ".join(f"{k} = {v}" for k, v in num.at.items())
        body += ["", f"Numeric check at {at}: the formula gives {num.symbolic:.6g}; "
                 f"{num.label} gives {num.numeric:.6g} (rtol {num.rtol:g}, atol {num.atol:g})."]
    body += ["", f"The code, from `{module_path(spec.ref)}`. It runs as shown in a fresh Python after "
             f"`{INSTALL}`; a wrong step raises `DerivationError`:",
             "", "```python", spec.source().rstrip(), "```"]
    box = "success" if report.verified else "note"
    return f'??? {box} "{title}"\n' + textwrap.indent("\n".join(body), "    ")
