r"""The forward (noising) process of DDPM.

One step: :math:`q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I)` (Ho et al. eq. 2).
Closed form: :math:`q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I)` (Ho et al. eq. 4).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ._validation import check_same_shape, check_timesteps
from .schedule import NoiseSchedule

__all__ = ["Gaussian", "extract", "q_mean_variance", "q_sample", "q_step_mean_variance", "q_step_sample"]


class Gaussian(NamedTuple):
    """A diagonal Gaussian: ``mean`` has the data's shape; ``variance`` and ``log_variance`` broadcast to it."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor


def extract(table: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``table[t]`` reshaped to ``(B, 1, ..., 1)`` so that it broadcasts against a ``ndim``-D batch.

    Indexing stays on ``table``'s device: no host round trip, so it is safe inside a CUDA graph.
    """
    return table.index_select(0, t.to(table.device)).reshape(-1, *([1] * (ndim - 1)))


def _noise_like(x: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    if noise is None:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    check_same_shape("noise", noise, "x", x)
    return noise


def q_mean_variance(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor) -> Gaussian:
    r"""Moments of :math:`q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I)` (Ho et al. eq. 4)."""
    check_timesteps(t, schedule.num_timesteps, x0.shape[0])
    mean = extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0
    var = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) ** 2  # keeps float32 precision near t = 0
    return Gaussian(mean, var, torch.log(var))


def q_sample(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Draw :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`, :math:`\epsilon \sim \mathcal N(0, I)`
    (Ho et al. eq. 4, reparameterized). ``noise`` is :math:`\epsilon`; drawn from ``generator`` when omitted."""
    check_timesteps(t, schedule.num_timesteps, x0.shape[0])
    eps = _noise_like(x0, noise, generator)
    a = extract(schedule.sqrt_alphas_cumprod, t, x0.ndim).to(x0.dtype)
    s = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim).to(x0.dtype)
    return torch.addcmul(a * x0, s, eps)


def q_step_mean_variance(schedule: NoiseSchedule, x_prev: torch.Tensor, t: torch.Tensor) -> Gaussian:
    r"""Moments of one forward step :math:`q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I)` (Ho et al. eq. 2)."""
    check_timesteps(t, schedule.num_timesteps, x_prev.shape[0])
    beta = extract(schedule.betas, t, x_prev.ndim)
    return Gaussian(torch.sqrt(1 - beta) * x_prev, beta, torch.log(beta))


def q_step_sample(
    schedule: NoiseSchedule,
    x_prev: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Draw :math:`x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon` (Ho et al. eq. 2)."""
    mean, var, _ = q_step_mean_variance(schedule, x_prev, t)
    return mean + var.sqrt() * _noise_like(x_prev, noise, generator)
