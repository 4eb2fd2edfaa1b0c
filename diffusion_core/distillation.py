r"""Progressive distillation (Salimans & Ho 2022, "Progressive distillation for fast sampling of diffusion models",
Algorithm 2): a student that takes one DDIM step where its teacher takes two, halving the step count each round.

On a Gaussian path :math:`z_t = \alpha_t x + \sigma_t\epsilon` (:mod:`diffusion_core.paths`), the deterministic
DDIM step from :math:`z_t` to a time :math:`s < t`, given the prediction :math:`\hat x` at :math:`t`, is

.. math:: z_s = \alpha_s\hat x + \frac{\sigma_s}{\sigma_t}(z_t - \alpha_t\hat x)

(:math:`\hat\epsilon = (z_t - \alpha_t\hat x)/\sigma_t`; :func:`~diffusion_core.samplers.sample_ddim` with
:math:`\eta = 0`). It is Euler's method on the probability-flow ODE in :math:`(z/\alpha, \sigma/\alpha)`, so
everything here holds on every path: DDPM's discrete one, continuous VP, rectified flow, EDM.

For times :math:`t > t' > t''` the teacher takes two such steps, :math:`z_t \to z_{t'} \to z_{t''}`. The
student's target :math:`\tilde x` is the prediction at :math:`t` whose single step :math:`t \to t''` lands exactly on
the teacher's :math:`z_{t''}`: the step is affine in :math:`\hat x`, so

.. math:: \tilde x = \frac{z_{t''} - (\sigma_{t''}/\sigma_t)\,z_t}{\alpha_{t''} - (\sigma_{t''}/\sigma_t)\,\alpha_t}

(Salimans & Ho 2022, Algorithm 2, in this library's :math:`\alpha, \sigma`). The denominator is
:math:`\alpha_{t''}(1 - \tilde\sigma_{t''}/\tilde\sigma_t) > 0` with :math:`\tilde\sigma = \sigma/\alpha`, so it
exists wherever :math:`t'' < t`, also at :math:`\alpha_t = 0` (rectified flow's :math:`t = 1`) and at
:math:`t'' = 0`, where :math:`\tilde x = z_{t''}`, the teacher's two-step sample itself.

The student's loss is on :math:`\hat x`, weighted as the paper does ("truncated SNR",
:math:`w(\lambda_t) = \max(\alpha_t^2/\sigma_t^2, 1)`, their sec. 4): the :math:`x` error where the signal dominates,
the :math:`\epsilon` error (:math:`\lVert\epsilon - \hat\epsilon\rVert^2 = \mathrm{SNR}\,\lVert x - \hat x\rVert^2`)
where the noise does, so that the weight never vanishes at the pure-noise end where the one-step student does
its most important work.

**With classifier-free guidance** (Meng et al. 2023, "On distillation of guided diffusion models", CVPR): the
teacher of the first round is the guided denoiser :func:`guided_teacher` (:class:`~diffusion_core.guidance.
ClassifierFreeGuidance` at scale :math:`s`, diffusers' ``guidance_scale``; Ho & Salimans' :math:`w = s - 1`), whose
:math:`\hat x = \hat x_c + w(\hat x_c - \hat x_\varnothing)` enters the two DDIM steps above unchanged, so the target
is the same formula and one student step lands on the GUIDED teacher's two. Meng et al. condition their student on
:math:`w` to serve a range of guidance strengths; here :math:`w` is fixed for the run (the student is a normal
class-conditional network of the teacher's architecture, and samples its one baked-in guidance with one call per
step instead of the guided teacher's two). Rows with the null label :math:`\varnothing` (a trainer's label dropout)
get the unconditional teacher itself, for which guidance changes nothing, so the student keeps an unconditional
mode. Later rounds' teachers are the previous student, already guided: guidance is applied once, in the first.

Notation (code → symbol): ``t, t_mid, t_end`` are :math:`t, t', t''`; ``z_t`` is :math:`z_t`; ``x_tilde``
:math:`\tilde x`. The grids are :func:`~diffusion_core.grids.time_grid`'s (decreasing, ending at 0); a student's
grid is every other time of its teacher's (:func:`halve_grid`), so that on a DDPM path every time is one of the
schedule's steps.
"""
from __future__ import annotations

