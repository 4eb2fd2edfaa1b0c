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

Reflow (Liu, Gong & Liu 2022; the coupling and the loss are :mod:`diffusion_core.reflow`), rectified-flow checkpoints
only: ``pairs`` noises :math:`z_1` and the teacher's ODE solutions :math:`z_0` from them (its ``teacher_sampler``
with ``steps_from`` steps on its uniform grid, :math:`\\hat x_0` clipped as its sampler does) are generated once, when
the run starts, then the student (from the teacher's EMA weights) trains ``iters_per_round`` steps (one round) on
the straight lines between them at uniform times, and samples by Euler with ``steps_to`` steps. Once, not per batch:
each pair costs ``steps_from`` teacher calls, so fresh pairs per batch would make every optimizer step
``steps_from`` times dearer, while a fixed set is what the paper trains on and is reused over the epochs. The
data set's batches are drawn as in every run but not used. Class-conditional checkpoints are not supported yet.
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

from .._validation import (check_device_name, check_fits_memory, check_int, check_number, check_path, check_seed,
                           check_str)
from ..denoiser import Denoiser
from ..distillation import draw_step_times, halve_grid, progressive_distillation_loss
from ..errors import InvalidInput
from ..grids import EDM_SIGMA_MAX, time_grid
from ..reflow import Coupling, reflow_coupling, reflow_loss
from ..time_sampling import UniformTime
from .checkpoint import load_checkpoint
from .config import TrainConfig, TrainPath, _declared, option
from .models import load_model
from .step import TrainStep
from .trainer import TrainResult, train

__all__ = ["DistillConfig", "DistillMethod", "ProgressiveDistillation", "Reflow", "TeacherSampler", "distill",
           "teacher_grid"]

log = logging.getLogger("diffusion_core.train")


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
        if self.method is DistillMethod.REFLOW:
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


class Reflow:
    """The trainer's :class:`~.trainer.Objective` for reflow (the module's docstring): the pairs are generated at the
    run's first step (after every input is checked and the run's folder is taken), each row of the times drawn is
    ``(t, pair index)``, and the loss is :func:`~diffusion_core.reflow.reflow_loss` on those pairs."""

    def __init__(self, config: DistillConfig, train_config: TrainConfig, teacher: nn.Module, device: torch.device,
                 shape: tuple[int, ...], distilled: dict[str, Any] | None = None):
        if train_config.path is not TrainPath.RECTIFIED_FLOW:
            raise InvalidInput(f"checkpoint {config.checkpoint!r} is on path {train_config.path.value!r}: reflow needs "
                               "a rectified-flow checkpoint (train --path rectified-flow)")
        if train_config.class_cond:
            raise InvalidInput(f"checkpoint {config.checkpoint!r} is class-conditional: reflow of class-conditional "
                               "models is not supported yet")
        check_fits_memory("pairs", config.pairs, 2 * 4 * math.prod(shape), "the pairs (noise and teacher sample)",
                          device)
        self.config, self.train_config, self.shape, self.device = config, train_config, shape, device
        self.path = train_config.gaussian_path()
        # a progressive student's own grid (every other time of a uniform one: uniform), else the uniform grid
        self.grid = teacher_grid(train_config, config.steps_from) if distilled is None or \
            distilled.get("method") == DistillMethod.REFLOW.value else _distilled_grid(distilled, config)
        self.teacher = Denoiser(teacher.to(device).eval().requires_grad_(False), self.path,
                                train_config.parameterization, sigma_data=train_config.sigma_data)
        self.pairs: Coupling | None = None

    def begin_step(self, step: int, step_fn: TrainStep) -> None:
        """At the first step: the pairs, from the run's seed on a generator of their own."""
        if self.pairs is not None:
            return
        c = self.config
        log.info("reflow: %d pairs from the teacher's %s with %d steps (%d evaluations of one example)", c.pairs,
                 c.teacher_sampler.value, c.steps_from, c.pairs * c.steps_from)
        generator = torch.Generator(self.device).manual_seed(c.seed)
        self.pairs = reflow_coupling(self.teacher, c.pairs, self.shape, self.grid, generator=generator,
                                     device=self.device, sampler=c.teacher_sampler.value, batch_size=c.batch_size,
                                     clip=self.train_config.dataset.spec.clip)

    def draw_times(self, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        t = UniformTime()(self.path, batch, generator=generator, device=device)
        rows = torch.randint(0, self.config.pairs, (batch,), generator=generator, device=device)
        return torch.stack([t, rows.to(torch.float64)], dim=1)  # indices below 2**53 are exact in float64

    def loss(self, network, x0, t, noise, labels):
        c = self.train_config
        student = Denoiser(network, self.path, c.parameterization, sigma_data=c.sigma_data)
        rows = t[:, 1].long()
        return reflow_loss(student, self.pairs.z_0[rows], self.pairs.z_1[rows], t[:, 0]).mean()

    def preview_grid(self) -> torch.Tensor:
        return time_grid(self.path, self.config.steps_to)

    def record(self) -> dict[str, Any]:
        c = self.config
        return {"distillation": {"method": c.method.value, "teacher": c.checkpoint, "steps_from": c.steps_from,
                                 "teacher_sampler": c.teacher_sampler.value, "pairs": c.pairs, "steps": c.steps_to,
                                 "grid": self.preview_grid().tolist(), "iters_per_round": c.iters_per_round}}


def _example_shape(model_config: dict[str, Any]) -> tuple[int, ...]:
    """One example's shape: ``(dim,)`` for the 2-D toys' MLP, ``(C, H, W)`` for a U-Net."""
    if model_config["kind"] == "mlp":
        return (model_config["dim"],)
    return (model_config["in_channels"], model_config["image_size"], model_config["image_size"])


def distill(config: DistillConfig, *, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Distill ``config.checkpoint`` as ``config`` says (see the module's docstring); the student's checkpoint is
    ``out_dir/checkpoint.safetensors``."""
    from .runtime import resolve_device

    ckpt = load_checkpoint(config.checkpoint)
    teacher_config = TrainConfig.from_dict(ckpt.train_config)
    progressive = config.method is DistillMethod.PROGRESSIVE
    if progressive and teacher_config.parameterization.value == "eps":
        log.warning("the teacher predicts eps: its x0 at the noisiest time divides by alpha (Salimans & Ho 2022, "
                    "sec. 4, use v or x0 for distillation)")
    train_config = teacher_config.replace(
        steps=config.rounds * config.iters_per_round, batch_size=config.batch_size, lr=config.lr,
        warmup_steps=min(config.warmup_steps, config.iters_per_round), weight_decay=0.0, ema_decay=config.ema_decay, seed=config.seed,
        out_dir=config.out_dir, log_every=config.log_every, checkpoint_every=config.checkpoint_every,
        device=config.device, preview_every=0, eval_every=0)
    device, teacher = resolve_device(config.device), load_model(ckpt, ema=True)
    distilled = ckpt.extra.get("distillation")
    objective = ProgressiveDistillation(config, train_config, teacher, device, distilled) if progressive else \
        Reflow(config, train_config, teacher, device, _example_shape(ckpt.model_config), distilled)
    return train(train_config, init_from=Path(config.checkpoint), overwrite=overwrite, progress=progress,
                 objective=objective)
