"""The site builds strictly, works offline, and typesets its math.

Uses the site built once per session by ``built_site`` (tests/conftest.py).
The browser test additionally drives headless Chromium and is marked ``browser``;
tests/test_browser.py has the full browser suite.
"""
from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("mkdocs")
pytest.importorskip("mkdocs_jupyter")

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.I)


def _mkdocs(args, cwd, timeout=1200):
    return subprocess.run([sys.executable, "-m", "mkdocs", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def site(built_site):
    return built_site     # built once per session, in conftest.py


def test_pages_load_nothing_from_other_hosts(site):
    offenders = []
    for page in site.rglob("*.html"):
        offenders += [f"{page.relative_to(site)}: {m.group(0)}"
                      for m in EXTERNAL.finditer(page.read_text(encoding="utf-8"))
                      if 'rel="canonical"' not in m.group(0)]     # names the page, fetches nothing
    assert not offenders, "\n".join(offenders[:20])


def test_katex_is_served_by_the_site(site):
    katex = site / "assets" / "katex"
    assert (katex / "katex.min.js").is_file() and (katex / "katex.min.css").is_file()
    assert (katex / "contrib" / "auto-render.min.js").is_file()
    assert list((katex / "fonts").glob("*.woff2"))
    page = (site / "background" / "kl-divergence" / "index.html").read_text(encoding="utf-8")
    assert "assets/katex/katex.min.js" in page


def test_notebook_page_has_no_cdn_mathjax(site):
    page = (site / "examples" / "hello" / "index.html").read_text(encoding="utf-8")
    assert "mathjax" not in page.lower()
    assert "require.js" not in page
    assert "integral of the density" in page      # the cell ran
    assert "data:image/png;base64" in page        # and its plot is embedded


def test_the_build_samples_from_the_committed_checkpoints(site):
    """The notebooks would train a missing checkpoint (diffusion_core.examples); the build never does."""
    for name in ("toy_2d", "digits", "solvers_nfe", "guidance_digits"):
        page = (site / "examples" / name / "index.html").read_text(encoding="utf-8")
        assert "example_checkpoint(" in page, name         # the source is shown
        assert "is missing; training it" not in page, name


def test_derivation_boxes_name_the_install_their_code_needs(site):
    page = (site / "background" / "kl-divergence" / "index.html").read_text(encoding="utf-8")
    assert page.count("diffusion-core-torch[derivations]") == page.count('class="derivation"')
    assert "diffusion_core/derivations/background/kl.py" in page


def test_derivations_are_rendered_and_marked(site):
    for name in ("expectation-variance", "reparameterization", "kl-divergence", "elbo"):
        page = (site / "background" / name / "index.html").read_text(encoding="utf-8")
        assert "{{ derivation" not in page
        assert page.count('class="derivation"') >= 3, name
        # every derivation has its green box, every restated result its note
        assert page.count("Checked by SymPy") == \
            page.count('class="derivation"') + page.count('class="derivation-result"'), name
        assert "\\begin{aligned}" in page


def test_a_failing_notebook_cell_fails_the_build(tmp_path):
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor("!ENV", lambda loader, node: None)     # mkdocs' environment-variable tag
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    jupyter = next(p["mkdocs-jupyter"] for p in config["plugins"]
                   if isinstance(p, dict) and "mkdocs-jupyter" in p)
    (tmp_path / "docs" / "examples").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text("# Home\n")
    (tmp_path / "docs" / "examples" / "broken.py").write_text(
        "# %%\nprint('before')\n\n# %%\nraise RuntimeError('this cell is broken')\n")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump({
        "site_name": "t", "theme": {"name": "material"},
        "plugins": [{"mkdocs-jupyter": jupyter}],
        "nav": ["index.md", "examples/broken.py"],
    }))
    result = _mkdocs(["build", "--strict"], tmp_path, timeout=600)
    assert result.returncode != 0
    assert "this cell is broken" in result.stdout + result.stderr


@pytest.mark.browser
def test_math_is_typeset_in_a_browser(site, chromium_executable):
    chromium = chromium_executable
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for path, minimum in (("background/kl-divergence/", 20), ("examples/hello/", 2)):
            url = f"http://127.0.0.1:{server.server_address[1]}/{path}"
            dom = subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", f"--user-data-dir={site.parent / 'chrome'}",
                 "--virtual-time-budget=8000", "--dump-dom", url],
                capture_output=True, text=True, timeout=120).stdout
            assert dom.count('class="katex"') >= minimum, path
            assert "katex-error" not in dom, path
    finally:
        server.shutdown()


def test_footer_names_the_library_version_and_the_build_time(site):
    import diffusion_core

    page = (site / "diffusion" / "forward-process" / "index.html").read_text(encoding="utf-8")
    assert f"diffusion_core {diffusion_core.__version__}" in page
    assert re.search(r"site built \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)


def test_pages_carry_description_and_link_preview_metadata(site):
    page = (site / "background" / "kl-divergence" / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<meta name="description" content="[^"]{20,}"', page)
    assert '<meta property="og:title" content="KL divergence - diffusion-core">' in page
    assert re.search(r'<meta property="og:description" content="[^"]{20,}"', page)
    assert re.search(r'<meta property="og:url" content="https?://[^"]+/background/kl-divergence/"', page)


def test_the_pages_workflow_builds_with_the_readme_docs_install():
    workflow = (ROOT / ".github" / "workflows" / "pages.yml").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'pip install -e ".[docs]"' in workflow and 'pip install -e ".[docs]"' in readme
    assert "mkdocs build --strict" in workflow and "SITE_URL" in workflow
    assert "actions/deploy-pages" in workflow
