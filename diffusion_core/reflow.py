r"""Reflow (Liu, Gong & Liu 2022, "Flow straight and fast: learning to generate and transfer data with rectified
flow"): couple each noise with where the teacher's ODE takes it, then train a rectified flow on the straight line
between the two, so that a few Euler steps (one, at best) land where the teacher's many steps do.

**Time runs the other way from the paper.** This library's :class:`~diffusion_core.paths.RectifiedFlow` has the data
at :math:`t = 0` and the noise at :math:`t = 1` (:math:`x_t = (1 - t)x_0 + t\epsilon`, velocity target
:math:`\epsilon - x_0`, as diffusers and Stable Diffusion 3). Liu et al. (their eq. 1) and Meta's ``flow_matching``
put the noise at 0 and the data at 1: :math:`X_t = tX_1 + (1 - t)X_0`, velocity :math:`X_1 - X_0`. Their
:math:`(X_0, X_1)` is our :math:`(z_1, z_0)`, their :math:`t` our :math:`1 - t`, their velocity minus ours.

In this library's symbols:

* the coupling: noise :math:`z_1 \sim \mathcal N(0, I)` and :math:`z_0 = \Phi(z_1)`, the teacher's sampler from
  :math:`t = 1` to :math:`t = 0` on its grid (the deterministic ODE solve, Euler or DPM-Solver++(2M) with many steps);
* the straight line :math:`x_t = (1 - t)z_0 + t z_1` and its velocity :math:`u = dx_t/dt = z_1 - z_0`, the
  path's own :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon` and velocity target with :math:`x_0 := z_0`,
  :math:`\epsilon := z_1` (:func:`straight_line_point`);
* the loss: the library's denoising loss (:func:`~diffusion_core.losses.denoising_loss`) at that pair, which on a
  student predicting the velocity is :math:`\lVert (z_1 - z_0) - v_\theta(x_t, t)\rVert^2`, the paper's eq. 1 on
  the coupling (its "reflow", :math:`Z^{k+1} = \mathrm{RectFlow}((Z_0^k, Z_1^k))`); a student with another target
  regresses the same pair in that target's space (the same minimizer, another weighting over :math:`t`).

At :math:`t = 1` the line starts at :math:`z_1` itself and the coupling is a function of :math:`z_1`, so the best
velocity there is exactly :math:`z_1 - \Phi(z_1)`: one Euler step from the noise, :math:`z_1 - 1\cdot v(z_1, 1)`,
is the teacher's map, as far as the student has learned it.

Only rectified flow: the straight line between the pair is this path's interpolation (on another path
:math:`\alpha_t z_0 + \sigma_t z_1` is not a line, and the one-step argument above fails). Others are refused.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ._validation import check_choice, check_int
from .denoiser import BaseDenoiser, Denoiser
from .errors import InvalidInput, InvalidInputType
from .losses import denoising_loss
from .paths import GaussianPath, RectifiedFlow
from .reverse import Clip
from .samplers import sample_dpmpp_2m, sample_euler
from .targets import Coefficients, Target, target_of

__all__ = ["TEACHER_SAMPLERS", "Coupling", "teacher_ode_solution", "reflow_coupling", "straight_line_point",
           "reflow_loss"]

# The teacher's deterministic samplers (ODE solvers) by their command-line name.
TEACHER_SAMPLERS = {"euler": sample_euler, "dpmpp-2m": sample_dpmpp_2m}


class Coupling(NamedTuple):
    """Pairs of the noise :math:`z_1` and the teacher's ODE solution :math:`z_0` from it, row by row."""

    z_1: torch.Tensor
    z_0: torch.Tensor


def _check_rectified_flow(name: str, path: GaussianPath | None) -> None:
    if not isinstance(path, RectifiedFlow):
        raise InvalidInput(f"{name} must be on RectifiedFlow (reflow trains on its straight line), got {path!r}")


