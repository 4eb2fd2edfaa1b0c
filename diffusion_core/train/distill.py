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
the run starts, then the student (from the teacher's EMA weights) trains ``iters_per_round`` steps (one round) on
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
