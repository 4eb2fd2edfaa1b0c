"""MkDocs hook: serve KaTeX from the site itself (no CDN).

KaTeX comes from the npm registry at build time, pinned, into an ignored
cache folder (``.cache/katex-<version>/`` next to ``mkdocs.yml``); nothing of
it is committed.  Set ``KATEX_DIST`` to a ``katex/dist`` folder to use a copy
you already have.  The files are added to the site under ``assets/katex/``,
which ``extra_css`` / ``extra_javascript`` in ``mkdocs.yml`` point at.

The hook also strips the CDN MathJax loader that nbconvert puts into
mkdocs-jupyter notebook pages, so notebooks use the same local KaTeX.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.katex")

KATEX_VERSION = "0.16.22"
SITE_DIR = "assets/katex"
WANTED = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js")
FONT_SUFFIXES = (".woff2", ".woff")

NB_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)


def katex_dist(root: Path) -> Path:
    """Folder holding ``katex.min.js`` etc.; installs KaTeX with npm if needed."""
    override = os.environ.get("KATEX_DIST")
    if override:
        dist = Path(override)
        if not (dist / "katex.min.js").is_file():
            raise PluginError(f"KATEX_DIST={override} has no katex.min.js")
        return dist
    prefix = root / ".cache" / f"katex-{KATEX_VERSION}"
    package = prefix / "node_modules" / "katex"
    if not _installed(package):
        npm = shutil.which("npm")
        if npm is None:
            raise PluginError(
                "KaTeX is needed to render math and is fetched from the npm registry at build "
                "time, but `npm` was not found. Install Node.js/npm, or download katex@"
                f"{KATEX_VERSION} yourself and set KATEX_DIST to its dist/ folder.")
        cmd = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--no-package-lock",
               "--prefix", str(prefix), f"katex@{KATEX_VERSION}"]
        log.info("installing KaTeX %s: %s", KATEX_VERSION, " ".join(cmd))
        prefix.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PluginError(f"could not run npm to fetch KaTeX: {exc}") from exc
        if result.returncode != 0 or not _installed(package):
            raise PluginError(
                f"`{' '.join(cmd)}` failed (exit {result.returncode}); the npm registry must be "
                f"reachable once to fetch KaTeX.\n{result.stderr[-2000:]}")
    return package / "dist"


def _installed(package: Path) -> bool:
    try:
        meta = json.loads((package / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("version") == KATEX_VERSION and (package / "dist" / "katex.min.js").is_file()


def _asset_files(dist: Path):
    for rel in WANTED:
        yield rel, dist / rel
    for font in sorted((dist / "fonts").iterdir()):
        if font.suffix in FONT_SUFFIXES:
            yield f"fonts/{font.name}", font


def on_files(files, config):
    root = Path(config.config_file_path).resolve().parent
    dist = katex_dist(root)
    for rel, path in _asset_files(dist):
        if not path.is_file():
            raise PluginError(f"KaTeX file missing: {path}")
        files.append(File.generated(config, f"{SITE_DIR}/{rel}", abs_src_path=str(path)))
    return files


def on_post_page(output, page, config):
    # mkdocs-jupyter pages carry nbconvert's MathJax <script src=...> block; KaTeX renders them
    return NB_MATHJAX.sub("", output)
