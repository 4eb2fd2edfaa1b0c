"""Progressive distillation as a training run (Salimans & Ho 2022, Algorithm 2; the target and the loss are
:mod:`diffusion_core.distillation`): the trainer's :class:`~.trainer.Objective` that ``diffusion-core distill
--method progressive`` hands it (:mod:`.distill`).

With ``--guidance S`` (diffusers' ``guidance_scale``; Ho & Salimans' :math:`w = S - 1`) the first round's teacher is
the class-conditional teacher under classifier-free guidance at :math:`S`
(:func:`~diffusion_core.distillation.guided_teacher`), the fixed-:math:`w` variant of Meng et al. 2023 ("On
distillation of guided diffusion models", CVPR): the student is not conditioned on :math:`w`, it learns the guided
teacher at this one scale. It sees the labels the trainer draws, label dropout included: for the null label the
guided teacher is the unconditional one, so the student keeps an unconditional mode. Later rounds' teachers are the
previous student, already guided, and get no guidance again. The record stores the :math:`S` baked in
(``guidance``); a distilled teacher keeps its own and refuses another."""
from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from ..denoiser import Denoiser
from ..distillation import draw_step_times, guided_teacher, halve_grid, progressive_distillation_loss
from ..errors import InvalidInput
from .config import TrainConfig
from .distill_config import DistillConfig, distilled_grid, teacher_grid
from .step import TrainStep

__all__ = ["ProgressiveDistillation"]

log = logging.getLogger("diffusion_core.train")


class ProgressiveDistillation:
    """The trainer's :class:`~.trainer.Objective` for progressive distillation: round ``r`` (from 0) trains a
    student of ``steps_from / 2**(r+1)`` steps against the teacher of twice as many."""

    def __init__(self, config: DistillConfig, train_config: TrainConfig, teacher: nn.Module, device: torch.device,
                 distilled: dict[str, Any] | None = None, identity: dict[str, Any] | None = None):
        if not 1 <= config.steps_from <= getattr(train_config.gaussian_path(), "T", config.steps_from):
            raise InvalidInput(f"steps_from must be at most the teacher's {train_config.num_timesteps} timesteps, "
                               f"got {config.steps_from}")
        self.config, self.train_config = config, train_config
        self.path = train_config.gaussian_path()
        # the current round's teacher grid: a distilled teacher's own (distilling on), else its sampler's
        self.grid = teacher_grid(train_config, config.steps_from) if distilled is None else \
            distilled_grid(distilled, config.checkpoint, config.steps_from)
        self.guidance = _baked_guidance(config, train_config, distilled)
        self.round = 0
        self._set_teacher(teacher.to(device).eval().requires_grad_(False))
        # what the record says of the run: its teacher file and own settings (distill_resume.start_identity)
        self.identity = identity or {"teacher": config.checkpoint}

    def _denoiser(self, network: nn.Module) -> Denoiser:
        c = self.train_config
        return Denoiser(network, self.path, c.parameterization, sigma_data=c.sigma_data)

    def _set_teacher(self, network: nn.Module) -> None:
        """This round's teacher on ``network``: guided at ``config.guidance`` in the first round (1 when distilling
        on: the guidance is in it already), the previous student as it is in later rounds."""
        self.teacher_network = network
        denoiser = self._denoiser(network)
        self.teacher = guided_teacher(denoiser, self.config.guidance) if self.round == 0 else denoiser

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
            log.info("round 1 of %d: a %d-step student from the %d-step teacher%s", self.config.rounds,
                     self.student_steps, self.grid.numel() - 1,
                     f" guided at {self.config.guidance:g}" if self.config.guidance != 1.0 else "")
        if step == 0 or step % self.config.iters_per_round:
            return
        ema = step_fn.ema.model
        self.round += 1
        self._set_teacher(copy.deepcopy(ema).eval().requires_grad_(False))
        step_fn.model.load_state_dict(ema.state_dict())
        step_fn.optimizer.state.clear()
        self.grid = halve_grid(self.grid)
        log.info("round %d of %d: a %d-step student from the %d-step teacher", self.round + 1, self.config.rounds,
                 self.student_steps, self.grid.numel() - 1)

    @property
    def student_steps(self) -> int:
        return (self.grid.numel() - 1) // 2

    def preview_grid(self) -> torch.Tensor:
        return halve_grid(self.grid)

    def state(self) -> dict[str, torch.Tensor]:
        """The round's teacher grid and teacher weights (from round 2 on, a student EMA no other file holds)."""
        weights = self.teacher_network.state_dict()
        return {"grid": self.grid, **{f"teacher.{k}": v for k, v in weights.items()}}

    def restore(self, step: int, state: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """The round, its grid and its teacher as they were after ``step`` steps. At a round's last step the
        checkpoint holds that round's; :meth:`begin_step` then starts the next one, as the unbroken run does."""
        record = extra.get("distillation") if isinstance(extra.get("distillation"), dict) else {}
        round_, grid = record.get("round", 0) - 1, state.get("grid")
        expected = 0 if step == 0 else (step - 1) // self.config.iters_per_round
        if round_ != expected or grid is None or grid.shape != (self.config.steps_from // 2 ** round_ + 1,):
            raise InvalidInput(f"cannot resume: the checkpoint's distillation state (round {round_ + 1}, its grid) "
                               f"does not fit step {step} of this run")
        self.round, self.grid = round_, grid.to(self.grid.dtype)
        self._load_teacher({k[len("teacher."):]: v for k, v in state.items() if k.startswith("teacher.")})
        self._set_teacher(self.teacher_network)  # guided in the first round only
        log.info("resuming round %d of %d at step %d: a %d-step student from the %d-step teacher", self.round + 1,
                 self.config.rounds, step, self.student_steps, self.grid.numel() - 1)

    def _load_teacher(self, weights: dict[str, torch.Tensor]) -> None:
        try:
            self.teacher_network.load_state_dict(weights)
        except RuntimeError as e:
            raise InvalidInput(f"cannot resume: the checkpoint's round teacher does not fit the network "
                               f"({str(e).splitlines()[0][:120]})") from None

    def record(self) -> dict[str, Any]:
        c = self.config
        return {"distillation": {"method": c.method.value, **self.identity, "steps_from": c.steps_from,
                                 "steps": self.student_steps, "grid": halve_grid(self.grid).tolist(),
                                 "iters_per_round": c.iters_per_round, "round": self.round + 1,
                                 "rounds": c.rounds, "guidance": self.guidance}}


def _baked_guidance(config: DistillConfig, train_config: TrainConfig, distilled: dict[str, Any] | None) -> float:
    """The guidance scale the student will include: ``config.guidance`` from a trained teacher, a distilled teacher's
    own when distilling on (which refuses another). Refused for an unconditional teacher unless 1."""
    if distilled is not None:
        baked = distilled.get("guidance", 1.0)
        if not isinstance(baked, (int, float)) or isinstance(baked, bool) or not baked >= 0:
            raise InvalidInput(f"checkpoint {config.checkpoint!r} has a malformed distillation record (its guidance: "
                               f"{str(baked)[:40]})")
        if config.guidance != 1.0:
            raise InvalidInput(f"guidance must be 1 when distilling on: the teacher {config.checkpoint!r} already "
                               f"includes guidance {baked:g} (applied in its first distillation), got "
                               f"{config.guidance:g}")
        return float(baked)
    if config.guidance != 1.0 and not train_config.class_cond:
        raise InvalidInput(f"guidance needs a class-conditional teacher, and "
                           f"{config.checkpoint!r} is unconditional; got {config.guidance:g}")
    return config.guidance
