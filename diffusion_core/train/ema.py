"""Exponential moving average of the weights, updated with one fused foreach op per step."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import InvalidInput

__all__ = ["EMA"]


class EMA:
    r"""Keeps :math:`\theta_\mathrm{ema} \leftarrow \theta_\mathrm{ema} + (1-d)(\theta - \theta_\mathrm{ema})`.

    The averaged copy lives in ``self.model`` (eval mode, no gradients) on the same device as the source.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise InvalidInput(f"decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used after ``step`` updates: warmed up as ``(1+n)/(10+n)`` so that a short run's
        average is not dominated by the initial weights (0.999**500 = 0.61 would be)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """One EMA step; ``step`` (the number of optimizer steps done) enables the decay warmup."""
        decay = self.decay if step is None else self.decay_at(step)
        ema_params = [p for p in self.model.parameters()]
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
