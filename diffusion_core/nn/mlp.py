"""A small MLP denoiser for low-dimensional toy data (2-D swiss rolls, mixtures, ...)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MLPConfig
from .embedding import LabelEmbedding, no_labels_allowed, timestep_embedding
from ..errors import InvalidInput, InvalidInputType


class MLPBlock(nn.Module):
    """Pre-activation block: SiLU -> Linear, + time projection, SiLU -> dropout -> Linear.

    With ``residual`` the block output is added to its input, which keeps deep stacks
    trainable; without it the block is a plain two-layer MLP stage.
    """

    def __init__(self, hidden: int, dropout: float, residual: bool):
        super().__init__()
        self.residual = residual
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb_proj = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.fc1(F.silu(h)) + self.emb_proj(emb)
        z = self.fc2(self.dropout(F.silu(z)))
        return h + z if self.residual else z


class MLPDenoiser(nn.Module):
    """MLP noise predictor: ``model(x, t) -> Tensor`` with x (B, dim), t (B,); ``model(x, t, labels)`` when
    class-conditional.

    Args:
        dim: data dimension D.
        hidden: width of every hidden layer.
        depth: number of :class:`MLPBlock` (two linear layers each).
        time_embed_dim: width of the sinusoidal timestep features.
        residual: add a skip connection around each block.
        dropout: dropout probability inside the blocks.
        learn_sigma: also output D variance-interpolation values, so the output is (B, 2D).
        num_classes: K > 0 makes the network class-conditional: ``labels`` (B,) in [0, K], K the null
            label, ``None`` all-null. 0 (the default) is the unconditional network, which rejects labels.

    The timestep path mirrors the U-Net: sinusoids -> Linear -> SiLU -> Linear (+ the label embedding,
    ``hidden`` wide, when conditional) -> SiLU, then a per-block linear projection added to the hidden state.
    """

    def __init__(self, dim: int = 2, hidden: int = 256, depth: int = 4, time_embed_dim: int = 128,
                 residual: bool = True, dropout: float = 0.0, learn_sigma: bool = False, num_classes: int = 0):
        super().__init__()
        cfg = MLPConfig(dim=dim, hidden=hidden, depth=depth, time_embed_dim=time_embed_dim,
                        residual=residual, dropout=dropout, learn_sigma=learn_sigma, num_classes=num_classes)
        self.config = cfg
        self.time_embed = nn.Sequential(
            nn.Linear(time_embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        # the label vector is added where the time embedding is `hidden` wide, after its MLP (as in the U-Net)
        self.label_embed = LabelEmbedding(num_classes, hidden) if num_classes else None
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(MLPBlock(hidden, cfg.dropout, residual) for _ in range(depth))
        self.out = nn.Linear(hidden, cfg.model_out_channels)

    @classmethod
    def from_config(cls, config: MLPConfig) -> "MLPDenoiser":
        """Build from an :class:`MLPConfig`."""
        if not isinstance(config, MLPConfig):
            raise InvalidInputType(f"config must be an MLPConfig, got {type(config).__name__}")
        return cls(**config.to_dict())

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 2 or x.shape[1] != cfg.dim:
            raise InvalidInput(f"x must have shape (B, {cfg.dim}), got {tuple(x.shape)}")
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise InvalidInput(
                f"t must have shape ({x.shape[0]},), one timestep per example, got {tuple(t.shape)}"
            )
        # fp32 sinusoids cast to the weights' dtype (no-op under autocast), as in the U-Net.
        emb = self.time_embed(timestep_embedding(t, cfg.time_embed_dim).to(self.inp.weight.dtype))
        if self.label_embed is None:
            no_labels_allowed(labels)
        else:
            emb = emb + self.label_embed(labels, x.shape[0]).to(emb.dtype)
        emb = F.silu(emb)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(h))
