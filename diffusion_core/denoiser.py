r"""The denoiser: the one place that calls the network and reads what it returns.

A :class:`Denoiser` owns the network and everything needed to turn its raw output into a prediction of the
noise and of the data: the map from a schedule index to the network's time input (through the ``timesteps``
table of the diffusion it is called with, so a respaced schedule feeds the network its original step), the
split of the output into mean and learned-variance channels, the parameterization (:math:`\epsilon`,
:math:`x_0` or :math:`v`, converted with :mod:`diffusion_core.parameterization`), the cast of the output to
:math:`x_t`'s dtype, and the conditioning (class labels and any other keyword) passed through to the network.
Samplers and losses are plain functions over a denoiser (the design of k-diffusion and of NVlabs' EDM); they
accept a plain network ``model(x_t, t)`` too, wrapped here. The prediction is never clipped: clipping
:math:`\hat x_0` to the data range is a sampler's choice (:meth:`Diffusion.apply_clip`), and training never does it.

Notation (code name → paper symbol):

=======================================  ==============================================================
``x_t``                                  :math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon`
``t``                                    the index into the (possibly respaced) schedule of ``diffusion``
``diffusion.schedule.timesteps[t]``      the network's time input: the original step of that index
``Prediction.eps``                       :math:`\hat\epsilon_\theta(x_t, t, c)`
``Prediction.x0``                        :math:`\hat x_0` (Ho et al. eq. 4 solved for :math:`x_0`)
``Prediction.var_output``                :math:`v` of Nichol & Dhariwal eq. 15 (``learned_range`` only)
``labels``                               the class :math:`c`; ``num_classes`` K is the null label :math:`\varnothing`
=======================================  ==============================================================
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch

from ._validation import check_diffusion, check_labels, check_timesteps
from .diffusion import Diffusion
from .errors import InvalidInput, InvalidInputType
from .parameterization import to_eps_x0

__all__ = ["Prediction", "BaseDenoiser", "Denoiser", "as_denoiser", "split_output", "prediction_from_output",
           "read_output"]


class Prediction(NamedTuple):
    r"""What a denoiser predicts at :math:`(x_t, t)`: :math:`\hat\epsilon`, :math:`\hat x_0` (never clipped; they
    satisfy :math:`x_t = \sqrt{\bar\alpha_t}\hat x_0 + \sqrt{1-\bar\alpha_t}\hat\epsilon`), and the network's
    variance channels when the variance is learned (else ``None``). All in :math:`x_t`'s dtype."""

    eps: torch.Tensor
    x0: torch.Tensor
    var_output: torch.Tensor | None


