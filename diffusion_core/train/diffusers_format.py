"""Checkpoints out to diffusers' folder layout, and diffusers folders in: ``diffusion-core export --to diffusers`` and
``sample --checkpoint FOLDER``.

The folder is what ``DDPMPipeline.from_pretrained`` reads::

    OUT/model_index.json                          the pipeline: a UNet2DModel and a DDPMScheduler
    OUT/unet/config.json                          the network (diffusers_unet_config)
    OUT/unet/diffusion_pytorch_model.safetensors  its weights, renamed (diffusers_names)
    OUT/scheduler/scheduler_config.json           the schedule and sampling rules (diffusers_scheduler)

Conventions: both sides feed the network the integer timestep ``0 .. T-1``; a class-conditional network's K + 1
label rows (the last one our null label) become ``num_class_embeds = K + 1``, and on import the last of
``num_class_embeds`` rows is read as the null label; export writes the EMA weights unless asked for the raw ones.
Only what diffusers' configs express exactly is written or read; anything else is refused, naming it. Weights are
read from safetensors only (never a pickle).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..diffusion import Diffusion
from ..errors import InvalidInput
from ..nn import UNetConfig
from .checkpoint import check_finite, load_checkpoint
from .config import TrainConfig, TrainPath
from .diffusers_names import from_diffusers_weights, to_diffusers_weights
from .diffusers_scheduler import diffusion_from_scheduler, scheduler_to_diffusers
from .diffusers_unet_config import DIFFUSERS_VERSION, unet_from_diffusers, unet_to_diffusers
from .models import build_model, check_weights_fit, load_model

__all__ = ["DiffusersModel", "ExportResult", "export_diffusers", "is_diffusers_folder", "load_diffusers"]

WEIGHTS = "diffusion_pytorch_model.safetensors"
PIPELINE = {"_class_name": "DDPMPipeline", "_diffusers_version": DIFFUSERS_VERSION,
            "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}


@dataclass
class ExportResult:
    path: Path
    ema: bool  # the EMA weights were written (False: the raw ones, asked for or the only ones there)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"OUT {str(out)!r} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InvalidInput(f"OUT {str(out)!r} exists and is not empty; pass --overwrite to replace it")


def _exportable(ckpt, where: str) -> tuple[TrainConfig, UNetConfig]:
    config = TrainConfig.from_dict(ckpt.train_config)
    if config.path is not TrainPath.VP:
        raise InvalidInput(f"{where} was trained on path={config.path.value!r}; diffusers' DDPMScheduler holds only "
                           "vp (DDPM) models (allowed: path='vp')")
    fields = dict(ckpt.model_config)
    if fields.pop("kind", None) != "unet":
        raise InvalidInput(f"{where} holds an mlp model; only U-Net models can be exported (allowed: a U-Net preset)")
    return config, UNetConfig.from_dict(fields)


def export_diffusers(checkpoint: str | Path, out: str | Path, *, ema: bool = True,
                     overwrite: bool = False) -> ExportResult:
    """Write ``checkpoint`` (a vp U-Net run) as a diffusers ``DDPMPipeline`` folder at ``out``, atomically: a
    temp folder beside it, renamed into place, so a failure leaves nothing half-written. ``ema=False`` writes the
    raw weights; a checkpoint without EMA writes its raw weights either way (the result says which)."""
    out = Path(out)
    _check_out(out, overwrite)
    where = f"checkpoint {str(checkpoint)!r}"
    ckpt = load_checkpoint(checkpoint)
    config, cfg = _exportable(ckpt, where)
    unet = unet_to_diffusers(cfg)
    scheduler = scheduler_to_diffusers(config.schedule, config.num_timesteps, config.parameterization,
                                       config.variance, config.dataset.spec.clip)
    ours = config.diffusion().schedule.alphas_cumprod
    back = diffusion_from_scheduler(scheduler).schedule.alphas_cumprod
    if not torch.equal(ours, back):  # no silent approximation: the written schedule must read back as ours
        raise InvalidInput(f"{where}: schedule {config.schedule.value!r} does not read back exactly from diffusers' "
                           f"beta_schedule {scheduler['beta_schedule']!r}")
    used_ema = ema and bool(ckpt.ema)
    weights = to_diffusers_weights(load_model(ckpt, ema=used_ema).state_dict(), cfg)
    _write_folder(out, {"model_index.json": PIPELINE, "unet/config.json": unet,
                        "scheduler/scheduler_config.json": scheduler}, weights)
    return ExportResult(out, used_ema)


def _write_folder(out: Path, configs: dict[str, dict], weights: dict[str, torch.Tensor]) -> None:
    """All files into a temp folder beside ``out``, then one rename (an old ``out`` is moved aside first and
    removed only once the new one is in place)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        for name, config in configs.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(json.dumps(config, indent=2) + "\n")
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "unet" / WEIGHTS),
                  metadata={"format": "pt"})
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "previous")
        os.replace(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old / "previous", out)  # put the old folder back
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@dataclass
class DiffusersModel:
    """A diffusers folder read as ours: the network's config and weights (ours names), its diffusion, and class
    names ``"0" .. "K-1"`` for a class-conditional network."""

    model_config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    diffusion: Diffusion
    class_names: list[str]

    def network(self) -> nn.Module:
        model = build_model(self.model_config)
        model.load_state_dict(self.weights)
        return model.eval()


