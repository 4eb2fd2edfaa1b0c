r"""The variational bound of a DDPM (Ho et al. eq. 5; Sohl-Dickstein et al. 2015), in bits per dimension:

.. math:: L_\mathrm{vlb} = \underbrace{D_{KL}(q(x_T|x_0)\,\|\,p(x_T))}_{L_T}
          + \sum_{t>1} \underbrace{D_{KL}(q(x_{t-1}|x_t,x_0)\,\|\,p_\theta(x_{t-1}|x_t))}_{L_{t-1}}
          \underbrace{- \log p_\theta(x_0|x_1)}_{L_0}

All quantities are nats averaged over the non-batch dimensions, divided by :math:`\ln 2`; per-example values have
shape ``(B,)``. The network is read through a :class:`~diffusion_core.denoiser.Denoiser` bound to the diffusion.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._progress import progress_bar
from ._validation import check_finite_values, check_same_shape
from .denoiser import as_denoiser
from .diffusion import Diffusion, check_diffusion
from .errors import InvalidInput, InvalidInputType
from .forward import q_mean_variance
from .reverse import Clip
from .targets import Coefficients, Prediction

__all__ = ["VLBResult", "normal_kl", "discretized_gaussian_log_likelihood", "prior_bpd", "vlb_term", "bits_per_dim",
           "check_data"]

_LN2 = math.log(2.0)


class VLBResult(NamedTuple):
    """The full bound per example, in bits/dim: ``total = prior + terms.sum(1)``; ``terms[:, t]`` is :math:`L_t`."""

    total: torch.Tensor
    prior: torch.Tensor
    terms: torch.Tensor


def _mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(1)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    r"""Elementwise :math:`D_{KL}(\mathcal N(\mu_1,\sigma_1^2)\,\|\,\mathcal N(\mu_2,\sigma_2^2))` in nats, from the
    log-variances, by the closed form for two normal distributions:

    .. math::
        :checked-by: background.kl:gaussian

    (derived and checked by SymPy on the KL-divergence page; the training-objective page ties this function to it).
    """
    mean1, logvar1, mean2, logvar2 = (torch.as_tensor(v) for v in (mean1, logvar1, mean2, logvar2))
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _log_ndtr_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a < b, evaluated in whichever tail keeps it accurate."""
    flip = (a + b) > 0  # Phi(b) - Phi(a) = Phi(-a) - Phi(-b): use the lower tail
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log((-torch.expm1(log_lo - log_hi)).clamp(min=torch.finfo(a.dtype).tiny))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, bins: int = 256
) -> torch.Tensor:
    r"""Elementwise :math:`\log p(x)` in nats for data in :math:`[-1, 1]` quantized to ``bins`` levels, under
    :math:`\mathcal N(\mu, \sigma^2)` integrated over each level's bin (Ho et al. eq. 13; ``log_scale`` is
    :math:`\log\sigma`). An interior level :math:`x` owns the bin :math:`[x - \delta, x + \delta]`,
    :math:`\delta = 1/(\text{bins} - 1)`, so :math:`p(x)` is the normal density's integral over that bin, a
    difference of two error functions:

    .. math::
        :checked-by: api.losses:bin_probability

    (checked in ``diffusion_core/derivations/api/losses.py``, also against this function). The edge bins extend to
    infinity: the level :math:`-1` owns :math:`(-\infty, -1 + \delta]` and the level :math:`1` owns
    :math:`[1 - \delta, \infty)`.
    """
    check_same_shape("mean", mean, "x", x)
    out_dtype = torch.promote_types(x.dtype, torch.float32)
    x, mean, log_scale = x.double(), mean.double(), torch.as_tensor(log_scale).double()
    half_bin = 1.0 / (bins - 1)
    inv_std = torch.exp(-log_scale)
    upper = (x - mean + half_bin) * inv_std
    lower = (x - mean - half_bin) * inv_std
    log_cdf_upper = torch.special.log_ndtr(upper)  # x = -1: the bin (-inf, -1 + half_bin]
    log_sf_lower = torch.special.log_ndtr(-lower)  # x = +1: the bin [1 - half_bin, inf)
    middle = _log_ndtr_diff(lower, upper)
    edge = 1.0 - half_bin  # between the top level (1) and the next one (1 - 2 * half_bin)
    out = torch.where(x < -edge, log_cdf_upper, torch.where(x > edge, log_sf_lower, middle))
    return out.to(out_dtype)


