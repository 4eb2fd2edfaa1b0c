"""A checkpoint's network out as ONNX: ``diffusion-core export --checkpoint CK --to onnx OUT.onnx``.

The file holds the network alone, the function ``model(x, t[, labels])`` the samplers call, with a free batch
size:

* ``x``: float32 ``(N, *sample_shape)``, the noisy sample;
* ``t``: float32 ``(N,)``, the network's time input: the path's ``network_time(t)``, e.g. the schedule's index
  ``0 .. T-1`` on a DDPM (vp) run, ``1000 t`` on rectified flow and the continuous VP;
* ``labels`` (class-conditional networks only): int64 ``(N,)``, ``0 .. K-1``, or ``K`` for the null label (the
  file does not check the range: the network's input checks run once, while it is traced);
* output ``out``: what the network predicts (``parameterization`` in the metadata), shaped like ``x`` (twice the
  channels with a learned variance).

The sampling loop (path, grid, solver, guidance) is not in the file: run it around the session. The file's
metadata records what the loop needs: the run's ``TrainConfig`` as JSON, the time input and the null label. It is
written with PyTorch's TorchScript-based exporter (``dynamo=False``: the other one needs ``onnxscript``) and the
``onnx`` package, which the ``onnx`` extra installs with ``onnxruntime``.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .._version import __version__
from ..errors import InvalidInput
from .checkpoint import load_checkpoint
from .models import load_model

__all__ = ["OnnxExport", "export_onnx"]

OPSET = 17


@dataclass
class OnnxExport:
    path: Path
    ema: bool  # the EMA weights were written
    inputs: list[str]


def _check_out(out: Path, overwrite: bool) -> None:
    if out.suffix.lower() != ".onnx":
        raise InvalidInput(f"OUT {str(out)!r} must be a file name ending in .onnx for --to onnx")
    if out.is_dir():
        raise InvalidInput(f"OUT {str(out)!r} is a folder; give a file name such as model.onnx")
    if out.exists() and not overwrite:
        raise InvalidInput(f"OUT {str(out)!r} exists; pass --overwrite to replace it")


class _Network(nn.Module):
    """``model(x, t[, labels])`` with the inputs the file names, the time as float32."""

    def __init__(self, model: nn.Module, class_cond: bool) -> None:
        super().__init__()
        self.model, self.class_cond = model, class_cond

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, t, labels) if self.class_cond else self.model(x, t)


def _example_inputs(model_config: dict, class_cond: bool) -> tuple[torch.Tensor, ...]:
    mc = model_config
    shape = (mc["dim"],) if mc["kind"] == "mlp" else (mc["in_channels"], mc["image_size"], mc["image_size"])
    x = torch.zeros(2, *shape)
    t = torch.tensor([1.0, 2.0])
    return (x, t, torch.zeros(2, dtype=torch.long)) if class_cond else (x, t)


def _metadata(ckpt, class_cond: bool, num_classes: int) -> dict[str, str]:
    meta = {"diffusion_core_version": __version__, "train_config": json.dumps(ckpt.train_config),
            "model_config": json.dumps(ckpt.model_config),
            "t": "the network's time input: the path's network_time(t) (a DDPM run: the schedule's index 0..T-1)"}
    if class_cond:
        meta["labels"] = f"class labels 0..{num_classes - 1}; {num_classes} is the null label (classifier-free guidance)"
    return meta


def export_onnx(checkpoint: str | Path, out: str | Path, *, ema: bool = True, overwrite: bool = False) -> OnnxExport:
    """Write the network of ``checkpoint`` as an ONNX file at ``out`` (atomically: a temporary file beside it,
    renamed into place). ``ema=False`` writes the raw weights."""
    try:
        import onnx
    except ImportError:
        raise InvalidInput("--to onnx needs the onnx package: pip install \"diffusion-core-torch[onnx]\"") from None
    out = Path(out)
    _check_out(out, overwrite)
    ckpt = load_checkpoint(checkpoint)
    model = load_model(ckpt, ema=ema)
    num_classes = int(ckpt.model_config.get("num_classes", 0) or 0)
    class_cond = num_classes > 0
    names = ["x", "t", "labels"] if class_cond else ["x", "t"]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():  # the TorchScript-based exporter announces its deprecation, and the
            warnings.simplefilter("ignore", DeprecationWarning)  # network's input checks run once, while tracing:
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the file has none (labels: 0..K)
            torch.onnx.export(_Network(model, class_cond), _example_inputs(ckpt.model_config, class_cond), str(tmp),
                              input_names=names, output_names=["out"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={name: {0: "batch"} for name in names + ["out"]})
        proto = onnx.load(str(tmp))
        for key, value in _metadata(ckpt, class_cond, num_classes).items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxExport(out, bool(ema and ckpt.ema), names)