@torch.no_grad()
def teacher_ode_solution(teacher: BaseDenoiser, z_1: torch.Tensor, grid: torch.Tensor, *, sampler: str = "euler",
                         batch_size: int | None = None, labels: torch.Tensor | None = None,
                         clip: Clip | str = Clip.NONE, percentile: float = 0.995) -> torch.Tensor:
    """:math:`z_0 = \\Phi(z_1)`: the teacher's ``sampler`` (a key of :data:`TEACHER_SAMPLERS`) from the noise
    ``z_1`` at :math:`t = 1` down the decreasing ``grid`` (which must start at 1) to :math:`t = 0`, ``batch_size``
    rows at a time (all at once by default), ``clip`` applied to its :math:`\\hat x_0` as its sampler would."""
    _check_rectified_flow("teacher", teacher.path)
    if sampler not in TEACHER_SAMPLERS:
        raise InvalidInput(f"sampler must be one of {', '.join(TEACHER_SAMPLERS)}, got {sampler!r}")
    grid = torch.as_tensor(grid, dtype=torch.float64)
    if grid.ndim != 1 or grid.numel() < 2 or float(grid[0]) != teacher.path.t_max:
        raise InvalidInput(f"grid must start at t = 1, where z_1 is pure noise, got {grid.tolist()[:4]}")
    n = z_1.shape[0]
    batch_size = n if batch_size is None else check_int("batch_size", batch_size, minimum=1)
    solve, clip = TEACHER_SAMPLERS[sampler], check_choice("clip", clip, Clip)
    parts = []
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        parts.append(solve(teacher, z_1[rows], grid, labels=None if labels is None else labels[rows], clip=clip,
                           percentile=percentile, progress=False).sample)
    return torch.cat(parts)


def reflow_coupling(teacher: BaseDenoiser, n: int, shape: tuple[int, ...], grid: torch.Tensor, *,
                    generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32, **solve_options) -> Coupling:
    """``n`` pairs :math:`(z_1, z_0)` of examples of ``shape``: all the noise drawn first, in one call on
    ``generator`` (so the pairs do not depend on the batch size), then :func:`teacher_ode_solution` with
    ``solve_options`` (``sampler``, ``batch_size``, ``labels``, ``clip``, ``percentile``)."""
    n = check_int("n", n, minimum=1)
    z_1 = torch.randn((n, *shape), generator=generator, device=device, dtype=dtype)
    return Coupling(z_1, teacher_ode_solution(teacher, z_1, grid, **solve_options))


def straight_line_point(path: GaussianPath, z_0: torch.Tensor, z_1: torch.Tensor,
                        t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The point :math:`x_t = (1 - t)z_0 + t z_1` of the line between a pair at times ``t`` (``(B,)``) and the
    velocity the student regresses there, :math:`u = z_1 - z_0`: the path's :math:`x_t` and ``"velocity"``
    target (:func:`~diffusion_core.targets.target_of`) with :math:`x_0 := z_0`, :math:`\\epsilon := z_1`, which is
    what :func:`reflow_loss` compares with."""
    _check_rectified_flow("path", path)
    shape = (-1, *([1] * (z_0.ndim - 1)))
    t = t.to(torch.float64)
    c = Coefficients(*(v.reshape(shape).to(device=z_0.device, dtype=z_0.dtype)
                       for v in (path.alpha(t), path.sigma(t), *path.derivatives(t))))
    return torch.addcmul(c.alpha * z_0, c.sigma, z_1), target_of(Target.VELOCITY, z_0, z_1, c)


def reflow_loss(student: Denoiser, z_0: torch.Tensor, z_1: torch.Tensor, t: torch.Tensor, *,
                labels: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair loss ``(B,)`` at times ``t`` (``(B,)``): the library's denoising loss
    (:func:`~diffusion_core.losses.denoising_loss`, mean squared error in the student's own target's space, no
    weighting) with :math:`x_0 := z_0` and :math:`\\epsilon := z_1`; for a ``"velocity"`` student
    :math:`\\lVert (z_1 - z_0) - v_\\theta(x_t, t)\\rVert^2` on the straight line (the module's docstring)."""
    if not isinstance(student, Denoiser) or student.path is None:
        raise InvalidInputType(f"student must be a Denoiser with a path to train, got {student!r}")
    _check_rectified_flow("student", student.path)
    return denoising_loss(student, z_0, t, z_1, labels=labels)
