r"""Gaussian paths: :math:`x_t = \alpha_t x_0 + \sigma_t \epsilon`, :math:`\epsilon \sim \mathcal N(0, I)`, for
:math:`t` from 0 (the data: :math:`\alpha_0 = 1, \sigma_0 = 0`) to the path's noisiest time ``t_max``.

Every model family in this library is one of these, differing only in :math:`\alpha_t`, :math:`\sigma_t`, and the
time input its network gets (Kingma & Gao 2023, sec. 2; Karras et al. 2022, eq. 4 and table 1):

================================  =====================================  ===================================  ==========================
path                              :math:`\alpha_t`                       :math:`\sigma_t`                     network's time input
================================  =====================================  ===================================  ==========================
:class:`DiscreteVP` (DDPM)        :math:`\sqrt{\bar\alpha_t}`, t = 0..T  :math:`\sqrt{1-\bar\alpha_t}`        the schedule's timestep
:class:`ContinuousVP` cosine      :math:`\sqrt{f(t)/f(0)}`, t in [0, 1]  :math:`\sqrt{1-\alpha_t^2}`          ``1000 t``
:class:`ContinuousVP` linear      :math:`e^{-\frac12\int_0^t\beta}`      :math:`\sqrt{1-\alpha_t^2}`          ``1000 t``
:class:`VarianceExploding` (EDM)  1                                      :math:`t` (Karras's :math:`\sigma`)  :math:`\tfrac14\ln\sigma`
:class:`RectifiedFlow`            :math:`1 - t`                          :math:`t`                            ``1000 t``
================================  =====================================  ===================================  ==========================

Notation (code → symbol). ``alpha(t)`` is :math:`\alpha_t`, the scale of the data; on a DDPM schedule it is
:math:`\sqrt{\bar\alpha_t}`, not DDPM's :math:`\alpha_t = 1-\beta_t` (``NoiseSchedule.alphas``). ``sigma(t)`` is
:math:`\sigma_t`, the scale of the noise. ``log_snr(t)`` is :math:`\lambda_t = \log(\alpha_t^2/\sigma_t^2)`, the
full log signal-to-noise ratio (Kingma et al. 2021; DPM-Solver's :math:`\lambda` is half of it), decreasing in
:math:`t`. ``edm_sigma(t)`` is :math:`\sigma_t/\alpha_t = e^{-\lambda_t/2}`, the noise level of the scaled state
:math:`x_t/\alpha_t = x_0 + (\sigma_t/\alpha_t)\epsilon` in which every path is the same (Karras et al. eq. 4).

Times are float64 tensors. A :class:`DiscreteVP`'s time is the paper's step :math:`t \in \{0, 1, \dots, T\}`
(index ``t - 1`` of the schedule's tables; :math:`t = 0` is the data), and it accepts only those integers.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from .errors import InvalidInput, InvalidInputType
from .schedule import NoiseSchedule

__all__ = ["GaussianPath", "DiscreteVP", "ContinuousVP", "VarianceExploding", "RectifiedFlow"]

_F64 = torch.float64


def _times(t) -> torch.Tensor:
    t = torch.as_tensor(t)
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise InvalidInputType(f"t must be a real tensor of times, got {t.dtype}")
    return t.to(_F64)


class GaussianPath(ABC):
    """:math:`x_t = \\alpha_t x_0 + \\sigma_t\\epsilon`; see the module's docstring. Subclasses give ``alpha``,
    ``sigma``, the inverse of the log-SNR, the network's time input and ``t_max``."""

    t_max: float  # the noisiest time, where sampling starts by default

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """:math:`\\alpha_t`, float64."""

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """:math:`\\sigma_t`, float64."""

    @abstractmethod
    def t_of_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """The time whose log-SNR is ``lam`` (the inverse of :meth:`log_snr`), float64."""

    @abstractmethod
    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        """The time input the network is trained with at ``t``."""

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """:math:`\\lambda_t = 2\\log(\\alpha_t/\\sigma_t)` (+inf at the data, -inf where :math:`\\alpha_t = 0`)."""
        t = _times(t)
        return 2 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def edm_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """:math:`\\sigma_t/\\alpha_t`, the noise level of :math:`x_t/\\alpha_t` (EDM's :math:`\\sigma`)."""
        t = _times(t)
        return self.sigma(t) / self.alpha(t)

    def sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """:math:`x_t = \\alpha_t x_0 + \\sigma_t\\epsilon` for a batch: ``t`` of shape ``(B,)``."""
        shape = (-1, *([1] * (x0.ndim - 1)))
        t = _times(t).to(x0.device)
        return (self.alpha(t).reshape(shape).to(x0.dtype) * x0
                + self.sigma(t).reshape(shape).to(x0.dtype) * noise)

    def derivatives(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`(d\\alpha_t/dt, d\\sigma_t/dt)`, for the velocity :math:`dx_t/dt`. By default a central
        difference; the continuous paths override it with the exact derivative."""
        t = _times(t)
        h = 1e-6 * torch.clamp(t.abs(), min=1.0)
        return ((self.alpha(t + h) - self.alpha(t - h)) / (2 * h), (self.sigma(t + h) - self.sigma(t - h)) / (2 * h))


class DiscreteVP(GaussianPath):
    """A DDPM schedule as a path: :math:`\\alpha_t = \\sqrt{\\bar\\alpha_t}`, :math:`\\sigma_t = \\sqrt{1-\\bar\\alpha_t}`
    at the integer steps :math:`t = 0..T` (:math:`\\bar\\alpha_0 = 1`): the values the schedule's own tables hold,
    in its dtype (build the schedule with ``dtype=torch.float64`` for float64 values). A respaced schedule keeps
    its steps' original times in ``schedule.timesteps``, which is what the network gets."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise InvalidInputType(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        # The schedule's own tables, promoted: a float32 schedule gives the float32 values every DDPM sampler has
        # always used, a float64 one the float64 values.
        one = torch.ones(1, dtype=_F64)
        ac = schedule.alphas_cumprod.detach().cpu().to(_F64)
        self.alphas_cumprod = torch.cat([one, ac])  # at step t; 1 at t = 0
        self._alpha = torch.cat([one, schedule.sqrt_alphas_cumprod.detach().cpu().to(_F64)])
        self._sigma = torch.cat([0 * one, schedule.sqrt_one_minus_alphas_cumprod.detach().cpu().to(_F64)])
        # log(sigma/alpha) at steps 1..T, increasing: what noise-level spacings interpolate in
        self._log_edm_sigma = torch.log(self._sigma[1:]) - torch.log(self._alpha[1:])
        self.T = schedule.num_timesteps
        self.t_max = float(self.T)
        self._tables: dict[str, dict[str, torch.Tensor]] = {}
        for device in {torch.device("cpu"), schedule.device}:  # before any compiled code reads them
            self._on(device)

    def _index(self, t: torch.Tensor) -> torch.Tensor:
        t = _times(t)
        if torch.compiler.is_compiling() or t.device.type != "cpu":
            return t.long()
        if bool((t != t.round()).any()) or bool(((t < 0) | (t > self.T)).any()):
            raise InvalidInput(f"t must be an integer step in [0, {self.T}] on a discrete path, got "
                               f"values in [{t.min().item():g}, {t.max().item():g}]")
        return t.long()

    def _on(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The tables on ``device``, copied there once (a sampling step then gathers without a host transfer)."""
        key = str(device)
        if key not in self._tables:
            self._tables[key] = {"alpha": self._alpha.to(device), "sigma": self._sigma.to(device),
                                 "network_time": self.schedule.timesteps.to(device)}
        return self._tables[key]

    def _table(self, name: str, t: torch.Tensor, offset: int = 0) -> torch.Tensor:
        i = self._index(t)
        values = self._on(i.device)[name]
        return values.index_select(0, (i + offset).clamp(min=0).reshape(-1)).reshape(i.shape)

    def alpha(self, t):
        return self._table("alpha", t)

    def sigma(self, t):
        return self._table("sigma", t)

    def t_of_log_snr(self, lam):
        """The fractional step whose log-SNR is ``lam``: linear in :math:`\\log(\\sigma/\\alpha)` between the two
        steps around it (clamped to ``[1, T]``), as the schedule's noise-level spacings place their steps."""
        log_sigma, target = self._log_edm_sigma, -0.5 * _times(lam)
        if self.T == 1:
            return torch.ones_like(target)
        target = target.clamp(log_sigma[0], log_sigma[-1])
        j = torch.searchsorted(log_sigma, target).clamp(1, self.T - 1)
        lo, hi = log_sigma[j - 1], log_sigma[j]
        return j + (target - lo) / (hi - lo)

    def network_time(self, t):
        return self._table("network_time", t, offset=-1)  # step t is the schedule's index t - 1

    def __repr__(self) -> str:
        return f"DiscreteVP({self.schedule!r})"


class ContinuousVP(GaussianPath):
    """Variance-preserving on :math:`t \\in [0, 1]`: :math:`\\sigma_t^2 = 1 - \\alpha_t^2`. Build it with
    :meth:`cosine` or :meth:`linear`. The network's time input is ``1000 t`` (the scale of a 1000-step DDPM's)."""

    def __init__(self, kind: str, t_max: float, **params: float) -> None:
        self.kind, self.t_max, self.params = kind, float(t_max), params

    @classmethod
    def cosine(cls, s: float = 0.008, t_max: float = 0.999) -> ContinuousVP:
        """Nichol & Dhariwal 2021, eq. 17 in continuous time: :math:`\\alpha_t^2 = f(t)/f(0)`,
        :math:`f(t) = \\cos^2\\big(\\frac{t + s}{1 + s}\\frac{\\pi}{2}\\big)`; at :math:`t = i/T` it is the discrete
        cosine schedule's :math:`\\bar\\alpha` before that schedule clips its betas. :math:`\\alpha_1 = 0`, so
        sampling starts at ``t_max`` < 1."""
        if not s > 0:
            raise InvalidInput(f"s must be > 0, got {s}")
        if not 0 < t_max < 1:
            raise InvalidInput(f"t_max must lie in (0, 1) for the cosine path (alpha is 0 at t = 1), got {t_max}")
        return cls("cosine", t_max, s=float(s))

    @classmethod
    def linear(cls, beta_min: float = 0.1, beta_max: float = 20.0, t_max: float = 1.0) -> ContinuousVP:
        """Song et al. 2021's VP SDE, :math:`\\beta(t) = \\beta_{\\min} + t(\\beta_{\\max} - \\beta_{\\min})`:
        :math:`\\log\\alpha_t^2 = -\\beta_{\\min} t - \\tfrac12(\\beta_{\\max}-\\beta_{\\min})t^2`; the continuous limit
        of DDPM's linear betas (:math:`\\beta_i = \\beta(i/T)/T`)."""
        if not 0 < beta_min < beta_max:
            raise InvalidInput(f"need 0 < beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        if not 0 < t_max <= 1:
            raise InvalidInput(f"t_max must lie in (0, 1], got {t_max}")
        return cls("linear", t_max, beta_min=float(beta_min), beta_max=float(beta_max))

    def _alpha2_sigma2(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`(\\alpha_t^2, \\sigma_t^2)`, each without cancellation near :math:`t = 0`."""
        t = _times(t)
        if self.kind == "cosine":
            s = self.params["s"]
            u, u0 = (t + s) / (1 + s) * math.pi / 2, s / (1 + s) * math.pi / 2
            c0 = math.cos(u0) ** 2  # cos^2 u0 - cos^2 u = sin(u - u0) sin(u + u0)
            return torch.cos(u) ** 2 / c0, torch.sin(u - u0) * torch.sin(u + u0) / c0
        b0, b1 = self.params["beta_min"], self.params["beta_max"]
        log_alpha2 = -b0 * t - 0.5 * (b1 - b0) * t**2
        return torch.exp(log_alpha2), -torch.expm1(log_alpha2)

    def alpha(self, t):
        return self._alpha2_sigma2(t)[0].sqrt()

    def sigma(self, t):
        return self._alpha2_sigma2(t)[1].sqrt()

    def log_snr(self, t):
        alpha2, sigma2 = self._alpha2_sigma2(t)
        return torch.log(alpha2) - torch.log(sigma2)

    def t_of_log_snr(self, lam):
        log_alpha2 = -torch.nn.functional.softplus(-_times(lam))  # alpha^2 = sigmoid(lambda)
        if self.kind == "cosine":
            s = self.params["s"]
            c0 = math.cos(s / (1 + s) * math.pi / 2)
            return (1 + s) * 2 / math.pi * torch.arccos(torch.exp(0.5 * log_alpha2) * c0) - s
        b0, b1 = self.params["beta_min"], self.params["beta_max"]
        return (-b0 + torch.sqrt(b0**2 - 2 * (b1 - b0) * log_alpha2)) / (b1 - b0)

    def derivatives(self, t):
        t = _times(t)
        if self.kind == "cosine":
            s = self.params["s"]
            dlog_alpha2 = -torch.tan((t + s) / (1 + s) * math.pi / 2) * math.pi / (1 + s)
        else:
            b0, b1 = self.params["beta_min"], self.params["beta_max"]
            dlog_alpha2 = -(b0 + (b1 - b0) * t)
        alpha2, sigma2 = self._alpha2_sigma2(t)
        d_alpha = 0.5 * alpha2.sqrt() * dlog_alpha2
        return d_alpha, -alpha2.sqrt() * d_alpha / sigma2.sqrt()  # from alpha^2 + sigma^2 = 1

    def network_time(self, t):
        return 1000 * _times(t)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"ContinuousVP.{self.kind}({args}, t_max={self.t_max:g})"


class VarianceExploding(GaussianPath):
    """:math:`\\alpha_t = 1`, :math:`\\sigma_t = t`: the time is Karras et al.'s noise level :math:`\\sigma`
    (EDM; Song et al.'s VE SDE up to its time change). The network's time input is EDM's
    :math:`c_\\mathrm{noise} = \\frac14\\ln\\sigma` (Karras et al. table 1). Sampling starts at ``t_max`` =
    :math:`\\sigma_{\\max}` = 80 by default (EDM's)."""

    def __init__(self, sigma_max: float = 80.0) -> None:
        if not sigma_max > 0:
            raise InvalidInput(f"sigma_max must be > 0, got {sigma_max}")
        self.t_max = float(sigma_max)

    def alpha(self, t):
        return torch.ones_like(_times(t))

    def sigma(self, t):
        return _times(t)

    def t_of_log_snr(self, lam):
        return torch.exp(-0.5 * _times(lam))

    def derivatives(self, t):
        t = _times(t)
        return torch.zeros_like(t), torch.ones_like(t)

    def network_time(self, t):
        return 0.25 * torch.log(_times(t))

    def __repr__(self) -> str:
        return f"VarianceExploding(sigma_max={self.t_max:g})"


class RectifiedFlow(GaussianPath):
    """:math:`\\alpha_t = 1 - t`, :math:`\\sigma_t = t` on :math:`[0, 1]` (Liu et al. 2022; Lipman et al. 2022's
    conditional optimal-transport path; Stable Diffusion 3). :math:`t = 1` is pure noise. The network's time input
    is ``1000 t``, as in Stable Diffusion 3 and diffusers' ``FlowMatchEulerDiscreteScheduler`` (whose ``sigmas``
    are these :math:`t`). Meta's ``flow_matching`` runs time the other way: its :math:`t` is :math:`1 - t` here,
    with the data at :math:`t = 1`."""

    t_max = 1.0

    def alpha(self, t):
        return 1 - _times(t)

    def sigma(self, t):
        return _times(t)

    def t_of_log_snr(self, lam):
        return torch.sigmoid(-0.5 * _times(lam))  # sigma/alpha = t/(1-t) = exp(-lambda/2)

    def derivatives(self, t):
        t = _times(t)
        return -torch.ones_like(t), torch.ones_like(t)

    def network_time(self, t):
        return 1000 * _times(t)

    def __repr__(self) -> str:
        return "RectifiedFlow()"
