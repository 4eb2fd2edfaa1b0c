r"""The reverse process: the true posterior, the model's variance choices, and clipping of :math:`\hat x_0`.

Posterior (Ho et al. eq. 6-7):
:math:`q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t(x_t, x_0),\ \tilde\beta_t I)` with
:math:`\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} x_0 + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t`
and :math:`\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t`.
"""
from __future__ import annotations

from enum import Enum

import torch

from ._validation import check_same_shape, check_timesteps
from .forward import Gaussian, extract
from .errors import InvalidInput
from .schedule import NoiseSchedule
from .targets import Prediction

__all__ = ["Clip", "VarianceType", "q_posterior", "model_log_variance", "threshold_x0", "clip_prediction"]


class VarianceType(str, Enum):
    r"""The variance :math:`\sigma_t^2` of :math:`p_\theta(x_{t-1} \mid x_t)`.

    * ``FIXED_LARGE``: :math:`\sigma_t^2 = \beta_t` (Ho et al.; the first entry is :math:`\tilde\beta_2`, as in
      improved DDPM, so that the decoder term of the VLB is not dominated by a needlessly wide :math:`\beta_1`).
    * ``FIXED_SMALL``: :math:`\sigma_t^2 = \tilde\beta_t`.
    * ``LEARNED_RANGE``: the network outputs :math:`v` and :math:`\log\sigma_t^2 = \tfrac{v+1}{2}\log\beta_t +
      \tfrac{1-v}{2}\log\tilde\beta_t` (Nichol & Dhariwal 2021, eq. 15); it then outputs twice the channels.
    """

    FIXED_LARGE = "fixed_large"
    FIXED_SMALL = "fixed_small"
    LEARNED_RANGE = "learned_range"


class Clip(str, Enum):
    r"""What is done to the predicted :math:`\hat x_0` before it enters the posterior mean.

    * ``NONE``: nothing.
    * ``STATIC``: clamp to :math:`[-1, 1]`, the data range.
    * ``DYNAMIC``: Imagen's dynamic thresholding (Saharia et al. 2022, sec. 2.3): per sample, :math:`s` is the
      ``percentile`` quantile of :math:`|\hat x_0|`, at least 1; clamp to :math:`[-s, s]` and divide by :math:`s`.
    """

    NONE = "none"
    STATIC = "static"
    DYNAMIC = "dynamic"


def q_posterior(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> Gaussian:
    r"""Moments of :math:`q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)` (Ho et al. eq. 6-7).

    Completing the square in :math:`x_{t-1}` gives the precision
    :math:`\alpha_t/\beta_t + 1/(1 - \bar\alpha_{t-1})`; the mean :math:`\tilde\mu_t` is the linear
    coefficient over the precision,

    .. math::
        :checked-by: diffusion.reverse:posterior_mean

    and the variance :math:`\tilde\beta_t` is one over the precision,

    .. math::
        :checked-by: diffusion.reverse:posterior_variance

    (both derived and checked by SymPy on the reverse-process page).
    """
    check_same_shape("x0", x0, "x_t", x_t)
    check_timesteps(t, schedule.num_timesteps, x_t.shape[0])
    c1 = extract(schedule.posterior_mean_coef1, t, x_t.ndim).to(x_t.dtype)
    c2 = extract(schedule.posterior_mean_coef2, t, x_t.ndim).to(x_t.dtype)
    var = extract(schedule.posterior_variance, t, x_t.ndim)
    log_var = extract(schedule.posterior_log_variance_clipped, t, x_t.ndim)
    return Gaussian(c1 * x0 + c2 * x_t, var, log_var)


def model_log_variance(
    variance: VarianceType, schedule: NoiseSchedule, t: torch.Tensor, ndim: int, var_output: torch.Tensor | None = None
) -> torch.Tensor:
    r""":math:`\log\sigma_t^2` for the chosen :class:`VarianceType`; ``var_output`` is the network's
    variance channels (only for ``LEARNED_RANGE``)."""
    log_small = extract(schedule.posterior_log_variance_clipped, t, ndim)
    if variance is VarianceType.FIXED_SMALL:
        return log_small
    log_betas = torch.log(schedule.betas)
    if variance is VarianceType.FIXED_LARGE:
        # beta~_2 in place of beta_1 at t = 0 (improved DDPM's fixed-large table): a wide beta_1 would swamp L_0.
        log_large = torch.cat([schedule.posterior_log_variance_clipped[:1], log_betas[1:]])
        return extract(log_large, t, ndim)
    if var_output is None:
        raise InvalidInput("variance=LEARNED_RANGE needs the network's variance output")
    # Nichol & Dhariwal eq. 15 between log beta~_t (clipped: beta~_1 = 0) and log beta_t at every t, t = 0
    # included: the upper end is the true beta_1 there, or the range collapses and the output gets no gradient.
    frac = (var_output.float() + 1) / 2  # eq. 15's v; unconstrained: outside [0, 1] it extrapolates
    return frac * extract(log_betas, t, ndim) + (1 - frac) * log_small


def threshold_x0(x0: torch.Tensor, clip: Clip, percentile: float = 0.995) -> torch.Tensor:
    """Apply the :class:`Clip` rule to a predicted ``x0`` (batch first)."""
    if clip is Clip.NONE:
        return x0
    if clip is Clip.STATIC:
        return x0.clamp(-1, 1)
    flat = x0.detach().reshape(x0.shape[0], -1).abs().float()
    s = torch.quantile(flat, percentile, dim=1).clamp(min=1).to(x0.dtype)
    s = s.reshape(-1, *([1] * (x0.ndim - 1)))
    return torch.maximum(torch.minimum(x0, s), -s) / s


def clip_prediction(pred: Prediction, x_t: torch.Tensor, clip: Clip, percentile: float = 0.995) -> Prediction:
    r"""``pred`` with :math:`\hat x_0` clipped by ``clip`` and :math:`\hat\epsilon` recomputed from it, so that
    :math:`x_t = \alpha_t\hat x_0 + \sigma_t\hat\epsilon` still holds. A sampling matter: training never clips."""
    if clip is Clip.NONE:
        return pred
    x0 = threshold_x0(pred.x0, clip, percentile)
    c = pred.coefficients
    return pred._replace(x0=x0, eps=(x_t - c.alpha * x0) / c.sigma)
