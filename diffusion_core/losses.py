r"""Training losses: one weighted denoising loss for any path and target, and the DDPM entry point with the
hybrid bound.

:func:`denoising_loss` is Kingma & Gao (2023)'s objective per example: the network's error in its own target's
space, :math:`\lVert y - \hat y\rVert^2`, times the weighting :math:`w(\lambda_t)` converted to that space
(:mod:`diffusion_core.weighting`); with no weighting, the target's plain MSE (which is itself a weighting:
:math:`w = c_y`). The times :math:`t` come from the caller (:mod:`diffusion_core.time_sampling` draws them).

:func:`training_losses` is the DDPM entry point (a :class:`~diffusion_core.diffusion.Diffusion`, schedule indices):
:math:`L_\mathrm{simple}` (Ho et al. eq. 14), min-SNR-:math:`\gamma`, and improved DDPM's hybrid loss with the
bound of :mod:`diffusion_core.vlb`. Training never clips :math:`\hat x_0`.
"""
from __future__ import annotations

from enum import Enum
from typing import Callable, NamedTuple, Union

import torch
import torch.nn.functional as F

from ._validation import check_choice, check_same_shape, check_timesteps
from .denoiser import BaseDenoiser, Denoiser, as_denoiser
from .diffusion import Diffusion
from .errors import InvalidInput, InvalidInputType
from .reverse import Clip
from .targets import Coefficients, target_of
from .vlb import check_data, vlb_term
from .weighting import Weighting, min_snr, target_error_scale

__all__ = ["LossType", "LossTerms", "denoising_loss", "training_losses", "min_snr_weight"]

