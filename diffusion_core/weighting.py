r"""The weighted denoising loss's two choices, each a plain function of the log-SNR :math:`\lambda`: the weighting
:math:`w(\lambda)` and the density of training times.

Kingma & Gao (2023) show that every diffusion objective in use is

.. math:: \mathcal L = \mathbb E_{t \sim p(t),\,\epsilon}\big[\, w(\lambda_t)\, \lVert \epsilon - \hat\epsilon_\theta(x_t, t)\rVert^2 \big]

up to a constant factor, for a path :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon` with log-SNR
:math:`\lambda_t = \log(\alpha_t^2/\sigma_t^2)`: the papers differ in :math:`w` and :math:`p`, and in what the network
outputs, which changes nothing but the scale of the error. A network that outputs another target :math:`y` has
:math:`\lVert y - \hat y\rVert^2 = c_y \lVert\epsilon - \hat\epsilon\rVert^2` at fixed :math:`x_t`
(:func:`target_error_scale`), so "the MSE on :math:`y`" is the weighting :math:`w = c_y`.

Weightings (:math:`\mathrm{SNR} = e^\lambda`), as :math:`w(\lambda)` on the :math:`\epsilon` error:

===============================  =====================================================  ==================================
name                             :math:`w(\lambda)`                                     source
===============================  =====================================================  ==================================
:func:`uniform` (:math:`L_\mathrm{simple}`)  :math:`1`                                  Ho et al. 2020, eq. 14
MSE on :math:`x_0`               :math:`e^{-\lambda}`                                   :func:`target_error_scale`
MSE on :math:`v` (VP)            :math:`1 + e^{-\lambda}`                               Salimans & Ho 2022
:func:`min_snr`                  :math:`\min(1, \gamma e^{-\lambda})`, for every target Hang et al. 2023
:func:`edm`                      :math:`1 + e^{-\lambda}/\sigma_d^2`                    Karras et al. 2022, eq. 8 and table 1
:func:`sigmoid`                  :math:`\mathrm{sigmoid}(b - \lambda)`                  Kingma & Gao 2023, sec. 5
===============================  =====================================================  ==================================

Min-SNR-:math:`\gamma` is :math:`\min(\mathrm{SNR}, \gamma)` on the :math:`x_0` error (Hang et al. 2023, eq. 9): on
the :math:`\epsilon` error that is :math:`\min(\mathrm{SNR},\gamma)/\mathrm{SNR}` and on the :math:`v` error
:math:`\min(\mathrm{SNR},\gamma)/(\mathrm{SNR}+1)`, one function of :math:`\lambda` whatever the target.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import InvalidInput
from .targets import Coefficients, Target, edm_scaling

__all__ = ["Weighting", "uniform", "min_snr", "edm", "sigmoid", "target_error_scale"]

Weighting = Callable[[torch.Tensor], torch.Tensor]  # w(lambda), on the eps error


def uniform(lam: torch.Tensor) -> torch.Tensor:
    """:math:`w = 1`: Ho et al.'s :math:`L_\\mathrm{simple}`, the plain :math:`\\epsilon` MSE."""
    return torch.ones_like(lam)


def min_snr(gamma: float) -> Weighting:
    """Min-SNR-:math:`\\gamma` (Hang et al. 2023): :math:`w(\\lambda) = \\min(1, \\gamma e^{-\\lambda})`."""
    if not gamma > 0:
        raise InvalidInput(f"min_snr_gamma must be > 0, got {gamma}")

    def w(lam: torch.Tensor) -> torch.Tensor:
        return torch.clamp(gamma * torch.exp(-lam), max=1.0)

    return w


def edm(sigma_data: float = 0.5) -> Weighting:
    """EDM's :math:`\\lambda(\\sigma) = (\\sigma^2 + \\sigma_d^2)/(\\sigma\\sigma_d)^2` on the :math:`D` (that is
    :math:`x_0`) error, which is :math:`1 + \\sigma^2/\\sigma_d^2 = 1 + e^{-\\lambda}/\\sigma_d^2` on the :math:`\\epsilon`
    error (:math:`\\sigma = e^{-\\lambda/2}`): unit weight on the preconditioned network's own output error."""
    if not sigma_data > 0:
        raise InvalidInput(f"sigma_data must be > 0, got {sigma_data}")

    def w(lam: torch.Tensor) -> torch.Tensor:
        return 1 + torch.exp(-lam) / sigma_data**2

    return w


def sigmoid(bias: float = 0.0) -> Weighting:
    """Kingma & Gao's sigmoid weighting :math:`w(\\lambda) = \\mathrm{sigmoid}(b - \\lambda)` (they found
    :math:`b` between -3 and 2 good; 0 here)."""
    if not math.isfinite(bias):
        raise InvalidInput(f"bias must be a finite float, got {bias}")

    def w(lam: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(bias - lam)

    return w


def target_error_scale(target: Target, c: Coefficients, sigma_data: float | None = None) -> torch.Tensor:
    """:math:`c_y` with :math:`\\lVert y - \\hat y\\rVert^2 = c_y\\lVert\\epsilon - \\hat\\epsilon\\rVert^2` at fixed
    :math:`x_t` (then :math:`\\hat x_0 - x_0 = -(\\sigma/\\alpha)(\\hat\\epsilon - \\epsilon)`): 1 for
    :math:`\\epsilon`, :math:`\\sigma^2/\\alpha^2` for :math:`x_0`, :math:`((\\alpha^2+\\sigma^2)/\\alpha)^2` for
    :math:`v`, :math:`((\\alpha\\dot\\sigma - \\sigma\\dot\\alpha)/\\alpha)^2` for the velocity, and
    :math:`(\\sigma/(\\alpha c_\\mathrm{out}))^2` for EDM's :math:`F`."""
    a, s = c.alpha, c.sigma
    if target is Target.EPS:
        return torch.ones_like(a)
    if target is Target.X0:
        return (s / a) ** 2
    if target is Target.V:
        return ((a * a + s * s) / a) ** 2
    if target is Target.VELOCITY:
        return ((a * c.d_sigma - s * c.d_alpha) / a) ** 2
    return (s / (a * edm_scaling(s / a, sigma_data).c_out)) ** 2
