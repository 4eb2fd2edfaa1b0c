r"""``Diffusion``: a schedule plus the modelling choices, validated once.

It is a plain class, not an ``nn.Module``: the network is passed to the losses and samplers as an
argument, a :class:`~diffusion_core.denoiser.Denoiser` or any callable ``model(x_t, t) -> output`` with ``t``
the integer time input of shape ``(B,)``. The denoiser reads the network; ``Diffusion`` holds the math around
it (targets, the reverse step, and the sampling-time clip rule).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from ._validation import check_choice, check_timesteps
from .forward import Gaussian, q_sample
from .parameterization import Parameterization, to_eps_x0, v_from_eps_x0
from .reverse import Clip, VarianceType, model_log_variance, q_posterior, threshold_x0
from .schedule import NoiseSchedule, TimestepSpacing
from .errors import InvalidInput, InvalidInputType

if TYPE_CHECKING:
    from .denoiser import Prediction

__all__ = ["Diffusion", "ReverseStep"]


class ReverseStep(NamedTuple):
    r""":math:`p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta, \sigma_t^2 I)` and the predictions behind it."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor
    pred_x0: torch.Tensor
    pred_eps: torch.Tensor


class Diffusion:
    r"""A noise schedule with a parameterization, a reverse variance and a clipping rule.

    Args:
        schedule: the :class:`NoiseSchedule`.
        parameterization: what the network predicts (:class:`Parameterization`, or ``"eps"``, ``"x0"``, ``"v"``).
        variance: :math:`\sigma_t^2` of the reverse step (:class:`VarianceType`).
        clip: what is done to :math:`\hat x_0` when sampling (:class:`Clip`): the samplers' default (their
            ``clip=`` overrides it); the training loss never clips.
        dynamic_percentile: the quantile for ``Clip.DYNAMIC``, in (0, 1].
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        parameterization: Parameterization | str = Parameterization.EPS,
        variance: VarianceType | str = VarianceType.FIXED_LARGE,
        clip: Clip | str = Clip.NONE,
        dynamic_percentile: float = 0.995,
    ) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise InvalidInputType(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.parameterization = check_choice("parameterization", parameterization, Parameterization)
        self.variance = check_choice("variance", variance, VarianceType)
        self.clip = check_choice("clip", clip, Clip)
        if not 0 < dynamic_percentile <= 1:
            raise InvalidInput(f"dynamic_percentile must lie in (0, 1], got {dynamic_percentile}")
        self.dynamic_percentile = float(dynamic_percentile)

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

    def _replace(self, schedule: NoiseSchedule) -> "Diffusion":
        return Diffusion(schedule, self.parameterization, self.variance, self.clip, self.dynamic_percentile)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Diffusion":
        """The same diffusion with the schedule's tables on ``device``."""
        return self._replace(self.schedule.to(device, dtype))

    def respaced(self, steps: int, spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE) -> "Diffusion":
        """The same options over a schedule of ``steps`` of the ``T`` steps (see :meth:`NoiseSchedule.spaced`)."""
        return self._replace(self.schedule.spaced(steps, spacing))

    def split_output(self, output: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Check the network's output shape and split off the variance channels when they are learned.

        Kept for existing callers: the :class:`~diffusion_core.denoiser.Denoiser` reads network outputs."""
        from .denoiser import split_output  # denoiser.py builds on this module

        return split_output(self, output, x_t)

    def resolve_clip(self, clip: Clip | str | None) -> Clip:
        """``clip`` as a :class:`Clip`; ``None`` means this diffusion's own rule, :attr:`clip`."""
        return self.clip if clip is None else check_choice("clip", clip, Clip)

    # ------------------------------------------------------------------ math
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        r""":math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon` (see :func:`q_sample`)."""
        return q_sample(self.schedule, x0, t, noise, generator)

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> Gaussian:
        r""":math:`q(x_{t-1} \mid x_t, x_0)` (see :func:`q_posterior`)."""
        return q_posterior(self.schedule, x0, x_t, t)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""The regression target of the parameterization: :math:`\epsilon`, :math:`x_0`, or
        :math:`v = \sqrt{\bar\alpha_t}\epsilon - \sqrt{1-\bar\alpha_t}x_0`."""
        if self.parameterization is Parameterization.EPS:
            return noise
        if self.parameterization is Parameterization.X0:
            return x0
        return v_from_eps_x0(self.schedule, t, noise, x0)

    def apply_clip(
        self, eps: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip: Clip | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""(:math:`\hat\epsilon`, :math:`\hat x_0`) with :math:`\hat x_0` clipped by ``clip`` (default: :attr:`clip`)
        and :math:`\hat\epsilon` recomputed from the clipped :math:`\hat x_0`, so that
        :math:`x_t = \sqrt{\bar\alpha_t}\hat x_0 + \sqrt{1-\bar\alpha_t}\hat\epsilon` still holds. A sampling
        matter: the samplers apply it, training never does."""
        clip = self.resolve_clip(clip)
        if clip is Clip.NONE:
            return eps, x0
        x0 = threshold_x0(x0, clip, self.dynamic_percentile)
        return to_eps_x0(Parameterization.X0, self.schedule, x_t, t, x0)[0], x0

    def predict(
        self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, *, clip: Clip | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""(:math:`\hat\epsilon`, :math:`\hat x_0`) from the network's mean channels ``output`` (in the
        parameterization's space), clipped as in :meth:`apply_clip` (``clip`` default: :attr:`clip`)."""
        eps, x0 = to_eps_x0(self.parameterization, self.schedule, x_t, t, output)
        return self.apply_clip(eps, x0, x_t, t, clip)

    def p_mean_variance(
        self, output: "torch.Tensor | Prediction", x_t: torch.Tensor, t: torch.Tensor, *, clip: Clip | str | None = None
    ) -> ReverseStep:
        r""":math:`p_\theta(x_{t-1} \mid x_t) = \mathcal N(\tilde\mu_t(x_t, \hat x_0), \sigma_t^2 I)`: the posterior
        mean of Ho et al. eq. 7 with :math:`x_0` replaced by the prediction :math:`\hat x_0` (for the
        :math:`\epsilon` parameterization this equals Ho et al. eq. 11), and :math:`\sigma_t^2` of :attr:`variance`.

        ``output`` is a denoiser's :class:`~diffusion_core.denoiser.Prediction`, or the network's raw output
        tensor (mean channels, then the variance channels when learned). :math:`\hat x_0` is clipped by
        ``clip`` (default: :attr:`clip`, the sampling rule; the training loss passes ``"none"``)."""
        check_timesteps(t, self.num_timesteps, x_t.shape[0])
        if isinstance(output, torch.Tensor):
            from .denoiser import read_output  # denoiser.py builds on this module

            output = read_output(self, output, x_t, t)
        eps, x0 = self.apply_clip(output.eps, output.x0, x_t, t, clip)
        mean = q_posterior(self.schedule, x0, x_t, t).mean
        log_var = model_log_variance(self.variance, self.schedule, t, x_t.ndim, output.var_output)
        return ReverseStep(mean, torch.exp(log_var), log_var, x0, eps)

    def __repr__(self) -> str:
        return (
            f"Diffusion({self.schedule!r}, parameterization={self.parameterization.value}, "
            f"variance={self.variance.value}, clip={self.clip.value})"
        )
