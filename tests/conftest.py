"""Session fixtures shared by the site tests: one strict build of the site, and Chromium.

``built_site`` builds the documentation once per test session (a minute or
more: notebooks execute), however many test modules use it; set
``BUILT_SITE_DIR`` to an already built site to test that instead.
``chromium_executable`` finds Chromium, installing Debian's ``chromium``
package with apt-get when it is missing and we are root, and skips the test
(with the reason) when neither works.  Set ``CHROMIUM`` to use another binary.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APT_TIMEOUT = 900


@pytest.fixture
def one_thread():
    """torch on one thread for the test: the 2-core test machine runs torch's default pool many times slower
    when anything else is busy."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
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
