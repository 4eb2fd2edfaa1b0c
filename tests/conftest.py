"""Fixtures shared by the tests: ``one_thread`` (torch on one thread), and for the site tests one strict build of
the site, and Chromium.

``built_site`` builds the documentation once per test session (a minute or
more: notebooks execute), however many test modules use it; set
``BUILT_SITE_DIR`` to an already built site to test that instead.
``chromium_executable`` finds Chromium, installing Debian's ``chromium``
package with apt-get when it is missing and we are root, and skips the test
(with the reason) when neither works.  Set ``CHROMIUM`` to use another binary.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APT_TIMEOUT = 900
# The browser tests serve the site under this sub-path, as GitHub Pages serves a project site
# (https://<owner>.github.io/<repo>/), so a link that only works at the server's root fails them.
SUB_PATH = "/diffusion-core/"
# The build's site_url (mkdocs.yml reads SITE_URL); only its path matters offline.
TEST_SITE_URL = "https://example.org" + SUB_PATH


@contextlib.contextmanager
def torch_threads(n: int):
    """torch on ``n`` intra-op threads inside the block, the previous setting restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """torch on one thread for the test: the 2-core test machine runs torch's default pool many times slower
    when anything else is busy, and the tests' small ops gain nothing from it. A module puts every test on it
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """The site, built with ``mkdocs build --strict`` into a temporary folder."""
    if os.environ.get("BUILT_SITE_DIR"):
        return Path(os.environ["BUILT_SITE_DIR"]).resolve()
    for module in ("yaml", "mkdocs", "mkdocs_jupyter"):
        pytest.importorskip(module)
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "SITE_URL": TEST_SITE_URL})
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + \
        result.stdout[-3000:] + result.stderr[-6000:]
    return out


def _find_chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Path to Chromium; installs Debian's package if it is missing (root only)."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    found = _find_chromium()
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it with")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed; installing it with apt-get needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=APT_TIMEOUT,
                                    env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"chromium is not installed and `{' '.join(cmd)}` did not finish: {exc}")
        if result.returncode != 0:
            pytest.skip(f"chromium is not installed and `{' '.join(cmd)}` failed "
                        f"(exit {result.returncode}): {result.stderr[-1500:]}")
    found = _find_chromium()
    if found is None:
        pytest.skip("`apt-get install chromium` succeeded but no chromium executable is on PATH")
    return found


class _SubPathHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site only under SUB_PATH; anything else, and any missing file, is a 404 with the
    site's own 404.html (as GitHub Pages does)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path + "/" == SUB_PATH:
            self.send_response(301)
            self.send_header("Location", SUB_PATH)
            self.end_headers()
            return None
        if not path.startswith(SUB_PATH):
            return self._not_found()
        self.path = "/" + self.path[len(SUB_PATH):]
        local = Path(self.translate_path(self.path))
        if not (local.is_file() or (local.is_dir() and (local / "index.html").is_file())):
            return self._not_found()
        return super().send_head()

    def _not_found(self):
        body = (Path(self.directory) / "404.html").read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128      # several tabs open many connections at once


@pytest.fixture(scope="session")
def site_url(built_site):
    """URL of the built site, served by a threaded http.server on 127.0.0.1 under SUB_PATH."""
    handler = functools.partial(_SubPathHandler, directory=str(built_site))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}{SUB_PATH}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser(chromium_executable, tmp_path_factory):
    """One headless Chromium for the whole session."""
    from cdp import Browser, CDPError

    work = tmp_path_factory.mktemp("chromium")
    log = work / "chromium.log"
    try:
        chrome = Browser(chromium_executable, work / "profile", log)
    except (CDPError, OSError) as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        pytest.fail(f"{chromium_executable} did not start: {exc}\n{tail}")
    yield chrome
    chrome.close()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The distribution as a user gets it: a wheel built from this checkout (``pip wheel --no-deps``; without
    build isolation, so the setuptools of the test extra builds it and nothing is downloaded)."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, "pip wheel failed:\n" + result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="session")
def wheel_python(wheel, tmp_path_factory) -> Path:
    """A Python whose ``diffusion_core`` is the installed wheel (not this checkout): a fresh venv that sees this
    environment's packages (torch, numpy, ...) but gets the library only from the wheel. It is a wrapper that
    drops ``PYTHONPATH`` (a checkout put on the path for the tests would shadow the wheel)."""
    venv = tmp_path_factory.mktemp("wheel-venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python-wheel"
    python.write_text(f'#!/bin/sh\nunset PYTHONPATH PYTHONHOME\nexec "{venv / "bin" / "python"}" "$@"\n')
    python.chmod(0o755)
    result = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, "installing the wheel failed:\n" + result.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import diffusion_core; print(diffusion_core.__file__)"],
                           cwd=venv, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), f"diffusion_core came from {where.stdout.strip()}"
    return python
