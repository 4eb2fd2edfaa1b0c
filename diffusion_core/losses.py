r"""Training losses and the variational bound.

The bound (Ho et al. eq. 5; Sohl-Dickstein et al. 2015):

.. math:: L_\mathrm{vlb} = \underbrace{D_{KL}(q(x_T|x_0)\,\|\,p(x_T))}_{L_T}
          + \sum_{t>1} \underbrace{D_{KL}(q(x_{t-1}|x_t,x_0)\,\|\,p_\theta(x_{t-1}|x_t))}_{L_{t-1}}
          \underbrace{- \log p_\theta(x_0|x_1)}_{L_0}

All VLB quantities here are in bits per dimension: nats averaged over the non-batch dimensions, divided by
:math:`\ln 2`. Per-example losses have shape ``(B,)``; reduce them as you like.

The network is read through a :class:`~diffusion_core.denoiser.Denoiser` (pass one, or a plain network
``model(x_t, t)``, which is wrapped). Training never clips :math:`\hat x_0`: the hybrid loss's VLB term uses the
unclipped prediction whatever ``Diffusion.clip`` says (as improved-diffusion does); that rule is for sampling.
"""
from __future__ import annotations

import math
from enum import Enum
from typing import Callable, NamedTuple, Union

import torch
import torch.nn.functional as F

from ._progress import progress_bar
from ._validation import check_choice, check_diffusion, check_finite_values, check_same_shape, check_timesteps
from .denoiser import BaseDenoiser, Denoiser, Prediction, as_denoiser, prediction_from_output
from .diffusion import Diffusion
from .forward import q_mean_variance
from .parameterization import Parameterization
from .reverse import Clip
from .errors import InvalidInput, InvalidInputType

__all__ = [
    "LossType",
    "LossTerms",
    "VLBResult",
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "prior_bpd",
    "vlb_term",
    "min_snr_weight",
    "training_losses",
    "bits_per_dim",
]

