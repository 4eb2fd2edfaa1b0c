"""Reflow as a training run (Liu, Gong & Liu 2022; the coupling and the loss are :mod:`diffusion_core.reflow`): the
trainer's :class:`~.trainer.Objective` that ``diffusion-core distill --method reflow`` hands it (:mod:`.distill`)."""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from .._validation import check_fits_memory
from ..denoiser import Denoiser
from ..errors import InvalidInput
from ..grids import time_grid
from ..reflow import Coupling, reflow_coupling, reflow_loss
from ..time_sampling import UniformTime
from .config import TrainConfig, TrainPath
from .distill_config import DistillConfig, DistillMethod, distilled_grid, teacher_grid
from .step import TrainStep

__all__ = ["Reflow"]

log = logging.getLogger("diffusion_core.train")


class Reflow:
    """The trainer's :class:`~.trainer.Objective` for reflow (the module's docstring): the pairs are generated at the
    run's first step (after every input is checked and the run's folder is taken), each row of the times drawn is
    ``(t, pair index)``, and the loss is :func:`~diffusion_core.reflow.reflow_loss` on those pairs."""

    def __init__(self, config: DistillConfig, train_config: TrainConfig, teacher: nn.Module, device: torch.device,
                 shape: tuple[int, ...], distilled: dict[str, Any] | None = None,
                 identity: dict[str, Any] | None = None):
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
            distilled.get("method") == DistillMethod.REFLOW.value else distilled_grid(distilled, config.checkpoint, config.steps_from)
        self.teacher = Denoiser(teacher.to(device).eval().requires_grad_(False), self.path,
                                train_config.parameterization, sigma_data=train_config.sigma_data)
        self.pairs: Coupling | None = None
        self.identity = identity or {"teacher": config.checkpoint}  # distill_resume.start_identity

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

    def state(self) -> dict[str, torch.Tensor]:
        """The pairs: stored, not generated again on resume (no teacher calls, and exactly the same values)."""
        return {} if self.pairs is None else {"z_1": self.pairs.z_1, "z_0": self.pairs.z_0}

    def restore(self, step: int, state: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """The pairs the run was generating its batches from."""
        want = (self.config.pairs, *self.shape)
        if sorted(state) != ["z_0", "z_1"] or any(tuple(state[k].shape) != want for k in state):
            raise InvalidInput(f"cannot resume: the checkpoint does not hold the run's {self.config.pairs} reflow "
                               "pairs")
        self._load_pairs(state)
        log.info("resuming reflow at step %d on the checkpoint's %d pairs", step, self.config.pairs)

    def _load_pairs(self, state: dict[str, torch.Tensor]) -> None:
        self.pairs = Coupling(z_1=state["z_1"].to(self.device), z_0=state["z_0"].to(self.device))

    def record(self) -> dict[str, Any]:
        c = self.config
        return {"distillation": {"method": c.method.value, **self.identity, "steps_from": c.steps_from,
                                 "teacher_sampler": c.teacher_sampler.value, "pairs": c.pairs, "steps": c.steps_to,
                                 "grid": self.preview_grid().tolist(), "iters_per_round": c.iters_per_round}}
