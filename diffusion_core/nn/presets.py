"""Named network configurations and the builders that turn a config into a model.

``ddpm-cifar10`` is the network of Ho et al. 2020 for CIFAR-10 (35.7M parameters). The small
presets train on a laptop CPU in minutes; ``tiny`` exists for tests and compiles in seconds.
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping

from torch import nn

from .config import MLPConfig, UNetConfig
from .mlp import MLPDenoiser
from .unet import UNet
from ..errors import InvalidInput

__all__ = [
    "PRESETS", "UNetConfig", "MLPConfig", "get_preset", "list_presets",
    "build_unet", "build_mlp", "count_parameters",
]

PRESETS: Mapping[str, UNetConfig] = MappingProxyType({
    # Ho et al. 2020, appendix B: 35.7M parameters.
    "ddpm-cifar10": UNetConfig(
        image_size=32, in_channels=3, base_channels=128, channel_mults=(1, 2, 2, 2),
        num_res_blocks=2, attention_resolutions=(16,), dropout=0.1,
    ),
    # scikit-learn digits (8x8, 1797 images): 8 -> 4, attention at 4x4.
    "digits-8": UNetConfig(
        image_size=8, in_channels=1, base_channels=32, channel_mults=(1, 2),
        num_res_blocks=1, attention_resolutions=(4,), dropout=0.1, norm_groups=8,
    ),
    # MNIST: 28 -> 14 -> 7; a fourth level would need 28 divisible by 8.
    "mnist-28": UNetConfig(
        image_size=28, in_channels=1, base_channels=32, channel_mults=(1, 2, 2),
        num_res_blocks=2, attention_resolutions=(7,), dropout=0.1, norm_groups=8,
    ),
    # CIFAR-sized but narrow: ddpm-cifar10's levels at a quarter of the width, one block per level.
    "tiny-32": UNetConfig(
        image_size=32, in_channels=3, base_channels=32, channel_mults=(1, 2, 2, 2),
        num_res_blocks=1, attention_resolutions=(16,), dropout=0.1, norm_groups=8,
    ),
    # For tests: every block type (two heads, 1x1 skips, up/down) at ~0.18M parameters.
    "tiny": UNetConfig(
        image_size=8, in_channels=3, base_channels=16, channel_mults=(1, 2),
        num_res_blocks=1, attention_resolutions=(4,), dropout=0.0, num_heads=2, norm_groups=4,
    ),
})


def list_presets() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return list(PRESETS)


def get_preset(name: str, **overrides: Any) -> UNetConfig:
    """The config named ``name``, optionally with fields replaced (e.g. ``learn_sigma=True``).

    Raises ValueError listing the allowed names when ``name`` is unknown; overrides are
    validated like any config.
    """
    if name not in PRESETS:
        raise InvalidInput(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def build_unet(config: UNetConfig | str | dict) -> UNet:
    """Build a :class:`UNet` from a config, a preset name or a ``UNetConfig.to_dict()`` dict."""
    if isinstance(config, str):
        config = get_preset(config)
    elif isinstance(config, dict):
        config = UNetConfig.from_dict(config)
    return UNet(config)


def build_mlp(config: MLPConfig | dict) -> MLPDenoiser:
    """Build an :class:`MLPDenoiser` from a config or a ``MLPConfig.to_dict()`` dict."""
    if isinstance(config, dict):
        config = MLPConfig.from_dict(config)
    return MLPDenoiser.from_config(config)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (works for models built on the meta device)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
