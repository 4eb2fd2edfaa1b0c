r"""What the network predicts, and exact conversions between the three choices.

With :math:`a_t = \sqrt{\bar\alpha_t}` and :math:`s_t = \sqrt{1-\bar\alpha_t}` (so :math:`a_t^2 + s_t^2 = 1`),
:math:`x_t = a_t x_0 + s_t \epsilon` and the velocity is :math:`v = a_t \epsilon - s_t x_0` (Salimans & Ho 2022, sec. 4).
Each conversion below is the unique solution of these two linear equations.
"""
from __future__ import annotations

from enum import Enum

import torch

from .forward import extract
from .schedule import NoiseSchedule

__all__ = [
    "Parameterization",
    "eps_from_v",
    "eps_from_x0",
    "v_from_eps_x0",
    "x0_from_eps",
    "x0_from_v",
    "to_eps_x0",
]


class Parameterization(str, Enum):
    r"""The network's target: the noise :math:`\epsilon` (Ho et al.), the clean data :math:`x_0`, or :math:`v`."""

    EPS = "eps"
    X0 = "x0"
    V = "v"


def _coefs(schedule: NoiseSchedule, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = extract(schedule.sqrt_alphas_cumprod, t, x.ndim).to(x.dtype)
    s = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x.ndim).to(x.dtype)
    return a, s


def x0_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r""":math:`x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon) / \sqrt{\bar\alpha_t}` (Ho et al. eq. 4 solved for :math:`x_0`)."""
    a, s = _coefs(schedule, t, x_t)
    return (x_t - s * eps) / a


def eps_from_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    r""":math:`\epsilon = (x_t - \sqrt{\bar\alpha_t}\,x_0) / \sqrt{1-\bar\alpha_t}`."""
    a, s = _coefs(schedule, t, x_t)
    return (x_t - a * x0) / s


def v_from_eps_x0(schedule: NoiseSchedule, t: torch.Tensor, eps: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    r""":math:`v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0` (Salimans & Ho 2022)."""
    a, s = _coefs(schedule, t, eps)
    return a * eps - s * x0


def x0_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r""":math:`x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,v`."""
    a, s = _coefs(schedule, t, x_t)
    return a * x_t - s * v


def eps_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r""":math:`\epsilon = \sqrt{1-\bar\alpha_t}\,x_t + \sqrt{\bar\alpha_t}\,v`."""
    a, s = _coefs(schedule, t, x_t)
    return s * x_t + a * v


def to_eps_x0(
    parameterization: Parameterization, schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, output: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's ``output`` read as ``parameterization``, returned as the pair (eps, x0)."""
    if parameterization is Parameterization.EPS:
        return output, x0_from_eps(schedule, x_t, t, output)
    if parameterization is Parameterization.X0:
        return eps_from_x0(schedule, x_t, t, output), output
    return eps_from_v(schedule, x_t, t, output), x0_from_v(schedule, x_t, t, output)