def prior_bpd(diffusion: Diffusion, x0: torch.Tensor) -> torch.Tensor:
    r""":math:`L_T = D_{KL}(q(x_T \mid x_0)\,\|\,\mathcal N(0, I))` per example, in bits/dim."""
    T = diffusion.num_timesteps
    t = torch.full((x0.shape[0],), T - 1, dtype=torch.long, device=x0.device)
    mean, _, log_var = q_mean_variance(diffusion.schedule, x0, t)
    return _mean_flat(normal_kl(mean, log_var, torch.zeros_like(mean), torch.zeros_like(log_var))) / _LN2


def vlb_term(
    diffusion: Diffusion,
    pred: Prediction,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    *,
    clip: Clip | str | None = None,
) -> torch.Tensor:
    r"""One VLB term per example in bits/dim, from a denoiser's prediction ``pred`` at ``(x_t, t)``
    (:class:`~diffusion_core.targets.Prediction`; ``t`` the schedule's indices):
    :math:`L_{t-1} = D_{KL}(q(x_{t-1}|x_t,x_0)\,\|\,p_\theta(x_{t-1}|x_t))` for index ``t > 0`` and the decoder
    :math:`L_0 = -\log p_\theta(x_0 \mid x_1)` (discretized, 256 levels) at index 0.

    :math:`p_\theta` is :meth:`Diffusion.p_mean_variance` with :math:`\hat x_0` clipped by ``clip`` (default:
    ``diffusion.clip``, the model as it is sampled); the training loss evaluates it with ``clip="none"``."""
    true = diffusion.q_posterior(x0, x_t, t)
    step = diffusion.p_mean_variance(pred, x_t, t, clip=clip)
    kl = _mean_flat(normal_kl(true.mean, true.log_variance, step.mean, step.log_variance)) / _LN2
    nll = -_mean_flat(discretized_gaussian_log_likelihood(x0, step.mean, 0.5 * step.log_variance)) / _LN2
    return torch.where(t == 0, nll, kl)


def check_data(x0: torch.Tensor, diffusion: Diffusion) -> None:
    """``x0``: a finite (checked on the CPU), batch-first float tensor with a channel dimension."""
    check_diffusion(diffusion)
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
        raise InvalidInputType(f"x0 must be a floating-point torch.Tensor, got {type(x0).__name__}")
    check_finite_values("x0", x0)  # on the CPU only: no host sync on a GPU (the trainer checks its loss)
    if x0.ndim < 2:
        raise InvalidInput(f"x0 must be batch-first with a channel dimension, (B, C, ...), got shape {tuple(x0.shape)}")


@torch.no_grad()
def bits_per_dim(
    model, diffusion: Diffusion, x0: torch.Tensor, *, progress: bool = True,
    generator: torch.Generator | None = None, labels: torch.Tensor | None = None, clip: Clip | str | None = None,
) -> VLBResult:
    r"""The whole bound :math:`L_\mathrm{vlb}` of ``model`` on data ``x0`` (in :math:`[-1,1]`), in bits/dim,
    one network call per step: :math:`L_T + \sum_{t} L_{t-1}`, each term with fresh noise (as in improved DDPM).
    ``model`` is a denoiser or a plain network, called with ``labels`` when given; ``clip`` as in :func:`vlb_term`
    (default ``diffusion.clip``: the bound of the model as it is sampled)."""
    check_data(x0, diffusion)
    denoiser = as_denoiser(model, diffusion)
    B, T = x0.shape[0], diffusion.num_timesteps
    terms = x0.new_zeros((B, T), dtype=torch.float32)
    for i in progress_bar(range(T - 1, -1, -1), disable=not progress, desc="bits/dim"):
        t = torch.full((B,), i, dtype=torch.long, device=x0.device)
        x_t = diffusion.q_sample(x0, t, generator=generator)
        terms[:, i] = vlb_term(diffusion, _as_float32(denoiser(x_t, t + 1, labels=labels)), x0.float(), x_t.float(),
                               t, clip=clip)
    prior = prior_bpd(diffusion, x0.float())
    return VLBResult(prior + terms.sum(1), prior, terms)


def _as_float32(pred: Prediction) -> Prediction:
    """The bound is computed in float32 (or wider) whatever the network's dtype."""
    f = (lambda v: None if v is None else v.float())
    return Prediction(f(pred.x0), f(pred.eps), Coefficients(*(f(v) for v in pred.coefficients)), f(pred.var_output))
