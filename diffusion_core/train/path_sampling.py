"""How a trained model is sampled when nothing else is named: each path's sampler and grid, in one place for
``diffusion-core sample`` and the training previews.

A vp model is sampled by DDIM on the DDPM's linspace steps (:mod:`diffusion_core.ddpm_samplers`). The continuous
paths use :mod:`diffusion_core.samplers` on their own grid: rectified flow Euler in t on a uniform grid (the
flow-matching step of diffusers' ``FlowMatchEulerDiscreteScheduler`` and Meta's ``flow_matching``), EDM Heun on
Karras et al.'s sigmas (their Algorithm 1). Heun and the noise-level spacings work in x / alpha, which rectified
flow's t = 1 (alpha = 0) does not have: there they start at EDM's sigma_max = 80 instead. The x0 prediction is
clipped to the data's range on every path, as on vp (:attr:`~.data.DatasetSpec.clip`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..ddpm_samplers import ddim_sample
from ..denoiser import Denoiser
from ..grids import EDM_SIGMA_MAX, time_grid
from ..guidance import ClassifierFreeGuidance
from ..samplers import sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_heun
from .config import TrainConfig, TrainPath

__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "default_samples", "sample_on_grid", "sample_on_path"]

SAMPLERS = {"ddim": sample_ddim, "ddpm": sample_ddpm, "dpmpp-2m": sample_dpmpp_2m, "heun": sample_heun}
DEFAULT_SAMPLER = {TrainPath.VP: "ddim", TrainPath.RECTIFIED_FLOW: "ddim", TrainPath.EDM: "heun"}
_DEFAULT_SPACING = {TrainPath.VP: "linspace", TrainPath.RECTIFIED_FLOW: "uniform", TrainPath.EDM: "karras"}


def sample_on_path(config: TrainConfig, model: nn.Module, noise: torch.Tensor, *, sampler: str | None = None,
                   steps: int = 50, spacing: str | None = None, sigma_max: float | None = None,
                   labels: torch.Tensor | None = None, guidance: float = 1.0, eta: float = 0.0,
                   generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """Samples of ``model``, trained as ``config`` says (on any path; vp's own entry points are in
    :mod:`~diffusion_core.ddpm_samplers`), from standard normal ``noise`` (scaled
    here to the grid's first sigma). ``sampler`` is a key of :data:`SAMPLERS` (``ddim`` is Euler on these paths),
    by default the path's; ``spacing`` defaults to ``karras`` for Heun and to the path's otherwise."""
    path = config.gaussian_path()
    denoiser = Denoiser(model, path, config.parameterization, sigma_data=config.sigma_data)
    if guidance != 1.0:
        denoiser = ClassifierFreeGuidance(denoiser, guidance)
    name = sampler or DEFAULT_SAMPLER[config.path]
    spacing = spacing or ("karras" if name == "heun" else _DEFAULT_SPACING[config.path])
    starts_at_pure_noise = not bool(path.alpha(torch.tensor([path.t_max], dtype=torch.float64)) > 0)
    if sigma_max is None and starts_at_pure_noise and (name == "heun" or spacing != "uniform"):
        sigma_max = EDM_SIGMA_MAX
    ts = time_grid(path, steps, spacing, sigma_max=sigma_max)
    options = {"eta": eta} if name == "ddim" else {}
    if name in ("ddim", "ddpm"):
        options["generator"] = generator
    x_T = noise * path.sigma(ts[:1]).to(noise)
    return SAMPLERS[name](denoiser, x_T, ts, labels=labels, clip=config.dataset.spec.clip, progress=progress,
                          **options).sample


def sample_on_grid(config: TrainConfig, model: nn.Module, noise: torch.Tensor, grid: torch.Tensor, *,
                   labels: torch.Tensor | None = None, guidance: float = 1.0, progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM (Euler in x/alpha) of ``model`` on the times ``grid`` of its path, from standard normal
    ``noise`` scaled to the grid's first sigma: how a distilled student samples, on the grid it was distilled
    for (``train/distill.py``)."""
    path = config.gaussian_path()
    denoiser = Denoiser(model, path, config.parameterization, sigma_data=config.sigma_data)
    if guidance != 1.0:
        denoiser = ClassifierFreeGuidance(denoiser, guidance)
    ts = torch.as_tensor(grid, dtype=torch.float64)
    x_T = noise * path.sigma(ts[:1]).to(noise)
    return sample_ddim(denoiser, x_T, ts, labels=labels, clip=config.dataset.spec.clip, progress=progress).sample


@torch.no_grad()
def default_samples(config: TrainConfig, model: nn.Module, sample_shape: tuple[int, ...], n: int,
                    device: torch.device, seed: int = 0, grid: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` samples of ``model`` with its path's default sampler (50 network calls, or T if fewer), or DDIM on
    ``grid`` (:func:`sample_on_grid`), from the noise of ``seed`` drawn by a generator of its own (the global random
    state is not drawn from). A class-conditional model samples each class in turn."""
    g = torch.Generator(device).manual_seed(seed)
    x_T = torch.randn((n, *sample_shape), generator=g, device=device)
    classes = getattr(getattr(model, "config", None), "num_classes", 0) or 0
    labels = torch.arange(n, device=device) % classes if classes else None
    if grid is not None:
        return sample_on_grid(config, model, x_T, grid, labels=labels)
    if config.path is TrainPath.VP:  # at most T steps: ddim_sample refuses more steps than the schedule has
        diffusion = config.diffusion().to(device)
        return ddim_sample(model, diffusion, x_T, steps=min(50, diffusion.num_timesteps), labels=labels,
                           progress=False).sample
    steps = 25 if DEFAULT_SAMPLER[config.path] == "heun" else 50  # Heun: 2 calls a step but the last
    return sample_on_path(config, model, x_T, steps=steps, labels=labels)
