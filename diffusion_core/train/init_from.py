"""``train --init-from``: start a new run from the weights of an earlier model (fine-tuning), ours or diffusers'.

Unlike ``--resume``, nothing but the weights is taken: the step, optimizer, learning-rate warmup and data order
start afresh, and the run writes its own folder. The source must be the same network (the run's preset, data
channels, classes and variance channels; dropout may differ) trained for the same model: the same path, what the
network predicts and, on vp, the same noise schedule. Otherwise the weights would be fine-tuned towards another
target, which is refused, naming the option to change. From one of our checkpoints the EMA weights are taken (the
raw ones when it has none); a diffusers folder holds one set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..diffusion import Diffusion
from ..errors import InvalidInput
from ..targets import Target
from .checkpoint import load_checkpoint
from .config import TrainConfig, TrainPath
from .diffusers_format import is_diffusers_folder, load_diffusers
from .models import check_weights_fit, normalized_model_config

__all__ = ["initial_weights"]


def _same_network(theirs: dict[str, Any], ours: dict[str, Any], where: str) -> None:
    theirs, ours = normalized_model_config(theirs), normalized_model_config(ours)
    differ = sorted(k for k in set(theirs) | set(ours) if k != "dropout" and theirs.get(k) != ours.get(k))
    if differ:
        shown = ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in differ[:3])
        raise InvalidInput(f"{where} is another network than this run's --model ({shown})")


def _same_model(path: TrainPath, target: Target, diffusion: Diffusion | None, config: TrainConfig, where: str) -> None:
    if path is not config.path:
        raise InvalidInput(f"{where} was trained on --path {path.value}, this run on --path {config.path.value}")
    if target is not config.parameterization:
        raise InvalidInput(f"{where} predicts {target.value!r}; pass --parameterization {target.value} (this run: "
                           f"{config.parameterization.value})")
    if diffusion is None:
        return
    ours = config.diffusion().schedule.alphas_cumprod
    theirs = diffusion.schedule.alphas_cumprod
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, rtol=1e-6, atol=0):
        raise InvalidInput(f"{where} was trained with another noise schedule than --schedule {config.schedule.value} "
                           f"--num-timesteps {config.num_timesteps} (T={theirs.numel()} there)")


def initial_weights(source: str | Path, model_config: dict[str, Any], config: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights to start the run from: ``source`` (a checkpoint or a diffusers folder) checked against the
    run's network (``model_config``) and model (``config``)."""
    where = f"--init-from {str(source)!r}"
    if is_diffusers_folder(source):
        imported = load_diffusers(source)
        theirs, weights, diffusion, path = imported.model_config, imported.weights, imported.diffusion, TrainPath.VP
        target = diffusion.parameterization
    else:
        ckpt = load_checkpoint(source)
        theirs, weights = ckpt.model_config, ckpt.ema or ckpt.model
        check_weights_fit(theirs, weights, where)
        their_config = TrainConfig.from_dict(ckpt.train_config)
        path, target = their_config.path, their_config.parameterization
        diffusion = their_config.diffusion() if path is TrainPath.VP else None
    _same_network(theirs, model_config, where)
    _same_model(path, target, diffusion, config, where)
    return weights
