r"""Noise schedules: the betas and every table derived from them.

Indexing follows improved-diffusion: index ``t`` runs over ``0 .. T-1`` and index ``t`` is
the paper's step :math:`t+1`.  So ``alphas_cumprod[0]`` is :math:`\bar\alpha_1` and
``alphas_cumprod_prev[0]`` is :math:`\bar\alpha_0 = 1`.

Every table is computed in float64 from the betas and only then cast to the working dtype,
so a float32 schedule is the correctly rounded float64 one.
"""
from __future__ import annotations

import math
from enum import Enum
from typing import Sequence

import torch

from ._validation import check_choice, check_fits_memory, check_positive_int
from .errors import InvalidInput, InvalidInputType

__all__ = ["NoiseSchedule", "ScheduleKind", "TimestepSpacing", "spaced_timesteps", "SCHEDULE_BYTES_PER_STEP"]

# Memory a schedule needs per step, about: a dozen float64 tables while deriving, their float32 copies and the
# timesteps. T beyond the machine's memory is refused with that reason, not left to the allocator.
SCHEDULE_BYTES_PER_STEP = 160


def _check_T(T) -> int:
    T = check_positive_int("T", T)
    return check_fits_memory("T", T, SCHEDULE_BYTES_PER_STEP, "the schedule's tables")


class ScheduleKind(str, Enum):
    """How the betas are laid out over ``T`` steps."""

    LINEAR = "linear"
    COSINE = "cosine"
    QUADRATIC = "quadratic"
    SIGMOID = "sigmoid"


class TimestepSpacing(str, Enum):
    """Which of the ``T`` steps a shortened sampler visits (Lin et al. 2024, table 2).

    The first three depend on ``T`` only. The last two place the steps by noise level, so they need the
    schedule (:meth:`NoiseSchedule.spaced` passes it; :func:`spaced_timesteps` takes ``alphas_cumprod=``);
    :func:`spaced_timesteps` says how they are rounded to the schedule's own indices.
    """

    LINSPACE = "linspace"  # round(linspace(0, T-1, n)): first and last step included
    LEADING = "leading"  # 0, k, 2k, ...: starts at 0, may miss the last step (DDIM paper)
    TRAILING = "trailing"  # ..., T-1-k, T-1: always ends at the last step
    LOG_SNR = "log-snr"  # lambda = log(alpha/sigma) evenly spaced from the last index's to the first's
    KARRAS = "karras"  # sigma/alpha spaced as in Karras et al. 2022, eq. 5 (rho = 7)


def _linear_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def _cosine_betas(T: int, s: float, max_beta: float) -> torch.Tensor:
    # Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = f(t)/f(0), f(t) = cos^2((t/T + s)/(1+s) * pi/2);
    # beta_t = 1 - alpha_bar(t)/alpha_bar(t-1), clipped at 0.999 to avoid the singularity at t = T.
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def _quadratic_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    # Linear in sqrt(beta), as in the DDPM codebase's "quad" option.
    return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2


def _sigmoid_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    # A logistic ramp from beta_start to beta_end over [-6, 6] (the "sigmoid" of the DDIM code base, Song et al. 2021; the DDPM code has none).
    ramp = torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64))
    return beta_start + (beta_end - beta_start) * ramp


def _default_range(T: int) -> tuple[float, float]:
    # Ho et al. use 1e-4 .. 0.02 for T = 1000; improved-diffusion scales both ends by 1000/T
    # so that the product of alphas (and so alpha_bar_T) stays about the same for other T.
    scale = 1000 / T
    return scale * 1e-4, min(scale * 0.02, 0.999)


KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5 (rho = 7 in their table 1)


def _check_alphas_cumprod(spacing: TimestepSpacing, alphas_cumprod, T: int) -> torch.Tensor:
    if alphas_cumprod is None:
        raise InvalidInput(
            f"spacing {spacing.value!r} places the steps by noise level: pass alphas_cumprod= (the schedule's "
            "alpha_bar, length T), or use NoiseSchedule.spaced / Diffusion.respaced, which pass it")
    ac = torch.as_tensor(alphas_cumprod).detach().to(device="cpu", dtype=torch.float64)
    if ac.shape != (T,):
        raise InvalidInput(f"alphas_cumprod must be 1-D of length T={T}, got shape {tuple(ac.shape)}")
    if not bool(torch.isfinite(ac).all()) or bool((ac < 0).any()) or bool((ac >= 1).any()):
        raise InvalidInput("alphas_cumprod must lie in [0, 1), found a value outside it (or NaN/Inf)")
    if bool((ac == 0).any()):
        raise InvalidInput(
            f"spacing {spacing.value!r} needs alphas_cumprod > 0 at every index: sigma/alpha is infinite where "
            "alpha_bar = 0 (a zero-terminal-SNR schedule's last index); use 'linspace' or 'trailing' there")
    if not bool((ac[1:] < ac[:-1]).all()):
        raise InvalidInput(f"spacing {spacing.value!r} needs strictly decreasing alphas_cumprod (one noise level "
                           "per index), found neighbouring indices with equal or increasing alpha_bar")
    return ac


