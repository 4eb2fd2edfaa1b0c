r"""The DDPM entry points: ``*_sample(model, diffusion, x_T, steps=..., spacing=...)`` over a
:class:`~diffusion_core.diffusion.Diffusion`, the discrete schedule a DDPM was trained with.

Each builds the time grid of ``steps`` of the schedule's integer steps (:func:`~diffusion_core.grids.time_grid`,
``spacing`` as :class:`~diffusion_core.schedule.TimestepSpacing`; the network is only ever called at steps it was
trained on, as diffusers' schedulers do), binds the model to the diffusion's path and target
(:meth:`~diffusion_core.denoiser.BaseDenoiser.bind`), and runs the path-generic sampler of
:mod:`diffusion_core.samplers`. Visiting ``steps`` of the ``T`` steps is improved DDPM's respacing (sec. 4).

Common arguments: ``model`` is a denoiser (:class:`~diffusion_core.denoiser.Denoiser`, or a guided one such as
:class:`~diffusion_core.guidance.ClassifierFreeGuidance`) or a plain network ``model(x_t, t)``. ``labels``
(LongTensor ``(B,)``, moved to ``x_T``'s device) is passed to it at every step. ``clip`` is the rule applied to
:math:`\hat x_0` (``"none"``, ``"static"``, ``"dynamic"``); ``None`` uses ``diffusion.clip``. ``generator`` makes a
stochastic run deterministic (the noise is drawn eagerly, outside any compiled code, so a seeded run gives the
same samples compiled or not, up to float rounding); the deterministic samplers accept and ignore it.
``compile=True`` compiles the whole step, network and update, into one graph (on CUDA one CUDA graph replay per
step); a new batch shape, step count, dtype or device compiles another variant, and torch.compile keeps at most
``torch._dynamo.config.recompile_limit`` (8) per process. ``return_trajectory`` and ``progress``: see
:class:`~diffusion_core.sampling.SampleResult`. ``sigma_max`` starts the grid at the last step whose
:math:`\sigma/\alpha` is at most it (EDM's 80 for :func:`heun_sample`; the schedule's last step otherwise).
"""
from __future__ import annotations

from typing import Callable, Union

import torch

from ._validation import check_choice, check_int, check_labels
from .denoiser import BaseDenoiser, as_denoiser
from .diffusion import Diffusion, check_diffusion
from .grids import EDM_SIGMA_MAX, time_grid
from .reverse import Clip
from .samplers import sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_heun
from .sampling import SampleResult, check_start
from .schedule import TimestepSpacing

__all__ = ["ddpm_sample", "ddim_sample", "dpmpp_2m_sample", "heun_sample"]

