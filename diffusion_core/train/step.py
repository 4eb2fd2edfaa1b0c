"""One optimizer step with no host sync: loss under autocast, backward, gradient clipping, AdamW at the step's
learning rate (:func:`learning_rate`: linear warmup, then constant), and the weights' moving average (:class:`EMA`).

Compilation follows PyTorch's guidance: a single process compiles the network *and* the loss as one graph
(``fullgraph=True``, static shapes, so it compiles once and never again across steps); under DDP the model is
wrapped in ``DistributedDataParallel`` first and the wrapper is compiled, so DDP's bucketed all-reduce overlaps
the backward pass (dynamo's DDPOptimizer splits the graph at the buckets, so no ``fullgraph`` there).
"""
from __future__ import annotations

import contextlib
import copy
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .._validation import check_number
from ..denoiser import Denoiser
from ..diffusion import Diffusion
from ..losses import denoising_loss, training_losses
from ..weighting import edm, min_snr
from .config import TrainConfig, TrainPath
from .runtime import DistInfo

__all__ = ["TrainStep", "EMA", "Loss", "learning_rate"]

# A training objective other than the denoising loss (distillation): loss(network, x0, t, noise, labels) -> the
# batch's mean loss, ``network`` being the module the step trains (DDP-wrapped under torchrun).
Loss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def learning_rate(step: int, lr: float, warmup_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (counted from 0): a linear warmup from ``lr / warmup_steps``
    up to ``lr`` over the first ``warmup_steps`` steps, then constant, as in Ho et al. 2020 (no decay)."""
    return lr * min(1.0, (step + 1) / max(1, warmup_steps))


class EMA:
    r"""Keeps :math:`\theta_\mathrm{ema} \leftarrow \theta_\mathrm{ema} + (1-d)(\theta - \theta_\mathrm{ema})`.

    The averaged copy lives in ``self.model`` (eval mode, no gradients) on the same device as the source; each
    update is one fused foreach op.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = check_number("decay", decay, low=0, high=1, high_open=True)
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


class TrainStep:
    """``loss, grad_norm = step(x0, t, noise, step_index, labels)``: both stay on the device, unread. ``loss``
    replaces the denoising loss by another objective (:data:`Loss`), compiled and stepped alike."""

    def __init__(self, model: nn.Module, diffusion, config: TrainConfig, device: torch.device, dist_info: DistInfo,
                 amp_dtype: torch.dtype | None, compile_model: bool, loss: Loss | None = None) -> None:
        self.model, self.config = model, config.resolved_warmup()  # train() has set it; a direct caller may not
        # fused AdamW (CPU and CUDA): one kernel for all parameters, no .item() on the step counters, and
        # GradScaler hands it the inf check as a tensor instead of reading it back
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
        self.ema = EMA(model, config.ema_decay)
        self._autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype
                          else contextlib.nullcontext())
        net: nn.Module = model
        if dist_info.enabled:
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
            if compile_model:
                net = torch.compile(net)
        self._net, self._objective = net, loss
        self.loss = self._mean_loss
        if compile_model and not dist_info.enabled:
            self.loss = torch.compile(self._mean_loss, fullgraph=True, dynamic=False)
        self._diffusion = diffusion if isinstance(diffusion, Diffusion) else None
        if self._diffusion is None:  # a continuous path: the weighted denoising loss at path times
            self._denoiser = Denoiser(net, diffusion, config.parameterization, sigma_data=config.sigma_data)
            self._weighting = (min_snr(config.min_snr_gamma) if config.min_snr_gamma is not None
                               else edm(config.sigma_data) if config.path is TrainPath.EDM else None)

    def _mean_loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        if self._objective is not None:
            return self._objective(self._net, x0, t, noise, labels)
        if self._diffusion is None:
            return denoising_loss(self._denoiser, x0, t, noise, weighting=self._weighting, loss_type=c.loss_type,
                                  labels=labels).mean()
        terms = training_losses(self._net, self._diffusion, x0, t, noise, loss_type=c.loss_type,
                                min_snr_gamma=c.min_snr_gamma, vlb_weight=c.vlb_weight, labels=labels)
        return terms.loss.mean()

    def load_optimizer_state(self, state: dict) -> None:
        """Load a checkpoint's optimizer state. Checkpoints store tensors contiguous; moments of a channels_last
        weight get that weight's strides back, since the fused kernel walks a weight and its moments in memory
        order (without this, a resumed channels_last run pairs each weight with another element's moments)."""
        self.optimizer.load_state_dict(state)
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                entry = self.optimizer.state.get(p, {})
                for key, value in entry.items():
                    if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                        entry[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)

    def set_hyperparameters(self, config: TrainConfig) -> None:
        """Apply the optimizer settings of ``config`` (after loading a checkpoint's optimizer state, which
        brings the old ones back)."""
        self.config = config.resolved_warmup()
        for group in self.optimizer.param_groups:
            group["weight_decay"] = config.weight_decay
        self.ema.decay = config.ema_decay

    def __call__(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, step: int,
                 labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(step, c.lr, c.warmup_steps)
        with self._autocast:
            loss = self.loss(x0, t, noise, labels)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model, step)
        return loss.detach(), grad_norm
