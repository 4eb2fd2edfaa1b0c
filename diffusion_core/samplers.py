r"""Samplers: plain functions over any callable ``model(x_t, t) -> output``.

Both walk a (possibly respaced) schedule from its last index down to 0. The loop never reads a value
back to the host: schedule entries are indexed on their device, so a CUDA run queues every step
without synchronizing, and a ``torch.compile(mode="reduce-overhead")`` model replays a CUDA graph per step.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from tqdm.auto import tqdm

from .diffusion import Diffusion
from .schedule import TimestepSpacing
from .errors import InvalidInput, InvalidInputType

__all__ = ["SampleResult", "ddpm_sample", "ddim_sample", "compile_for_sampling"]

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SampleResult(NamedTuple):
    """``sample`` is :math:`x_0`. With ``return_trajectory=True``, ``trajectory[k]`` is the state after ``k`` steps
    (``trajectory[0]`` is :math:`x_T`) and ``pred_x0[k]`` the :math:`\\hat x_0` predicted at step ``k``; else both ``None``."""

    sample: torch.Tensor
    trajectory: torch.Tensor | None
    pred_x0: torch.Tensor | None


def _check_start(x_T: torch.Tensor) -> None:
    if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point():
        raise InvalidInputType(f"x_T must be a floating-point torch.Tensor (the starting noise), got {type(x_T).__name__}")
    if x_T.ndim < 2:
        raise InvalidInput(f"x_T must be batch-first with at least 2 dimensions, got shape {tuple(x_T.shape)}")


def _schedule_for(diffusion: Diffusion, steps: int | None, spacing: TimestepSpacing | str, device) -> Diffusion:
    d = diffusion if steps is None or steps == diffusion.num_timesteps else diffusion.respaced(steps, spacing)
    return d if d.schedule.device == torch.device(device) else d.to(device)


def _run(step, d: Diffusion, x: torch.Tensor, progress: bool, return_trajectory: bool, desc: str) -> SampleResult:
    B, n = x.shape[0], d.num_timesteps
    states, preds = ([x], []) if return_trajectory else (None, None)
    for i in tqdm(range(n - 1, -1, -1), disable=not progress, desc=desc, leave=False):
        t = torch.full((B,), i, dtype=torch.long, device=x.device)
        x, x0 = step(i, t, x)
        if return_trajectory:
            states.append(x)
            # x0 can be the network's own output (x0 parameterization), which a CUDA-graph model
            # overwrites at its next replay: keep a copy.
            preds.append(x0.clone())
    if not return_trajectory:
        return SampleResult(x, None, None)
    return SampleResult(x, torch.stack(states), torch.stack(preds))


def compile_for_sampling(model: torch.nn.Module, device: torch.device | str) -> Callable:
    """``model`` compiled for a sampling loop with a fixed batch shape (``fullgraph=True``, static shapes).

    On CUDA it uses ``mode="reduce-overhead"``: the first calls record a CUDA graph of the whole
    network, and every later step replays it with one launch instead of hundreds of kernel launches
    (what dominates at small batches). Each new batch shape records another graph, so keep the batch
    fixed. On a CPU there are no graphs: plain ``torch.compile``. Compiling costs seconds (small
    networks) to about a minute (large U-Nets) on the first call. The samplers need nothing else:
    their loop never syncs with the host and copies any output they keep.
    """
    if not isinstance(model, torch.nn.Module):
        raise InvalidInputType(f"model must be a torch.nn.Module, got {type(model).__name__}")
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else None
    return torch.compile(model.eval(), mode=mode, fullgraph=True, dynamic=False)


@torch.no_grad()
def ddpm_sample(
    model: Model,
    diffusion: Diffusion,
    x_T: torch.Tensor,
    *,
    steps: int | None = None,
    spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE,
    generator: torch.Generator | None = None,
    progress: bool = True,
    return_trajectory: bool = False,
) -> SampleResult:
    r"""Ancestral sampling (Ho et al. algorithm 2): for :math:`t = T..1`,
    :math:`x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z`, :math:`z \sim \mathcal N(0, I)`, with no noise at the last step.

    With ``steps`` < T the schedule is respaced to ``steps`` indices first (improved DDPM, sec. 4).
    ``generator`` makes the run deterministic; ``x_T`` is the starting noise.
    """
    _check_start(x_T)
    d = _schedule_for(diffusion, steps, spacing, x_T.device)
    ts = d.schedule.timesteps

    def step(i: int, t: torch.Tensor, x: torch.Tensor):
        output = model(x, ts.index_select(0, t)).to(x.dtype)
        p = d.p_mean_variance(output, x, t)
        if i == 0:
            return p.mean, p.pred_x0
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return p.mean + torch.exp(0.5 * p.log_variance).to(x.dtype) * z, p.pred_x0

    return _run(step, d, x_T, progress, return_trajectory, "DDPM")


@torch.no_grad()
def ddim_sample(
    model: Model,
    diffusion: Diffusion,
    x_T: torch.Tensor,
    *,
    steps: int = 50,
    eta: float = 0.0,
    spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE,
    generator: torch.Generator | None = None,
    progress: bool = True,
    return_trajectory: bool = False,
) -> SampleResult:
    r"""DDIM (Song et al. 2021, eq. 12) over ``steps`` of the schedule's indices:

    .. math:: x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\,\hat\epsilon + \sigma_t z,
              \quad \sigma_t = \eta\sqrt{\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t-1}}}

    :math:`\eta = 0` is deterministic; :math:`\eta = 1` gives :math:`\sigma_t^2 = \tilde\beta_t`, DDPM's posterior variance.

    Raises:
        ValueError: if ``eta`` is outside [0, 1] or ``steps`` is outside [1, T].
    """
    _check_start(x_T)
    if not 0.0 <= eta <= 1.0:
        raise InvalidInput(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM's variance), got {eta}")
    d = _schedule_for(diffusion, steps, spacing, x_T.device)
    s = d.schedule
    ts = s.timesteps

    def step(i: int, t: torch.Tensor, x: torch.Tensor):
        output = model(x, ts.index_select(0, t)).to(x.dtype)
        eps, x0 = d.predict(d.split_output(output, x)[0], x, t)
        ab, ab_prev = s.alphas_cumprod[i].to(x.dtype), s.alphas_cumprod_prev[i].to(x.dtype)
        # Song et al. eq. 16: sigma^2 = eta^2 (1-ab_prev)/(1-ab) (1-ab/ab_prev), which is eta^2 times the
        # (respaced) schedule's posterior variance; the table keeps the float64 precision near t = 0.
        sigma = eta * s.posterior_variance[i].to(x.dtype).sqrt()
        x_prev = ab_prev.sqrt() * x0 + torch.sqrt((1 - ab_prev - sigma**2).clamp(min=0)) * eps
        if eta > 0 and i > 0:
            x_prev = x_prev + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x_prev, x0

    return _run(step, d, x_T, progress, return_trajectory, f"DDIM-{d.num_timesteps}")