# a denoiser, or a plain network model(x_t, t) (read through a Denoiser)
Model = Union[BaseDenoiser, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


class LossType(str, Enum):
    """The distance between the network's output and its target."""

    MSE = "mse"
    L1 = "l1"
    HUBER = "huber"


class LossTerms(NamedTuple):
    """Per-example losses, each of shape ``(B,)``: ``loss = simple + vlb`` (``vlb`` is zero unless hybrid)."""

    loss: torch.Tensor
    simple: torch.Tensor
    vlb: torch.Tensor


def _distance(output: torch.Tensor, target: torch.Tensor, loss_type: LossType, huber_delta: float) -> torch.Tensor:
    if loss_type is LossType.MSE:
        d = (output - target) ** 2
    elif loss_type is LossType.L1:
        d = (output - target).abs()
    else:
        d = F.huber_loss(output, target, reduction="none", delta=huber_delta)
    return d.reshape(d.shape[0], -1).mean(1)


def _target_weight(denoiser: Denoiser, t: torch.Tensor, weighting: Weighting) -> torch.Tensor:
    """:math:`w(\\lambda_t)/c_y`: the weighting on the :math:`\\epsilon` error moved to the target's error, float64."""
    path, t = denoiser.path, t.to(torch.float64)
    derivatives = path.derivatives(t) if denoiser.target.value == "velocity" else (None, None)
    c = Coefficients(path.alpha(t), path.sigma(t), *derivatives)
    return weighting(path.log_snr(t)) / target_error_scale(denoiser.target, c, denoiser.sigma_data)


def _terms(denoiser: Denoiser, x0, t, noise, weighting, loss_type, huber_delta, labels):
    """The weighted loss, and the ``x_t``, output and variance channels behind it (the hybrid loss reuses them)."""
    loss_type = check_choice("loss_type", loss_type, LossType)
    check_same_shape("noise", noise, "x0", x0)
    c = denoiser.coefficients(t, x0)
    x_t = torch.addcmul(c.alpha * x0, c.sigma, noise)
    y, var_output = denoiser.output(x_t, t, c, labels=labels)
    target = target_of(denoiser.target, x0, noise, c, denoiser.sigma_data)
    loss = _distance(y.float(), target.float(), loss_type, huber_delta)
    if weighting is not None:
        loss = loss * _target_weight(denoiser, t, weighting).to(device=loss.device, dtype=loss.dtype)
    return loss, x_t, y, var_output


def denoising_loss(denoiser: Denoiser, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, *,
                   weighting: Weighting | None = None, loss_type: LossType | str = LossType.MSE,
                   huber_delta: float = 1.0, labels: torch.Tensor | None = None) -> torch.Tensor:
    r"""Per-example loss ``(B,)`` at path times ``t`` (``(B,)``): the distance between the network's output and its
    target at :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon` (``noise`` is :math:`\epsilon`), times
    :math:`w(\lambda_t)/c_y` when ``weighting`` :math:`w` is given (:mod:`diffusion_core.weighting`)."""
    if not isinstance(denoiser, Denoiser) or denoiser.path is None:
        raise InvalidInputType(f"denoiser must be a Denoiser with a path to train, got {denoiser!r} (a guided "
                               "denoiser is for sampling)")
    return _terms(denoiser, x0, t, noise, weighting, loss_type, huber_delta, labels)[0]


def min_snr_weight(diffusion: Diffusion, t: torch.Tensor, gamma: float) -> torch.Tensor:
    r"""Min-SNR-:math:`\gamma` weight (Hang et al. 2023) on the parameterization's own error at schedule indices
    ``t``: :math:`\min(\mathrm{SNR},\gamma)/\mathrm{SNR}` for :math:`\epsilon`, :math:`\min(\mathrm{SNR},\gamma)`
    for :math:`x_0`, :math:`\min(\mathrm{SNR},\gamma)/(\mathrm{SNR}+1)` for :math:`v`; all equal
    :math:`\min(\mathrm{SNR},\gamma)` times the :math:`x_0`-space error (:func:`~diffusion_core.weighting.min_snr`)."""
    check_timesteps(t, diffusion.num_timesteps)
    weight = _target_weight(as_denoiser(lambda x, s: x, diffusion), t + 1, min_snr(gamma))
    return weight.to(device=t.device, dtype=torch.float32)


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
    r"""Per-example training loss of a DDPM, at schedule indices ``t`` (drawn uniformly when omitted; ``noise``
    from :math:`\mathcal N(0, I)` when omitted).

    ``simple`` is :math:`L_\mathrm{simple} = \| y - f_\theta(x_t, t) \|^2` (Ho et al. eq. 14) with :math:`y` the
    parameterization's target, or its L1/Huber variant, optionally with the min-SNR-:math:`\gamma` weighting.
    With ``vlb_weight`` :math:`\lambda > 0` this is the hybrid loss of improved DDPM (Nichol & Dhariwal eq. 16):
    :math:`L_\mathrm{simple} + \lambda T\,L_{t}`, where :math:`T L_t` is the one-sample estimate of
    :math:`L_\mathrm{vlb}` and the mean is detached in :math:`L_t` so that it trains only the variance.
    ``model`` is a :class:`~diffusion_core.denoiser.Denoiser` or a plain network; ``labels`` goes to it.
    """
    denoiser = as_denoiser(model)
    if not isinstance(denoiser, Denoiser):
        raise InvalidInputType(f"model must be a network or a Denoiser to train, got a {type(denoiser).__name__} "
                               "(a guided denoiser is for sampling)")
    check_data(x0, diffusion)
    if vlb_weight < 0:
        raise InvalidInput(f"vlb_weight must be >= 0, got {vlb_weight}")
    if diffusion.learned_variance and vlb_weight == 0:
        raise InvalidInput("variance=learned_range needs vlb_weight > 0 (improved DDPM uses 0.001): only the VLB "
                           "trains the variance")
    denoiser = denoiser.bind(diffusion)
    B, T = x0.shape[0], diffusion.num_timesteps
    if t is None:
        t = torch.randint(0, T, (B,), device=x0.device, generator=generator)
    check_timesteps(t, T, B)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    check_same_shape("noise", noise, "x0", x0)
    weighting = None if min_snr_gamma is None else min_snr(min_snr_gamma)
    simple, x_t, y, var_output = _terms(denoiser, x0, t + 1, noise, weighting, loss_type, huber_delta, labels)
    if vlb_weight == 0:
        return LossTerms(simple, simple, torch.zeros_like(simple))
    # the mean detached: L_t trains only the variance (Nichol & Dhariwal sec. 3.1); x0_hat unclipped
    x_t32 = x_t.float()
    var32 = None if var_output is None else var_output.float()
    frozen = denoiser.read(y.detach().float(), x_t32, denoiser.coefficients(t + 1, x_t32), var32)
    vlb = vlb_weight * T * vlb_term(diffusion, frozen, x0.float(), x_t32, t, clip=Clip.NONE)
    return LossTerms(simple + vlb, simple, vlb)