import torch

from ._validation import check_choice
from .denoiser import BaseDenoiser, Denoiser
from .errors import InvalidInput, InvalidInputType
from .guidance import ClassifierFreeGuidance
from .reverse import Clip, clip_prediction

__all__ = ["ddim_step", "ddim_prediction_between", "teacher_two_ddim_steps", "progressive_distillation_target",
           "truncated_snr_weight", "progressive_distillation_loss", "halve_grid", "draw_step_times", "guided_teacher"]


def ddim_step(z_t: torch.Tensor, x_hat: torch.Tensor, alpha_t, sigma_t, alpha_s, sigma_s) -> torch.Tensor:
    """The deterministic DDIM step :math:`z_s = \\alpha_s\\hat x + (\\sigma_s/\\sigma_t)(z_t - \\alpha_t\\hat x)`."""
    return alpha_s * x_hat + (sigma_s / sigma_t) * (z_t - alpha_t * x_hat)


def ddim_prediction_between(z_t: torch.Tensor, z_s: torch.Tensor, alpha_t, sigma_t, alpha_s, sigma_s) -> torch.Tensor:
    """The prediction :math:`\\hat x` whose DDIM step from :math:`z_t` lands on :math:`z_s` (the inverse of
    :func:`ddim_step` in :math:`\\hat x`): :math:`(z_s - (\\sigma_s/\\sigma_t)z_t)/(\\alpha_s - (\\sigma_s/\\sigma_t)\\alpha_t)`."""
    ratio = sigma_s / sigma_t
    return (z_s - ratio * z_t) / (alpha_s - ratio * alpha_t)


def guided_teacher(teacher: Denoiser, scale: float) -> BaseDenoiser:
    """The teacher of guided progressive distillation (Meng et al. 2023, with :math:`w = s - 1` fixed): ``teacher``
    itself at ``scale`` 1 (no guidance), else :class:`~diffusion_core.guidance.ClassifierFreeGuidance` at ``scale``
    (diffusers' convention) that also takes the null label, giving it the unconditional prediction (a trainer's
    label dropout: the student keeps an unconditional mode)."""
    if scale == 1.0:
        return teacher
    return ClassifierFreeGuidance(teacher, scale, allow_null=True)


def _check_times(t: torch.Tensor, t_mid: torch.Tensor, t_end: torch.Tensor) -> None:
    if not torch.compiler.is_compiling() and not bool(((t > t_mid) & (t_mid > t_end) & (t_end >= 0)).all()):
        raise InvalidInput("progressive distillation needs times t > t_mid > t_end >= 0 in every row")


@torch.no_grad()
def teacher_two_ddim_steps(teacher: BaseDenoiser, z_t: torch.Tensor, t: torch.Tensor, t_mid: torch.Tensor,
                           t_end: torch.Tensor, *, labels: torch.Tensor | None = None, clip: Clip | str = Clip.NONE,
                           percentile: float = 0.995) -> torch.Tensor:
    """The teacher's two DDIM steps :math:`z_t \\to z_{t'} \\to z_{t''}` (times ``(B,)`` of the teacher's path),
    with ``clip`` applied to its :math:`\\hat x` as its sampler would; each step is
    :func:`~diffusion_core.samplers.sample_ddim`'s, :math:`z_s = \\alpha_s\\hat x + \\sigma_s\\hat\\epsilon`."""
    clip = check_choice("clip", clip, Clip)
    z = z_t
    for now, nxt in ((t, t_mid), (t_mid, t_end)):
        p = clip_prediction(teacher(z, now, labels=labels), z, clip, percentile)
        c = teacher.coefficients(nxt, z)
        z = c.alpha * p.x0 + c.sigma * p.eps
    return z


