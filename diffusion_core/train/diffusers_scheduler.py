"""A vp run's :class:`~diffusion_core.diffusion.Diffusion` <-> diffusers' ``DDPMScheduler`` config
(``scheduler/scheduler_config.json``).

Both sides index timesteps the same way: timestep ``t`` in ``0 .. T-1`` has
:math:`\\bar\\alpha_t = \\prod_{s \\le t}(1 - \\beta_s)`, and it is what the network gets as its time input. Names:

===========================  ==========================================================
ours                         diffusers
===========================  ==========================================================
schedule linear              ``beta_schedule="linear"`` with ``beta_start``, ``beta_end``
schedule quadratic           ``"scaled_linear"`` (linear in :math:`\\sqrt\\beta`)
schedule cosine              ``"squaredcos_cap_v2"`` (Nichol & Dhariwal, betas capped at 0.999)
schedule sigmoid             ``"sigmoid"``
parameterization eps/v/x0    ``prediction_type`` epsilon / v_prediction / sample
variance                     ``variance_type`` fixed_large / fixed_small / learned_range
the data's clip              ``clip_sample`` (range 1)
===========================  ==========================================================

The sampling grid (``timestep_spacing``, ``steps_offset``) is an inference setting, not part of the model: export
writes ``linspace`` (our samplers' default); import reads the model and leaves the grid to ``sample --spacing``.
"""
from __future__ import annotations

from typing import Any

import torch

from ..diffusion import Diffusion
from ..errors import InvalidInput
from ..reverse import Clip, VarianceType
from ..schedule import NoiseSchedule, ScheduleKind, _default_range
from ..targets import Target
from .diffusers_unet_config import DIFFUSERS_VERSION

__all__ = ["scheduler_to_diffusers", "diffusion_from_scheduler"]

_SCHEDULES = {ScheduleKind.LINEAR: "linear", ScheduleKind.QUADRATIC: "scaled_linear",
              ScheduleKind.COSINE: "squaredcos_cap_v2", ScheduleKind.SIGMOID: "sigmoid"}
_PREDICTIONS = {Target.EPS: "epsilon", Target.V: "v_prediction", Target.X0: "sample"}
# diffusers' *_log variants are the same Gaussian, its variance handled in log space
_VARIANCES = {"fixed_small": VarianceType.FIXED_SMALL, "fixed_small_log": VarianceType.FIXED_SMALL,
              "fixed_large": VarianceType.FIXED_LARGE, "fixed_large_log": VarianceType.FIXED_LARGE,
              "learned_range": VarianceType.LEARNED_RANGE}
_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")


def scheduler_to_diffusers(kind: ScheduleKind, T: int, parameterization: Target, variance: VarianceType,
                           clip: Clip) -> dict[str, Any]:
    """The ``DDPMScheduler`` config of a vp run; ``InvalidInput`` naming what diffusers cannot express."""
    if parameterization not in _PREDICTIONS:
        raise InvalidInput(f"parameterization={parameterization.value!r} has no diffusers prediction_type "
                           f"(allowed: {', '.join(t.value for t in _PREDICTIONS)})")
    if clip is Clip.DYNAMIC:
        raise InvalidInput("clip='dynamic' is not written for diffusers (its thresholding caps s at "
                           "sample_max_value); allowed: static or none")
    beta_start, beta_end = _default_range(T)
    config = {
        "_class_name": "DDPMScheduler", "_diffusers_version": DIFFUSERS_VERSION,
        "num_train_timesteps": T, "beta_schedule": _SCHEDULES[kind], "beta_start": beta_start, "beta_end": beta_end,
        "trained_betas": None, "prediction_type": _PREDICTIONS[parameterization], "variance_type": variance.value,
        "clip_sample": clip is Clip.STATIC, "clip_sample_range": 1.0, "thresholding": False,
        "timestep_spacing": "linspace", "steps_offset": 0, "rescale_betas_zero_snr": False,
    }
    return config


def _schedule(d: dict[str, Any]) -> NoiseSchedule:
    T = d.get("num_train_timesteps", 1000)
    if not isinstance(T, int) or T < 1:
        raise InvalidInput(f"scheduler config field num_train_timesteps={T!r} must be an int >= 1")
    if d.get("trained_betas") is not None:
        betas = d["trained_betas"]
        if not isinstance(betas, list) or len(betas) != T:
            raise InvalidInput(f"scheduler config field trained_betas must be a list of num_train_timesteps={T} betas")
        return NoiseSchedule.from_betas(torch.tensor(betas, dtype=torch.float64))
    name = d.get("beta_schedule", "linear")
    start, end = d.get("beta_start", 0.0001), d.get("beta_end", 0.02)
    if name == "linear":
        return NoiseSchedule.linear(T, start, end)
    if name == "scaled_linear":
        return NoiseSchedule.quadratic(T, start, end)
    if name == "squaredcos_cap_v2":
        return NoiseSchedule.cosine(T)
    if name == "sigmoid":
        return NoiseSchedule.sigmoid(T, start, end)
    raise InvalidInput(f"scheduler config field beta_schedule={name!r} does not map (allowed: "
                       f"{', '.join(_SCHEDULES.values())}, or trained_betas)")


def _field(d: dict[str, Any], name: str, default: Any, table: dict) -> Any:
    value = d.get(name, default)
    if value not in table:
        raise InvalidInput(f"scheduler config field {name}={value!r} does not map (allowed: {', '.join(table)})")
    return table[value]


def diffusion_from_scheduler(d: dict[str, Any]) -> Diffusion:
    """The :class:`Diffusion` a ``DDPMScheduler`` (or ``DDIMScheduler``) config describes; ``InvalidInput``
    naming the field that does not map."""
    if d.get("_class_name", "DDPMScheduler") not in _SCHEDULERS:
        raise InvalidInput(f"scheduler config field _class_name={d.get('_class_name')!r} does not map (allowed: "
                           f"{', '.join(_SCHEDULERS)})")
    if d.get("thresholding", False):
        raise InvalidInput("scheduler config field thresholding=true does not map (allowed: false; clip_sample is "
                           "read)")
    clip = d.get("clip_sample", True)
    if clip and d.get("clip_sample_range", 1.0) != 1.0:
        raise InvalidInput(f"scheduler config field clip_sample_range={d['clip_sample_range']!r} does not map "
                           "(allowed: 1.0, the data range [-1, 1])")
    schedule = _schedule(d)
    if d.get("rescale_betas_zero_snr", False):
        schedule = schedule.rescale_zero_terminal_snr()
    target = _field(d, "prediction_type", "epsilon", {v: k for k, v in _PREDICTIONS.items()})
    variance = _field(d, "variance_type", "fixed_small", _VARIANCES)
    return Diffusion(schedule, target, variance, Clip.STATIC if clip else Clip.NONE)