# a denoiser, or a plain network model(x_t, t) (read through a Denoiser)
Model = Union[BaseDenoiser, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


def _setup(model: Model, diffusion: Diffusion, x_T: torch.Tensor, steps, spacing, labels, clip,
           sigma_max: float | None = None) -> dict:
    """The bound denoiser, the grid and the sampler options every entry point passes on."""
    check_start(x_T)
    check_diffusion(diffusion)
    steps = check_int("steps", steps, minimum=1, maximum=diffusion.num_timesteps)
    spacing = check_choice("spacing", spacing, TimestepSpacing)  # checked even when steps == T uses every index
    grid = time_grid(diffusion.path, steps, spacing, sigma_max=sigma_max, shared=True)  # read, never written
    if labels is not None:
        labels = check_labels(labels, x_T.shape[0]).to(x_T.device)
    return dict(denoiser=as_denoiser(model, diffusion), x=x_T, ts=grid, labels=labels,
                clip=diffusion.resolve_clip(clip), percentile=diffusion.dynamic_percentile)


@torch.no_grad()
def ddpm_sample(model: Model, diffusion: Diffusion, x_T: torch.Tensor, *, steps: int | None = None,
                spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE, generator: torch.Generator | None = None,
                progress: bool = True, return_trajectory: bool = False, compile: bool = False,
                labels: torch.Tensor | None = None, clip: Clip | str | None = None,
                sigma_max: float | None = None) -> SampleResult:
    r"""Ancestral sampling (Ho et al. algorithm 2) over ``steps`` of the schedule's steps (all ``T`` by default):
    :math:`x_{t-1} = \tilde\mu_t(x_t, \hat x_0) + \sigma_t z` with the variance ``diffusion.variance`` and no noise
    at the last step (:func:`~diffusion_core.samplers.sample_ddpm`)."""
    steps = diffusion.num_timesteps if steps is None and isinstance(diffusion, Diffusion) else steps
    args = _setup(model, diffusion, x_T, steps, spacing, labels, clip, sigma_max)
    return sample_ddpm(**args, variance=diffusion.variance, generator=generator, progress=progress,
                       return_trajectory=return_trajectory, compile=compile)


@torch.no_grad()
def ddim_sample(model: Model, diffusion: Diffusion, x_T: torch.Tensor, *, steps: int = 50, eta: float = 0.0,
                spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE, generator: torch.Generator | None = None,
                progress: bool = True, return_trajectory: bool = False, compile: bool = False,
                labels: torch.Tensor | None = None, clip: Clip | str | None = None,
                sigma_max: float | None = None) -> SampleResult:
    r"""DDIM (Song et al. 2021, eq. 12) over ``steps`` of the schedule's steps: :math:`x_{t-1}` drawn from
    :math:`q_\sigma(x_{t-1} \mid x_t, \hat x_0)`, the update that puts the predicted data :math:`\hat x_0` and the
    noise it implies, :math:`\hat\epsilon`, back together at the noise level of step :math:`t - 1`, plus fresh
    noise :math:`\sigma_t z`:

    .. math::
        :checked-by: ddim.index:update

    with :math:`\sigma_t = \eta\sqrt{(1-\bar\alpha_{t-1})/(1-\bar\alpha_t)}\sqrt{1-\bar\alpha_t/\bar\alpha_{t-1}}`:
    :math:`\eta = 0` is deterministic, :math:`\eta = 1` DDPM's posterior variance
    (:func:`~diffusion_core.samplers.sample_ddim`)."""
    args = _setup(model, diffusion, x_T, steps, spacing, labels, clip, sigma_max)
    return sample_ddim(**args, eta=eta, generator=generator, progress=progress,
                       return_trajectory=return_trajectory, compile=compile)


@torch.no_grad()
def dpmpp_2m_sample(model: Model, diffusion: Diffusion, x_T: torch.Tensor, *, steps: int = 20,
                    spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE, generator: torch.Generator | None = None,
                    progress: bool = True, return_trajectory: bool = False, compile: bool = False,
                    labels: torch.Tensor | None = None, clip: Clip | str | None = None,
                    lower_order_final: bool = True, sigma_max: float | None = None) -> SampleResult:
    r"""DPM-Solver++(2M) (Lu et al. 2022) over ``steps`` of the schedule's steps, one network call each
    (:func:`~diffusion_core.samplers.sample_dpmpp_2m`); its first-order step is DDIM. Deterministic."""
    args = _setup(model, diffusion, x_T, steps, spacing, labels, clip, sigma_max)
    return sample_dpmpp_2m(**args, lower_order_final=lower_order_final, progress=progress,
                           return_trajectory=return_trajectory, compile=compile)


@torch.no_grad()
def heun_sample(model: Model, diffusion: Diffusion, x_T: torch.Tensor, *, steps: int = 18,
                spacing: TimestepSpacing | str = TimestepSpacing.KARRAS, generator: torch.Generator | None = None,
                progress: bool = True, return_trajectory: bool = False, compile: bool = False,
                labels: torch.Tensor | None = None, clip: Clip | str | None = None,
                sigma_max: float | None = EDM_SIGMA_MAX) -> SampleResult:
    r"""EDM's Heun sampler (Karras et al. 2022, Algorithm 1) over ``steps`` of the schedule's steps, ``2 steps - 1``
    network calls (:func:`~diffusion_core.samplers.sample_heun`). Deterministic.

    By default with EDM's own grid: Karras et al.'s eq. 5 spacing (:math:`\rho = 7`) starting at the last step whose
    :math:`\sigma/\alpha` is at most ``sigma_max`` = 80 (their table 1). A 1,000-step cosine schedule's last step
    has :math:`\sigma/\alpha \approx 2\times10^4`; starting there, few steps are spent where the sample is pure
    noise and the corrector across the long steps that follow multiplies the denoiser's error (the Benchmarks
    page's sample-quality table measures both starts). ``sigma_max=None`` starts at the top step, which must have
    :math:`\bar\alpha > 0`."""
    args = _setup(model, diffusion, x_T, steps, spacing, labels, clip, sigma_max)
    return sample_heun(**args, progress=progress, return_trajectory=return_trajectory, compile=compile)
