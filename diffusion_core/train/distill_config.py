"""The options of ``diffusion-core distill`` (:class:`DistillConfig`) and the grids a run starts from: the teacher's
sampler grid (:func:`teacher_grid`) or a distilled teacher's own (:func:`distilled_grid`)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any

import torch

from .._validation import check_device_name, check_int, check_number, check_path, check_seed, check_str
from ..errors import InvalidInput
from ..grids import EDM_SIGMA_MAX, time_grid
from .config import TrainConfig, TrainPath, _declared, option

__all__ = ["DistillConfig", "DistillMethod", "REFLOW_PAIRS", "TeacherSampler", "distilled_grid", "teacher_grid"]


class DistillMethod(str, Enum):
    """How the student is trained."""

    PROGRESSIVE = "progressive"  # Salimans & Ho 2022
    REFLOW = "reflow"  # Liu, Gong & Liu 2022


class TeacherSampler(str, Enum):
    """The teacher's ODE solver for reflow's pairs (:data:`diffusion_core.reflow.TEACHER_SAMPLERS`)."""

    EULER = "euler"
    DPMPP_2M = "dpmpp-2m"


REFLOW_PAIRS = 10_000  # reflow's default number of pairs


def _choice(enum: type[Enum], name: str, value: Any, optional: bool = False) -> Any:
    if optional and value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        raise InvalidInput(f"{name} must be one of {', '.join(m.value for m in enum)}, got {value!r}") from None


def _device(name: str, value: Any) -> str:
    return check_device_name(check_str(name, value, what="'auto', 'cpu', 'cuda' or 'cuda:N'"))


_INT = partial(check_int, minimum=1)


def _scale(name: str, value: Any) -> float:
    return float(check_number(name, value, low=0))


@_declared
@dataclass(frozen=True)
class DistillConfig:
    """A distillation run. Options not here (data, model, path, precision, ...) are the teacher's."""

    checkpoint: str | None = option(None, "the teacher: a checkpoint.safetensors written by train (its EMA weights)",
                                    partial(check_path, optional=True))
    method: DistillMethod = option(DistillMethod.PROGRESSIVE, "progressive (Salimans & Ho 2022: halve the DDIM "
                                   "steps each round) or reflow (Liu et al. 2022: a rectified flow on (noise, teacher "
                                   "sample) pairs; rectified-flow checkpoints)", partial(_choice, DistillMethod))
    steps_from: int = option(64, "the teacher's steps: progressive's first round (DDIM), reflow's ODE solve of each "
                             "pair", _INT)
    steps_to: int = option(4, "the student's steps at the end (progressive: steps-from halved one or more times; "
                           "reflow: any, Euler on a uniform grid)", _INT)
    iters_per_round: int = option(1000, "optimizer steps of each round (reflow: its one round)", _INT)
    pairs: int | None = option(None, f"reflow: (noise, teacher sample) pairs, generated once at the start (default: "
                               f"{REFLOW_PAIRS})", partial(check_int, minimum=1, optional=True))
    teacher_sampler: TeacherSampler | None = option(None, "reflow: the teacher's ODE solver for the pairs, euler or "
                                                    "dpmpp-2m (default: euler)",
                                                    partial(_choice, TeacherSampler, optional=True))
    guidance: float = option(1.0, "progressive: classifier-free guidance scale s of the first round's teacher, as "
                             "in diffusers (1: none; Ho & Salimans' w = s - 1), baked into the student (Meng et al. "
                             "2023 at a fixed w); class-conditional checkpoints", _scale)
    batch_size: int = option(128, "batch size", _INT)
    lr: float = option(2e-4, "learning rate of AdamW (constant after the first round's warmup)",
                       partial(check_number, low=0, high=1, low_open=True))
    warmup_steps: int = option(50, "linear learning-rate warmup of the first round (at most its length)",
                               partial(check_int, minimum=0))
    ema_decay: float = option(0.995, "decay of the student's weights' moving average (the next round's teacher)",
                              partial(check_number, low=0, high=1, high_open=True))
    seed: int = option(0, "random seed of data order, times and noise", check_seed)
    out_dir: str | None = option(None, "folder for checkpoint.safetensors, config.json, metrics.jsonl and PNGs "
                                 "(default: runs/distill, or the --resume checkpoint's folder)",
                                 partial(check_path, optional=True))
    log_every: int = option(50, "log to metrics.jsonl (and check the loss for NaN/Inf) every this many steps", _INT)
    checkpoint_every: int = option(500, "write the checkpoint every this many steps (also at the end and on Ctrl-C)",
                                   _INT)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", _device)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))
        if self.checkpoint is None:
            raise InvalidInput("checkpoint is required: the teacher's checkpoint.safetensors")
        if self.method is DistillMethod.REFLOW:
            if self.guidance != 1.0:
                raise InvalidInput(f"guidance is an option of method progressive, not of reflow, got {self.guidance}")
            object.__setattr__(self, "pairs", REFLOW_PAIRS if self.pairs is None else self.pairs)
            object.__setattr__(self, "teacher_sampler", self.teacher_sampler or TeacherSampler.EULER)
            return
        for name in ("pairs", "teacher_sampler"):
            if getattr(self, name) is not None:
                raise InvalidInput(f"{name} is an option of method reflow, not of {self.method.value}")
        if self.steps_to >= self.steps_from or self.steps_from % self.steps_to or \
                not math.log2(self.steps_from // self.steps_to).is_integer():
            raise InvalidInput(f"steps_from must be steps_to times a power of two (2, 4, 8, ...), got steps_from="
                               f"{self.steps_from}, steps_to={self.steps_to}")

    @property
    def rounds(self) -> int:
        if self.method is DistillMethod.REFLOW:
            return 1
        return int(math.log2(self.steps_from // self.steps_to))


def distilled_grid(record: Any, where: str, steps: int | None = None) -> torch.Tensor | None:
    """The time grid a distilled checkpoint samples on (its ``extra["distillation"]``, ``None`` if it has none),
    checked: at least two decreasing times ending at 0, and ``steps`` steps when given (the ``steps_from`` of a run
    that distills it on). ``where`` names the checkpoint in the errors."""
    if record is None:
        return None
    grid = record.get("grid") if isinstance(record, dict) else None
    if not (isinstance(grid, list) and len(grid) >= 2 and all(isinstance(v, (int, float)) for v in grid)
            and grid[-1] == 0 and all(a > b for a, b in zip(grid, grid[1:]))):
        raise InvalidInput(f"checkpoint {where!r} has a malformed distillation record (its grid: {str(grid)[:80]})")
    if steps is not None and len(grid) - 1 != steps:
        raise InvalidInput(f"steps_from must be the {len(grid) - 1} steps the teacher {where!r} was distilled for, "
                           f"got {steps}")
    return torch.tensor(grid, dtype=torch.float64)


def teacher_grid(config: TrainConfig, steps: int) -> torch.Tensor:
    """The teacher's DDIM grid of ``steps`` steps on its path: the DDPM's linspace steps on vp, uniform in t on
    rectified flow, Karras et al.'s sigmas from 80 on edm."""
    path = config.gaussian_path()
    if config.path is TrainPath.EDM:
        return time_grid(path, steps, "karras", sigma_max=EDM_SIGMA_MAX)
    return time_grid(path, steps)
