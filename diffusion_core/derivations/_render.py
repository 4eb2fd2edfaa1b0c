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


def render_markdown(spec: DerivationSpec, derivation: Derivation, report: Report) -> str:
    """Display math, the numbered reasons, then a collapsed success box with the checks.

    Needs the Markdown extensions ``md_in_html``, ``pymdownx.details``,
    ``pymdownx.superfences`` and ``pymdownx.arithmatex``.
    """
    parts = [f'<div class="derivation" id="{anchor(spec.ref)}" markdown>', "",
             "$$", derivation.to_latex(), "$$", ""]
    labels = dict(derivation.reasons())
    if labels:
        lines = [f"({labels[s.index]}) {s.why}" for s in derivation.steps if s.index in labels]
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
    return "\n".join([
        '<div class="derivation-result" markdown>', "", "$$", result_latex(derivation),
        "$$", "", f'<p class="derivation-result-note" markdown="span">Checked by SymPy: the result '
        f"of the derivation {title} (`{module_path(spec.ref)}`){where}.</p>",
        "", "</div>"])


def _details(spec: DerivationSpec, report: Report) -> str:
    steps = report.steps
    title = f"Checked by SymPy: {len(steps)} step{'s' if len(steps) != 1 else ''}"
    if report.numerics:
        n = len(report.numerics)
        title += f", {n} numeric check{'s' if n != 1 else ''}"
    body = [f"**{spec.title}.** Every step was verified when this page was built:", ""]
    for step in steps:
        body.append(f"{step.index}. ${REL_WORD[step.relation]}$: {step.verified}.")
    for num in report.numerics:
        at = ", ".join(f"{k} = {v}" for k, v in num.at.items())
        body += ["", f"Numeric check at {at}: the formula gives {num.symbolic:.6g}; "
                 f"{num.label} gives {num.numeric:.6g} (rtol {num.rtol:g}, atol {num.atol:g})."]
    body += ["", f"The code, from `{module_path(spec.ref)}`. It runs as shown in a fresh Python after "
             f"`{INSTALL}`; a wrong step raises `DerivationError`:",
             "", "```python", spec.source().rstrip(), "```"]
    return f'??? success "{title}"\n' + textwrap.indent("\n".join(body), "    ")
