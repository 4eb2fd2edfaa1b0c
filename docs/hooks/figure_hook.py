"""MkDocs hook: draw the site's figures at build time and embed them in pages.

A page embeds a figure with a line of its own::

    {{ figure("diffusion.forward:marginals") }}

Every figure function in ``docs/figures/`` (see that package's docstring) is
drawn once per build into a PNG that is added to the site under
``assets/figures/``; the marker becomes the image, its alt text and its
caption.  A figure that raises, a marker naming an unknown figure, and a
figure no page embeds all stop the build.
"""
from __future__ import annotations

import logging
import posixpath
import re
import sys
import time
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.figures")

MARKER = re.compile(r'^\{\{\s*figure\(\s*"([^"]+)"\s*\)\s*\}\}[ \t]*$', re.M)
LOOSE = re.compile(r"\{\{\s*figure\b")

_specs: dict = {}
_embedded: set[str] = set()


def on_config(config):
    docs = str(Path(config.docs_dir).resolve())
    if docs not in sys.path:
        sys.path.insert(0, docs)
    return config


def on_files(files, config):
    for name in [m for m in sys.modules if m == "figures" or m.startswith("figures.")]:
        del sys.modules[name]       # fresh modules on every build (mkdocs serve)
    _specs.clear()
    _embedded.clear()
    try:
        import figures
        found = figures.discover()
    except Exception as exc:
        raise PluginError(f"cannot import the figure modules: {type(exc).__name__}: {exc}") from exc
    start = time.perf_counter()
    for ref, spec in found.items():
        try:
            png = spec.png()
        except Exception as exc:
            raise PluginError(f"figure {ref!r} raised {type(exc).__name__}: {exc}") from exc
        files.append(File.generated(config, spec.site_path, content=png))
        _specs[ref] = spec
    log.info("figures: %d drawn in %.1f s", len(found), time.perf_counter() - start)
    return files


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def _embed(ref: str, page) -> str:
    spec = _specs.get(ref)
    if spec is None:
        raise PluginError(f"page {page.file.src_uri}: no figure {ref!r}; known: "
                          f"{', '.join(sorted(_specs)) or 'none'}")
    _embedded.add(ref)
    src = posixpath.relpath(spec.site_path, posixpath.dirname(page.file.src_uri) or ".")
    anchor = "figure-" + re.sub(r"[^a-z0-9]+", "-", ref.lower()).strip("-")
    return "\n".join([
        f'<figure class="site-figure" id="{anchor}" markdown>', "",
        f"![{_escape(spec.alt)}]({src})", "",
        f'<figcaption markdown="span">{spec.caption}</figcaption>', "",
        "</figure>"])


def on_page_markdown(markdown, page, config, files):
    out = MARKER.sub(lambda m: _embed(m.group(1), page), markdown)
    stray = LOOSE.search(out)
    if stray:
        line = out[:stray.start()].count("\n") + 1
        raise PluginError(f"page {page.file.src_uri}, line {line}: a figure marker must stand alone "
                          'on its own line, exactly {{ figure("part.page:function") }}')
    return out


def on_post_build(config):
    unused = sorted(set(_specs) - _embedded)
    if unused:
        raise PluginError(f"figures drawn but embedded in no page: {', '.join(unused)}")
