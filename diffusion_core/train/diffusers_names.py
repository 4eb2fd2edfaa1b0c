"""The weight names of our U-Net and of diffusers' ``UNet2DModel`` with the same architecture: one explicit table.

Our U-Net (:mod:`diffusion_core.nn.unet`) keeps its blocks in flat lists (``down.<j>``, ``middle``, ``up.<j>``);
diffusers groups them per level (``down_blocks.<level>.resnets.<i>``, ``.attentions.<i>``, ``.downsamplers.0``).
:func:`weight_names` walks the levels the way both networks are built and writes, for every parameter of ours, the
diffusers name(s) it becomes; the per-block renames are the tables below. The only tensor that is not a rename is
the attention's input projection: ours is one ``qkv`` Linear (3C outputs: all queries, then keys, then values, each
head-major), diffusers' is three Linears ``to_q``, ``to_k``, ``to_v``; the rows are split and joined exactly.
The table is checked against the network's own state dict, so a change to either side fails loudly, not silently.
"""
from __future__ import annotations

import torch

from ..errors import InvalidInput
from ..nn import UNetConfig, build_unet

__all__ = ["weight_names", "to_diffusers_weights", "from_diffusers_weights"]

# Our top-level modules -> diffusers' (the time MLP is Linear, SiLU, Linear: indices 0 and 2; the output head is
# GroupNorm, SiLU, Conv: indices 0 and 2).
TOP = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
       "label_embed": "class_embedding", "conv_in": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}
# Inside a residual block: ours -> diffusers' ResnetBlock2D.
RESBLOCK = {"norm1": "norm1", "conv1": "conv1", "emb_proj": "time_emb_proj", "norm2": "norm2", "conv2": "conv2",
            "skip": "conv_shortcut"}
# Inside an attention block: ours -> diffusers' Attention (qkv -> three projections).
ATTENTION = {"norm": ("group_norm",), "qkv": ("to_q", "to_k", "to_v"), "proj": ("to_out.0",)}
# Up/downsampling: one conv, called conv on both sides.
RESAMPLE = {"conv": "conv"}


def _blocks(cfg: UNetConfig) -> list[tuple[str, str, str]]:
    """(our module, diffusers module, kind) for every block, in the order both networks build them."""
    attn = [res in cfg.attention_resolutions for res in cfg.resolutions]
    levels, out, j = len(cfg.channel_mults), [], 0
    for level in range(levels):
        for i in range(cfg.num_res_blocks):
            out.append((f"down.{j}.0", f"down_blocks.{level}.resnets.{i}", "res"))
            if attn[level]:
                out.append((f"down.{j}.1", f"down_blocks.{level}.attentions.{i}", "attn"))
            j += 1
        if level != levels - 1:
            out.append((f"down.{j}.0", f"down_blocks.{level}.downsamplers.0", "resample"))
            j += 1
    out += [("middle.0", "mid_block.resnets.0", "res"), ("middle.1", "mid_block.attentions.0", "attn"),
            ("middle.2", "mid_block.resnets.1", "res")]
    j = 0
    for u, level in enumerate(reversed(range(levels))):
        for i in range(cfg.num_res_blocks + 1):
            out.append((f"up.{j}.0", f"up_blocks.{u}.resnets.{i}", "res"))
            if attn[level]:
                out.append((f"up.{j}.1", f"up_blocks.{u}.attentions.{i}", "attn"))
            if level != 0 and i == cfg.num_res_blocks:
                out.append((f"up.{j}.{2 if attn[level] else 1}", f"up_blocks.{u}.upsamplers.0", "resample"))
            j += 1
    return out


def weight_names(cfg: UNetConfig) -> dict[str, tuple[str, ...]]:
    """Every parameter name of our U-Net for ``cfg`` -> its diffusers name (three names for ``qkv``, split by
    rows into ``to_q``, ``to_k``, ``to_v``). Checked to cover our state dict exactly."""
    with torch.device("meta"):
        ours = build_unet(cfg).state_dict()
    table: dict[str, tuple[str, ...]] = {}
    renames = [(o, (d,)) for o, d in TOP.items()]
    for our_mod, their_mod, kind in _blocks(cfg):
        inner = {"res": {k: (v,) for k, v in RESBLOCK.items()}, "attn": ATTENTION,
                 "resample": {k: (v,) for k, v in RESAMPLE.items()}}[kind]
        renames += [(f"{our_mod}.{o}", tuple(f"{their_mod}.{d}" for d in ds)) for o, ds in inner.items()]
    for our_mod, their_mods in renames:
        for param in ("weight", "bias"):
            if f"{our_mod}.{param}" in ours:
                table[f"{our_mod}.{param}"] = tuple(f"{m}.{param}" for m in their_mods)
    if table.keys() != ours.keys():  # a block the table does not know: a bug here, not the user's input
        raise AssertionError(f"weight-name table out of sync with the U-Net: {sorted(ours.keys() ^ table.keys())[:4]}")
    return table


def to_diffusers_weights(state: dict[str, torch.Tensor], cfg: UNetConfig) -> dict[str, torch.Tensor]:
    """Our state dict -> diffusers' (every tensor contiguous, ``qkv`` split into three)."""
    out = {}
    for ours, theirs in weight_names(cfg).items():
        parts = state[ours].chunk(len(theirs), dim=0)
        out.update({name: part.contiguous() for name, part in zip(theirs, parts)})
    return out


def from_diffusers_weights(tensors: dict[str, torch.Tensor], cfg: UNetConfig, where: str) -> dict[str, torch.Tensor]:
    """diffusers' state dict -> ours; a missing or unexpected tensor is refused, naming it."""
    table = weight_names(cfg)
    expected = {name for names in table.values() for name in names}
    missing, extra = sorted(expected - tensors.keys()), sorted(tensors.keys() - expected)
    if missing or extra:
        raise InvalidInput(f"{where}: its weights do not match its config.json (missing {missing[:3]}, "
                           f"unexpected {extra[:3]})")
    out = {}
    for ours, theirs in table.items():
        parts = [tensors[name] for name in theirs]
        try:
            out[ours] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        except RuntimeError:
            raise InvalidInput(f"{where}: weights {list(theirs)} have shapes {[tuple(p.shape) for p in parts]}, "
                               "which do not stack into one attention projection") from None
    return out
