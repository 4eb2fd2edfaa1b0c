r"""The denoiser: the one place that calls the network and reads what it returns.

A :class:`Denoiser` owns the network, the Gaussian path it was trained on (:mod:`diffusion_core.paths`), what the
network predicts (a :class:`~diffusion_core.targets.Target`), whether it also outputs DDPM variance channels, and
the conditioning passed through to it. Called at :math:`(x_t, t)` it returns one
:class:`~diffusion_core.targets.Prediction` (:math:`\hat x_0`, :math:`\hat\epsilon`, and every other target from
them). Samplers and losses are plain functions over a denoiser (the design of k-diffusion and of NVlabs' EDM).

The prediction is never clipped: clipping :math:`\hat x_0` to the data range is a sampler's choice.

Notation (code name → symbol):

=======================================  ==============================================================
``x_t``                                  :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon`
``t``                                    the path's time, a tensor ``(B,)`` (a DDPM path: steps 1..T)
``path.network_time(t)``                 what the network gets as its time input
``labels``                               the class :math:`c`; ``num_classes`` K is the null label :math:`\varnothing`
=======================================  ==============================================================
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._validation import check_choice, check_labels
from .diffusion import Diffusion, check_diffusion
from .errors import InvalidInput, InvalidInputType
from .paths import DiscreteVP, GaussianPath
from .targets import Coefficients, Prediction, Target, edm_scaling, to_x0_eps


__all__ = ["BaseDenoiser", "Denoiser", "as_denoiser"]

EDM_SIGMA_DATA = 0.5  # Karras et al. 2022, table 1


class BaseDenoiser:
    r"""What samplers and losses call: ``denoiser(x_t, t, *, labels=None, **cond) -> Prediction`` at the times
    ``t`` (``(B,)``) of ``denoiser.path``. Subclasses: :class:`Denoiser` (a network) and
    :class:`~diffusion_core.guidance.ClassifierFreeGuidance` (a guided denoiser)."""

    path: GaussianPath | None = None

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, *, labels: torch.Tensor | None = None,
                 **cond: Any) -> Prediction:
        raise NotImplementedError

    def bind(self, diffusion: Diffusion) -> BaseDenoiser:
        """This denoiser on ``diffusion``'s DDPM path, target and variance channels (the DDPM entry points
        ``ddim_sample(model, diffusion, ...)`` and ``training_losses`` call it: the diffusion decides)."""
        raise NotImplementedError

    def for_run(self) -> BaseDenoiser:
        """This denoiser for one sampler run, during which its network does not change: what it would look up
        about the network at every call is looked up once (a sampler calls it before its loop). Itself here."""
        return self

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, c: Coefficients, t_in: torch.Tensor, *,
                labels: torch.Tensor | None = None, **cond: Any) -> Prediction:
        """The prediction at ``t`` given the path's coefficients there (``c``, as :meth:`coefficients` returns them)
        and the network's time input (``t_in``, ``path.network_time(t)``), looked up already: a sampler does it once
        per grid, not once per step. The base version looks them up again."""
        return self(x_t, t, labels=labels, **cond)

    def coefficients(self, t: torch.Tensor, like: torch.Tensor) -> Coefficients:
        """:math:`\\alpha_t, \\sigma_t` (and their derivatives) of the path, shaped to broadcast against ``like``
        and in its dtype."""
        path = self.path
        if path is None:
            raise InvalidInput("the denoiser has no path: build it with Denoiser(network, path, target), or pass "
                               "a Diffusion to a DDPM entry point (ddim_sample(model, diffusion, ...))")
        shape = (-1, *([1] * (like.ndim - 1)))
        t = t.to(torch.float64)

        def cast(v: torch.Tensor) -> torch.Tensor:
            return v.reshape(shape).to(device=like.device, dtype=like.dtype)

        derivatives = (None, None) if isinstance(path, DiscreteVP) else tuple(cast(v) for v in path.derivatives(t))
        return Coefficients(cast(path.alpha(t)), cast(path.sigma(t)), *derivatives)


def _model_num_classes(model: Any) -> int | None:
    """``model.config.num_classes`` of our networks (looking through DDP's ``.module``); ``None`` if unknown."""
    for m in (model, getattr(model, "module", None)):
        n = getattr(getattr(m, "config", None), "num_classes", None)
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    return None


class Denoiser(BaseDenoiser):
    r"""A network read as a denoiser: ``Denoiser(network, path, target)(x_t, t, labels=None, **cond)``.

    ``network`` is any callable (an ``nn.Module``, a compiled or DDP-wrapped one, a closed-form function) called
    as ``network(x_in, t_in)``, or ``network(x_in, t_in, labels)`` when ``labels`` is given, plus ``**cond`` as
    keywords. For most targets ``x_in = x_t`` and ``t_in = path.network_time(t)``; for ``"edm"`` (Karras et al.
    2022, table 1) the network sees :math:`c_\mathrm{in}\,x_t/\alpha_t` and :math:`c_\mathrm{noise}` and its output
    :math:`F` gives :math:`\hat x_0 = c_\mathrm{skip}\,x_t/\alpha_t + c_\mathrm{out}F` (``sigma_data``
    :math:`\sigma_d`, 0.5 by default). With ``learned_variance`` the network outputs twice the channels, the
    second half being DDPM's variance channels (Nichol & Dhariwal eq. 15), returned as ``var_output``.

    An ``nn.Module`` gets :math:`x_t` in its weights' dtype (outside autocast); its output is cast to
    :math:`x_t`'s dtype before it is read. A class-conditional network (``config.num_classes`` > 0) must be given
    ``labels`` (its null label for unconditional predictions).

    ``path`` may be left out for the DDPM entry points, which :meth:`bind` it to their ``Diffusion``. A plain
    class, not an ``nn.Module``: the network stays the module you train, move and save.
    """

    # (weight dtype, class count) of the network, fixed for a sampler run by for_run; None: looked up at each call
    _fixed: tuple[torch.dtype | None, int | None] | None = None

    def __init__(self, network: Callable[..., torch.Tensor], path: GaussianPath | None = None,
                 target: Target | str = Target.EPS, *, sigma_data: float = EDM_SIGMA_DATA,
                 learned_variance: bool = False) -> None:
        if isinstance(network, BaseDenoiser):
            raise InvalidInputType(f"network must be a network, got a {type(network).__name__}, which already is a "
                                   "denoiser")
        if not callable(network):
            raise InvalidInputType(f"network must be a callable network(x_t, t), got {type(network).__name__}")
        if path is not None and not isinstance(path, GaussianPath):
            raise InvalidInputType(f"path must be a GaussianPath (diffusion_core.paths), got {type(path).__name__}")
        if not (isinstance(sigma_data, (int, float)) and sigma_data > 0):
            raise InvalidInput(f"sigma_data must be a number > 0, got {sigma_data!r}")
        self.network, self.path = network, path
        self.target = check_choice("target", target, Target)
        self.sigma_data, self.learned_variance = float(sigma_data), bool(learned_variance)

    @property
    def model(self) -> Callable[..., torch.Tensor]:
        """The network (the name the trainer and older code use)."""
        return self.network

    @property
    def num_classes(self) -> int | None:
        """The network's ``config.num_classes`` (0: unconditional; K: classes 0..K-1, null label K), or ``None``
        when the network has no such config (a plain callable)."""
        return _model_num_classes(self.network) if self._fixed is None else self._fixed[1]

    def for_run(self) -> Denoiser:
        """A copy that reads the network's weight dtype and class count once, here, instead of at every call (on a
        small network, walking the module for its first weight costs about as much as a sampler's update)."""
        run = object.__new__(type(self))  # a shallow copy (copy.copy's generic route costs several times as much)
        run.__dict__.update(self.__dict__, _fixed=(self._weights_dtype(), self.num_classes))
        return run

    def bind(self, diffusion: Diffusion) -> Denoiser:
        return Denoiser.of_diffusion(self.network, diffusion, sigma_data=self.sigma_data)

    @classmethod
    def of_diffusion(cls, network: Callable[..., torch.Tensor], diffusion: Diffusion, *,
                     sigma_data: float = EDM_SIGMA_DATA) -> Denoiser:
        """``network`` on ``diffusion``'s DDPM path, target and variance channels: ``Denoiser(network).bind(diffusion)``
        made in one step (a sampler's entry point does it at every call)."""
        check_diffusion(diffusion)
        return cls(network, diffusion.path, diffusion.parameterization, sigma_data=sigma_data,
                   learned_variance=diffusion.learned_variance)

    def output(self, x_t: torch.Tensor, t: torch.Tensor, c: Coefficients, *, labels: torch.Tensor | None = None,
               t_in: torch.Tensor | None = None, **cond: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One network call at coefficients ``c`` (of :meth:`coefficients`): its output in the target's own space
        (what a loss compares with the target) and its variance channels (``None`` unless learned), in
        :math:`x_t`'s dtype. ``t_in``: the network's time input if already at hand (else ``path.network_time(t)``)."""
        if self.target is Target.EDM:
            k = edm_scaling(c.sigma / c.alpha, self.sigma_data)
            x_in, t_in = k.c_in * (x_t / c.alpha), k.c_noise.reshape(-1)
        else:
            x_in, t_in = x_t, self.path.network_time(t) if t_in is None else t_in
        x_in = self._as_network_dtype(x_in)
        if labels is None:
            if self.num_classes:
                raise InvalidInput(f"labels is required: the network is class-conditional (num_classes="
                                   f"{self.num_classes}); pass class indices, or {self.num_classes} (the null label) "
                                   "for unconditional predictions")
            out = self.network(x_in, t_in, **cond)
        else:
            check_labels(labels, x_t.shape[0])  # the network checks the range: it knows its classes
            out = self.network(x_in, t_in, labels, **cond)
        if not isinstance(out, torch.Tensor):
            raise InvalidInputType(f"model must return a torch.Tensor, got {type(out).__name__}")
        channels = 2 * x_t.shape[1] if self.learned_variance else x_t.shape[1]
        want = (x_t.shape[0], channels, *x_t.shape[2:])
        if tuple(out.shape) != want:
            raise InvalidInput(f"model output must have shape {want} for x_t of shape {tuple(x_t.shape)}"
                               f"{' (mean and variance channels)' if self.learned_variance else ''}, "
                               f"got {tuple(out.shape)}")
        if out.dtype != x_t.dtype:
            out = out.to(x_t.dtype)
        return tuple(out.chunk(2, dim=1)) if self.learned_variance else (out, None)

    def read(self, y: torch.Tensor, x_t: torch.Tensor, c: Coefficients, var_output: torch.Tensor | None = None
             ) -> Prediction:
        """The :class:`~diffusion_core.targets.Prediction` of an output ``y`` (in the target's space) already at hand."""
        x0, eps = to_x0_eps(self.target, y, x_t, c, self.sigma_data)
        return Prediction(x0, eps, c, var_output)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, *, labels: torch.Tensor | None = None,
                 **cond: Any) -> Prediction:
        c = self.coefficients(t, x_t)
        y, var_output = self.output(x_t, t, c, labels=labels, **cond)
        return self.read(y, x_t, c, var_output)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, c: Coefficients, t_in: torch.Tensor, *,
                labels: torch.Tensor | None = None, **cond: Any) -> Prediction:
        y, var_output = self.output(x_t, t, c, labels=labels, t_in=t_in, **cond)
        return self.read(y, x_t, c, var_output)

    def _weights_dtype(self) -> torch.dtype | None:
        """The dtype of the network's first weight when it is floating point, else (a plain callable) ``None``."""
        params = getattr(self.network, "parameters", None)
        p = next(iter(params()), None) if callable(params) else None
        return p.dtype if p is not None and p.is_floating_point() else None

    def _as_network_dtype(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the dtype of the network's weights (a float64 or float16 state for a float32 network); the
        output comes back in :math:`x_t`'s dtype. A plain callable gets ``x`` as it is."""
        dtype = self._weights_dtype() if self._fixed is None else self._fixed[0]
        if dtype is None or dtype == x.dtype or torch.is_autocast_enabled(x.device.type):
            return x
        return x.to(dtype)

    def __repr__(self) -> str:
        return f"Denoiser({type(self.network).__name__}, {self.path!r}, target={self.target.value})"


def as_denoiser(model: Any, diffusion: Diffusion | None = None) -> BaseDenoiser:
    """``model`` as a denoiser: itself when it is one already, else ``Denoiser(model)``; with ``diffusion``, bound
    to its DDPM path and target (:meth:`BaseDenoiser.bind`)."""
    if isinstance(model, BaseDenoiser):
        return model if diffusion is None else model.bind(diffusion)
    return Denoiser(model) if diffusion is None else Denoiser.of_diffusion(model, diffusion)
