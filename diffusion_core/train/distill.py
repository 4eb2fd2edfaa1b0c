"""``diffusion-core distill``: a trained model distilled into a few-step sampler, as a training run.

Progressive distillation (Salimans & Ho 2022, Algorithm 2; the target and the loss are
:mod:`diffusion_core.distillation`): the student starts from the teacher checkpoint's EMA weights and learns to take
in one DDIM step what the teacher takes in two, on the teacher's grid of ``steps_from`` steps halved; after
``iters_per_round`` optimizer steps its EMA becomes the teacher of the next round and the student's starting point
(fresh optimizer moments), until ``steps_to`` steps. The teacher's DDIM clips its :math:`\\hat x_0` to the data's
range as its sampler does (:attr:`~.data.DatasetSpec.clip`).

It is a run of :func:`~.trainer.train` with this objective (:class:`ProgressiveDistillation`): the same data,
optimizer, EMA, ``metrics.jsonl``, atomic checkpoints, NaN/Inf checks, run folder and Ctrl-C handling. Its
checkpoint is a normal one (the teacher's training config, with this run's optimizer settings) plus
``extra["distillation"]``: the method, the step count and the time grid the student samples on, which ``sample``
uses by default. A distilled checkpoint can be distilled on (``--checkpoint`` the student, ``--steps-from`` its
steps): its grid is the teacher's. Resuming a distillation is not supported yet.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from dataclasses import dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._validation import check_device_name, check_int, check_number, check_path, check_seed, check_str
from ..denoiser import Denoiser
from ..distillation import draw_step_times, halve_grid, progressive_distillation_loss
from ..errors import InvalidInput
from ..grids import EDM_SIGMA_MAX, time_grid
from .checkpoint import load_checkpoint
from .config import TrainConfig, TrainPath, _declared, option
from .models import load_model
from .step import TrainStep
from .trainer import TrainResult, train

__all__ = ["DistillConfig", "DistillMethod", "ProgressiveDistillation", "distill", "teacher_grid"]

log = logging.getLogger("diffusion_core.train")


class DistillMethod(str, Enum):
    """How the student is trained."""

    PROGRESSIVE = "progressive"  # Salimans & Ho 2022


def _choice(name: str, value: Any) -> DistillMethod:
    try:
        return DistillMethod(value)
    except ValueError:
        raise InvalidInput(f"{name} must be one of {', '.join(m.value for m in DistillMethod)}, got {value!r}") from None


def _device(name: str, value: Any) -> str:
    return check_device_name(check_str(name, value, what="'auto', 'cpu', 'cuda' or 'cuda:N'"))


_INT = partial(check_int, minimum=1)


@_declared
@dataclass(frozen=True)
class DistillConfig:
    """A distillation run. Options not here (data, model, path, precision, ...) are the teacher's."""

    checkpoint: str | None = option(None, "the teacher: a checkpoint.safetensors written by train (its EMA weights)",
                                    partial(check_path, optional=True))
    method: DistillMethod = option(DistillMethod.PROGRESSIVE, "progressive (Salimans & Ho 2022: halve the DDIM "
                                   "steps each round)", _choice)
    steps_from: int = option(64, "the teacher's DDIM steps, where the first round starts", _INT)
    steps_to: int = option(4, "the student's DDIM steps at the end (steps-from halved one or more times)", _INT)
    iters_per_round: int = option(1000, "optimizer steps of each round", _INT)
    batch_size: int = option(128, "batch size", _INT)
    lr: float = option(2e-4, "learning rate of AdamW (constant after the first round's warmup)",
                       partial(check_number, low=0, high=1, low_open=True))
    warmup_steps: int = option(50, "linear learning-rate warmup of the first round (at most its length)",
                               partial(check_int, minimum=0))
    ema_decay: float = option(0.995, "decay of the student's weights' moving average (the next round's teacher)",
                              partial(check_number, low=0, high=1, high_open=True))
    seed: int = option(0, "random seed of data order, times and noise", check_seed)
    out_dir: str = option("runs/distill", "folder for checkpoint.safetensors, config.json, metrics.jsonl and PNGs",
                          check_path)
    log_every: int = option(50, "log to metrics.jsonl (and check the loss for NaN/Inf) every this many steps", _INT)
    checkpoint_every: int = option(500, "write the checkpoint every this many steps (also at the end and on Ctrl-C)",
                                   _INT)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", _device)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))
        if self.checkpoint is None:
            raise InvalidInput("checkpoint is required: the teacher's checkpoint.safetensors")
        if self.steps_to >= self.steps_from or self.steps_from % self.steps_to or \
                not math.log2(self.steps_from // self.steps_to).is_integer():
            raise InvalidInput(f"steps_from must be steps_to times a power of two (2, 4, 8, ...), got steps_from="
                               f"{self.steps_from}, steps_to={self.steps_to}")

    @property
    def rounds(self) -> int:
        return int(math.log2(self.steps_from // self.steps_to))


def _distilled_grid(record: Any, config: DistillConfig) -> torch.Tensor:
    """The grid a distilled teacher samples on (its checkpoint's ``extra["distillation"]``), which must have
    ``steps_from`` steps."""
    grid = record.get("grid") if isinstance(record, dict) else None
    try:
        grid = torch.tensor(grid, dtype=torch.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"checkpoint {config.checkpoint!r} has a malformed distillation record") from None
    if grid.ndim != 1 or grid.numel() < 2 or grid[-1] != 0 or not bool((grid[1:] < grid[:-1]).all()):
        raise InvalidInput(f"checkpoint {config.checkpoint!r} has a malformed distillation grid")
    if grid.numel() - 1 != config.steps_from:
        raise InvalidInput(f"steps_from must be the {grid.numel() - 1} steps the teacher {config.checkpoint!r} was "
                           f"distilled for, got {config.steps_from}")
    return grid


def teacher_grid(config: TrainConfig, steps: int) -> torch.Tensor:
    """The teacher's DDIM grid of ``steps`` steps on its path: the DDPM's linspace steps on vp, uniform in t on
    rectified flow, Karras et al.'s sigmas from 80 on edm."""
    path = config.gaussian_path()
    if config.path is TrainPath.EDM:
        return time_grid(path, steps, "karras", sigma_max=EDM_SIGMA_MAX)
    return time_grid(path, steps)


class ProgressiveDistillation:
    """The trainer's :class:`~.trainer.Objective` for progressive distillation: round ``r`` (from 0) trains a
    student of ``steps_from / 2**(r+1)`` steps against the teacher of twice as many."""

    def __init__(self, config: DistillConfig, train_config: TrainConfig, teacher: nn.Module, device: torch.device,
                 distilled: dict[str, Any] | None = None):
        if not 1 <= config.steps_from <= getattr(train_config.gaussian_path(), "T", config.steps_from):
            raise InvalidInput(f"steps_from must be at most the teacher's {train_config.num_timesteps} timesteps, "
                               f"got {config.steps_from}")
        self.config, self.train_config = config, train_config
        self.path = train_config.gaussian_path()
        # the current round's teacher grid: a distilled teacher's own (distilling on), else its sampler's
        self.grid = teacher_grid(train_config, config.steps_from) if distilled is None else \
            _distilled_grid(distilled, config)
        self.teacher = self._denoiser(teacher.to(device).eval().requires_grad_(False))
        self.round = 0

    def _denoiser(self, network: nn.Module) -> Denoiser:
        c = self.train_config
        return Denoiser(network, self.path, c.parameterization, sigma_data=c.sigma_data)

    def loss(self, network, x0, t, noise, labels):
        student = self._denoiser(network)
        return progressive_distillation_loss(student, self.teacher, x0, t[:, 0], t[:, 1], t[:, 2], noise,
                                             labels=labels, clip=self.train_config.dataset.spec.clip).mean()

    def draw_times(self, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        return torch.stack(draw_step_times(self.grid, batch, generator=generator, device=device), dim=1)

    def begin_step(self, step: int, step_fn: TrainStep) -> None:
        """At a round's first step after the first: the student's EMA becomes the teacher and the student, with
        fresh optimizer moments; the grid is halved."""
        if step == 0:
            log.info("round 1 of %d: a %d-step student from the %d-step teacher", self.config.rounds,
                     self.student_steps, self.grid.numel() - 1)
        if step == 0 or step % self.config.iters_per_round:
            return
        ema = step_fn.ema.model
        self.teacher = self._denoiser(copy.deepcopy(ema).eval().requires_grad_(False))
        step_fn.model.load_state_dict(ema.state_dict())
        step_fn.optimizer.state.clear()
        self.grid = halve_grid(self.grid)
        self.round += 1
        log.info("round %d of %d: a %d-step student from the %d-step teacher", self.round + 1, self.config.rounds,
                 self.student_steps, self.grid.numel() - 1)

    @property
    def student_steps(self) -> int:
        return (self.grid.numel() - 1) // 2

    def preview_grid(self) -> torch.Tensor:
        return halve_grid(self.grid)

    def record(self) -> dict[str, Any]:
        c = self.config
        return {"distillation": {"method": c.method.value, "teacher": c.checkpoint, "steps_from": c.steps_from,
                                 "steps": self.student_steps, "grid": halve_grid(self.grid).tolist(),
                                 "iters_per_round": c.iters_per_round, "round": self.round + 1,
                                 "rounds": c.rounds}}


def distill(config: DistillConfig, *, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Distill ``config.checkpoint`` as ``config`` says (see the module's docstring); the student's checkpoint is
    ``out_dir/checkpoint.safetensors``."""
    from .runtime import resolve_device

    ckpt = load_checkpoint(config.checkpoint)
    teacher_config = TrainConfig.from_dict(ckpt.train_config)
    if teacher_config.parameterization.value == "eps":
        log.warning("the teacher predicts eps: its x0 at the noisiest time divides by alpha (Salimans & Ho 2022, "
                    "sec. 4, use v or x0 for distillation)")
    train_config = teacher_config.replace(
        steps=config.rounds * config.iters_per_round, batch_size=config.batch_size, lr=config.lr,
        warmup_steps=min(config.warmup_steps, config.iters_per_round), weight_decay=0.0, ema_decay=config.ema_decay, seed=config.seed,
        out_dir=config.out_dir, log_every=config.log_every, checkpoint_every=config.checkpoint_every,
        device=config.device, preview_every=0, eval_every=0)
    objective = ProgressiveDistillation(config, train_config, load_model(ckpt, ema=True),
                                        resolve_device(config.device), ckpt.extra.get("distillation"))
    return train(train_config, init_from=Path(config.checkpoint), overwrite=overwrite, progress=progress,
                 objective=objective)