def is_diffusers_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder in diffusers' layout (a pipeline folder, or a bare UNet2DModel folder)."""
    p = Path(path)
    if not p.is_dir():
        return False
    if (p / "model_index.json").is_file() or (p / "unet" / "config.json").is_file():
        return True
    # a bare UNet2DModel folder: its config beside its weights (a run folder also has a config.json, and no weights)
    return (p / "config.json").is_file() and any(p.glob("diffusion_pytorch_model.*"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{str(path)!r} is not valid JSON: {type(e).__name__}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{str(path)!r} must hold a JSON object, got {type(value).__name__}")
    return value


def _locate(folder: Path) -> tuple[Path, Path]:
    """The UNet2DModel folder and the scheduler config of a diffusers folder."""
    unet = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    if not (unet / "config.json").is_file():
        raise InvalidInput(f"{str(folder)!r} has no unet/config.json nor config.json (a UNet2DModel folder)")
    for scheduler in (folder / "scheduler" / "scheduler_config.json", unet / "scheduler_config.json",
                      unet.parent / "scheduler" / "scheduler_config.json"):
        if scheduler.is_file():
            return unet, scheduler
    raise InvalidInput(f"{str(folder)!r} has no scheduler/scheduler_config.json (the noise schedule and what the "
                       "network predicts); add the DDPMScheduler config the model was trained with")


def _read_weights(unet: Path) -> dict[str, torch.Tensor]:
    path = unet / WEIGHTS
    if not path.is_file():
        pickled = (unet / "diffusion_pytorch_model.bin").is_file()
        raise InvalidInput(f"{str(unet)!r} has no {WEIGHTS}" + (" (only the pickled .bin, which is not read: save it "
                           "with safe_serialization=True)" if pickled else ""))
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    except Exception as e:  # safetensors' own error types for a foreign or truncated file
        raise InvalidInput(f"{str(path)!r} is not a safetensors file: {e}") from None
    check_finite(tensors, f"{str(path)!r} is unusable")
    return tensors


def load_diffusers(folder: str | Path) -> DiffusersModel:
    """Read a diffusers folder (a pipeline folder with ``unet/`` and ``scheduler/``, or a bare ``UNet2DModel``
    folder with the scheduler config beside it or in ``../scheduler/``) whose network maps onto our U-Net."""
    folder = Path(folder)
    unet, scheduler = _locate(folder)
    diffusion = diffusion_from_scheduler(_read_json(scheduler))
    cfg = unet_from_diffusers(_read_json(unet / "config.json"), diffusion.learned_variance)
    model_config = {"kind": "unet", **cfg.to_dict()}
    weights = from_diffusers_weights(_read_weights(unet), cfg, f"diffusers folder {str(folder)!r}")
    check_weights_fit(model_config, weights, f"diffusers folder {str(folder)!r}")
    return DiffusersModel(model_config, weights, diffusion, [str(k) for k in range(cfg.num_classes)])
