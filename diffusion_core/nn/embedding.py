"""Sinusoidal timestep embedding (Vaswani et al. 2017, as used by Ho et al. 2020), and the class-label embedding
of class-conditional networks (Dhariwal & Nichol 2021; with the null label of Ho & Salimans 2022)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_labels
from ..errors import InvalidInput


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Embed timesteps ``t`` of shape ``(B,)`` into ``(B, dim)`` sinusoidal features.

    Follows the DDPM reference: ``half = dim // 2`` frequencies spaced geometrically from 1 to
    ``1 / max_period``, output ``[sin(t * f), cos(t * f)]``. ``t`` may be integer timestep
    indices or float (continuous) times. An odd ``dim`` is padded with one zero column.

    The result is always float32: in bf16 a timestep near 1000 keeps only ~3 significant
    digits, so neighbouring steps would collapse to the same embedding. Callers cast the
    result to their compute dtype (autocast does it at the next linear layer).
    """
    if dim < 2:
        raise InvalidInput(f"dim must be >= 2 to hold a sin and a cos feature, got {dim}")
    if t.ndim != 1:
        raise InvalidInput(f"t must have shape (B,), one timestep per example, got {tuple(t.shape)}")
    half = dim // 2
    # DDPM spaces the exponents over half - 1 intervals so the last frequency is exactly
    # 1 / max_period; guard half == 1, where that would divide by zero.
    step = math.log(max_period) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -step)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class LabelEmbedding(nn.Embedding):
    r"""Class labels to vectors, added to a network's time embedding (as ADM does, Dhariwal & Nichol 2021).

    ``num_classes`` K gives K + 1 rows: rows 0..K-1 are the classes and row K is the null label
    :math:`\varnothing` of classifier-free guidance (Ho & Salimans 2022, sec. 3.2: one network, trained with the
    label replaced by :math:`\varnothing` a fraction of the time, is also the unconditional model).
    ``forward(labels, batch)`` takes a LongTensor ``(batch,)`` with values in [0, K], or ``None`` for all-null.
    """

    def __init__(self, num_classes: int, dim: int):
        if num_classes < 1:
            raise InvalidInput(f"num_classes must be >= 1 for a label embedding, got {num_classes}")
        super().__init__(num_classes + 1, dim)
        self.num_classes = num_classes

    def forward(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:  # type: ignore[override]
        if labels is None:
            labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=self.weight.device)
        else:
            check_labels(labels, batch, self.num_classes)  # the range only on the CPU: no host sync on a GPU
        return super().forward(labels)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes} (+1 null label), dim={self.embedding_dim}"


def no_labels_allowed(labels: torch.Tensor | None) -> None:
    """The check of an unconditional network (``num_classes = 0``): it takes no ``labels``."""
    if labels is not None:
        raise InvalidInput("labels were given to an unconditional network (num_classes=0): build it with "
                           "num_classes > 0 for class conditioning, or pass labels=None")
