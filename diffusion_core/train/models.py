"""Build the network a :class:`TrainConfig` names, and rebuild it from a checkpoint's model config."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..nn import MLPConfig, UNetConfig, build_mlp, build_unet, get_preset
from .checkpoint import Checkpoint
from .config import Dataset, TrainConfig

__all__ = ["model_config_for", "build_model", "load_model"]


def model_config_for(config: TrainConfig, data_channels: int) -> dict[str, Any]:
    """The JSON model config of a run: ``{"kind": "unet" | "mlp", **fields}``."""
    learn_sigma = config.diffusion().learned_variance
    if config.model == "mlp":
        return {"kind": "mlp", **MLPConfig(dim=2, learn_sigma=learn_sigma).to_dict()}
    overrides: dict[str, Any] = {"learn_sigma": learn_sigma}
    if config.dataset is Dataset.FOLDER:
        overrides["in_channels"] = data_channels
        if config.image_size is not None:
            overrides["image_size"] = config.image_size
    return {"kind": "unet", **get_preset(config.model, **overrides).to_dict()}


def build_model(model_config: dict[str, Any]) -> nn.Module:
    """The network for a model config made by :func:`model_config_for`."""
    fields = dict(model_config)
    kind = fields.pop("kind", None)
    if kind == "unet":
        return build_unet(UNetConfig.from_dict(fields))
    if kind == "mlp":
        return build_mlp(MLPConfig.from_dict(fields))
    raise ValueError(f"model config kind must be 'unet' or 'mlp', got {kind!r}")


def load_model(checkpoint: Checkpoint, *, ema: bool = True) -> nn.Module:
    """The network of ``checkpoint`` in eval mode, for sampling: with the EMA weights (they sample better),
    or the raw weights with ``ema=False`` or when the checkpoint holds no EMA."""
    model = build_model(checkpoint.model_config)
    model.load_state_dict(checkpoint.ema if ema and checkpoint.ema else checkpoint.model)
    return model.eval()
