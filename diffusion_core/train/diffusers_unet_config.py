"""Our :class:`~diffusion_core.nn.UNetConfig` <-> diffusers' ``UNet2DModel`` config (``unet/config.json``).

The networks are the same function when diffusers' config says: positional sinusoids ``[sin, cos]`` with
``freq_shift=1`` (DDPM's), GroupNorm eps 1e-6, SiLU, conv up/downsampling, a mid block with attention, and one
head count for every attention layer. ``downsample_padding`` maps onto our ``UNetConfig.downsample_padding`` (0 is
TF's right-and-bottom padding, which Google's converted DDPM checkpoints use). Everything else in a diffusers config
is refused on import, naming the field.
"""
from __future__ import annotations

from typing import Any

from ..errors import InvalidInput
from ..nn import UNetConfig

__all__ = ["unet_to_diffusers", "unet_from_diffusers", "DIFFUSERS_VERSION"]

DIFFUSERS_VERSION = "0.42.1"  # the version the bridge was checked against (informational, in every config written)

# Fields whose value must be exactly this for the networks to agree; absent means diffusers' default, listed here.
_FIXED = {"center_input_sample": False, "time_embedding_type": "positional", "freq_shift": 1, "flip_sin_to_cos": False,
          "mid_block_type": "UNetMidBlock2D", "mid_block_scale_factor": 1,
          "downsample_type": "conv", "upsample_type": "conv", "act_fn": "silu", "norm_eps": 1e-6,
          "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None}
_DEFAULTS = {"center_input_sample": False, "time_embedding_type": "positional", "freq_shift": 0, "flip_sin_to_cos": True,
             "mid_block_type": "UNetMidBlock2D", "mid_block_scale_factor": 1,
             "downsample_type": "conv", "upsample_type": "conv", "act_fn": "silu", "norm_eps": 1e-5,
             "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None}


def _attention_widths(cfg: UNetConfig) -> set[int]:
    widths = {cfg.base_channels * m for m, r in zip(cfg.channel_mults, cfg.resolutions) if r in cfg.attention_resolutions}
    return widths | {cfg.base_channels * cfg.channel_mults[-1]}  # the mid block always attends


def unet_to_diffusers(cfg: UNetConfig) -> dict[str, Any]:
    """The ``UNet2DModel`` config of the network ``cfg`` builds; ``InvalidInput`` if diffusers cannot express it."""
    widths = _attention_widths(cfg)
    if cfg.num_heads > 1 and len(widths) > 1:
        raise InvalidInput(f"num_heads={cfg.num_heads} over attention layers of widths {sorted(widths)} cannot be "
                           "written for diffusers, whose attention_head_dim fixes the head width, not the head count")
    attn = [res in cfg.attention_resolutions for res in cfg.resolutions]
    return {
        "_class_name": "UNet2DModel", "_diffusers_version": DIFFUSERS_VERSION,
        "sample_size": cfg.image_size, "in_channels": cfg.in_channels, "out_channels": cfg.model_out_channels,
        "block_out_channels": [cfg.base_channels * m for m in cfg.channel_mults],
        "layers_per_block": cfg.num_res_blocks,
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        "attention_head_dim": None if cfg.num_heads == 1 else widths.pop() // cfg.num_heads,
        "norm_num_groups": cfg.norm_groups, "attn_norm_num_groups": None, "dropout": cfg.dropout,
        "time_embedding_dim": None, "num_class_embeds": cfg.num_classes + 1 if cfg.num_classes else None,
        "downsample_padding": cfg.downsample_padding, "num_train_timesteps": None, **_FIXED,
    }


def _refuse(field: str, value: Any, allowed: str) -> InvalidInput:
    return InvalidInput(f"diffusers config field {field}={value!r} does not map onto our U-Net (allowed: {allowed})")


def _check_fixed(d: dict[str, Any]) -> None:
    for field, want in _FIXED.items():
        got = d.get(field, _DEFAULTS[field])
        if got != want:
            raise _refuse(field, got, repr(want))
    if d.get("time_embedding_dim") not in (None, 4 * d["block_out_channels"][0]):
        raise _refuse("time_embedding_dim", d["time_embedding_dim"], "null or 4 * block_out_channels[0]")
    if d.get("attn_norm_num_groups") not in (None, d.get("norm_num_groups", 32)):
        raise _refuse("attn_norm_num_groups", d["attn_norm_num_groups"], "null or norm_num_groups")


def _levels(d: dict[str, Any]) -> tuple[list[int], list[bool]]:
    """The channel widths and which levels attend, from block_out_channels and the block types."""
    widths = list(d.get("block_out_channels", (64,)))
    down = list(d.get("down_block_types", ()))
    up = list(d.get("up_block_types", ()))
    if len(down) != len(widths) or any(t not in ("DownBlock2D", "AttnDownBlock2D") for t in down):
        raise _refuse("down_block_types", down, f"{len(widths)} of DownBlock2D / AttnDownBlock2D")
    attn = [t == "AttnDownBlock2D" for t in down]
    mirror = ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)]
    if up != mirror:
        raise _refuse("up_block_types", up, f"{mirror} (the mirror of down_block_types)")
    base = widths[0]
    if any(w % base for w in widths):
        raise _refuse("block_out_channels", widths, "multiples of the first width")
    return widths, attn