def _continuous_timestep(log_sigma: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The fractional timestep of each noise level in ``target`` (values of log(sigma/alpha)): the index
    interpolated linearly against ``log_sigma`` (strictly increasing), clamped to ``[0, T-1]``."""
    T = log_sigma.numel()
    target = target.clamp(log_sigma[0], log_sigma[-1])
    j = torch.searchsorted(log_sigma, target).clamp(1, T - 1)
    lo, hi = log_sigma[j - 1], log_sigma[j]
    return ((j - 1) + (target - lo) / (hi - lo)).clamp(0, T - 1)


def _distinct_indices(rounded: torch.Tensor, T: int) -> torch.Tensor:
    """Non-decreasing ``rounded`` indices (first 0, last T-1) made strictly increasing without dropping any:
    an index not above its predecessor moves up to predecessor + 1, and one pushed so far up that the
    indices after it would not fit below T moves down to leave them room (index i <= T - N + i). With
    q_i = idx_i - i this is q = min(cummax(rounded_i - i), T - N): an index no collision reached keeps
    its rounded value."""
    n = rounded.numel()
    i = torch.arange(n, dtype=torch.long)
    return i + torch.cummax(rounded - i, dim=0).values.clamp(max=T - n)


def _noise_level_timesteps(T: int, steps: int, spacing: TimestepSpacing, ac: torch.Tensor) -> torch.Tensor:
    """The ``"log-snr"`` and ``"karras"`` spacings of :func:`spaced_timesteps`."""
    if steps == 1:
        return torch.tensor([T - 1], dtype=torch.long)  # a one-step solver starts from the noisiest index
    # log(sigma/alpha) = -lambda = log of EDM's sigma, strictly increasing in t
    log_sigma = 0.5 * (torch.log1p(-ac) - torch.log(ac))
    frac = torch.arange(steps, dtype=torch.float64) / (steps - 1)
    if spacing is TimestepSpacing.LOG_SNR:
        target = log_sigma[0] + frac * (log_sigma[-1] - log_sigma[0])
    else:
        # Karras et al. eq. 5, sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
        # i = 0..N-1 (decreasing sigma); here in increasing order (i -> N-1-i), as a logarithm.
        lo, hi = torch.exp(log_sigma[0] / KARRAS_RHO), torch.exp(log_sigma[-1] / KARRAS_RHO)
        target = KARRAS_RHO * torch.log(lo + frac * (hi - lo))
    return _distinct_indices(_continuous_timestep(log_sigma, target).round().long(), T)


# linspace and trailing are computed in float64 exactly as numpy computes diffusers' grids (np.linspace's
# i * step with the last value set to the end; np.arange's start + i * (second value - start)), and rounded half
# to even as numpy rounds: at an exact half-way value another order of operations can land on either side of it
# and pick the neighbouring step.
def _linspace_timesteps(T: int, steps: int) -> torch.Tensor:
    """``round(linspace(0, T - 1, steps))``."""
    if steps == 1:
        return torch.zeros(1, dtype=torch.long)
    x = torch.arange(steps, dtype=torch.float64) * ((T - 1) / (steps - 1))
    x[-1] = T - 1
    return x.round().long()


def _trailing_timesteps(T: int, steps: int) -> torch.Tensor:
    """``round(T - i T / steps) - 1`` for i = 0 .. steps-1, increasing (Lin et al. 2024, table 2)."""
    delta = (T - T / steps) - T
    return ((T + torch.arange(steps, dtype=torch.float64) * delta).round().long() - 1).flip(0)


def spaced_timesteps(T: int, steps: int, spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE, *,
                     alphas_cumprod: torch.Tensor | Sequence[float] | None = None) -> torch.Tensor:
    r"""Choose ``steps`` distinct indices out of ``0 .. T-1``, increasing.

    ``"linspace"``, ``"leading"`` and ``"trailing"`` depend on ``T`` only, and are diffusers' ``DDPMScheduler`` and
    ``DDIMScheduler`` timesteps for the same ``timestep_spacing``, index for index (numpy's float64 arithmetic and
    half-to-even rounding; diffusers' trailing grid sometimes has an extra timestep -1, outside the schedule, which
    ours has not). ``"log-snr"`` and ``"karras"`` place
    the steps by noise level and need ``alphas_cumprod`` (the schedule's :math:`\bar\alpha`, length ``T``,
    strictly decreasing, all > 0; :meth:`NoiseSchedule.spaced` passes it):

    * ``"log-snr"``: :math:`\lambda = \log(\alpha/\sigma)` (:math:`\alpha = \sqrt{\bar\alpha}`,
      :math:`\sigma = \sqrt{1-\bar\alpha}`) evenly spaced from its value at index ``T-1`` to its value at index 0;
    * ``"karras"``: Karras et al. 2022, eq. 5 with :math:`\rho = 7`,
      :math:`\sigma_i = (\sigma_{\max}^{1/\rho} + \tfrac{i}{N-1}(\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho}))^\rho`,
      in EDM's :math:`\sigma = \sqrt{(1-\bar\alpha)/\bar\alpha}`, with :math:`\sigma_{\max}` that of index ``T-1``
      and :math:`\sigma_{\min}` that of index 0.

    Each noise level is mapped to the nearest integer timestep: its fractional timestep is the index
    interpolated linearly against :math:`\log(\sigma/\alpha) = -\lambda`, which is then rounded. Both end
    points are kept (for ``steps >= 2``; ``steps = 1`` gives ``[T-1]``, the noisiest index, where a one-step
    solver starts). Where rounding merges neighbours (many steps where the schedule's indices are sparse in
    noise level, e.g. Karras's steps near index 0), the count is kept, not reduced: an index not above its
    predecessor moves up to the next unused index, and moves back down only as far as needed to leave room
    for the indices after it. So there are always ``steps`` strictly increasing indices (``steps = T`` gives
    every index), and an index that no merge reached is the rounded one.

    Raises:
        InvalidInput: if ``steps`` is not in ``[1, T]``, ``spacing`` is unknown, or a noise-level spacing
            gets no ``alphas_cumprod`` (or one that is not strictly decreasing in (0, 1)).
    """
    T = check_positive_int("T", T)
    steps = check_positive_int("steps", steps)
    if steps > T:
        raise InvalidInput(f"steps must be at most T={T} (the schedule's length), got {steps}")
    spacing = check_choice("spacing", spacing, TimestepSpacing)
    if spacing in (TimestepSpacing.LOG_SNR, TimestepSpacing.KARRAS):
        idx = _noise_level_timesteps(T, steps, spacing, _check_alphas_cumprod(spacing, alphas_cumprod, T))
    elif spacing is TimestepSpacing.LINSPACE:
        idx = _linspace_timesteps(T, steps)
    elif spacing is TimestepSpacing.LEADING:
        idx = torch.arange(steps, dtype=torch.long) * (T // steps)
    else:
        idx = _trailing_timesteps(T, steps)
    # round() can merge neighbours only when steps is close to T; the indices stay strictly increasing
    # because T / steps >= 1, so this is an internal invariant, not user input.
    assert bool((idx[1:] > idx[:-1]).all()), idx
    return idx


class NoiseSchedule:
    r"""The betas :math:`\beta_t` and the tables derived from them.

    Attributes (all 1-D of length ``T``, in the working dtype, on one device):
        betas: :math:`\beta_t`.
        alphas: :math:`\alpha_t = 1 - \beta_t`.
        alphas_cumprod: :math:`\bar\alpha_t = \prod_{s \le t} \alpha_s`.
        alphas_cumprod_prev: :math:`\bar\alpha_{t-1}`, with :math:`\bar\alpha_0 = 1`.
        sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod: :math:`\sqrt{\bar\alpha_t}`, :math:`\sqrt{1-\bar\alpha_t}`.
        posterior_variance: :math:`\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t` (Ho et al. eq. 7).
        posterior_log_variance_clipped: :math:`\log\tilde\beta_t`, with the first entry replaced by
            :math:`\log\tilde\beta_2` because :math:`\tilde\beta_1 = 0` (improved DDPM).
        posterior_mean_coef1, posterior_mean_coef2: the coefficients of :math:`x_0` and :math:`x_t`
            in :math:`\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} x_0
            + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t` (Ho et al. eq. 7).
        snr: :math:`\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)`.
        timesteps: the network's time input for each index (``arange(T)`` unless respaced).
    """

    def __init__(
        self,
        betas: torch.Tensor | Sequence[float],
        *,
        timesteps: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        b = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if b.ndim != 1:
            raise InvalidInput(f"betas must be 1-D, got shape {tuple(b.shape)}")
        if b.numel() < 1:
            raise InvalidInput("betas must hold at least one step (T >= 1), got an empty tensor")
        if not torch.isfinite(b).all():
            raise InvalidInput("betas must be finite, found NaN or Inf")
        # beta = 1 is allowed at the last step only: that is a zero-terminal-SNR schedule.
        if (b <= 0).any() or (b[:-1] >= 1).any() or b[-1] > 1:
            raise InvalidInput(
                "betas must lie in (0, 1) (the last one may equal 1 for zero terminal SNR), "
                f"got min {b.min().item():.3g}, max {b.max().item():.3g}"
            )
        T = b.numel()
        if timesteps is None:
            ts = torch.arange(T, dtype=torch.long)
        else:
            ts = torch.as_tensor(timesteps).detach().cpu()
            if ts.dtype not in (torch.int32, torch.int64) or ts.shape != (T,):
                raise InvalidInput(f"timesteps must be an integer tensor of shape ({T},), got {ts.dtype} {tuple(ts.shape)}")
            ts = ts.long()
        if not dtype.is_floating_point:
            raise InvalidInputType(f"dtype must be a floating-point dtype, got {dtype}")
        self._betas64 = b
        self.timesteps = ts
        self.dtype = dtype
        tables = self._derive(b)
        for name, value in tables.items():
            setattr(self, name, value.to(dtype=dtype, device=device))
        self.timesteps = ts.to(device=device)

    @staticmethod
    def _derive(b: torch.Tensor) -> dict[str, torch.Tensor]:
        alphas = 1 - b
        ac = torch.cumprod(alphas, 0)
        ac_prev = torch.cat([ac.new_ones(1), ac[:-1]])
        post_var = b * (1 - ac_prev) / (1 - ac)
        # Index 0 has posterior variance 0; take log(beta~) of the next step there (improved DDPM).
        log_post = torch.log(torch.cat([post_var[1:2], post_var[1:]])) if b.numel() > 1 else torch.log(b)
        return {
            "betas": b,
            "alphas": alphas,
            "alphas_cumprod": ac,
            "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": ac.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - ac).sqrt(),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": log_post,
            "posterior_mean_coef1": ac_prev.sqrt() * b / (1 - ac),
            "posterior_mean_coef2": alphas.sqrt() * (1 - ac_prev) / (1 - ac),
            "snr": ac / (1 - ac),
        }

    # ----------------------------------------------------------------- constructors
    @classmethod
    def make(cls, kind: ScheduleKind | str, T: int, **kwargs) -> "NoiseSchedule":
        """Build a schedule by name: ``NoiseSchedule.make("cosine", 1000)``."""
        kind = check_choice("kind", kind, ScheduleKind)
        return getattr(cls, kind.value)(T, **kwargs)

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float | None = None, beta_end: float | None = None, **kw) -> "NoiseSchedule":
        r"""Linear betas (Ho et al. 2020): :math:`\beta_t` from ``1e-4`` to ``0.02`` at ``T = 1000``, scaled by ``1000/T``."""
        T = _check_T(T)
        lo, hi = _default_range(T)
        return cls(_linear_betas(T, lo if beta_start is None else beta_start, hi if beta_end is None else beta_end), **kw)

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999, **kw) -> "NoiseSchedule":
        r"""Cosine schedule (Nichol & Dhariwal 2021, eq. 17): :math:`\bar\alpha_t = f(t)/f(0)`,
        :math:`f(t) = \cos^2\!\big(\frac{t/T + s}{1+s}\cdot\frac{\pi}{2}\big)`, betas clipped at ``max_beta``."""
        T = _check_T(T)
        if not s > 0:
            raise InvalidInput(f"s must be > 0, got {s}")
        return cls(_cosine_betas(T, s, max_beta), **kw)

    @classmethod
    def quadratic(cls, T: int = 1000, beta_start: float | None = None, beta_end: float | None = None, **kw) -> "NoiseSchedule":
        r"""Quadratic schedule: :math:`\sqrt{\beta_t}` linear between the linear schedule's end points."""
        T = _check_T(T)
        lo, hi = _default_range(T)
        return cls(_quadratic_betas(T, lo if beta_start is None else beta_start, hi if beta_end is None else beta_end), **kw)

    @classmethod
    def sigmoid(cls, T: int = 1000, beta_start: float | None = None, beta_end: float | None = None, **kw) -> "NoiseSchedule":
        r"""Sigmoid schedule: :math:`\beta_t = \beta_{\min} + (\beta_{\max}-\beta_{\min})\,\sigma(-6 + 12\tfrac{t}{T-1})`."""
        T = _check_T(T)
        lo, hi = _default_range(T)
        return cls(_sigmoid_betas(T, lo if beta_start is None else beta_start, hi if beta_end is None else beta_end), **kw)

    @classmethod
    def from_betas(cls, betas: torch.Tensor | Sequence[float], **kw) -> "NoiseSchedule":
        """A schedule from explicit betas (validated: 1-D, finite, in (0, 1))."""
        return cls(betas, **kw)

    # ----------------------------------------------------------------- transforms
    @property
    def num_timesteps(self) -> int:
        """``T``, the number of steps."""
        return int(self._betas64.numel())

    def __len__(self) -> int:
        return self.num_timesteps

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "NoiseSchedule":
        """The same schedule with its tables on ``device`` in ``dtype`` (recomputed from float64)."""
        return NoiseSchedule(
            self._betas64, timesteps=self.timesteps.cpu(), dtype=dtype or self.dtype, device=device or self.device
        )

    def rescale_zero_terminal_snr(self) -> "NoiseSchedule":
        r"""Shift and scale :math:`\sqrt{\bar\alpha_t}` so that :math:`\bar\alpha_T = 0` while
        :math:`\bar\alpha_1` is unchanged (Lin et al. 2024, "Common diffusion noise schedules and
        sample steps are flawed", algorithm 1). The last beta becomes 1: use the v or x0 parameterization."""
        if self.num_timesteps < 2:
            raise InvalidInput("rescale_zero_terminal_snr needs T >= 2")
        s = torch.cumprod(1 - self._betas64, 0).sqrt()
        first, last = s[0].clone(), s[-1].clone()
        s = (s - last) * first / (first - last)
        ac = s**2
        alphas = torch.cat([ac[:1], ac[1:] / ac[:-1]])
        return NoiseSchedule(1 - alphas, timesteps=self.timesteps.cpu(), dtype=self.dtype, device=self.device)

    def respace(self, keep: torch.Tensor | Sequence[int]) -> "NoiseSchedule":
        r"""Keep only the indices ``keep`` (improved DDPM, section 4): the new betas are
        :math:`\beta'_i = 1 - \bar\alpha_{k_i} / \bar\alpha_{k_{i-1}}`, so :math:`\bar\alpha'_i = \bar\alpha_{k_i}`
        exactly, and ``timesteps`` maps each new index to the network's original time input."""
        k = torch.as_tensor(keep).detach().cpu()
        if k.dtype not in (torch.int32, torch.int64) or k.ndim != 1 or k.numel() < 1:
            raise InvalidInput(f"keep must be a non-empty 1-D integer tensor, got {k.dtype} {tuple(k.shape)}")
        k = k.long()
        T = self.num_timesteps
        if (k < 0).any() or (k >= T).any():
            raise InvalidInput(f"keep indices must lie in [0, {T - 1}], got min {k.min().item()}, max {k.max().item()}")
        if (k[1:] <= k[:-1]).any():
            raise InvalidInput("keep indices must be strictly increasing")
        ac = torch.cumprod(1 - self._betas64, 0)[k]
        ac_prev = torch.cat([ac.new_ones(1), ac[:-1]])
        return NoiseSchedule(1 - ac / ac_prev, timesteps=self.timesteps.cpu()[k], dtype=self.dtype, device=self.device)

    def spaced(self, steps: int, spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE) -> "NoiseSchedule":
        r"""``respace(spaced_timesteps(T, steps, spacing))``: a schedule of ``steps`` steps (the noise-level
        spacings ``"log-snr"`` and ``"karras"`` are placed by this schedule's :math:`\bar\alpha`)."""
        ac = torch.cumprod(1 - self._betas64, 0)
        return self.respace(spaced_timesteps(self.num_timesteps, steps, spacing, alphas_cumprod=ac))

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule(T={self.num_timesteps}, beta=[{self._betas64[0]:.3g}..{self._betas64[-1]:.3g}], "
            f"alpha_bar_T={self.alphas_cumprod[-1].item():.3g}, dtype={self.dtype}, device={self.device})"
        )
