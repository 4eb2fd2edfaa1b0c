"""The distribution a user installs: its name, licence, metadata and the files that ship in the wheel."""
from __future__ import annotations

import email.parser
import subprocess
import sys
import zipfile

import diffusion_core

DISTRIBUTION = "diffusion-core-torch"  # "diffusion-core" on PyPI is an unrelated project


def _metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(z.read(name).decode()), z.namelist()


def test_wheel_metadata_names_the_free_distribution_and_spdx_licence(wheel):
    meta, _ = _metadata(wheel)
    assert meta["Name"] == DISTRIBUTION
    assert meta["Version"] == diffusion_core.__version__
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in meta.get_all("License-File")


def test_wheel_ships_licence_and_type_marker(wheel):
    _, names = _metadata(wheel)
    assert "diffusion_core/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names


def test_wheel_ships_the_derivations_behind_their_extra(wheel):
    """The code of the site's "Checked by SymPy" boxes imports diffusion_core.derivations: it ships, and the
    `derivations` extra brings SymPy."""
    meta, names = _metadata(wheel)
    assert {"diffusion_core/derivations/__init__.py", "diffusion_core/derivations/background/kl.py",
            "diffusion_core/derivations/score/solvers.py"} <= set(names)
    assert "derivations" in meta.get_all("Provides-Extra")
    requires = [r.replace(" ", "") for r in meta.get_all("Requires-Dist")]
    assert any(r.startswith("sympy>=1.12;") and 'extra=="derivations"' in r for r in requires), requires


def test_sympy_is_not_a_runtime_requirement(wheel):
    """The library never imports SymPy; only the checked derivations (an extra) do."""
    meta, _ = _metadata(wheel)
    unconditional = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert not any(r.lower().startswith("sympy") for r in unconditional), unconditional
    assert any(r.lower().startswith("torch") for r in unconditional)
    src = subprocess.run([sys.executable, "-c", "import sys, diffusion_core, diffusion_core.train, diffusion_core.cli;"
                          "print('sympy' in sys.modules)"], capture_output=True, text=True, timeout=300)
    assert src.returncode == 0 and src.stdout.strip() == "False", src.stderr


def test_version_option(wheel_python):
    proc = subprocess.run([str(wheel_python), "-m", "diffusion_core.cli", "--version"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"diffusion-core {diffusion_core.__version__}"
