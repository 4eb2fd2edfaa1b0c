r"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper around any denoiser, and its training-side helper.

One class-conditional network is also the unconditional model: trained with the label replaced by the null
label :math:`\varnothing` a fraction ``p_uncond`` of the time (their algorithm 1; :func:`drop_labels`), it
predicts :math:`\hat\epsilon(x_t, c)` for a class :math:`c` and :math:`\hat\epsilon(x_t, \varnothing)` for
none. Sampling (their algorithm 2) replaces the prediction by the extrapolation of eq. 6,
:math:`\tilde\epsilon = (1 + w)\,\hat\epsilon(x_t, c) - w\,\hat\epsilon(x_t, \varnothing)`, that is
:math:`\hat\epsilon_u + s\,(\hat\epsilon_c - \hat\epsilon_u)` with :math:`s = 1 + w`: the noise prediction
(:math:`-\sigma_t` times the score) of the tilted density :math:`p_t(x)\,p_t(c \mid x)^s`,

.. math::
    :checked-by: score.guidance:cfg_eps

Notation (code name → paper symbol):

==========================  ==================================================================================
``scale``                   :math:`s`, diffusers' ``guidance_scale``: 0 unconditional, 1 conditional (no
                            guidance), > 1 guided. Ho & Salimans' guidance weight is :math:`w = s - 1`.
``null_label``              :math:`\varnothing`: the network's ``num_classes`` K (its extra embedding row)
``labels``                  :math:`c`, classes in :math:`[0, K)`
``eps_c``, ``eps_u``        :math:`\hat\epsilon_\theta(x_t, c)`, :math:`\hat\epsilon_\theta(x_t, \varnothing)`
``rescale``                 :math:`\phi` of Lin et al. 2023, sec. 3.4 (guidance rescale; 0 = off)
``v``                       :math:`v = \sqrt{\bar\alpha_t}\epsilon - \sqrt{1-\bar\alpha_t}x_0` (Salimans & Ho 2022)
==========================  ==================================================================================
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch

from ._validation import check_fraction, check_labels
from .denoiser import BaseDenoiser, Denoiser, as_denoiser
from .errors import InvalidInput, InvalidInputType
from .targets import Coefficients, Prediction, Target, target_of, to_x0_eps

__all__ = ["ClassifierFreeGuidance", "drop_labels"]


def _batch_std(x: torch.Tensor) -> torch.Tensor:
    """Per-example standard deviation over all non-batch dimensions, shaped to broadcast against ``x``."""
    return x.reshape(x.shape[0], -1).std(dim=1).reshape(-1, *([1] * (x.ndim - 1)))


