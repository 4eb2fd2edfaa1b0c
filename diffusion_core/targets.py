r"""What a network predicts on a Gaussian path :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon`, and the one set of
formulas that turns any of it into every other.

=================  ==========================================================  ====================================
target             the network's output :math:`y` regresses                    back to :math:`(\hat x_0, \hat\epsilon)`
=================  ==========================================================  ====================================
``eps``            :math:`\epsilon` (Ho et al. 2020)                           :math:`\hat x_0 = (x_t - \sigma y)/\alpha`
``x0``             :math:`x_0`                                                 :math:`\hat\epsilon = (x_t - \alpha y)/\sigma`
``v``              :math:`v = \alpha\epsilon - \sigma x_0` (Salimans & Ho      :math:`\hat x_0 = (\alpha x_t - \sigma y)/(\alpha^2+\sigma^2)`,
                   2022, sec. 4)                                               :math:`\hat\epsilon = (\sigma x_t + \alpha y)/(\alpha^2+\sigma^2)`
``velocity``       :math:`u = dx_t/dt = \dot\alpha x_0 + \dot\sigma\epsilon`    :math:`\hat x_0 = (\dot\sigma x_t - \sigma y)/\delta`,
                   (flow matching; :math:`\epsilon - x_0` on                    :math:`\hat\epsilon = (\alpha y - \dot\alpha x_t)/\delta`,
                   :class:`~diffusion_core.paths.RectifiedFlow`)               :math:`\delta = \alpha\dot\sigma - \sigma\dot\alpha`
``edm``            :math:`F` with :math:`D = c_\mathrm{skip}\tilde x +         :math:`\hat x_0 = D`, :math:`\hat\epsilon = (\tilde x - D)/\tilde\sigma`
                   c_\mathrm{out}F(c_\mathrm{in}\tilde x)` (Karras et al.
                   2022, table 1), in :math:`\tilde x = x_t/\alpha`,
                   :math:`\tilde\sigma = \sigma/\alpha`
=================  ==========================================================  ====================================

Each row is the unique solution of the two linear equations "definition of :math:`x_t`" and "definition of the
target". On a variance-preserving path :math:`\alpha^2 + \sigma^2 = 1`, so ``v``'s denominators are 1.

**Sign conventions of the velocity.** Ours, :math:`u = \epsilon - x_0` on the rectified-flow path with time running
from data (:math:`t = 0`) to noise (:math:`t = 1`), is diffusers' (``FlowMatchEulerDiscreteScheduler``, Stable
Diffusion 3: the model predicts ``noise - sample`` and the step is ``x + (sigma_next - sigma) * v``). Meta's
``flow_matching`` runs time from noise (0) to data (1) and predicts :math:`x_0 - \epsilon`, the negative of ours.
"""
from __future__ import annotations

from enum import Enum
from typing import NamedTuple

import torch

__all__ = ["Target", "Coefficients", "EdmScaling", "Prediction", "edm_scaling", "to_x0_eps", "target_of"]


class Target(str, Enum):
    """What the network's output regresses (see the module's table)."""

    EPS = "eps"
    X0 = "x0"
    V = "v"
    VELOCITY = "velocity"
    EDM = "edm"


class Coefficients(NamedTuple):
    """:math:`\\alpha_t, \\sigma_t` and their time derivatives, each broadcastable against the batch."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor | None = None
    d_sigma: torch.Tensor | None = None


class EdmScaling(NamedTuple):
    """Karras et al. 2022, table 1 ("ours"), at :math:`\\tilde\\sigma = \\sigma/\\alpha`: the network sees
    :math:`c_\\mathrm{in}\\tilde x` and :math:`c_\\mathrm{noise}`; :math:`D = c_\\mathrm{skip}\\tilde x + c_\\mathrm{out}F`."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def edm_scaling(edm_sigma: torch.Tensor, sigma_data: float) -> EdmScaling:
    """:math:`c_\\mathrm{skip} = \\sigma_d^2/(\\tilde\\sigma^2+\\sigma_d^2)`,
    :math:`c_\\mathrm{out} = \\tilde\\sigma\\sigma_d/\\sqrt{\\tilde\\sigma^2+\\sigma_d^2}`,
    :math:`c_\\mathrm{in} = 1/\\sqrt{\\tilde\\sigma^2+\\sigma_d^2}`, :math:`c_\\mathrm{noise} = \\tfrac14\\ln\\tilde\\sigma`."""
    total = edm_sigma**2 + sigma_data**2
    return EdmScaling(sigma_data**2 / total, edm_sigma * sigma_data / total.sqrt(), total.rsqrt(),
                      0.25 * torch.log(edm_sigma))


def to_x0_eps(target: Target, y: torch.Tensor, x_t: torch.Tensor, c: Coefficients,
              sigma_data: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The network output ``y`` for ``target`` at ``x_t``, read as :math:`(\\hat x_0, \\hat\\epsilon)`."""
    a, s = c.alpha, c.sigma
    if target is Target.EPS:
        return (x_t - s * y) / a, y
    if target is Target.X0:
        return y, (x_t - a * y) / s
    if target is Target.V:
        norm = a * a + s * s
        return (a * x_t - s * y) / norm, (s * x_t + a * y) / norm
    if target is Target.VELOCITY:
        det = a * c.d_sigma - s * c.d_alpha
        return (c.d_sigma * x_t - s * y) / det, (a * y - c.d_alpha * x_t) / det
    scaled, edm_sigma = x_t / a, s / a
    k = edm_scaling(edm_sigma, sigma_data)
    x0 = k.c_skip * scaled + k.c_out * y
    return x0, (scaled - x0) / edm_sigma


def target_of(target: Target, x0: torch.Tensor, eps: torch.Tensor, c: Coefficients,
              sigma_data: float | None = None) -> torch.Tensor:
    """What the network should output for ``target`` when the truth is ``(x0, eps)`` (the regression target)."""
    a, s = c.alpha, c.sigma
    if target is Target.EPS:
        return eps
    if target is Target.X0:
        return x0
    if target is Target.V:
        return a * eps - s * x0
    if target is Target.VELOCITY:
        return c.d_alpha * x0 + c.d_sigma * eps
    k = edm_scaling(s / a, sigma_data)
    return (x0 - k.c_skip * (x0 + (s / a) * eps)) / k.c_out


class Prediction(NamedTuple):
    """What a denoiser returns at :math:`(x_t, t)`: :math:`\\hat x_0` and :math:`\\hat\\epsilon`, never clipped, with
    :math:`x_t = \\alpha_t\\hat x_0 + \\sigma_t\\hat\\epsilon`, plus the network's variance channels when a DDPM
    variance is learned (else ``None``). Every other target follows from the two (:meth:`as_target`,
    :meth:`score`)."""

    x0: torch.Tensor
    eps: torch.Tensor
    coefficients: Coefficients
    var_output: torch.Tensor | None = None

    def as_target(self, target: Target | str, sigma_data: float | None = None) -> torch.Tensor:
        """The prediction expressed as ``target`` (e.g. ``"velocity"`` for a flow-matching sampler)."""
        return target_of(Target(target), self.x0, self.eps, self.coefficients, sigma_data)

    def score(self) -> torch.Tensor:
        """:math:`\\nabla_{x_t}\\log p_t(x_t) \\approx -\\hat\\epsilon/\\sigma_t` (Tweedie; Vincent 2011)."""
        return -self.eps / self.coefficients.sigma
