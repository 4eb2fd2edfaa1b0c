"""Resuming a run: which settings may change, the checks a checkpoint must pass against this run's config, model
and data, and the states (weights, EMA, optimizer, RNG) it brings back."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import InvalidInput
from .checkpoint import Checkpoint, load_checkpoint
from .config import OnResume, TrainConfig, options_on_resume
from .data_source import DataSource
from .models import check_weights_fit, normalized_model_config
from .step import TrainStep

__all__ = ["RUN_CONTROL", "OPTIMIZER_SETTINGS", "resume_changes", "settle", "check_resume", "check_resume_data",
           "restore", "gather_rng"]

# Fields a resumed run may change, as each option declares (TrainConfig, OnResume). Run control changes nothing the
# model learns; the optimizer's settings change how it goes on learning (the usual recovery after a divergence:
# lower lr, tighter clip), with a notice. Any other difference (model, data, schedule, loss, precision, seed) is a
# different experiment and is refused.
RUN_CONTROL = options_on_resume(OnResume.RUN_CONTROL)
OPTIMIZER_SETTINGS = options_on_resume(OnResume.OPTIMIZER)


def resume_changes(config: TrainConfig, saved: dict) -> list[str]:
    """The optimizer settings that ``config`` changes from a checkpoint's ``saved`` config; raises
    :class:`InvalidInput` if anything else that shapes the model or the data differs. ``saved`` is read as
    :meth:`TrainConfig.from_dict` reads it (no-op settings of older versions dropped)."""
    try:
        saved = TrainConfig.from_dict(saved).to_dict()
    except InvalidInput as e:
        raise InvalidInput(f"cannot resume: the checkpoint's config is not valid ({e})") from None
    now = config.to_dict()
    differ = sorted(k for k in now if k not in RUN_CONTROL and now[k] != saved.get(k))
    refused = [k for k in differ if k not in OPTIMIZER_SETTINGS]
    if refused:
        raise InvalidInput(f"cannot resume: the checkpoint was trained with different {', '.join(refused)} "
                           "(only run-control and optimizer settings may change on resume)")
    return [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in differ]


def settle(config: TrainConfig, resume) -> tuple[TrainConfig, Checkpoint | None, list[str]]:
    """The config this run uses (warmup and out_dir set), the checkpoint it resumes, and the optimizer settings
    that the resume changes."""
    ckpt, notices = None, []
    if resume is None:
        config = config.resolved_warmup()
    else:
        ckpt = load_checkpoint(resume, map_location="cpu")
        config = config.resolved_warmup(saved=ckpt.train_config.get("warmup_steps"))
        notices = resume_changes(config, ckpt.train_config)
        if config.out_dir is None:
            config = config.replace(out_dir=str(Path(resume).parent))
        if config.steps < ckpt.step:
            raise InvalidInput(f"steps={config.steps} is below the checkpoint's step {ckpt.step}; "
                               f"pass --steps {ckpt.step + 1} or more to train on")
    config = config.replace(out_dir=config.run_dir)
    if config.data_dir is not None and Path(config.out_dir).resolve() == Path(config.data_dir).resolve():
        raise InvalidInput(f"out_dir is data_dir {config.data_dir!r}: the run's PNGs would become training images; "
                           "give the run a folder of its own")
    return config, ckpt, notices


def check_resume(ckpt: Checkpoint, source: DataSource, model_config: dict) -> None:
    if ckpt.extra.get("class_names", []) != source.class_names:
        raise InvalidInput(f"cannot resume: the checkpoint's classes {ckpt.extra.get('class_names', [])} differ "
                           f"from the data's {source.class_names}")
    if normalized_model_config(ckpt.model_config) != normalized_model_config(model_config):
        raise InvalidInput("cannot resume: the checkpoint's model config differs from what this config builds")
    check_weights_fit(model_config, ckpt.model, "checkpoint")
    check_weights_fit(model_config, ckpt.ema, "checkpoint (EMA)")


def check_resume_data(ckpt: Checkpoint, source: DataSource) -> None:
    """An image folder must hold what the checkpoint was trained on (checkpoints from before this record skip)."""
    then, now = ckpt.extra.get("data"), source.data_record
    if isinstance(then, dict) and now is not None and then.get("sha256") != now["sha256"]:
        raise InvalidInput(f"cannot resume: the images in data_dir {source.config.data_dir!r} differ from those the "
                           f"checkpoint was trained on ({then.get('count')} images then, {now['count']} now, or "
                           "changed files); restore them, or start a new run")


def restore(ckpt: Checkpoint, resume, model, step_fn: TrainStep, config: TrainConfig, gen, device, info) -> int:
    """Load a checkpoint's weights, EMA, optimizer, scaler and RNG states; return its step."""
    model.load_state_dict(ckpt.model)
    step_fn.ema.load_state_dict(ckpt.ema)
    if ckpt.optimizer is None:
        raise InvalidInput(f"checkpoint {str(resume)!r} holds no optimizer state, so it cannot be resumed")
    step_fn.load_optimizer_state(ckpt.optimizer)
    step_fn.set_hyperparameters(config)
    if ckpt.scaler:
        step_fn.scaler.load_state_dict(ckpt.scaler)
    _restore_rng(ckpt.rng, gen, device, info.rank)
    return ckpt.step


def gather_rng(gen: torch.Generator, device: torch.device, info) -> dict[str, torch.Tensor]:
    """RNG states to save: the shared data generator, and each rank's global (dropout) generator."""
    own = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        own["cuda"] = torch.cuda.get_rng_state(device)
    states = [own]
    if info.enabled:
        states = [None] * info.world_size
        dist.all_gather_object(states, own)
    rng = {"data": gen.get_state()}
    for rank, s in enumerate(states):
        suffix = "" if rank == 0 else f".rank{rank}"
        rng.update({f"{k}{suffix}": v for k, v in s.items()})
    return rng


def _restore_rng(rng: dict[str, torch.Tensor], gen: torch.Generator, device: torch.device, rank: int) -> None:
    gen.set_state(rng["data"].cpu())
    suffix = "" if rank == 0 else f".rank{rank}"
    if f"torch{suffix}" in rng:
        torch.set_rng_state(rng[f"torch{suffix}"].cpu())
    if device.type == "cuda" and f"cuda{suffix}" in rng:
        torch.cuda.set_rng_state(rng[f"cuda{suffix}"].cpu(), device)