# a denoiser, or a plain network model(x_t, t) (read through a Denoiser)
Model = Union[BaseDenoiser, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
_LN2 = math.log(2.0)


class LossType(str, Enum):
    """The distance between the network's output and its target in the simple loss."""

    MSE = "mse"
    L1 = "l1"
    HUBER = "huber"


class LossTerms(NamedTuple):
    """Per-example losses, each of shape ``(B,)``: ``loss = simple + vlb`` (``vlb`` is zero unless hybrid)."""

    loss: torch.Tensor
    simple: torch.Tensor
    vlb: torch.Tensor


class VLBResult(NamedTuple):
    """The full bound per example, in bits/dim: ``total = prior + terms.sum(1)``; ``terms[:, t]`` is :math:`L_t`."""

    total: torch.Tensor
    prior: torch.Tensor
    terms: torch.Tensor


def _mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(1)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    r"""Elementwise :math:`D_{KL}(\mathcal N(\mu_1,\sigma_1^2)\,\|\,\mathcal N(\mu_2,\sigma_2^2))` in nats:

    .. math::
        :checked-by: background.kl:gaussian

        D_{\mathrm{KL}}\left(\mathcal{N}(\mu_{1}, \sigma_{1}^{2}) \,\middle\|\, \mathcal{N}(\mu_{2}, \sigma_{2}^{2})\right)
        = \log\left(\frac{\sigma_{2}}{\sigma_{1}}\right)
          + \frac{\sigma_{1}^{2} + \left(\mu_{1} - \mu_{2}\right)^{2}}{2 \sigma_{2}^{2}} - \frac{1}{2}

    (checked by SymPy on the KL-divergence page, ``diffusion_core/derivations/background/kl.py``; the training-objective
    page ties this function to it).
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
    :math:`\delta = 1/(\text{bins} - 1)`, so :math:`p(x)` is

    .. math::
        :checked-by: api.losses:bin_probability

        \int\limits_{x - \delta}^{x + \delta} \mathcal{N}(y; \mu, \sigma^{2})\, dy
        = \frac{\operatorname{erf}{\left(\frac{\sqrt{2} \left(x + \delta - \mu\right)}{2 \sigma} \right)}
                 - \operatorname{erf}{\left(\frac{\sqrt{2} \left(x - \delta - \mu\right)}{2 \sigma} \right)}}{2}

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
    output: torch.Tensor | Prediction,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    *,
    clip: Clip | str | None = None,
) -> torch.Tensor:
    r"""One VLB term per example in bits/dim, from the network's ``output`` at ``(x_t, t)`` (the raw output
    tensor, or a denoiser's :class:`~diffusion_core.denoiser.Prediction`):
    :math:`L_{t-1} = D_{KL}(q(x_{t-1}|x_t,x_0)\,\|\,p_\theta(x_{t-1}|x_t))` for index ``t > 0`` and the decoder
    :math:`L_0 = -\log p_\theta(x_0 \mid x_1)` (discretized, 256 levels) at index 0.

    :math:`p_\theta` is :meth:`Diffusion.p_mean_variance` with :math:`\hat x_0` clipped by ``clip`` (default:
    ``diffusion.clip``, the model as it is sampled); the training loss evaluates it with ``clip="none"``."""
    true = diffusion.q_posterior(x0, x_t, t)
    pred = diffusion.p_mean_variance(output, x_t, t, clip=clip)
    kl = _mean_flat(normal_kl(true.mean, true.log_variance, pred.mean, pred.log_variance)) / _LN2
    nll = -_mean_flat(discretized_gaussian_log_likelihood(x0, pred.mean, 0.5 * pred.log_variance)) / _LN2
    return torch.where(t == 0, nll, kl)


def min_snr_weight(diffusion: Diffusion, t: torch.Tensor, gamma: float) -> torch.Tensor:
    r"""Min-SNR-:math:`\gamma` weight (Hang et al. 2023) for the simple loss on the parameterization's target:
    :math:`\min(\mathrm{SNR},\gamma)/\mathrm{SNR}` for :math:`\epsilon`, :math:`\min(\mathrm{SNR},\gamma)` for
    :math:`x_0`, :math:`\min(\mathrm{SNR},\gamma)/(\mathrm{SNR}+1)` for :math:`v`; all equal
    :math:`\min(\mathrm{SNR},\gamma)` times the :math:`x_0`-space error."""
    if not gamma > 0:
        raise InvalidInput(f"min_snr_gamma must be > 0, got {gamma}")
    check_timesteps(t, diffusion.num_timesteps)
    snr = diffusion.schedule.snr.index_select(0, t.to(diffusion.schedule.device)).to(torch.float32)
    clipped = snr.clamp(max=gamma)
    if diffusion.parameterization is Parameterization.EPS:
        return torch.where(snr > 0, clipped / snr, torch.ones_like(snr))  # the limit at SNR 0 is 1
    if diffusion.parameterization is Parameterization.X0:
        return clipped
    return clipped / (snr + 1)


def _check_data(x0: torch.Tensor, diffusion: Diffusion) -> None:
    check_diffusion(diffusion)
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
        raise InvalidInputType(f"x0 must be a floating-point torch.Tensor, got {type(x0).__name__}")
    check_finite_values("x0", x0)  # on the CPU only: no host sync on a GPU (the trainer checks its loss)
    if x0.ndim < 2:
        raise InvalidInput(f"x0 must be batch-first with a channel dimension, (B, C, ...), got shape {tuple(x0.shape)}")


def _distance(output: torch.Tensor, target: torch.Tensor, loss_type: LossType, huber_delta: float) -> torch.Tensor:
    if loss_type is LossType.MSE:
        return _mean_flat((output - target) ** 2)
    if loss_type is LossType.L1:
        return _mean_flat((output - target).abs())
    return _mean_flat(F.huber_loss(output, target, reduction="none", delta=huber_delta))


def training_losses(
    model: Model,
    diffusion: Diffusion,
    x0: torch.Tensor,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    *,
    loss_type: LossType | str = LossType.MSE,
    min_snr_gamma: float | None = None,
    vlb_weight: float = 0.0,
    huber_delta: float = 1.0,
    generator: torch.Generator | None = None,
    labels: torch.Tensor | None = None,
) -> LossTerms:
    r"""Per-example training loss.

    ``simple`` is :math:`L_\mathrm{simple} = \| y - f_\theta(x_t, t) \|^2` (Ho et al. eq. 14) with :math:`y` the
    parameterization's target, or its L1/Huber variant, optionally times the min-SNR-:math:`\gamma` weight.
    With ``vlb_weight`` :math:`\lambda > 0` this is the hybrid loss of improved DDPM (Nichol & Dhariwal eq. 16):
    :math:`L_\mathrm{simple} + \lambda T\,L_{t}`, where :math:`T L_t` is the one-sample estimate of
    :math:`L_\mathrm{vlb}` and the mean is detached in :math:`L_t` so that it trains only the variance.
    ``t`` is drawn uniformly and ``noise`` from :math:`\mathcal N(0, I)` when omitted.

    ``model`` is a :class:`~diffusion_core.denoiser.Denoiser` or a plain network ``model(x_t, t)``; ``labels``
    (LongTensor ``(B,)``, the null label where a class is dropped for classifier-free guidance) goes to it.
    :math:`\hat x_0` is never clipped here: :math:`L_t` is the bound of the unclipped prediction, whatever
    ``diffusion.clip`` (a sampling rule) says.
    """
    check_diffusion(diffusion)
    denoiser = as_denoiser(model)
    if not isinstance(denoiser, Denoiser):
        raise InvalidInputType(f"model must be a network or a Denoiser to train, got a {type(denoiser).__name__} "
                               "(a guided denoiser is for sampling)")
    loss_type = check_choice("loss_type", loss_type, LossType)
    if vlb_weight < 0:
        raise InvalidInput(f"vlb_weight must be >= 0, got {vlb_weight}")
    if diffusion.learned_variance and vlb_weight == 0:
        raise InvalidInput("variance=learned_range needs vlb_weight > 0 (improved DDPM uses 0.001): only the VLB trains the variance")
    _check_data(x0, diffusion)
    B, T = x0.shape[0], diffusion.num_timesteps
    if t is None:
        t = torch.randint(0, T, (B,), device=x0.device, generator=generator)
    check_timesteps(t, T, B)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    check_same_shape("noise", noise, "x0", x0)
    x_t = diffusion.q_sample(x0, t, noise)
    mean_out, var_out = denoiser.output(x_t, t, diffusion, labels=labels)
    target = diffusion.target(x0, noise, t)
    simple = _distance(mean_out.float(), target.float(), loss_type, huber_delta)
    if min_snr_gamma is not None:
        simple = simple * min_snr_weight(diffusion, t, min_snr_gamma)
    if vlb_weight > 0:
        # the mean detached: L_t trains only the variance (Nichol & Dhariwal sec. 3.1); x0_hat unclipped
        x_t32 = x_t.float()
        frozen = prediction_from_output(diffusion, mean_out.detach().float(),
                                        None if var_out is None else var_out.float(), x_t32, t)
        vlb = vlb_weight * T * vlb_term(diffusion, frozen, x0.float(), x_t32, t, clip=Clip.NONE)
    else:
        vlb = torch.zeros_like(simple)
    return LossTerms(simple + vlb, simple, vlb)


@torch.no_grad()
def bits_per_dim(
    model: Model, diffusion: Diffusion, x0: torch.Tensor, *, progress: bool = True,
    generator: torch.Generator | None = None, labels: torch.Tensor | None = None, clip: Clip | str | None = None,
) -> VLBResult:
    r"""The whole bound :math:`L_\mathrm{vlb}` of ``model`` on data ``x0`` (in :math:`[-1,1]`), in bits/dim,
    one network call per step: :math:`L_T + \sum_{t} L_{t-1}`, each term with fresh noise (as in improved DDPM).
    ``model`` is a denoiser or a plain network, called with ``labels`` when given; ``clip`` as in :func:`vlb_term`
    (default ``diffusion.clip``: the bound of the model as it is sampled)."""
    _check_data(x0, diffusion)
    denoiser = as_denoiser(model)
    B, T = x0.shape[0], diffusion.num_timesteps
    terms = x0.new_zeros((B, T), dtype=torch.float32)
    for i in progress_bar(range(T - 1, -1, -1), disable=not progress, desc="bits/dim"):
        t = torch.full((B,), i, dtype=torch.long, device=x0.device)
        x_t = diffusion.q_sample(x0, t, generator=generator)
        pred = Prediction(*(None if v is None else v.float() for v in denoiser(x_t, t, diffusion, labels=labels)))
        terms[:, i] = vlb_term(diffusion, pred, x0.float(), x_t.float(), t, clip=clip)
    prior = prior_bpd(diffusion, x0.float())
    return VLBResult(prior + terms.sum(1), prior, terms)
