"""MkDocs hook: replace derivation markers with checked, rendered derivations.

A page embeds a derivation with a line of its own::

    {{ derivation("background.kl:nonnegativity") }}

and may restate its result (first line, overall relation, last line) as one
display elsewhere with ``{{ result("background.kl:nonnegativity") }}``.

The derivation ``nonnegativity`` in ``diffusion_core/derivations/background/kl.py``
(the package's ``derivations`` extra) is checked with SymPy; a failed step stops the build with a ``PluginError``
naming the page, the step and both sides.  After the pages, every derivation
that no page embeds is checked too, so none is skipped.
"""
from __future__ import annotations

import importlib
import logging
import re
import sys
import time
from pathlib import Path
from typing import NamedTuple

from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.derivations")

MARKER = re.compile(r'^\{\{\s*derivation\(\s*"([^"]+)"\s*\)\s*\}\}[ \t]*$', re.M)
RESULT = re.compile(r'^\{\{\s*result\(\s*"([^"]+)"\s*\)\s*\}\}[ \t]*$', re.M)
LOOSE = re.compile(r"\{\{\s*(?:derivation|result)\b")

class Checked(NamedTuple):
    markdown: str          # the rendered derivation
    spec: object           # its DerivationSpec
    built: object          # the checked Derivation (result markers print its first and last lines)


_checked: dict[str, Checked] = {}
_stats = {"steps": 0, "seconds": 0.0}
_root: list[Path] = []      # the project folder (mkdocs.yml's), whose derivations the build checks
_pages: dict[str, tuple] = {}  # derivation ref -> (title and File of the page that embeds it, API page's File)
API_PAGE = "api.md"         # where the library's docstrings are rendered (mkdocstrings)
PACKAGE = "diffusion_core.derivations"


def _framework():
    derivations = importlib.import_module(PACKAGE)      # not `from diffusion_core import`: on_pre_build
    render = importlib.import_module(f"{PACKAGE}._render")  # drops the modules, not the package's attribute
    here = Path(derivations.__file__).resolve()
    if _root and not here.is_relative_to(_root[0]):
        raise PluginError(f"the build would check the derivations in {here.parent}, not this checkout's "
                          f"({_root[0] / 'diffusion_core' / 'derivations'}); install it with pip install -e .")
    return derivations, render


def on_config(config):
    root = Path(config.config_file_path).resolve().parent
    _root[:] = [root]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return config


def on_pre_build(config):
    # fresh modules on every build, so `mkdocs serve` picks up edits
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    _checked.clear()
    _stats.update(steps=0, seconds=0.0)


def _check(ref: str, where: str) -> Checked:
    if ref in _checked:
        return _checked[ref]
    derivations, render = _framework()
    try:
        spec = derivations.resolve(ref)
    except (LookupError, ImportError, ValueError) as exc:
        raise PluginError(f"{where}: cannot load derivation {ref!r}: {exc}") from exc
    start = time.perf_counter()
    try:
        built = spec.build()
        report = built.check()
    except derivations.DerivationError as exc:
        raise PluginError(f"{where}: SymPy check failed: {exc}") from None
    except Exception as exc:
        raise PluginError(
            f"{where}: derivation {ref!r} raised {type(exc).__name__}: {exc}") from exc
    _stats["seconds"] += time.perf_counter() - start
    _stats["steps"] += len(report.steps)
    try:
        markdown = render.render_markdown(spec, built, report)
    except ValueError as exc:        # the module's code cannot be shown as runnable code (see _source.py)
        raise PluginError(f"{where}: cannot show the code of {ref!r}: {exc}") from None
    _checked[ref] = Checked(markdown, spec, built)
    return _checked[ref]


def _result(ref: str, where: str, here: bool) -> str:
    checked = _check(ref, where)
    _, render = _framework()
    return render.render_result(checked.spec, checked.built, here)


def docstring_result(ref: str, where: str) -> str:
    """The formula of a library docstring that names its derivation (``:checked-by: ref``, see
    ``rst_docstrings.py``): the derivation is checked, and its result display is what the API page shows,
    linked to the page that derives it. An unknown ``ref`` stops the build."""
    checked = _check(ref, where)
    _, render = _framework()
    return render.render_result(checked.spec, checked.built, here=False, link=_link_from_api(ref))


def on_files(files, config):
    """Which page embeds which derivation, so that the API page's docstring formulas link to their page."""
    _pages.clear()
    api = files.get_file_from_path(API_PAGE)
    for file in files.documentation_pages():
        if file.src_uri.startswith("hooks/"):
            continue
        text = Path(file.abs_src_path).read_text(encoding="utf-8")
        heading = re.search(r"^# (.+)$", text, re.M)
        title = heading.group(1).strip() if heading else file.src_uri
        for ref in MARKER.findall(text):
            _pages.setdefault(ref, (title, file, api))
    return files


def _link_from_api(ref: str) -> tuple[str, str] | None:
    """``(page title, URL relative to the API page)`` of the page that embeds ``ref``, if one does."""
    if ref not in _pages or _pages[ref][2] is None:
        return None
    from mkdocs.utils import get_relative_url

    title, page, api = _pages[ref]
    _, render = _framework()
    return title, f"{get_relative_url(page.url, api.url)}#{render.anchor(ref)}"


def on_page_markdown(markdown, page, config, files):
    where = f"page {page.file.src_uri}"
    on_page = set(MARKER.findall(markdown))
    out = MARKER.sub(lambda m: _check(m.group(1), where).markdown, markdown)
    out = RESULT.sub(lambda m: _result(m.group(1), where, m.group(1) in on_page), out)
    stray = LOOSE.search(out)
    if stray:
        line = out[:stray.start()].count("\n") + 1
        raise PluginError(f"{where}, line {line}: a derivation marker must stand alone on its "
                          'own line, exactly {{ derivation("module:name") }} or '
                          '{{ result("module:name") }}')
    return out


def on_post_build(config):
    derivations, _ = _framework()
    try:
        found = derivations.discover()
    except Exception as exc:
        raise PluginError(f"cannot import the derivation modules: {type(exc).__name__}: {exc}") \
            from exc
    unused = [ref for ref in found if ref not in _checked]
    for ref in unused:
        _check(ref, "no page (derivation not embedded anywhere)")
    log.info("derivations: %d checked (%d not embedded), %d steps, %.1f s of SymPy",
             len(_checked), len(unused), _stats["steps"], _stats["seconds"])
