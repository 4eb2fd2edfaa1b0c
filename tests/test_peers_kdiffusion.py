"""EDM's samplers against k-diffusion's (Crowson's ``k_diffusion.sampling``) on one denoiser and one sigma grid.

The denoiser is EDM's preconditioning (Karras et al. 2022, table 1) around a fixed random network F, written out
here for k-diffusion (``model(x, sigma)`` returns D(x; sigma)) and given to ours as ``Denoiser(F,
VarianceExploding(80), "edm")``. Both start from the same x = 80 z. Agreement to 1e-5 relative (in norm) in
float32.

k-diffusion 0.1.1's package ``__init__`` imports its training stack (clean-fid, CLIP, wandb, torchvision built
for CUDA, which does not load beside the CPU build of torch), so the test loads only ``k_diffusion.sampling``, whose
one package import is ``utils.append_dims``: that function's source is taken from the installed ``utils.py`` as
written. Install it with ``pip install --no-deps k-diffusion==0.1.1.post1`` (the README's test command does);
skipped with the reason when it is missing.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import sys
import types
from pathlib import Path

import pytest
import torch

import diffusion_core as dc

SIGMA_DATA, SIGMA_MIN, SIGMA_MAX, RHO = 0.5, 0.002, 80.0, 7.0


def _k_sampling():
    """``k_diffusion.sampling`` without the package's ``__init__``, or a skip naming what is missing."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        pytest.skip("k-diffusion is a peer: pip install --no-deps k-diffusion==0.1.1.post1 (see the README)")
    for need in ("torchsde", "torchdiffeq", "scipy", "tqdm"):
        pytest.importorskip(need, reason=f"k_diffusion.sampling imports {need} (the peers extra installs it)")
    root = Path(next(iter(spec.submodule_search_locations)))
    saved = {name: sys.modules.get(name) for name in ("k_diffusion", "k_diffusion.utils", "k_diffusion.sampling")}
    try:
        package = types.ModuleType("k_diffusion")
        package.__path__ = [str(root)]
        utils = types.ModuleType("k_diffusion.utils")
        tree = ast.parse((root / "utils.py").read_text())
        source = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "append_dims")
        exec(compile(ast.Module([source], []), str(root / "utils.py"), "exec"), utils.__dict__)
        package.utils = utils
        sys.modules.update({"k_diffusion": package, "k_diffusion.utils": utils})
        sampling_spec = importlib.util.spec_from_file_location("k_diffusion.sampling", root / "sampling.py")
        sampling = importlib.util.module_from_spec(sampling_spec)
        sampling_spec.loader.exec_module(sampling)
        return sampling
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class Net(torch.nn.Module):
    """A fixed random F(c_in x, c_noise): smooth and nonlinear in both."""

    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(dim + 1, 32, generator=g) / 2)
        self.w2 = torch.nn.Parameter(torch.randn(32, dim, generator=g) / 3)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        c = c_noise.float().reshape(-1, 1).expand(len(x), 1)
        return torch.tanh(torch.cat([x, c], dim=1) @ self.w1) @ self.w2


def _edm_denoiser(net):
    """D(x; sigma) by Karras et al.'s table 1, as k-diffusion's samplers call a model."""
    def model(x, sigma):
        s = sigma.reshape(-1, 1).to(x.dtype)
        c_skip = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2)
        c_out = s * SIGMA_DATA / torch.sqrt(s**2 + SIGMA_DATA**2)
        c_in = 1 / torch.sqrt(s**2 + SIGMA_DATA**2)
        return c_skip * x + c_out * net(c_in * x, torch.log(sigma) / 4)
    return model


@pytest.fixture(scope="module")
def k():
    return _k_sampling()


def _start() -> torch.Tensor:
    return SIGMA_MAX * torch.randn(128, 3, generator=torch.Generator().manual_seed(1))


def test_karras_grid_equals_k_diffusion(k):
    theirs = k.get_sigmas_karras(10, SIGMA_MIN, SIGMA_MAX, rho=RHO)
    ours = dc.time_grid(dc.VarianceExploding(SIGMA_MAX), 10, "karras")
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["heun", "euler"])
@pytest.mark.parametrize("steps", [1, 2, 18])
@torch.no_grad()
def test_sampler_equals_k_diffusion(k, name, steps):
    net = Net().eval()
    sigmas = k.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX, rho=RHO)
    theirs = getattr(k, f"sample_{name}")(_edm_denoiser(net), _start(), sigmas, disable=True)
    denoiser = dc.Denoiser(net, dc.VarianceExploding(SIGMA_MAX), "edm", sigma_data=SIGMA_DATA)
    ours = getattr(dc, f"sample_{name}")(denoiser, _start(), sigmas, progress=False).sample
    assert math.isfinite(float(theirs.abs().max())) and float(theirs.std()) > 0.1  # not collapsed to a constant
    # relative to the samples' norm: k-diffusion's last Euler step x + (0 - sigma)(x - D)/sigma rounds at the scale of
    # x (80 z) where ours returns D, so elementwise errors near zero are float32's 1e-7 times 80, not times |D|
    assert float((ours - theirs).norm() / theirs.norm()) < 1e-5
