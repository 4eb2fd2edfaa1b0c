"""The DDPM U-Net (Ho et al. 2020, appendix B), written for speed on GPU and CPU.

Layout, following the paper's reference network:

* timestep -> sinusoidal features (``base_channels``) -> Linear -> SiLU -> Linear (4x wider);
  with ``num_classes`` K > 0, plus a learned embedding of the class label (K + 1 rows, the last
  one the null label), added before the SiLU that feeds the residual blocks (as in ADM);
* a 3x3 input conv, then per level ``num_res_blocks`` residual blocks (plus self-attention at
  the chosen resolutions) and a stride-2 conv downsample between levels;
* a bottleneck of residual block, attention, residual block;
* the mirrored decoder with ``num_res_blocks + 1`` blocks per level, each eating one skip
  connection, and nearest-neighbour x2 + 3x3 conv upsampling;
* GroupNorm -> SiLU -> 3x3 conv output.

Performance notes: the forward pass has no data-dependent Python control flow, ``.item()`` or
numpy, so ``torch.compile(model, fullgraph=True)`` captures it in one graph; attention goes
through ``scaled_dot_product_attention`` (flash / memory-efficient kernels); tensors stay in
whatever memory format the input uses, so ``channels_last`` flows end to end.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import UNetConfig
from .embedding import LabelEmbedding, no_labels_allowed, timestep_embedding
from ..errors import InvalidInput, InvalidInputType

_NORM_EPS = 1e-6  # the DDPM reference's GroupNorm epsilon


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype, returned in the input dtype.

    Under autocast, fp16 statistics over large groups overflow or lose the mean, and bf16's
    8-bit mantissa makes the variance noisy; the normalisation is cheap next to the convs, so
    doing it in fp32 costs little and keeps mixed precision stable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).to(x.dtype)


def _zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights so the residual branch it ends starts as the identity map.

    DDPM zero-initialises the last conv of every residual block, the attention output
    projection and the final conv: the untrained network is then a stack of identities that
    predicts zero, which keeps early training stable at any depth.
    """
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block: GN -> SiLU -> conv, + time projection, GN -> SiLU -> dropout -> conv.

    ``emb`` is the timestep embedding *after* its SiLU (the UNet applies the activation once
    rather than in every block; DDPM's per-block ``dense(swish(temb))`` is the same function).
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = GroupNorm32(groups, in_ch, eps=_NORM_EPS)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = GroupNorm32(groups, out_ch, eps=_NORM_EPS)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        # DDPM's skip is a 1x1 "NIN" projection only when the width changes.
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the H*W positions, residual: ``x + proj(attn(norm(x)))``.

    The projections are ``nn.Linear`` on a (B, HW, C) view, the same function and parameter
    count as DDPM's 1x1 convs. With a channels_last input that view is free (the memory is
    already position-major), and the output comes back channels_last without a copy.
    """

    def __init__(self, channels: int, num_heads: int, groups: int):
        super().__init__()
        if channels % num_heads:
            raise InvalidInput(f"num_heads={num_heads} must divide channels={channels}")
        self.num_heads = num_heads
        self.norm = GroupNorm32(groups, channels, eps=_NORM_EPS)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = _zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        n, heads = height * width, self.num_heads
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.qkv(h).view(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        # Default scale 1/sqrt(head_dim) is DDPM's C**-0.5 for a single head.
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        h = self.proj(h.transpose(1, 2).reshape(b, n, c))
        return x + h.transpose(1, 2).reshape(b, c, height, width)


class Downsample(nn.Module):
    """Halve H and W with a learned stride-2 3x3 conv.

    ``padding=1`` pads one pixel on every side (the PyTorch ports of DDPM); ``padding=0`` pads one pixel on the
    right and bottom only, TensorFlow's ``SAME`` for a stride-2 conv on an even size, as DDPM's own TF code did
    (and diffusers' ``downsample_padding=0``, which Google's converted DDPM checkpoints use).
    """

    def __init__(self, channels: int, padding: int = 1):
        super().__init__()
        self.pad_right = padding == 0
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_right:  # fixed at construction: no graph break under torch.compile
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour (no checkerboard artefacts), then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class EmbedSequential(nn.Sequential):
    """Sequential that hands the timestep embedding to the residual blocks only.

    The ``isinstance`` test is on modules, fixed at construction, so torch.compile resolves it
    while tracing: no graph break.
    """

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNet(nn.Module):
    """DDPM U-Net: ``model(x, t) -> Tensor``, or ``model(x, t, labels)`` when class-conditional.

    Args:
        config: the :class:`UNetConfig` (see :mod:`diffusion_core.nn.presets` for presets).

    ``forward(x, t)`` takes images ``x`` of shape (B, in_channels, H, W) and timesteps ``t``
    of shape (B,) (integer indices or float times; a 0-d tensor is broadcast over the batch)
    and returns (B, model_out_channels, H, W): the noise prediction, followed by the variance
    interpolation channels when ``learn_sigma``. Under autocast the output is in the autocast
    dtype; cast it to float32 before computing a loss.

    With ``config.num_classes`` K > 0, ``labels`` is a LongTensor (B,) with values in [0, K]
    (K is the null label: unconditional), and ``labels=None`` means all-null. An unconditional
    network (K = 0) rejects ``labels``.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise InvalidInputType(f"config must be a UNetConfig, got {type(config).__name__}")
        self.config = config
        cfg = config
        ch, groups, emb_dim = cfg.base_channels, cfg.norm_groups, cfg.time_embed_dim
        attn_res = set(cfg.attention_resolutions)
        last = len(cfg.channel_mults) - 1

        def res(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb_dim, cfg.dropout, groups)

        def attn(c: int) -> AttentionBlock:
            return AttentionBlock(c, cfg.num_heads, groups)

        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # num_classes = 0: no module at all, so the unconditional network keeps its parameters and state-dict keys
        self.label_embed = LabelEmbedding(cfg.num_classes, emb_dim) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        # Encoder: remember the width of every output, each becomes a decoder skip input.
        self.down = nn.ModuleList()
        skip_chs, cur = [ch], ch
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(cur, ch * mult)]
                cur = ch * mult
                if cfg.resolutions[level] in attn_res:
                    layers.append(attn(cur))
                self.down.append(EmbedSequential(*layers))
                skip_chs.append(cur)
            if level != last:
                self.down.append(EmbedSequential(Downsample(cur, cfg.downsample_padding)))
                skip_chs.append(cur)

        self.middle = EmbedSequential(res(cur, cur), attn(cur), res(cur, cur))

        # Decoder: one more block per level than the encoder, to consume the downsample skips.
        self.up = nn.ModuleList()
        for level in reversed(range(len(cfg.channel_mults))):
            mult = cfg.channel_mults[level]
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(cur + skip_chs.pop(), ch * mult)]
                cur = ch * mult
                if cfg.resolutions[level] in attn_res:
                    layers.append(attn(cur))
                if level != 0 and i == cfg.num_res_blocks:
                    layers.append(Upsample(cur))
                self.up.append(EmbedSequential(*layers))
        assert not skip_chs, "encoder/decoder skip bookkeeping out of sync"

        self.out = nn.Sequential(
            GroupNorm32(groups, cur, eps=_NORM_EPS),
            nn.SiLU(),
            _zero_init(nn.Conv2d(cur, cfg.model_out_channels, 3, padding=1)),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        # Shape checks only: static under torch.compile, never a host sync.
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise InvalidInput(f"x must have shape (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        factor = 2 ** (len(cfg.channel_mults) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise InvalidInput(
                f"x height and width must be divisible by {factor} (2**(levels-1)), got {tuple(x.shape[2:])}"
            )
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise InvalidInput(
                f"t must have shape ({x.shape[0]},), one timestep per example, got {tuple(t.shape)}"
            )

        # Sinusoids are built in fp32 (see timestep_embedding); match the weights' dtype so a
        # model cast to bf16/fp16 without autocast still runs. Under autocast this is a no-op.
        emb = self.time_embed(timestep_embedding(t, cfg.base_channels).to(self.time_embed[0].weight.dtype))
        if self.label_embed is None:
            no_labels_allowed(labels)
        else:
            emb = emb + self.label_embed(labels, x.shape[0]).to(emb.dtype)
        emb = F.silu(emb)

        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        h = self.middle(h, emb)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