def split_output(
    diffusion: Diffusion, output: torch.Tensor, x_t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check the network's output shape and split it into the mean channels and, when the variance is learned
    (``learned_range``: twice the channels), the variance channels (else ``None``)."""
    want = (x_t.shape[0], diffusion.output_channels(x_t.shape[1]), *x_t.shape[2:])
    if tuple(output.shape) != want:
        raise InvalidInput(
            f"model output must have shape {want} for x_t of shape {tuple(x_t.shape)} "
            f"(variance={diffusion.variance.value}), got {tuple(output.shape)}"
        )
    if diffusion.learned_variance:
        mean_out, var_out = output.chunk(2, dim=1)
        return mean_out, var_out
    return output, None


def prediction_from_output(
    diffusion: Diffusion, mean_out: torch.Tensor, var_out: torch.Tensor | None, x_t: torch.Tensor, t: torch.Tensor
) -> Prediction:
    """The :class:`Prediction` of the network's mean channels ``mean_out``, read in the diffusion's
    parameterization (exact conversions of :mod:`diffusion_core.parameterization`), and its variance channels."""
    eps, x0 = to_eps_x0(diffusion.parameterization, diffusion.schedule, x_t, t, mean_out)
    return Prediction(eps, x0, var_out)


def read_output(diffusion: Diffusion, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
    """The :class:`Prediction` in a raw network output that is already at hand (split, then converted; no cast)."""
    return prediction_from_output(diffusion, *split_output(diffusion, output, x_t), x_t, t)


class BaseDenoiser:
    r"""What samplers and losses call: ``denoiser(x_t, t, diffusion, *, labels=None, **cond) -> Prediction``.

    ``t`` is an integer tensor ``(B,)`` of indices into ``diffusion``'s schedule, respaced or not; ``labels``
    (optional) a LongTensor ``(B,)`` of classes; ``cond`` any further conditioning for the network. Subclasses:
    :class:`Denoiser` (a network) and :class:`~diffusion_core.guidance.ClassifierFreeGuidance` (a guided denoiser).
    """

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, diffusion: Diffusion, *,
                 labels: torch.Tensor | None = None, **cond: Any) -> Prediction:
        raise NotImplementedError


def _model_num_classes(model: Any) -> int | None:
    """``model.config.num_classes`` of our networks (looking through DDP's ``.module``); ``None`` if unknown."""
    for m in (model, getattr(model, "module", None)):
        n = getattr(getattr(m, "config", None), "num_classes", None)
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    return None


class Denoiser(BaseDenoiser):
    r"""A network read as a denoiser: ``Denoiser(model)(x_t, t, diffusion, labels=None, **cond) -> Prediction``.

    ``model`` is any callable (an ``nn.Module``, a compiled or DDP-wrapped one, a closed-form function) called as
    ``model(x_t, t_input)``, or ``model(x_t, t_input, labels)`` when ``labels`` is given, plus ``**cond`` as
    keywords, where ``t_input = diffusion.schedule.timesteps[t]`` is the step of the original schedule (the
    network is trained on those; a respaced schedule keeps them in its ``timesteps``). Its output must have
    ``diffusion.output_channels(C)`` channels: the mean channels in the diffusion's parameterization, then the
    variance channels when learned. An ``nn.Module`` gets :math:`x_t` in its weights' dtype (outside autocast),
    and the output is cast to :math:`x_t`'s dtype (under autocast the network may return bf16/fp16) before it is
    split and converted. A class-conditional network (``config.num_classes`` > 0) must be given ``labels``.

    A plain class, not an ``nn.Module``: the network stays the module you train, move and save; the denoiser
    holds no state of its own.
    """

    def __init__(self, model: Callable[..., torch.Tensor]) -> None:
        if isinstance(model, BaseDenoiser):
            raise InvalidInputType(f"model must be a network, got a {type(model).__name__}, which already is a "
                                   "denoiser")
        if not callable(model):
            raise InvalidInputType(f"model must be a callable network model(x_t, t), got {type(model).__name__}")
        self.model = model

    @property
    def num_classes(self) -> int | None:
        """The network's ``config.num_classes`` (0: unconditional; K: classes 0..K-1, null label K), or ``None``
        when the network has no such config (a plain callable)."""
        return _model_num_classes(self.model)

    @staticmethod
    def time_input(t: torch.Tensor, diffusion: Diffusion) -> torch.Tensor:
        """The network's time input for schedule indices ``t``: ``diffusion.schedule.timesteps[t]``."""
        ts = diffusion.schedule.timesteps
        return ts.index_select(0, t.to(ts.device))

    def output(self, x_t: torch.Tensor, t: torch.Tensor, diffusion: Diffusion, *,
               labels: torch.Tensor | None = None, **cond: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One network call: its mean channels (in the parameterization's own space, e.g. the :math:`v` the
        simple loss compares with its target) and its variance channels (``None`` unless learned), in
        :math:`x_t`'s dtype."""
        check_diffusion(diffusion)
        check_timesteps(t, diffusion.num_timesteps, x_t.shape[0])
        t_input = self.time_input(t, diffusion)
        x_in = self._as_network_dtype(x_t)
        if labels is None:
            if self.num_classes:
                raise InvalidInput(f"labels is required: the network is class-conditional (num_classes="
                                   f"{self.num_classes}); pass class indices, or {self.num_classes} (the null label) "
                                   "for unconditional predictions")
            out = self.model(x_in, t_input, **cond)
        else:
            check_labels(labels, x_t.shape[0])  # the network checks the range: it knows its classes
            out = self.model(x_in, t_input, labels, **cond)
        if not isinstance(out, torch.Tensor):
            raise InvalidInputType(f"model must return a torch.Tensor, got {type(out).__name__}")
        return split_output(diffusion, out.to(x_t.dtype), x_t)

    def _as_network_dtype(self, x_t: torch.Tensor) -> torch.Tensor:
        """``x_t`` in the dtype of the network's weights (a float64 or float16 state for a float32 network); the
        output comes back in ``x_t``'s dtype. A plain callable gets ``x_t`` as it is."""
        params = getattr(self.model, "parameters", None)
        p = next(iter(params()), None) if callable(params) else None
        if p is None or not p.is_floating_point() or p.dtype == x_t.dtype or torch.is_autocast_enabled(x_t.device.type):
            return x_t
        return x_t.to(p.dtype)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, diffusion: Diffusion, *,
                 labels: torch.Tensor | None = None, **cond: Any) -> Prediction:
        mean_out, var_out = self.output(x_t, t, diffusion, labels=labels, **cond)
        return prediction_from_output(diffusion, mean_out, var_out, x_t, t)

    def __repr__(self) -> str:
        return f"Denoiser({type(self.model).__name__})"


def as_denoiser(model: Any) -> BaseDenoiser:
    """``model`` itself when it is a denoiser already, else ``Denoiser(model)``."""
    return model if isinstance(model, BaseDenoiser) else Denoiser(model)
