"""Checkpoints: one safetensors file holding weights, EMA, optimizer and RNG state, with the configs as JSON.

* Loading never unpickles: tensors come from safetensors, everything else from JSON in its header.
* Writing is atomic: the file is written in a temp folder beside the target (``.checkpoint.safetensors.*.tmp/``,
  which also holds safetensors' own temp file), flushed to disk, then renamed over the target, so a crash
  mid-write leaves the previous checkpoint whole, and the next run removes what a killed write left.
* Nothing wrong is kept: a NaN or Inf in any tensor is refused at save and at load, naming the tensor.
* Integrity: the SHA-256 of every tensor's name, dtype, shape and bytes and of every other header entry (the
  configs, the step, the optimizer's settings) is stored in the header and checked at load, so a flipped bit, a
  truncated copy or an edited configuration is reported instead of sampled or trained on. Format-2 files (whose
  hash covers the tensors only) still load.
* The header is validated (keys, types, JSON depth) before anything it describes is used.
* No schedule table is stored: the schedule is rebuilt from the config.
* A run with its own objective (a distillation) stores what its resume needs under ``objective.`` (a round's teacher
  weights, reflow's pairs): readers that sample (``load_model``, ``sample``, the exports) never look at them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .._validation import check_dict, check_int
from ..errors import InvalidInput, NonFiniteError

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "check_finite", "tensors_sha256", "checkpoint_sha256",
           "FORMAT"]

FORMAT = "diffusion-core/3"  # 2: adds the tensors' SHA-256; 3: the SHA-256 covers the header's entries too
FORMAT_2 = "diffusion-core/2"
_META_KEYS = ("format", "step", "train_config", "model_config", "optimizer", "scaler", "extra", "sha256")


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
    objective: dict[str, torch.Tensor] = field(default_factory=dict)  # a training objective's state (trainer.Objective)


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


def _save_file(tensors: dict[str, torch.Tensor], tmp: str, metadata: dict[str, str], path: Path) -> None:
    """safetensors' writer, with its I/O failures (a full disk, a lost mount) raised as the ``OSError`` they are."""
    try:
        save_file(tensors, tmp, metadata=metadata)
    except SafetensorError as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        n = int(code.group(1))
        raise OSError(n, f"{os.strerror(n)} while writing the checkpoint", str(path)) from None


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
    objective: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint atomically to ``path`` and return it. ``objective``: the tensors a run's own objective
    needs to resume (stored under ``objective.``)."""
    check_int("step", step, minimum=0)
    for name, value in (("train_config", train_config), ("model_config", model_config), ("model", model)):
        check_dict(name, value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in model.items()})
    tensors.update({f"ema.{k}": v for k, v in (ema or {}).items()})
    tensors.update({f"rng.{k}": v for k, v in (rng or {}).items()})
    tensors.update({f"objective.{k}": v for k, v in (objective or {}).items()})
    plain_optim = None
    if optimizer is not None:
        optim_tensors, plain_optim = _split_optimizer(optimizer)
        tensors.update(optim_tensors)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    check_finite(tensors, "refusing to save the checkpoint")
    metadata = {
        "format": FORMAT,
        "step": str(int(step)),
        "train_config": json.dumps(train_config),
        "model_config": json.dumps(model_config),
        "optimizer": json.dumps(plain_optim),
        "scaler": json.dumps(scaler),
        "extra": json.dumps(extra or {}),
    }
    metadata["sha256"] = checkpoint_sha256(tensors, metadata)
    # A temp folder of our own: safetensors writes its own temp file (.tmpXXXXXX) beside the file it is given and
    # renames it; in here, what a killed write leaves is one folder that the next run removes (run_dir.py).
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        _save_file(tensors, str(tmp), metadata, path)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors in name order: each name, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def checkpoint_sha256(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """The format-3 hash: :func:`tensors_sha256`'s, then every header entry but ``sha256`` in name order (name,
    length and text), so an edited configuration or step is as corrupt as a flipped bit."""
    h = hashlib.sha256(tensors_sha256(tensors).encode())
    for key in sorted(k for k in metadata if k != "sha256"):
        value = metadata[key].encode("utf-8", "surrogatepass")
        h.update(f"|{key}|{len(value)}|".encode() + value)
    return h.hexdigest()


def check_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    """Raise :class:`NonFiniteError` naming the first floating-point tensor that holds NaN or Inf."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"{what}: tensor {name!r} holds NaN or Inf")


