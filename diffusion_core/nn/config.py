"""Network configurations as frozen, validated, JSON-friendly dataclasses.

A config is the single source of truth for a network's shape: checkpoints store
``config.to_dict()`` next to the weights and rebuild with ``from_dict``. Every check runs
at construction, so a bad value fails where it is written, with the field named, instead
of as a shape error deep inside a forward pass.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from .._validation import check_bool, check_fraction, check_int, check_int_sequence
from ..errors import InvalidInput, InvalidInputType


class _DictMixin:
    """``to_dict`` / ``from_dict`` shared by the configs (plain JSON types only)."""

    _required: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of JSON types (tuples become lists); inverse of :meth:`from_dict`."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Rebuild a config from :meth:`to_dict` output; unknown or missing keys raise ValueError."""
        if not isinstance(d, dict):
            raise InvalidInputType(f"{cls.__name__}.from_dict expects a dict, got {type(d).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise InvalidInput(
                f"unknown {cls.__name__} keys {unknown}; allowed keys: {', '.join(allowed)}"
            )
        missing = [k for k in cls._required if k not in d]
        if missing:
            raise InvalidInput(f"{cls.__name__} dict is missing required keys {missing}")
        return cls(**d)


@dataclass(frozen=True)
class UNetConfig(_DictMixin):
    """Hyperparameters of the DDPM U-Net (Ho et al. 2020, appendix B).

    Resolution ``image_size // 2**i`` is level ``i``; levels after the first start with a
    stride-2 downsample. ``attention_resolutions`` lists the levels (by spatial size) that get
    self-attention after each residual block; the bottleneck always has one, as in DDPM.
    The network is fully convolutional: ``image_size`` fixes which levels attend and is used
    for validation, but other sizes divisible by ``2**(len(channel_mults)-1)`` also run.
    ``num_classes`` K > 0 makes it class-conditional (labels 0..K-1, and K for "no class");
    0 is the unconditional network, parameter for parameter. Dicts written before the field
    existed load with the default 0 (and ``downsample_padding`` with 1, the only padding there was).
    """

    image_size: int
    in_channels: int = 3
    base_channels: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    num_heads: int = 1
    norm_groups: int = 32
    out_channels: int | None = None  # None: same as in_channels
    learn_sigma: bool = False  # also predict the variance interpolation (Nichol & Dhariwal 2021)
    num_classes: int = 0  # > 0: class-conditional, a label embedding with a null label (see UNet)
    downsample_padding: int = 1  # 1: pad every side; 0: right and bottom only, TF's SAME (see Downsample)

    _required: ClassVar[tuple[str, ...]] = ("image_size",)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise fields in place once
        check_int("image_size", self.image_size, minimum=1)
        check_int("in_channels", self.in_channels, minimum=1)
        check_int("base_channels", self.base_channels, minimum=1)
        set_(self, "channel_mults", check_int_sequence("channel_mults", self.channel_mults, minimum=1))
        check_int("num_res_blocks", self.num_res_blocks, minimum=1)
        set_(self, "attention_resolutions",
             check_int_sequence("attention_resolutions", self.attention_resolutions, minimum=1, allow_empty=True))
        set_(self, "dropout", check_fraction("dropout", self.dropout, high_open=True))
        check_int("num_heads", self.num_heads, minimum=1)
        check_int("norm_groups", self.norm_groups, minimum=1)
        if self.out_channels is not None:
            check_int("out_channels", self.out_channels, minimum=1)
        check_bool("learn_sigma", self.learn_sigma)
        check_int("num_classes", self.num_classes, minimum=0)
        check_int("downsample_padding", self.downsample_padding, minimum=0, maximum=1)

        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise InvalidInput(
                f"image_size must be divisible by 2**(len(channel_mults)-1) = {factor} so every "
                f"downsample halves evenly; got image_size={self.image_size} with "
                f"{len(self.channel_mults)} levels (use fewer channel_mults or another size)"
            )
        for ch in sorted({self.base_channels * m for m in (1, *self.channel_mults)}):
            if ch % self.norm_groups:
                raise InvalidInput(
                    f"norm_groups={self.norm_groups} must divide every channel count "
                    f"(base_channels * mult); {ch} is not divisible"
                )
        bad = [r for r in self.attention_resolutions if r not in self.resolutions]
        if bad:
            raise InvalidInput(
                f"attention_resolutions {bad} are not resolutions of this U-Net; "
                f"allowed: {list(self.resolutions)}"
            )
        for level, res in enumerate(self.resolutions):
            attends = res in self.attention_resolutions or level == len(self.resolutions) - 1
            ch = self.base_channels * self.channel_mults[level]
            if attends and ch % self.num_heads:
                raise InvalidInput(
                    f"num_heads={self.num_heads} must divide the channel count {ch} of every "
                    f"attention layer (resolution {res})"
                )

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Spatial size of each level, highest first."""
        return tuple(self.image_size // 2**i for i in range(len(self.channel_mults)))

    @property
    def time_embed_dim(self) -> int:
        """Width of the timestep MLP: 4 * base_channels, as in DDPM."""
        return 4 * self.base_channels

    @property
    def model_out_channels(self) -> int:
        """Channels the network emits: out_channels (default in_channels), doubled if learn_sigma."""
        out = self.in_channels if self.out_channels is None else self.out_channels
        return 2 * out if self.learn_sigma else out


@dataclass(frozen=True)
class MLPConfig(_DictMixin):
    """Hyperparameters of :class:`~diffusion_core.nn.mlp.MLPDenoiser` for low-dimensional toy data."""

    dim: int = 2
    hidden: int = 256
    depth: int = 4
    time_embed_dim: int = 128
    residual: bool = True
    dropout: float = 0.0
    learn_sigma: bool = False
    num_classes: int = 0  # > 0: class-conditional, a label embedding with a null label (see MLPDenoiser)

    def __post_init__(self) -> None:
        check_int("dim", self.dim, minimum=1)
        check_int("hidden", self.hidden, minimum=1)
        check_int("depth", self.depth, minimum=1)
        check_int("time_embed_dim", self.time_embed_dim, minimum=2)
        check_bool("residual", self.residual)
        object.__setattr__(self, "dropout", check_fraction("dropout", self.dropout, high_open=True))
        check_bool("learn_sigma", self.learn_sigma)
        check_int("num_classes", self.num_classes, minimum=0)

    @property
    def model_out_channels(self) -> int:
        """Features the network emits: dim, doubled if learn_sigma."""
        return 2 * self.dim if self.learn_sigma else self.dim
