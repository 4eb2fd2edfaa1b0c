"""Checkpoints: one safetensors file holding weights, EMA, optimizer and RNG state, with the configs as JSON.

* Loading never unpickles: tensors come from safetensors, everything else from JSON in its header.
* Writing is atomic: the file is written beside the target, flushed to disk, then renamed over it,
  so a crash mid-write leaves the previous checkpoint whole.
* No schedule table is stored: the schedule is rebuilt from the config.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = "diffusion-core/1"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns; any part a writer left out is ``None`` or empty."""

    step: int
    train_config: dict[str, Any]
    model_config: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    scaler: dict[str, Any] | None
    rng: dict[str, torch.Tensor]
    extra: dict[str, Any]


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        plain["state"][str(idx)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                plain["state"][str(idx)][key] = value
    return tensors, plain


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(
    path: str | Path,
    *,
    step: int,
    train_config: dict[str, Any],
    model_config: dict[str, Any],
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None = None,
    optimizer: dict[str, Any] | None = None,
    scaler: dict[str, Any] | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in model.items()})
    tensors.update({f"ema.{k}": v for k, v in (ema or {}).items()})
    tensors.update({f"rng.{k}": v for k, v in (rng or {}).items()})
    plain_optim = None
    if optimizer is not None:
        optim_tensors, plain_optim = _split_optimizer(optimizer)
        tensors.update(optim_tensors)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT,
        "step": str(int(step)),
        "train_config": json.dumps(train_config),
        "model_config": json.dumps(model_config),
        "optimizer": json.dumps(plain_optim),
        "scaler": json.dumps(scaler),
        "extra": json.dumps(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a checkpoint is an ordinary output file
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a diffusion-core checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for foreign files
        raise ValueError(f"checkpoint {str(path)!r} is not a safetensors file: {e}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} has format {meta.get('format')!r}, expected {FORMAT!r}")

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    plain_optim = json.loads(meta["optimizer"])
    return Checkpoint(
        step=int(meta["step"]),
        train_config=json.loads(meta["train_config"]),
        model_config=json.loads(meta["model_config"]),
        model=part("model."),
        ema=part("ema."),
        optimizer=None if plain_optim is None else _join_optimizer(part("optim."), plain_optim),
        scaler=json.loads(meta["scaler"]),
        rng=part("rng."),
        extra=json.loads(meta["extra"]),
    )