class ClassifierFreeGuidance(BaseDenoiser):
    r"""A guided denoiser: ``ClassifierFreeGuidance(denoiser, scale, null_label=None, rescale=0.0)``, itself a
    denoiser, so it goes wherever one does (``ddim_sample(cfg, diffusion, x_T, labels=c)``).

    Each evaluation is ONE network call on the doubled batch :math:`[x_t, x_t]` with labels :math:`[c, \varnothing]`
    (half the launches of two calls; the batch's memory doubles), then eq. 6 of Ho & Salimans in
    :math:`\epsilon` space, written :math:`\tilde\epsilon = \hat\epsilon_c + w(\hat\epsilon_c - \hat\epsilon_u)`
    with :math:`w = s - 1`. :math:`\hat x_0` is combined with the same weights,
    :math:`\tilde x_0 = \hat x_{0,c} + w(\hat x_{0,c} - \hat x_{0,u})`: both branches satisfy
    :math:`x_t = \sqrt{\bar\alpha_t}\hat x_0 + \sqrt{1-\bar\alpha_t}\hat\epsilon` and the weights sum to one, so the
    guided pair does too; this is the same :math:`\tilde x_0` that converting :math:`\tilde\epsilon` gives, without
    dividing by :math:`\sqrt{\bar\alpha_t}` (zero at the last step of a zero-terminal-SNR schedule). A learned
    variance is the conditional branch's (as in GLIDE). Further conditioning in ``**cond`` goes to both halves
    (tensors are repeated along the batch): only the class is dropped.

    Args:
        denoiser: a :class:`~diffusion_core.denoiser.Denoiser` or a class-conditional network (wrapped).
        scale: :math:`s \ge 0`, in diffusers' convention (``guidance_scale``): 1 is the conditional model, no
            guidance, and 0 the unconditional one (each evaluated with one call at batch B and returned as is).
            Ho & Salimans' :math:`w` is :math:`s - 1` (their eq. 6, :math:`(1 + w)\hat\epsilon_c - w\hat\epsilon_u`).
        null_label: the null label :math:`\varnothing`; default: the network's ``config.num_classes`` (required
            for networks without one).
        rescale: :math:`\phi \in [0, 1]`, the guidance rescale of Lin et al. 2023 (sec. 3.4, their algorithm 2;
            they suggest 0.7): the guided prediction is multiplied by :math:`\phi\,\sigma_c/\sigma_{cfg} + 1 - \phi`,
            with :math:`\sigma` the per-example standard deviation of the conditional and the guided prediction.
            As in the paper, whose model predicts :math:`v`, it acts on :math:`v` (computed from
            :math:`\hat\epsilon, \hat x_0` when the network predicts something else): :math:`v` is the one of the
            three targets that stays bounded at every :math:`t`. At zero terminal SNR, :math:`\hat\epsilon = x_t`
            there for every label, so an :math:`\epsilon`-space rescale (diffusers' ``rescale_noise_cfg`` applied
            to an :math:`\epsilon` network) would change nothing at the very step where over-exposure is decided,
            while :math:`v = -\hat x_0` there. The rescaled :math:`v` is turned back into :math:`\hat\epsilon` and
            :math:`\hat x_0` exactly, without division. 0 (the default) skips it.
        allow_null: when true, a row may carry the null label :math:`\varnothing`; it gets the unconditional
            prediction :math:`\hat\epsilon_u` (eq. 6 with :math:`c = \varnothing` is :math:`\hat\epsilon_u` for every
            :math:`s`; returned as is, not recomputed). For a teacher whose batches carry label dropout
            (:mod:`diffusion_core.distillation`'s guided progressive distillation). Default false: sampling with
            the null label through guidance is refused, as it is almost always a mistake.

    Raises (at construction): :class:`~diffusion_core.errors.InvalidInput` when the network is unconditional
    (``num_classes = 0``) or ``null_label`` is not its null label; at a call, when ``labels`` is missing or
    (on the CPU) outside :math:`[0, K)` (:math:`[0, K]` with ``allow_null``).
    """

    def __init__(self, denoiser: Any, scale: float, null_label: int | None = None, rescale: float = 0.0, *,
                 allow_null: bool = False) -> None:
        self.denoiser = as_denoiser(denoiser)
        if not isinstance(allow_null, bool):
            raise InvalidInputType(f"allow_null must be a bool, got {type(allow_null).__name__}")
        self.allow_null = allow_null
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise InvalidInputType(f"scale must be a number (the guidance scale s), got {type(scale).__name__}")
        if not math.isfinite(scale) or scale < 0:
            raise InvalidInput(f"scale must be a finite number >= 0 (1: no guidance; Ho & Salimans' w = scale - 1), "
                               f"got {scale!r}")
        self.scale = float(scale)
        self.rescale = check_fraction("rescale", rescale)
        known = self.denoiser.num_classes if isinstance(self.denoiser, Denoiser) else None
        if known == 0:
            raise InvalidInput("denoiser: classifier-free guidance needs a class-conditional network, and this one "
                               "is unconditional (num_classes=0); build it with num_classes > 0")
        if null_label is None:
            if known is None:
                raise InvalidInput("null_label is required: the network has no config.num_classes to take it from")
            null_label = known
        if isinstance(null_label, bool) or not isinstance(null_label, int):
            raise InvalidInputType(f"null_label must be an int (the network's num_classes), got "
                                   f"{type(null_label).__name__}")
        if null_label < 1:
            raise InvalidInput(f"null_label must be an int >= 1 (the network's num_classes), got {null_label!r}")
        if known is not None and null_label != known:
            raise InvalidInput(f"null_label must be the network's null label num_classes={known}, got {null_label}")
        self.null_label = null_label

    @property
    def path(self):
        return self.denoiser.path

    def bind(self, diffusion) -> ClassifierFreeGuidance:
        return ClassifierFreeGuidance(self.denoiser.bind(diffusion), self.scale, self.null_label, self.rescale,
                                      allow_null=self.allow_null)

    def for_run(self) -> ClassifierFreeGuidance:
        run = copy.copy(self)
        run.denoiser = self.denoiser.for_run()
        return run

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, *, labels: torch.Tensor | None = None,
                 **cond: Any) -> Prediction:
        return self._guided(x_t, labels, cond, lambda x, lab, kw, rows: self.denoiser(x, rows(t), labels=lab, **kw))

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, c: Coefficients, t_in: torch.Tensor, *,
                labels: torch.Tensor | None = None, **cond: Any) -> Prediction:
        return self._guided(x_t, labels, cond, lambda x, lab, kw, rows: self.denoiser.predict(
            x, rows(t), Coefficients(*map(rows, c)), rows(t_in), labels=lab, **kw))

    def _guided(self, x_t: torch.Tensor, labels: torch.Tensor | None, cond: dict, call) -> Prediction:
        """The guided prediction from ``call(x, labels, cond, rows)``, the inner denoiser at ``x``; ``rows`` maps a
        per-row tensor of ``x_t``'s batch to the batch of ``x`` (the same, or twice over for [x_t, x_t])."""
        if labels is None:
            raise InvalidInput("labels is required: classifier-free guidance steers towards the given classes "
                               "(for unconditional samples use the plain denoiser with the null label)")
        B = x_t.shape[0]
        check_labels(labels, B, self.null_label, allow_null=self.allow_null)
        null = torch.full_like(labels, self.null_label)
        if self.scale in (0.0, 1.0):  # w = -1 / w = 0: the unconditional / conditional prediction, one call at B
            return call(x_t, null if self.scale == 0 else labels, cond, lambda v: v)
        both = call(torch.cat([x_t, x_t]), torch.cat([labels, null]),
                    {k: torch.cat([v, v]) if isinstance(v, torch.Tensor) else v for k, v in cond.items()},
                    lambda v: None if v is None else torch.cat([v, v]))
        (eps_c, eps_u), (x0_c, x0_u) = both.eps.split(B), both.x0.split(B)
        w = self.scale - 1.0
        eps = eps_c + w * (eps_c - eps_u)  # Ho & Salimans eq. 6
        x0 = x0_c + w * (x0_c - x0_u)
        c = Coefficients(*(None if v is None else v[:B] for v in both.coefficients))
        var = None if both.var_output is None else both.var_output[:B]
        if self.rescale > 0:
            x0, eps = self._rescaled(x0, eps, x0_c, eps_c, x_t, c)
        if self.allow_null:  # null rows: the unconditional prediction itself (eq. 6 gives it up to rounding)
            rows = (labels == self.null_label).reshape(-1, *([1] * (x_t.ndim - 1)))
            x0, eps = torch.where(rows, x0_u, x0), torch.where(rows, eps_u, eps)
        return Prediction(x0, eps, c, var)

    def _rescaled(self, x0, eps, x0_c, eps_c, x_t, c) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Lin et al. 2023, sec. 3.4, on :math:`v`:
        :math:`v \leftarrow v\,(\phi\,\sigma(v_c)/\sigma(v) + 1 - \phi)`."""
        v, v_c = target_of(Target.V, x0, eps, c), target_of(Target.V, x0_c, eps_c, c)
        std, std_c = _batch_std(v), _batch_std(v_c)
        # where the guided v is constant (std 0) there is no spread to match: leave it (factor 1, never inf/NaN)
        ratio = torch.where(std > 0, std_c / std.clamp(min=torch.finfo(std.dtype).tiny), torch.ones_like(std))
        v = v * (self.rescale * ratio + (1.0 - self.rescale))
        return to_x0_eps(Target.V, v, x_t, c)

    def __repr__(self) -> str:
        return (f"ClassifierFreeGuidance({self.denoiser!r}, scale={self.scale}, null_label={self.null_label}, "
                f"rescale={self.rescale}{', allow_null=True' if self.allow_null else ''})")


def drop_labels(labels: torch.Tensor, p_uncond: float, null_label: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Ho & Salimans' algorithm 1, the training side of guidance: each label replaced by ``null_label`` with
    probability ``p_uncond`` (they use 0.1 or 0.2), independently. A new tensor; no host sync (a select)."""
    p_uncond = check_fraction("p_uncond", p_uncond, high_open=True)
    check_labels(labels, None, null_label)
    if p_uncond == 0:
        return labels.clone()
    u = torch.rand(labels.shape, generator=generator, device=labels.device)
    return torch.where(u < p_uncond, torch.full_like(labels, null_label), labels)
