"""Issue 17, part 4: the probe findings about the library (each test failed before its fix): NaN through samplers
and losses, dtypes, argument types, conditional networks without labels, and the import in a notebook."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import diffusion_core as dc
from diffusion_core.errors import InvalidInput, InvalidInputType, NonFiniteError
from diffusion_core.nn import MLPConfig, build_mlp

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = {"ddim": dc.ddim_sample, "ddpm": dc.ddpm_sample, "dpmpp-2m": dc.dpmpp_2m_sample, "heun": dc.heun_sample}
# what each names its run in messages (and its progress bar), for 5 steps
RUN_NAMES = {"ddim": "sample_ddim", "ddpm": "sample_ddpm", "dpmpp-2m": "sample_dpmpp_2m", "heun": "sample_heun"}

pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(num_classes=0):
    torch.manual_seed(0)
    net = build_mlp(MLPConfig(dim=2, hidden=16, depth=1, num_classes=num_classes)).eval()
    return net, dc.Diffusion(dc.NoiseSchedule.cosine(20), "v")


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_refuse_nan_from_the_start_or_the_network(name):
    net, d = _setup()
    sample = SAMPLERS[name]
    x_T = torch.randn(6, 2)
    x_T[2, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=rf"{re.escape(RUN_NAMES[name])}: x_T holds NaN or Inf: 1 of 6 samples"):
        sample(net, d, x_T, steps=5, progress=False)
    with pytest.raises(NonFiniteError, match="the network's predictions became NaN or Inf: 6 of 6 samples"):
        sample(lambda x, t: x * float("inf"), d, torch.randn(6, 2), steps=5, progress=False)


def test_training_losses_refuse_nan_data():
    net, d = _setup()
    x0 = torch.randn(4, 2)
    x0[1, 1] = float("nan")
    with pytest.raises(InvalidInput, match="x0 holds NaN or Inf"):
        dc.training_losses(net, d, x0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_start_of_another_dtype_than_the_network(dtype):
    net, d = _setup()
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    ref = dc.ddim_sample(net, d, x_T, steps=5, progress=False).sample
    out = dc.ddim_sample(net, d, x_T.to(dtype), steps=5, progress=False).sample
    assert out.dtype == dtype  # the state keeps its dtype; the network runs in its own
    torch.testing.assert_close(out.float(), ref, atol=2e-2 if dtype is torch.float16 else 1e-5, rtol=0)


@pytest.mark.parametrize("bad", [None, dc.NoiseSchedule.cosine(20)])
def test_diffusion_must_be_a_diffusion(bad):
    net, _ = _setup()
    for call in (lambda: dc.ddim_sample(net, bad, torch.randn(2, 2), steps=2, progress=False),
                 lambda: dc.ddpm_sample(net, bad, torch.randn(2, 2), progress=False)):
        with pytest.raises(InvalidInputType, match=f"diffusion must be a Diffusion, got {type(bad).__name__}"):
            call()


@pytest.mark.parametrize("bad", [None, dc.NoiseSchedule.cosine(20)])
def test_training_losses_diffusion_must_be_a_diffusion(bad):
    net, _ = _setup()
    with pytest.raises(InvalidInputType, match=f"diffusion must be a Diffusion, got {type(bad).__name__}"):
        dc.training_losses(net, bad, torch.randn(2, 2))


def test_eta_and_spacing_are_checked_whatever_the_steps():
    net, d = _setup()
    with pytest.raises(InvalidInputType, match="eta must be a number, got True"):
        dc.ddim_sample(net, d, torch.randn(2, 2), steps=5, eta=True, progress=False)
    for sample in (dc.ddim_sample, dc.ddpm_sample):  # steps = T uses every index, but the spacing is still wrong
        with pytest.raises(InvalidInput, match="spacing must be one of .* got 'bogus'"):
            sample(net, d, torch.randn(2, 2), steps=20, spacing="bogus", progress=False)


def test_a_class_conditional_network_needs_labels():
    net, d = _setup(num_classes=3)
    with pytest.raises(InvalidInput, match=r"labels is required: the network is class-conditional \(num_classes=3\)"):
        dc.ddim_sample(net, d, torch.randn(4, 2), steps=3, progress=False)
    with pytest.raises(InvalidInput, match="labels is required"):
        dc.training_losses(net, d, torch.randn(4, 2))
    null = torch.full((4,), 3)  # unconditional samples, asked for
    assert dc.ddim_sample(net, d, torch.randn(4, 2), steps=3, labels=null, progress=False).sample.shape == (4, 2)


def test_importing_in_a_notebook_without_ipywidgets_prints_nothing():
    probe = """
import sys, types, warnings
warnings.simplefilter("default")
sys.modules["ipywidgets"] = None  # not installed
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")  # what tqdm looks for: a Jupyter kernel
ipython = types.ModuleType("IPython")
ipython.get_ipython = lambda: type("ZMQInteractiveShell", (), {})()
sys.modules["IPython"] = ipython
import diffusion_core
import diffusion_core.train
print("imported")
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "imported", proc.stderr[-2000:]
    assert "IProgress" not in proc.stderr and "tqdm" not in proc.stderr, proc.stderr[-2000:]