def _metadata(path: Path, meta: dict[str, str]) -> dict[str, Any]:
    """The header's values, parsed and type-checked; a one-line error for anything missing or malformed."""
    where = f"checkpoint {str(path)!r}"
    if meta.get("format") not in (FORMAT, FORMAT_2):
        raise InvalidInput(f"{where} has format {meta.get('format')!r}, expected {FORMAT!r} (or {FORMAT_2!r})")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise InvalidInput(f"{where} lacks the header entries {missing}")
    parsed: dict[str, Any] = {}
    for key in ("train_config", "model_config", "optimizer", "scaler", "extra"):
        try:
            parsed[key] = json.loads(meta[key])
        except (ValueError, RecursionError) as e:  # RecursionError: JSON nested thousands deep
            raise InvalidInput(f"{where} has a malformed header entry {key!r}: {type(e).__name__}") from None
    for key, types in (("train_config", dict), ("model_config", dict), ("optimizer", (dict, type(None))),
                       ("scaler", (dict, type(None))), ("extra", dict)):
        if not isinstance(parsed[key], types):
            raise InvalidInput(f"{where} has a header entry {key!r} of type {type(parsed[key]).__name__}")
    if not meta["step"].isdigit():
        raise InvalidInput(f"{where} has step {meta['step'][:40]!r}, expected an int >= 0")
    parsed["step"] = int(meta["step"])
    names = parsed["extra"].get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidInput(f"{where} has class names that are not a list of strings: {str(names)[:80]}")
    optim = parsed["optimizer"]
    if optim is not None and not (isinstance(optim.get("state"), dict) and isinstance(optim.get("param_groups"), list)):
        raise InvalidInput(f"{where} has an optimizer entry without 'state' and 'param_groups'")
    return parsed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: no file at ``path``.
        InvalidInput: the file is not a diffusion-core checkpoint, its header is malformed, or it is corrupt.
        NonFiniteError: a tensor in it holds NaN or Inf.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.is_dir():
        raise InvalidInput(f"checkpoint {str(path)!r} is a folder; give the {path.name or 'run'} folder's "
                           "checkpoint.safetensors")
    if not path.is_file():
        raise InvalidInput(f"checkpoint {str(path)!r} is not a file (a device or a pipe)")
    with open(path, "rb"):  # a permission error as itself: safetensors reports it as "No such file or directory"
        pass
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for foreign or truncated files
        raise InvalidInput(f"checkpoint {str(path)!r} is not a safetensors file: {e}") from None
    header = _metadata(path, meta)
    expected = tensors_sha256(tensors) if meta["format"] == FORMAT_2 else checkpoint_sha256(tensors, meta)
    if expected != meta["sha256"]:
        raise InvalidInput(f"checkpoint {str(path)!r} is corrupt: its tensors or header entries do not match the "
                           "SHA-256 in its header (a flipped bit, a damaged copy or an edited header)")
    check_finite(tensors, f"checkpoint {str(path)!r} is unusable")
    tensors = {k: v.to(map_location) for k, v in tensors.items()}

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    plain_optim = header["optimizer"]
    try:
        optimizer = None if plain_optim is None else _join_optimizer(part("optim."), plain_optim)
    except (ValueError, TypeError, AttributeError) as e:
        raise InvalidInput(f"checkpoint {str(path)!r} has a malformed optimizer state: {e}") from None
    return Checkpoint(
        step=header["step"],
        train_config=header["train_config"],
        model_config=header["model_config"],
        model=part("model."),
        ema=part("ema."),
        optimizer=optimizer,
        scaler=header["scaler"],
        rng=part("rng."),
        extra=header["extra"],
        objective=part("objective."),
    )