def _heads(d: dict[str, Any], widths: list[int], attn: list[bool]) -> int:
    head_dim = d.get("attention_head_dim", 8)
    attended = {w for w, a in zip(widths, attn) if a} | {widths[-1]}
    if head_dim is None:
        return 1
    heads = {w // head_dim if isinstance(head_dim, int) and head_dim > 0 and w % head_dim == 0 else None
             for w in attended}
    if len(heads) != 1 or None in heads:
        raise _refuse("attention_head_dim", head_dim, f"null, or a width giving one head count for widths "
                      f"{sorted(attended)}")
    return heads.pop()


def unet_from_diffusers(d: dict[str, Any], learned_variance: bool) -> UNetConfig:
    """Our config for a ``UNet2DModel`` config; ``learned_variance`` (the scheduler's ``learned_range``) reads a
    doubled ``out_channels`` as the variance channels. Refuses, naming the field, anything that does not map."""
    if d.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise _refuse("_class_name", d.get("_class_name"), "'UNet2DModel'")
    _check_fixed(d)
    widths, attn = _levels(d)
    size = d.get("sample_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if not isinstance(size, int):
        raise _refuse("sample_size", size, "an int, or a square [H, H]")
    in_ch, out_ch = d.get("in_channels", 3), d.get("out_channels", 3)
    if out_ch != (2 * in_ch if learned_variance else in_ch):
        raise _refuse("out_channels", out_ch, f"in_channels={in_ch}, or twice it with variance_type 'learned_range'")
    padding = d.get("downsample_padding", 1)
    if padding not in (0, 1):
        raise _refuse("downsample_padding", padding, "0 (TF's SAME) or 1")
    n_embeds = d.get("num_class_embeds")
    if n_embeds is not None and (not isinstance(n_embeds, int) or n_embeds < 2):
        raise _refuse("num_class_embeds", n_embeds, "null, or K + 1 >= 2 (K classes and the null label)")
    resolutions = [size // 2**i for i in range(len(widths))]
    try:
        return UNetConfig(image_size=size, in_channels=in_ch, base_channels=widths[0],
                          channel_mults=tuple(w // widths[0] for w in widths),
                          num_res_blocks=d.get("layers_per_block", 2),
                          attention_resolutions=tuple(r for r, a in zip(resolutions, attn) if a),
                          dropout=d.get("dropout", 0.0), num_heads=_heads(d, widths, attn),
                          norm_groups=d.get("norm_num_groups", 32), learn_sigma=learned_variance,
                          num_classes=n_embeds - 1 if n_embeds else 0, downsample_padding=padding)
    except (InvalidInput, TypeError) as e:
        raise InvalidInput(f"diffusers config does not map onto our U-Net: {e}") from None
