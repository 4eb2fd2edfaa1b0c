r"""``Diffusion``: a DDPM, a discrete noise schedule with the modelling choices that only a discrete DDPM has.

It holds the :class:`~diffusion_core.schedule.NoiseSchedule` (and so its path,
:class:`~diffusion_core.paths.DiscreteVP`), what the network predicts, the variance of the reverse step (fixed
or learned, which only a DDPM's ancestral sampler and bound use), and the sampling-time clip rule. The
network is read by a :class:`~diffusion_core.denoiser.Denoiser`; ``Diffusion`` holds the math around it: the
posterior, the reverse step, and the variational bound's pieces (:mod:`diffusion_core.vlb`).

Indices ``t`` here are the schedule's, ``0 .. T-1``, index ``t`` being the path's step ``t + 1``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ._validation import check_choice, check_timesteps
from .errors import InvalidInput, InvalidInputType
from .forward import Gaussian, q_sample
from .paths import DiscreteVP
from .reverse import Clip, VarianceType, clip_prediction, model_log_variance, q_posterior
from .schedule import NoiseSchedule, TimestepSpacing
from .targets import Coefficients, Prediction, Target, target_of

__all__ = ["Diffusion", "ReverseStep", "check_diffusion"]


class ReverseStep(NamedTuple):
    r""":math:`p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta, \sigma_t^2 I)` and the predictions behind it."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor
    pred_x0: torch.Tensor
    pred_eps: torch.Tensor


