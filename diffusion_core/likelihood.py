r"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021, sec. 4.3 and appendix D.2; Chen et
al. 2018): the instantaneous change of variables.

Along a solution of :math:`dx/dt = v(x, t)` the log-density changes by minus the divergence,
:math:`\tfrac{d}{dt}\log p_t(x_t) = -\nabla\cdot v(x_t, t)`. So a data point :math:`x` at time ``t_min`` is carried
by the ODE to :math:`x_T` at ``t_max``, where the density is the prior's, and

.. math::
    \log p_{t_{\min}}(x) = \log p_{\mathrm{prior}}(x_T) + \int_{t_{\min}}^{t_{\max}} \nabla\cdot v(x_t, t)\,dt.

:math:`v` is the path's velocity with the denoiser's predictions, :math:`\dot\alpha_t\hat x_0 + \dot\sigma_t\hat\epsilon`
(``Prediction.as_target("velocity")``); the prior is :math:`\mathcal N(0, (\alpha_{\max}^2 + \sigma_{\max}^2) I)`,
exact at ``t_max`` on rectified flow (:math:`x_1 = \epsilon`) and a close approximation where
:math:`\alpha_{\max} \ll \sigma_{\max}`. The divergence is exact (one backward pass per dimension: for the 2-D
data sets) or Hutchinson's estimate :math:`\mathbb E[\epsilon^\top (\partial v/\partial x)\,\epsilon]` with
Rademacher probes (one backward pass per probe). The ODE is integrated with the classical fourth-order
Runge-Kutta method on a grid even in :math:`\log(\sigma/\alpha)` (or in :math:`\log t` where that is
infinite at the end: rectified flow).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from ._validation import check_positive_int
from .denoiser import BaseDenoiser
from .errors import InvalidInput, InvalidInputType
from .paths import DiscreteVP

__all__ = ["LogLikelihood", "ode_log_likelihood"]


class LogLikelihood(NamedTuple):
    """Per example: ``log_p`` (nats, of the density at ``t_min``), ``bits_per_dim``
    (:math:`-\\log_2 p / d` for ``x`` as given; add 7 for 8-bit data dequantized and scaled to [-1, 1] as Song et
    al. 2021 do, to compare with papers), and the two parts, ``prior`` (:math:`\\log p_{\\mathrm{prior}}(x_T)`) and
    ``delta`` (the integrated divergence)."""

    log_p: torch.Tensor
    bits_per_dim: torch.Tensor
    prior: torch.Tensor
    delta: torch.Tensor


def _velocity_and_divergence(denoiser, x, t, probes):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = denoiser(x, t.expand(len(x))).as_target("velocity")
        if probes is None:  # exact: the diagonal of the Jacobian, one dimension at a time
            flat = v.reshape(len(x), -1)
            div = sum(torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)[0].reshape(len(x), -1)[:, i]
                      for i in range(flat.shape[1]))
        else:
            div = sum((torch.autograd.grad(v, x, z, retain_graph=True)[0] * z).reshape(len(x), -1).sum(1)
                      for z in probes) / len(probes)
    return v.detach(), div.detach()


def _grid(path, t_min: float, t_max: float, steps: int) -> torch.Tensor:
    """``steps + 1`` increasing times from t_min to t_max: evenly spaced in log(sigma/alpha) where that is finite at
    t_max (the ODE changes at an even pace in it), else in log t (rectified flow near t = 1)."""
    ends = torch.tensor([t_min, t_max], dtype=torch.float64)
    lam = path.log_snr(ends)
    if not bool(torch.isfinite(lam).all()):
        return torch.logspace(math.log10(t_min), math.log10(t_max), steps + 1, dtype=torch.float64)
    ts = path.t_of_log_snr(torch.linspace(float(lam[0]), float(lam[1]), steps + 1, dtype=torch.float64))
    ts[0], ts[-1] = t_min, t_max
    return ts


def ode_log_likelihood(denoiser: BaseDenoiser, x: torch.Tensor, *, t_min: float = 1e-3, t_max: float | None = None,
                       steps: int = 100, hutchinson: int | None = None, generator: torch.Generator | None = None,
                       prior: Callable[[torch.Tensor], torch.Tensor] | None = None) -> LogLikelihood:
    """The log-density the ODE model gives each row of ``x`` at time ``t_min`` (see the module's docstring),
    integrating to ``t_max``: by default the path's, less 1e-4 of it where :math:`\\alpha` is 0 there
    (rectified flow at t = 1, where :math:`\\hat x_0` is undefined). ``hutchinson``: the number of Rademacher
    probes per example (None: the exact divergence), drawn once from ``generator`` and reused at every step, as
    in FFJORD (Grathwohl et al. 2019). ``prior``: the log-density at ``t_max``, per row of its argument (default:
    the normal density described in the module's docstring)."""
    if not isinstance(denoiser, BaseDenoiser) or denoiser.path is None:
        raise InvalidInputType("denoiser must be a Denoiser on a path: Denoiser(network, path, target)")
    path = denoiser.path
    if isinstance(path, DiscreteVP):
        raise InvalidInput("the ODE likelihood needs a path in continuous time (ContinuousVP, RectifiedFlow, "
                           "VarianceExploding); a DiscreteVP has only integer steps")
    steps = check_positive_int("steps", steps)
    if t_max is None:
        top = torch.tensor(path.t_max, dtype=torch.float64)
        t_max = path.t_max if float(path.alpha(top)) > 0 else path.t_max * (1 - 1e-4)
    if not 0 < t_min < t_max <= path.t_max:
        raise InvalidInput(f"t_min and t_max must satisfy 0 < t_min < t_max <= {path.t_max:g} for {path!r}, got "
                           f"{t_min} and {t_max}")
    probes = None
    if hutchinson is not None:
        n = check_positive_int("hutchinson", hutchinson)
        probes = [torch.randint(0, 2, x.shape, generator=generator, dtype=x.dtype).mul_(2).sub_(1) for _ in range(n)]
    ts = _grid(path, t_min, t_max, steps).to(x.dtype)
    state, delta = x.detach().clone(), torch.zeros(len(x), dtype=x.dtype)
    for t0, t1 in zip(ts[:-1], ts[1:]):
        h, mid = t1 - t0, (t0 + t1) / 2
        k1, d1 = _velocity_and_divergence(denoiser, state, t0, probes)
        k2, d2 = _velocity_and_divergence(denoiser, state + h / 2 * k1, mid, probes)
        k3, d3 = _velocity_and_divergence(denoiser, state + h / 2 * k2, mid, probes)
        k4, d4 = _velocity_and_divergence(denoiser, state + h * k3, t1, probes)
        state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        delta = delta + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
    dim = state[0].numel()
    if prior is None:
        end = torch.tensor(t_max, dtype=torch.float64)
        var = float(path.alpha(end) ** 2 + path.sigma(end) ** 2)
        log_prior = -0.5 * (state.reshape(len(x), -1) ** 2).sum(1) / var - 0.5 * dim * math.log(2 * math.pi * var)
    else:
        log_prior = torch.as_tensor(prior(state), dtype=delta.dtype).reshape(len(x))
    log_p = log_prior + delta
    return LogLikelihood(log_p, -log_p / (dim * math.log(2)), log_prior, delta)