def progressive_distillation_target(teacher: BaseDenoiser, z_t: torch.Tensor, t: torch.Tensor, t_mid: torch.Tensor,
                                    t_end: torch.Tensor, **teacher_options) -> torch.Tensor:
    """:math:`\\tilde x`: the prediction at ``t`` whose one DDIM step to ``t_end`` reproduces the teacher's two
    (the module's formula; Salimans & Ho 2022, Algorithm 2). ``teacher_options``: ``labels``, ``clip``,
    ``percentile`` of :func:`teacher_two_ddim_steps`. No gradient flows through it."""
    _check_times(t, t_mid, t_end)
    z_end = teacher_two_ddim_steps(teacher, z_t, t, t_mid, t_end, **teacher_options)
    now, end = teacher.coefficients(t, z_t), teacher.coefficients(t_end, z_t)
    return ddim_prediction_between(z_t, z_end, now.alpha, now.sigma, end.alpha, end.sigma)


def truncated_snr_weight(path, t: torch.Tensor) -> torch.Tensor:
    """Salimans & Ho's "truncated SNR" weight on the :math:`x` error, :math:`\\max(\\alpha_t^2/\\sigma_t^2, 1)`,
    float64 ``(B,)``."""
    t = t.to(torch.float64)
    return torch.clamp(path.alpha(t) ** 2 / path.sigma(t) ** 2, min=1.0)


def progressive_distillation_loss(student: Denoiser, teacher: BaseDenoiser, x: torch.Tensor, t: torch.Tensor,
                                  t_mid: torch.Tensor, t_end: torch.Tensor, noise: torch.Tensor,
                                  **teacher_options) -> torch.Tensor:
    """Per-example loss ``(B,)`` of Algorithm 2: :math:`z_t = \\alpha_t x + \\sigma_t\\epsilon` (``noise`` is
    :math:`\\epsilon`), then :math:`\\max(\\mathrm{SNR}_t, 1)\\,\\lVert\\tilde x - \\hat x_\\mathrm{student}(z_t)\\rVert^2`
    (mean over the example's entries), whatever the student's network predicts. Student and teacher share the
    path."""
    if not isinstance(student, Denoiser) or student.path is None:
        raise InvalidInputType(f"student must be a Denoiser with a path to train, got {student!r}")
    if teacher.path is not student.path:
        raise InvalidInput("the student and the teacher must share one path (the same times mean the same noise)")
    c = student.coefficients(t, x)
    z_t = torch.addcmul(c.alpha * x, c.sigma, noise)
    x_tilde = progressive_distillation_target(teacher, z_t, t, t_mid, t_end, **teacher_options)
    y, var_output = student.output(z_t, t, c, labels=teacher_options.get("labels"))
    x_hat = student.read(y, z_t, c, var_output).x0
    dtype = torch.promote_types(x.dtype, torch.float32)  # at least float32, also under autocast
    error = ((x_hat.to(dtype) - x_tilde.to(dtype)) ** 2).reshape(x.shape[0], -1).mean(1)
    return error * truncated_snr_weight(student.path, t).to(device=error.device, dtype=error.dtype)


def halve_grid(ts: torch.Tensor) -> torch.Tensor:
    """The student's grid: every other time of the teacher's grid ``ts`` (``2N + 1`` times to ``N + 1``), so that each
    student step :math:`t \\to t''` spans two teacher steps through :math:`t'`."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    steps = ts.numel() - 1
    if ts.ndim != 1 or steps < 2 or steps % 2:
        raise InvalidInput(f"a grid to halve needs an even number of steps (at least 2), got {steps}")
    return ts[::2].clone()


def draw_step_times(teacher_grid: torch.Tensor, n: int, *, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` student steps drawn uniformly from the student's grid (``halve_grid(teacher_grid)``), as Algorithm 2
    draws :math:`t = i/N`: their times :math:`(t, t', t'')`, float64 ``(n,)`` each on ``device``."""
    grid = torch.as_tensor(teacher_grid, dtype=torch.float64)
    steps = halve_grid(grid).numel() - 1
    k = torch.randint(0, steps, (n,), generator=generator, device=device)
    grid = grid.to(device)
    return grid[2 * k], grid[2 * k + 1], grid[2 * k + 2]