class Diffusion:
    r"""A noise schedule with a prediction target, a reverse variance and a clipping rule.

    Args:
        schedule: the :class:`NoiseSchedule`.
        parameterization: what the network predicts (a :class:`~diffusion_core.targets.Target`: ``"eps"``,
            ``"x0"``, ``"v"``, or ``"edm"``; not ``"velocity"``, which needs continuous time).
        variance: :math:`\sigma_t^2` of the reverse step (:class:`VarianceType`).
        clip: what is done to :math:`\hat x_0` when sampling (:class:`Clip`): the samplers' default (their
            ``clip=`` overrides it); the training loss never clips.
        dynamic_percentile: the quantile for ``Clip.DYNAMIC``, in (0, 1].
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        parameterization: Target | str = Target.EPS,
        variance: VarianceType | str = VarianceType.FIXED_LARGE,
        clip: Clip | str = Clip.NONE,
        dynamic_percentile: float = 0.995,
    ) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise InvalidInputType(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.parameterization = check_choice("parameterization", parameterization, Target)
        if self.parameterization is Target.VELOCITY:
            raise InvalidInput("parameterization='velocity' needs a path in continuous time (dx_t/dt); a DDPM's "
                               "discrete schedule has none: use 'v', its discrete counterpart, or a RectifiedFlow path")
        self.variance = check_choice("variance", variance, VarianceType)
        self.clip = check_choice("clip", clip, Clip)
        if not 0 < dynamic_percentile <= 1:
            raise InvalidInput(f"dynamic_percentile must lie in (0, 1], got {dynamic_percentile}")
        self.dynamic_percentile = float(dynamic_percentile)
        self.path = DiscreteVP(schedule)

    # ------------------------------------------------------------------ plumbing
    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_timesteps

    @property
    def learned_variance(self) -> bool:
        return self.variance is VarianceType.LEARNED_RANGE

    def output_channels(self, data_channels: int) -> int:
        """How many channels the network must output for data with ``data_channels`` channels."""
        return 2 * data_channels if self.learned_variance else data_channels

    def _replace(self, schedule: NoiseSchedule) -> Diffusion:
        return Diffusion(schedule, self.parameterization, self.variance, self.clip, self.dynamic_percentile)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Diffusion:
        """The same diffusion with the schedule's tables on ``device``."""
        return self._replace(self.schedule.to(device, dtype))

    def respaced(self, steps: int, spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE) -> Diffusion:
        """The same options over a schedule of ``steps`` of the ``T`` steps (see :meth:`NoiseSchedule.spaced`)."""
        return self._replace(self.schedule.spaced(steps, spacing))

    def resolve_clip(self, clip: Clip | str | None) -> Clip:
        """``clip`` as a :class:`Clip`; ``None`` means this diffusion's own rule, :attr:`clip`."""
        return self.clip if clip is None else check_choice("clip", clip, Clip)

    def coefficients(self, t: torch.Tensor, like: torch.Tensor) -> Coefficients:
        r""":math:`\sqrt{\bar\alpha}, \sqrt{1-\bar\alpha}` at schedule indices ``t``, shaped against ``like``."""
        shape = (-1, *([1] * (like.ndim - 1)))
        step = t + 1
        return Coefficients(self.path.alpha(step).reshape(shape).to(like.dtype),
                            self.path.sigma(step).reshape(shape).to(like.dtype))

    # ------------------------------------------------------------------ math
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        r""":math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon` (see :func:`q_sample`)."""
        return q_sample(self.schedule, x0, t, noise, generator)

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> Gaussian:
        r""":math:`q(x_{t-1} \mid x_t, x_0)` (see :func:`q_posterior`)."""
        return q_posterior(self.schedule, x0, x_t, t)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""The regression target of the parameterization at schedule indices ``t``: :math:`\epsilon`, :math:`x_0`,
        :math:`v = \sqrt{\bar\alpha_t}\epsilon - \sqrt{1-\bar\alpha_t}x_0`, ... (:func:`~diffusion_core.targets.target_of`)."""
        return target_of(self.parameterization, x0, noise, self.coefficients(t, x0))

    def p_mean_variance(self, pred: Prediction, x_t: torch.Tensor, t: torch.Tensor, *,
                        clip: Clip | str | None = None) -> ReverseStep:
        r""":math:`p_\theta(x_{t-1} \mid x_t) = \mathcal N(\tilde\mu_t(x_t, \hat x_0), \sigma_t^2 I)`: the posterior
        mean of Ho et al. eq. 7 with :math:`x_0` replaced by the prediction :math:`\hat x_0` (for the
        :math:`\epsilon` parameterization this equals Ho et al. eq. 11), and :math:`\sigma_t^2` of :attr:`variance`.

        ``pred`` is a denoiser's :class:`~diffusion_core.targets.Prediction` at schedule indices ``t``;
        :math:`\hat x_0` is clipped by ``clip`` (default: :attr:`clip`, the sampling rule; the training loss
        passes ``"none"``)."""
        if not isinstance(pred, Prediction):
            raise InvalidInputType(f"pred must be a Prediction (what a Denoiser returns), got {type(pred).__name__}")
        check_timesteps(t, self.num_timesteps, x_t.shape[0])
        pred = clip_prediction(pred, x_t, self.resolve_clip(clip), self.dynamic_percentile)
        mean = q_posterior(self.schedule, pred.x0, x_t, t).mean
        log_var = model_log_variance(self.variance, self.schedule, t, x_t.ndim, pred.var_output)
        return ReverseStep(mean, torch.exp(log_var), log_var, pred.x0, pred.eps)

    def __repr__(self) -> str:
        return (
            f"Diffusion({self.schedule!r}, parameterization={self.parameterization.value}, "
            f"variance={self.variance.value}, clip={self.clip.value})"
        )


def check_diffusion(value, name: str = "diffusion") -> Diffusion:
    """``value`` must be a :class:`Diffusion` (a schedule alone lacks the parameterization and variance)."""
    if not isinstance(value, Diffusion):
        hint = " (wrap it: Diffusion(schedule, parameterization, variance))" if isinstance(value, NoiseSchedule) else ""
        raise InvalidInputType(f"{name} must be a Diffusion, got {type(value).__name__}{hint}")
    return value
