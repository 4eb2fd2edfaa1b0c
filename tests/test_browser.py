"""Headless Chromium against the built site, served on 127.0.0.1.

Every page of the site is loaded once (one browser for the session, a fresh
tab per page, a few tabs at a time) and what the browser saw is recorded; the tests then check that
no page logs a console error, every image (PNGs, GIFs, data: URIs) decodes,
nothing is fetched from another host, theory pages have typeset math with no
KaTeX errors and no raw TeX delimiters, search finds "reparameterization", and
the dark-mode toggle switches the colour scheme.

Chromium is driven through the DevTools protocol over a pipe (tests/cdp.py);
conftest.py installs Debian's chromium when it is missing (root + apt-get) or
skips these tests with the reason.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cdp import Browser, CDPError, Tab

pytestmark = pytest.mark.browser

THEORY = ("background/", "diffusion/", "ddim/", "score/", "flow/", "quality/")
KEY_PAGES = ("", "background/reparameterization/", "background/kl-divergence/",
             "diffusion/forward-process/", "ddim/", "score/network/", "explorer/", "examples/hello/")
LOAD_TIMEOUT = 30.0
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TABS = min(4, max(2, os.cpu_count() or 2))     # pages loaded at once

# Run in the page after its load event: waits for images (lazy ones are made
# eager first) and fonts, then reports what is on the page.
INSPECT = r"""
(async () => {
  const imgs = [...document.images];
  imgs.forEach(img => { if (img.loading === "lazy") img.loading = "eager"; });
  const decoded = await Promise.all(imgs.map(img => img.decode().then(() => true, () => false)));
  await document.fonts.ready;
  const short = s => s.length > 100 ? s.slice(0, 100) + "..." : s;
  const broken = imgs.filter((img, i) => !(decoded[i] && img.complete && img.naturalWidth > 0))
                     .map(img => short(img.getAttribute("src") || "(no src)"));
  // Text outside code, scripts and typeset math, where a raw delimiter means math was not typeset.
  const skip = "pre, code, script, style, noscript, textarea, .katex, .katex-display, .katex-error";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    const at = n.data.search(/\$\$|\\[()[\]]/);
    if (!el || at < 0 || el.closest(skip)) continue;
    const where = el.closest(".md-nav") ? "navigation" : el.closest("article") ? "content" : "page";
    const around = n.data.slice(Math.max(0, at - 40), at + 60).trim().replace(/\s+/g, " ");
    raw.add(`in the ${where}: "...${around}..."`);
  }
  return {
    title: document.title,
    images: imgs.length,
    broken_images: broken,
    katex: document.querySelectorAll(".katex").length,
    // KaTeX (throwOnError: false) shows a formula it cannot parse as .katex-error, and an
    // undefined command as its name in the error colour (#cc0000) inside the formula.
    katex_errors: [...document.querySelectorAll(".katex-error")]
      .map(e => `${short(e.textContent)} (${e.getAttribute("title") || "no message"})`)
      .concat([...document.querySelectorAll('.katex-mathml mstyle[mathcolor="#cc0000"] > mtext')]
        .filter(e => e.textContent.startsWith("\\"))
        .map(e => `undefined command ${e.textContent} in ` +
             short(e.closest("semantics").querySelector("annotation").textContent))),
    raw_delimiters: [...raw],
  };
})()
"""


def _site_pages(site: Path) -> list[str]:
    """Site-relative URLs of every HTML page (not 404.html, nothing under assets/)."""
    pages = []
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site).as_posix()
        if rel == "404.html" or rel.startswith("assets/"):
            continue
        pages.append(rel[: -len("index.html")] if path.name == "index.html" else rel)
    return pages


def _message(event) -> str | None:
    """The text of a console error / uncaught exception event, None for other events."""
    method, params = event["method"], event["params"]
    if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        args = [a.get("value", a.get("description", a.get("type"))) for a in params["args"]]
        return f"console.{params['type']}: " + " ".join(map(str, args))
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        text = details.get("exception", {}).get("description") or details.get("text")
        return f"uncaught exception: {text}"
    if method == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        return f"{entry['source']} error: {entry['text']} {entry.get('url', '')}".strip()
    return None


def _external(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return False
    return parts.hostname not in LOCAL_HOSTS


def _load(browser: Browser, url: str) -> dict:
    tab = Tab(browser)
    try:
        tab.goto(url, timeout=LOAD_TIMEOUT)
        report = tab.js(INSPECT, timeout=LOAD_TIMEOUT)
        time.sleep(0.2)       # let late console messages arrive
        report["load_error"] = None
    except CDPError as exc:
        report = {"load_error": str(exc)}
    report["console_errors"] = [m for m in map(_message, tab.events()) if m]
    report["external_requests"] = [
        e["params"]["request"]["url"][:150] for e in tab.events("Network.requestWillBeSent")
        if _external(e["params"]["request"]["url"])]
    tab.close()
    return report


@pytest.fixture(scope="session")
def page_reports(built_site, site_url, browser) -> dict[str, dict]:
    """What the browser saw on each page, keyed by site-relative URL ("" is the home page)."""
    pages = _site_pages(built_site)
    with ThreadPoolExecutor(TABS) as pool:
        return dict(zip(pages, pool.map(lambda page: _load(browser, site_url + page), pages)))


def _problems(reports, key, pages=None):
    lines = []
    for page, report in reports.items():
        if pages is None or page in pages:
            lines += [f"/{page}: {item}" for item in report.get(key) or ()]
    return lines


def test_every_page_loads(page_reports):
    missing = [p for p in KEY_PAGES if p not in page_reports]
    assert not missing, f"pages missing from the built site: {missing}"
    failed = [f"/{p}: {r['load_error']}" for p, r in page_reports.items() if r["load_error"]]
    assert not failed, "\n".join(failed)


def test_no_console_errors(page_reports):
    problems = _problems(page_reports, "console_errors")
    assert not problems, "console errors:\n" + "\n".join(problems)


def test_images_and_gifs_load(page_reports):
    assert sum(r.get("images", 0) for r in page_reports.values()) > 0, "no page has an <img>"
    problems = _problems(page_reports, "broken_images")
    assert not problems, "images that did not load:\n" + "\n".join(problems)


def test_nothing_is_requested_from_other_hosts(page_reports):
    problems = _problems(page_reports, "external_requests")
    assert not problems, "requests to other hosts:\n" + "\n".join(problems)


def test_no_katex_errors_anywhere(page_reports):
    problems = _problems(page_reports, "katex_errors")
    assert not problems, "KaTeX could not typeset:\n" + "\n".join(problems)


def test_theory_pages_have_typeset_math(page_reports):
    theory = [p for p in page_reports if p.startswith(THEORY)]
    for section in THEORY:
        assert any(p.startswith(section) for p in theory), f"no theory pages under /{section}"
    untypeset = [f"/{p}: no .katex element" for p in theory
                 if not page_reports[p].get("katex") and not page_reports[p]["load_error"]]
    raw = _problems(page_reports, "raw_delimiters", theory)
    assert not untypeset + raw, "math not typeset:\n" + "\n".join(untypeset + raw)


def test_search_finds_reparameterization(browser, site_url):
    tab = Tab(browser)
    try:
        tab.goto(site_url)
        tab.js("document.querySelector('label.md-header__button[for=\"__search\"]').click()")
        tab.js("document.querySelector('input.md-search__input').focus()")
        for ch in "reparameterization":        # real key events: Material reads the query on keyup
            tab.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": ch, "key": ch})
            tab.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": ch})
        links, deadline = [], time.monotonic() + 20
        while time.monotonic() < deadline:
            links = tab.js("[...document.querySelectorAll('.md-search-result__item a')]"
                           ".map(a => a.href)")
            if any("/background/reparameterization/" in link for link in links):
                break
            time.sleep(0.2)
        meta = tab.js("(document.querySelector('.md-search-result__meta') || {}).textContent")
        query = tab.js("document.querySelector('input.md-search__input').value")
    finally:
        tab.close()
    assert query == "reparameterization"
    assert any("/background/reparameterization/" in link for link in links), \
        f"search for {query!r} did not list background/reparameterization/ " \
        f"(result count: {meta!r}; links: {links[:10]})"


def test_dark_mode_toggle(browser, site_url):
    state = "[document.body.getAttribute('data-md-color-scheme'), " \
            "getComputedStyle(document.body).backgroundColor]"

    def click_toggle():
        box = tab.js("(() => { const l = document.querySelector("
                     "'form[data-md-component=palette] label.md-header__button:not([hidden])');"
                     " if (!l) return null; const r = l.getBoundingClientRect();"
                     " return [r.x + r.width / 2, r.y + r.height / 2, r.width * r.height]; })()")
        assert box and box[2] > 0, "no visible palette toggle in the header"
        for kind in ("mousePressed", "mouseReleased"):     # a real click at the icon
            tab.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                  "button": "left", "clickCount": 1})

    def wait_for_scheme(wanted):
        deadline = time.monotonic() + 5
        while (now := tab.js(state))[0] != wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        return now

    tab = Tab(browser)
    try:
        tab.goto(site_url)
        scheme, background = tab.js(state)
        assert scheme in ("default", "slate"), f"unexpected colour scheme {scheme!r}"
        other = "slate" if scheme == "default" else "default"
        click_toggle()
        flipped, flipped_background = wait_for_scheme(other)
        assert flipped == other, f"clicking the toggle left the scheme at {flipped!r}"
        assert flipped_background != background, "the scheme changed but the background did not"
        tab.goto(site_url)            # the choice is remembered (localStorage) on a new load
        assert tab.js(state)[0] == other, "the colour scheme was not kept when the page reloaded"
        click_toggle()
        assert wait_for_scheme(scheme)[0] == scheme, "the toggle did not switch back"
    finally:
        tab.close()


def test_a_missing_page_gets_the_sites_404_page_with_its_styles(browser, site_url):
    """Served under a sub-path (conftest.SUB_PATH), a missing page deep in the tree shows the site's
    404 page, styled (its assets resolve from any depth), with a working link home."""
    tab = Tab(browser)
    try:
        tab.goto(site_url + "no/such/page/")
        assert "404" in tab.js("document.querySelector('article').textContent")
        sheets = tab.js("[...document.styleSheets].filter(s => s.href && s.cssRules.length > 0)"
                        ".map(s => new URL(s.href).pathname)")
        assert any(path.startswith(urlsplit(site_url).path + "assets/") for path in sheets), sheets
        home = tab.js("document.querySelector('a.md-logo').href")
        assert home.rstrip("/") == site_url.rstrip("/"), home
    finally:
        tab.close()


def test_every_theory_page_has_a_figure_that_decodes(page_reports):
    """Issue: no theory page without a picture. Figures are drawn at build time (docs/figures/)."""
    theory = [p for p in page_reports if p.startswith(THEORY) and not page_reports[p]["load_error"]]
    without = [f"/{p}" for p in theory if page_reports[p]["images"] == 0]
    assert not without, "theory pages without a figure: " + ", ".join(without)


def test_the_api_reference_typesets_its_formulas(browser, site_url):
    """The docstrings' reStructuredText math (:math: roles, .. math:: blocks) and simple tables are
    rewritten for the site by docs/hooks/rst_docstrings.py: none may show as raw text."""
    tab = Tab(browser)
    try:
        tab.goto(site_url + "api/", timeout=LOAD_TIMEOUT)
        text = tab.js("document.querySelector('article').innerText")
        for raw in (":math:", ".. math::", ":class:", ":func:", ":meth:", "=========="):
            assert raw not in text, f"raw {raw!r} on the API page"
        assert tab.js("document.querySelectorAll('article .katex').length") > 100
        assert tab.js("document.querySelectorAll('article .katex-error').length") == 0
        assert tab.js("document.querySelectorAll('article table').length") >= 1     # the notation table
    finally:
        tab.close()
