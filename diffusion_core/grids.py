r"""Time grids: which times of a :class:`~diffusion_core.paths.GaussianPath` a sampler visits.

A grid is a float64 tensor :math:`t_0 > t_1 > \dots > t_N = 0` of ``steps + 1`` times: the sampler starts at
:math:`t_0` and takes ``steps`` steps, the last one to the data (:math:`t = 0`, where :math:`\sigma = 0`), which
every first-order sampler takes exactly as the last :math:`\hat x_0`.

Spacings, by where they place :math:`t_0 .. t_{N-1}`:

* any path: ``"uniform"`` (evenly in :math:`t`, from ``t_max`` down to ``t_max / N``; on rectified flow these are
  diffusers' ``FlowMatchEulerDiscreteScheduler`` sigmas without a shift), ``"log-snr"`` (evenly in
  :math:`\lambda = \log(\alpha^2/\sigma^2)` from ``t_max`` to ``t_min``), ``"karras"`` (Karras et al. 2022, eq. 5,
  :math:`\rho = 7`, in EDM's :math:`\sigma/\alpha` from ``t_max`` to ``t_min``);
* a :class:`~diffusion_core.paths.DiscreteVP` (DDPM): its integer steps only. ``"linspace"``, ``"leading"``,
  ``"trailing"`` (Lin et al. 2024, table 2) and the noise-level spacings ``"log-snr"``, ``"karras"`` rounded to the
  nearest steps, exactly as :func:`~diffusion_core.schedule.spaced_timesteps` chooses them (step = index + 1).

``t_max`` defaults to the path's ``t_max``, or, with ``sigma_max``, to the time where :math:`\sigma/\alpha`
reaches it (EDM starts at 80: beyond that a few-step sampler spends its steps where the sample is pure noise).
``t_min`` (the noise-level spacings' last time before the data) defaults to the path's smallest trained noise
level: step 1 on a discrete path, EDM's :math:`\sigma_{\min} = 0.002` elsewhere (as :math:`\sigma/\alpha`).
"""
from __future__ import annotations

import weakref

import torch

from ._validation import check_bool, check_positive_int
from .errors import InvalidInput
from .paths import DiscreteVP, GaussianPath
from .schedule import KARRAS_RHO, TimestepSpacing, spaced_timesteps

__all__ = ["time_grid", "EDM_SIGMA_MIN", "EDM_SIGMA_MAX"]

EDM_SIGMA_MIN, EDM_SIGMA_MAX = 0.002, 80.0  # Karras et al. 2022, table 1
_CONTINUOUS_SPACINGS = ("uniform", "log-snr", "karras")
# A discrete path's grids, per path (weakly held) and (steps, spacing, t_max): the last few made.
_DISCRETE_GRIDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GRIDS_PER_PATH = 8


def _t_of_edm_sigma(path: GaussianPath, edm_sigma: float) -> float:
    return float(path.t_of_log_snr(torch.tensor(-2.0, dtype=torch.float64) * torch.log(torch.tensor(edm_sigma,
                                                                                                       dtype=torch.float64))))


def _discrete_grid(path: DiscreteVP, steps: int, spacing: str, t_max: float, shared: bool) -> torch.Tensor:
    top = int(round(t_max))
    if top != t_max or not 1 <= top <= path.T:
        raise InvalidInput(f"t_max must be an integer step in [1, {path.T}] on a discrete path, got {t_max}")
    if steps > top:
        raise InvalidInput(f"steps must be at most {top} (the steps from t_max down to 1), got {steps}")
    made = _DISCRETE_GRIDS.setdefault(path, {})
    key = (steps, str(spacing), top)
    if key not in made:  # choosing the steps is most of a one-step sampler call's own time: once per path
        idx = spaced_timesteps(top, steps, spacing, alphas_cumprod=path.alphas_cumprod[1:top + 1])
        if len(made) >= _GRIDS_PER_PATH:
            made.pop(next(iter(made)))
        made[key] = torch.cat([(idx + 1).flip(0).to(torch.float64), torch.zeros(1, dtype=torch.float64)])
    return made[key] if shared else made[key].clone()


def time_grid(path: GaussianPath, steps: int, spacing: str | None = None, *, t_max: float | None = None,
              t_min: float | None = None, sigma_max: float | None = None, shared: bool = False) -> torch.Tensor:
    """``steps + 1`` decreasing times from the start to 0 (see the module's docstring). ``spacing`` defaults to
    ``"linspace"`` on a discrete path and ``"uniform"`` elsewhere.

    A discrete path's grids are made once and kept (the last few per path); each call returns a copy, or with
    ``shared=True`` the kept tensor itself, which the caller reads and never writes (the DDPM entry points pass it
    straight to a sampler). Other paths' grids are made at each call."""
    steps, shared = check_positive_int("steps", steps), check_bool("shared", shared)
    if t_max is not None and sigma_max is not None:
        raise InvalidInput("pass t_max or sigma_max, not both (sigma_max chooses t_max)")
    if sigma_max is not None:
        if not sigma_max > 0:
            raise InvalidInput(f"sigma_max must be > 0, got {sigma_max}")
        t_max = min(path.t_max, _t_of_edm_sigma(path, sigma_max))
        if isinstance(path, DiscreteVP):
            t_max = float(max(1, int(t_max)))  # the last step whose sigma/alpha is at most sigma_max
    t_max = path.t_max if t_max is None else float(t_max)
    if isinstance(path, DiscreteVP):
        spacing = TimestepSpacing.LINSPACE if spacing is None else spacing
        if t_min is not None:
            raise InvalidInput("t_min is not an option on a discrete path: its grids end at step 1")
        return _discrete_grid(path, steps, spacing, t_max, shared)
    spacing = "uniform" if spacing is None else spacing
    if spacing not in _CONTINUOUS_SPACINGS:
        allowed = ", ".join(repr(s) for s in _CONTINUOUS_SPACINGS)
        raise InvalidInput(f"spacing must be one of {allowed} on a continuous path, got {spacing!r}")
    if not 0 < t_max <= path.t_max:
        raise InvalidInput(f"t_max must lie in (0, {path.t_max:g}] for {path!r}, got {t_max}")
    frac = torch.arange(steps, dtype=torch.float64) / steps
    if spacing == "uniform":
        start = t_max * (1 - frac)
    else:
        t_min = _t_of_edm_sigma(path, EDM_SIGMA_MIN) if t_min is None else float(t_min)
        if not 0 < t_min < t_max:
            raise InvalidInput(f"t_min must lie in (0, t_max={t_max:g}), got {t_min}")
        ends = torch.tensor([t_max, t_min], dtype=torch.float64)
        if not bool(torch.isfinite(path.log_snr(ends[:1])).all()):
            raise InvalidInput(f"spacing {spacing!r} is even in the noise level, which is infinite at t_max={t_max:g} "
                               f"on {path!r}: pass sigma_max (EDM starts at 80) or a smaller t_max")
        frac = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
        if spacing == "log-snr":
            lam = path.log_snr(ends)
            start = path.t_of_log_snr(lam[0] + frac * (lam[1] - lam[0]))
        else:  # Karras et al. eq. 5 in sigma/alpha
            hi, lo = path.edm_sigma(ends) ** (1 / KARRAS_RHO)
            start = path.t_of_log_snr(-2 * KARRAS_RHO * torch.log(hi + frac * (lo - hi)))
        start[0] = t_max  # exactly, not through the inverse
    return torch.cat([start, torch.zeros(1, dtype=torch.float64)])
