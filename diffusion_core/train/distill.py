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
steps): its grid is the teacher's. ``distill --resume CK`` (``distill(config, resume=CK)``) continues a run exactly
where it stopped, as ``train --resume`` does: each checkpoint also holds the current round's teacher weights (for
round 2 on, the previous round's student EMA, which no other file holds) and grid under ``objective.``, so the
teacher's file is not needed again (:mod:`.distill_resume`).

``--guidance S`` (progressive, class-conditional teachers; default 1, no guidance): the first round's teacher is the
teacher under classifier-free guidance at scale :math:`S`, in diffusers' convention (``guidance_scale``; Ho &
Salimans' :math:`w = S - 1`), so the student samples the guided model in its few steps, one network call each (the
guided teacher makes two). This is Meng et al. 2023 ("On distillation of guided diffusion models", CVPR) with the
guidance weight fixed for the run instead of an input of the student; the record's ``guidance`` is the :math:`S`
baked in, kept when distilling on (which refuses another :math:`S`), and ``sample`` warns when asked to guide such a
student again (:mod:`.distill_progressive`).

Reflow (Liu, Gong & Liu 2022; the coupling and the loss are :mod:`diffusion_core.reflow`), rectified-flow checkpoints
only: ``pairs`` noises :math:`z_1` and the teacher's ODE solutions :math:`z_0` from them (its ``teacher_sampler``
with ``steps_from`` steps on its uniform grid, :math:`\\hat x_0` clipped as its sampler does) are generated once, when
the run starts, and stored in each checkpoint (a resume takes them from there: no teacher calls again, and
exactly the same pairs, where generating them again could differ in the last bits with another thread count or
device), then the student (from the teacher's EMA weights) trains ``iters_per_round`` steps (one round) on
the straight lines between them at uniform times, and samples by Euler with ``steps_to`` steps. Once, not per batch:
each pair costs ``steps_from`` teacher calls, so fresh pairs per batch would make every optimizer step
``steps_from`` times dearer, while a fixed set is what the paper trains on and is reused over the epochs. The
data set's batches are drawn as in every run but not used. Class-conditional checkpoints are not supported yet.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint
from .config import TrainConfig
from .distill_config import DistillConfig, DistillMethod, TeacherSampler, teacher_grid
from .distill_progressive import ProgressiveDistillation
from .distill_reflow import Reflow
from .distill_resume import resume_identity, start_identity
from .models import load_model
from .trainer import TrainResult, train

__all__ = ["DistillConfig", "DistillMethod", "ProgressiveDistillation", "Reflow", "TeacherSampler", "distill",
           "teacher_grid"]

log = logging.getLogger("diffusion_core.train")


def _example_shape(model_config: dict[str, Any]) -> tuple[int, ...]:
    """One example's shape: ``(dim,)`` for the 2-D toys' MLP, ``(C, H, W)`` for a U-Net."""
    if model_config["kind"] == "mlp":
        return (model_config["dim"],)
    return (model_config["in_channels"], model_config["image_size"], model_config["image_size"])


def distill(config: DistillConfig, *, resume: str | Path | None = None, overwrite: bool = False,
            progress: bool = True) -> TrainResult:
    """Distill ``config.checkpoint`` as ``config`` says (see the module's docstring); the student's checkpoint is
    ``out_dir/checkpoint.safetensors``. ``resume``: continue the distillation run of that checkpoint exactly where
    it stopped (its folder is the default ``out_dir``; :mod:`.distill_resume` says what may change)."""
    from .runtime import resolve_device

    if resume is None:
        ckpt = load_checkpoint(config.checkpoint)
        identity, distilled = start_identity(config), ckpt.extra.get("distillation")
    else:  # the teacher's config, weights and grid come back from the student's checkpoint (Objective.restore)
        ckpt = load_checkpoint(resume)
        identity, distilled = resume_identity(ckpt, config, resume), None
    train_config = _train_config(config, TrainConfig.from_dict(ckpt.train_config), resume)
    device, teacher = resolve_device(config.device), load_model(ckpt, ema=True)
    if config.method is DistillMethod.PROGRESSIVE:
        if resume is None and train_config.parameterization.value == "eps":
            log.warning("the teacher predicts eps: its x0 at the noisiest time divides by alpha (Salimans & Ho "
                        "2022, sec. 4, use v or x0 for distillation)")
        objective = ProgressiveDistillation(config, train_config, teacher, device, distilled, identity=identity)
    else:
        objective = Reflow(config, train_config, teacher, device, _example_shape(ckpt.model_config), distilled,
                           identity=identity)
    return train(train_config, resume=resume, init_from=None if resume else Path(config.checkpoint),
                 overwrite=overwrite, progress=progress, objective=objective)


def _train_config(config: DistillConfig, base: TrainConfig, resume: str | Path | None) -> TrainConfig:
    """The run's TrainConfig: ``base`` (the teacher's, or the resumed student's) with this run's settings."""
    out_dir = config.out_dir or (None if resume else "runs/distill")
    return base.replace(
        steps=config.rounds * config.iters_per_round, batch_size=config.batch_size, lr=config.lr,
        warmup_steps=min(config.warmup_steps, config.iters_per_round), weight_decay=0.0, ema_decay=config.ema_decay,
        seed=config.seed, out_dir=out_dir, log_every=config.log_every, checkpoint_every=config.checkpoint_every,
        device=config.device, preview_every=0, eval_every=0)
