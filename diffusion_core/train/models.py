"""Build the network a :class:`TrainConfig` names, and rebuild it from a checkpoint's model config."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..nn import MLPConfig, UNetConfig, build_mlp, build_unet, get_preset, list_presets
from ..reverse import VarianceType
from .checkpoint import Checkpoint
from .config import TrainConfig
from ..errors import InvalidInput

__all__ = ["model_config_for", "build_model", "check_weights_fit", "load_model", "normalized_model_config"]


def model_config_for(config: TrainConfig, data_channels: int, num_classes: int = 0,
                     data_size: int | None = None) -> dict[str, Any]:
    """The JSON model config of a run: ``{"kind": "unet" | "mlp", **fields}``; ``num_classes`` > 0 for a
    class-conditional network. A U-Net takes the data's channels; its preset's image size must be the digits'
    (``data_size``, 8: a 28x28 preset would train on 8x8 images and sample 28x28 ones), and for a folder the
    images are resized to ``config.image_size`` or the preset's size."""
    learn_sigma = config.variance is VarianceType.LEARNED_RANGE  # DDPM's learned variance (vp only)
    spec = config.dataset.spec
    if config.model == "mlp":  # points: as many features as the dataset declares coordinates
        return {"kind": "mlp", **MLPConfig(dim=spec.shape[0], learn_sigma=learn_sigma, num_classes=num_classes).to_dict()}
    overrides: dict[str, Any] = {"learn_sigma": learn_sigma, "num_classes": num_classes, "in_channels": data_channels}
    preset = get_preset(config.model)
    if spec.kind == "folder":
        if config.image_size is not None:
            overrides["image_size"] = config.image_size
    elif data_size is not None and preset.image_size != data_size:
        fits = [n for n in list_presets() if get_preset(n).image_size == data_size]
        raise InvalidInput(f"model {config.model!r} is a U-Net for {preset.image_size}x{preset.image_size} images, "
                           f"but the {config.dataset.value} are {data_size}x{data_size} (it would sample "
                           f"{preset.image_size}x{preset.image_size} images); use {' or '.join(fits)}")
    return {"kind": "unet", **get_preset(config.model, **overrides).to_dict()}


def build_model(model_config: dict[str, Any]) -> nn.Module:
    """The network for a model config made by :func:`model_config_for`."""
    fields = dict(model_config)
    kind = fields.pop("kind", None)
    if kind == "unet":
        return build_unet(UNetConfig.from_dict(fields))
    if kind == "mlp":
        return build_mlp(MLPConfig.from_dict(fields))
    raise InvalidInput(f"model config kind must be 'unet' or 'mlp', got {kind!r}")


def normalized_model_config(model_config: dict[str, Any]) -> dict[str, Any]:
    """``model_config`` with every field its config class has, defaults filled in, so that a checkpoint written
    before a field existed compares equal to the same network's config written after (a config that does not
    build is returned as it is)."""
    fields = dict(model_config)
    kind = fields.pop("kind", None)
    cls = {"unet": UNetConfig, "mlp": MLPConfig}.get(kind)
    try:
        return {"kind": kind, **cls.from_dict(fields).to_dict()} if cls else dict(model_config)
    except (InvalidInput, TypeError):
        return dict(model_config)


def check_weights_fit(model_config: dict[str, Any], weights: dict[str, torch.Tensor], what: str) -> None:
    """Raise :class:`InvalidInput` unless ``weights`` has exactly the names and shapes of the network that
    ``model_config`` describes. The network is built on the meta device, which allocates nothing, so a config
    read from an untrusted file (say ``hidden=2e6``, 16 TB of weights) is rejected before any memory is asked
    for; once the shapes match, building it costs no more than the weights the file really holds."""
    with torch.device("meta"):
        try:
            expected = {k: tuple(v.shape) for k, v in build_model(model_config).state_dict().items()}
        except (TypeError, KeyError, OverflowError, RuntimeError) as e:
            raise InvalidInput(f"{what}: its model config cannot be built: {e}") from None
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if got.keys() != expected.keys():
        extra, missing = sorted(got.keys() - expected.keys()), sorted(expected.keys() - got.keys())
        raise InvalidInput(f"{what}: its weights do not match its model config (missing {missing[:3]}, "
                           f"unexpected {extra[:3]})")
    for name, shape in expected.items():
        if got[name] != shape:
            raise InvalidInput(f"{what}: weight {name!r} has shape {got[name]}, its model config says {shape}")


def load_model(checkpoint: Checkpoint, *, ema: bool = True) -> nn.Module:
    """The network of ``checkpoint`` in eval mode, for sampling: with the EMA weights (they sample better),
    or the raw weights with ``ema=False`` or when the checkpoint holds no EMA."""
    if checkpoint.ema:  # both sets must fit: a file whose other half does not is damaged
        check_weights_fit(checkpoint.model_config, checkpoint.ema, "checkpoint (EMA)")
    check_weights_fit(checkpoint.model_config, checkpoint.model, "checkpoint")
    model = build_model(checkpoint.model_config)
    model.load_state_dict(checkpoint.ema if ema and checkpoint.ema else checkpoint.model)
    return model.eval()
