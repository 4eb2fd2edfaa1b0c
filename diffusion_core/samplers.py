r"""Samplers: plain functions over a denoiser (:mod:`diffusion_core.denoiser`), or any callable
``model(x_t, t) -> output``, which is read through a :class:`~diffusion_core.denoiser.Denoiser`.

Both walk a (possibly respaced) schedule from its last index down to 0. Each step is a pure tensor
function ``step(x_t, t, z) -> (x_{t-1}, x0_hat)``: the network call and the whole update, with every
schedule entry gathered on its device by the step's index tensor ``t`` (never a Python int) and the
last step's "no noise" rule written as tensor arithmetic. So the loop never reads a value back to the
host (a CUDA run queues every step without synchronizing), and with ``compile=True`` one compiled graph
serves every step: on CUDA (``mode="reduce-overhead"``) each step is one CUDA graph replay, network and
update together. The noise ``z`` is drawn eagerly from ``generator`` outside the step and passed in.

The denoiser's :math:`\hat x_0` is unclipped; each step applies the clip rule ``clip`` (default: the
diffusion's own, :attr:`Diffusion.clip`) before forming :math:`x_{t-1}`. ``labels`` (a LongTensor ``(B,)``)
goes to the denoiser at every step: class conditioning, or the class that classifier-free guidance
(:class:`~diffusion_core.guidance.ClassifierFreeGuidance`) steers towards.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Union

import torch

from ._progress import progress_bar
from ._sync import host_sync_point
from ._validation import check_choice, check_diffusion, check_labels, check_number
from .denoiser import BaseDenoiser, as_denoiser
from .diffusion import Diffusion
from .forward import extract
from .reverse import Clip
from .schedule import TimestepSpacing
from .cpu_threads import AdaptiveThreads
from .errors import InvalidInput, InvalidInputType, NonFiniteError

__all__ = ["SampleResult", "ddpm_sample", "ddim_sample", "compile_for_sampling"]

# a denoiser, or a plain network model(x_t, t) (read through a Denoiser)
Model = Union[BaseDenoiser, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
# step(x_t, t, z) -> (x_{t-1}, x0_hat); z is None for a step that adds no noise (DDIM with eta = 0)
Step = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]]


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


def _labels_for(labels: torch.Tensor | None, x_T: torch.Tensor) -> torch.Tensor | None:
    """``labels`` checked against the batch (type, shape) and moved to ``x_T``'s device, once, before the loop."""
    if labels is None:
        return None
    return check_labels(labels, x_T.shape[0]).to(x_T.device)


def _schedule_for(diffusion: Diffusion, steps: int | None, spacing: TimestepSpacing | str, device) -> Diffusion:
    check_diffusion(diffusion)
    spacing = check_choice("spacing", spacing, TimestepSpacing)  # checked even when steps == T uses every index
    d = diffusion if steps is None or steps == diffusion.num_timesteps else diffusion.respaced(steps, spacing)
    return d if d.schedule.device == torch.device(device) else d.to(device)


def _check_compile(compile) -> bool:
    if not isinstance(compile, bool):
        raise InvalidInputType(f"compile must be a bool, got {type(compile).__name__}")
    return compile


def check_result(result: SampleResult, x_T: torch.Tensor, fn: str) -> SampleResult:
    """Raise :class:`NonFiniteError` when a sample holds NaN or Inf: one read-back after the loop (a named
    ``host_sync_point``), none in it. A NaN in ``x_T`` or in the network's output reaches every later state, so
    checking the result catches both."""
    x = result.sample
    with host_sync_point("non-finite check"):
        bad = int((~torch.isfinite(x.reshape(len(x), -1))).any(1).sum()) if x.numel() else 0
        if bad:
            cause = ("x_T holds NaN or Inf" if not bool(torch.isfinite(x_T).all())
                     else "the network's predictions became NaN or Inf")
            raise NonFiniteError(f"{fn}: {cause}: {bad} of {len(x)} samples hold NaN or Inf")
    return result


def _noise_mask(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``t > 0`` shaped to broadcast against a ``ndim``-D batch: where the step adds noise."""
    return (t > 0).reshape(-1, *([1] * (ndim - 1)))


def _compiled(step: Step, x_T: torch.Tensor, compile: bool) -> Step:
    """``step`` itself, or compiled whole (network and update) for a fixed batch shape: ``fullgraph=True``
    (a graph break is an error, not a silent split), ``dynamic=False``, and on CUDA ``mode="reduce-overhead"``
    (CUDA graphs)."""
    if not compile:
        return step
    mode = "reduce-overhead" if x_T.is_cuda else None
    return torch.compile(step, fullgraph=True, dynamic=False, mode=mode)


def _run(step: Step, d: Diffusion, x_T: torch.Tensor, *, noisy: bool, generator: torch.Generator | None,
         compiled: bool, progress: bool, return_trajectory: bool, desc: str) -> SampleResult:
    """Walk ``d`` from index T-1 down to 0 with ``step(x, t, z)``.

    ``z`` is ``N(0, I)`` from ``generator``, drawn here, eagerly, at every step but the last (which gets zeros:
    the step ignores ``z`` where ``t == 0``, and no draw is spent on it), or ``None`` when ``noisy`` is False.

    With ``compiled``, the step's outputs belong to the compiled graph: under CUDA graphs (cudagraph trees) the
    next replay writes the same buffers, and the outputs of an earlier step are freed when a new step begins.
    So each step starts with ``torch.compiler.cudagraph_mark_step_begin()`` (one sampling step = one
    iteration) and nothing the graph returned is kept: ``x_{t-1}`` is copied at once into a tensor of our own,
    which is fed to the next step, kept in the trajectory and returned, and ``x0_hat`` is cloned. The copies
    share ``x_T``'s layout, so every step sees the same input strides and the graph is never recompiled.
    """
    B, n = x_T.shape[0], d.num_timesteps
    own = (lambda y: torch.empty_like(x_T).copy_(y)) if compiled else (lambda y: y)
    x = own(x_T)
    states, preds = ([x_T], []) if return_trajectory else (None, None)
    with AdaptiveThreads.for_device(x.device) as threads:  # on the CPU: the cores others leave free
        for i in progress_bar(range(n - 1, -1, -1), disable=not progress, desc=desc, leave=False):
            threads.update()
            t = torch.full((B,), i, dtype=torch.long, device=x.device)
            z = None
            if noisy:
                z = (torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if i > 0
                     else torch.zeros(x.shape, device=x.device, dtype=x.dtype))
            if compiled:
                torch.compiler.cudagraph_mark_step_begin()
            x_prev, x0 = step(x, t, z)
            x = own(x_prev)
            if return_trajectory:
                states.append(x)
                # x0 can be the network's own output (x0 parameterization), or a compiled graph's output buffer,
                # which the next replay overwrites: keep a copy.
                preds.append(x0.clone())
    if not return_trajectory:
        return SampleResult(x, None, None)
    return SampleResult(x, torch.stack(states), torch.stack(preds))


def compile_for_sampling(model: torch.nn.Module, device: torch.device | str) -> Callable:
    """``model`` alone compiled for a sampling loop with a fixed batch shape (``fullgraph=True``, static shapes).

    Kept for backward compatibility: prefer ``ddpm_sample(..., compile=True)`` / ``ddim_sample(..., compile=True)``
    with the plain model, which compile the whole step, network *and* update, into one graph. With this
    function only the network is compiled and the update (posterior mean, DDIM combination, noise: some
    twenty small kernels, as many launches as the network's at batch 1) still runs eagerly around it.

    On CUDA it uses ``mode="reduce-overhead"``: the first calls record a CUDA graph of the network, and every
    later step replays it with one launch. Each new batch shape records another graph, so keep the batch
    fixed. On a CPU there are no graphs: plain ``torch.compile``. Compiling costs seconds (small networks)
    to about a minute (large U-Nets) on the first call. The samplers need nothing else: their loop never
    syncs with the host and copies any output they keep.
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
    compile: bool = False,
    labels: torch.Tensor | None = None,
    clip: Clip | str | None = None,
) -> SampleResult:
    r"""Ancestral sampling (Ho et al. algorithm 2): for :math:`t = T..1`,
    :math:`x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z`, :math:`z \sim \mathcal N(0, I)`, with no noise at the last step.

    With ``steps`` < T the schedule is respaced to ``steps`` indices first (improved DDPM, sec. 4).
    ``generator`` makes the run deterministic; ``x_T`` is the starting noise. ``z`` is drawn from ``generator``
    before each step but the last, outside any compiled code, so a seeded run gives the same samples
    compiled or not (up to float rounding).

    ``compile=True`` compiles the whole step, the network call and the update, into one graph used by every
    step: ``torch.compile(step, fullgraph=True, dynamic=False)``, on CUDA with ``mode="reduce-overhead"``, so
    that each step is one CUDA graph replay. Pass the plain network (not :func:`compile_for_sampling`'s). The
    first call compiles (seconds to a minute); later calls reuse the graph, and a new batch shape, step count,
    ``eta``, dtype or device compiles another variant. torch.compile keeps at most
    ``torch._dynamo.config.recompile_limit`` (8) variants per process, and with ``fullgraph=True`` one more
    is an error (``torch._dynamo.reset()`` forgets them). The samples equal the eager ones up to float
    rounding (the compiler may fuse and reorder floating-point operations).

    ``model`` is a denoiser (:class:`~diffusion_core.denoiser.Denoiser`, or a guided one such as
    :class:`~diffusion_core.guidance.ClassifierFreeGuidance`) or a plain network ``model(x_t, t)``. ``labels``
    (LongTensor ``(B,)``, moved to ``x_T``'s device) is passed to it at every step. ``clip`` is the rule applied
    to :math:`\hat x_0` (``"none"``, ``"static"``, ``"dynamic"``); ``None`` uses ``diffusion.clip``.
    """
    _check_start(x_T)
    compile = _check_compile(compile)
    d = _schedule_for(diffusion, steps, spacing, x_T.device)
    denoiser, clip, labels = as_denoiser(model), d.resolve_clip(clip), _labels_for(labels, x_T)

    def step(x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor):
        p = d.p_mean_variance(denoiser(x, t, d, labels=labels), x, t, clip=clip)
        # sigma_t z where t > 0, nothing at the last step: a select (not a multiply by 0, which would turn a
        # non-finite sigma_0 into NaN), so the step has no Python branch on t and one graph serves every step.
        noisy = p.mean + torch.exp(0.5 * p.log_variance).to(x.dtype) * noise
        return torch.where(_noise_mask(t, x.ndim), noisy, p.mean), p.pred_x0

    return check_result(_run(_compiled(step, x_T, compile), d, x_T, noisy=True, generator=generator, compiled=compile,
                             progress=progress, return_trajectory=return_trajectory, desc="DDPM"), x_T, "ddpm_sample")


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
    compile: bool = False,
    labels: torch.Tensor | None = None,
    clip: Clip | str | None = None,
) -> SampleResult:
    r"""DDIM (Song et al. 2021, eq. 12) over ``steps`` of the schedule's indices: :math:`x_{t-1}` is drawn from
    :math:`q_\sigma(x_{t-1} \mid x_t, \hat x_0)`, the network's :math:`\hat x_0` in place of the data, which in terms
    of its :math:`\hat\epsilon = (x_t - \sqrt{\bar\alpha_t}\,\hat x_0)/\sqrt{1-\bar\alpha_t}` is the update

    .. math::
        :checked-by: ddim.index:update

        \sqrt{\bar{\alpha}_{t-1}} \hat{x}_{0}
        + \sqrt{1 - \bar{\alpha}_{t-1} - \sigma_{t}^{2}} \frac{x_{t} - \sqrt{\bar{\alpha}_{t}} \hat{x}_{0}}{\sqrt{1 - \bar{\alpha}_{t}}}
        + \sigma_{t} z
        = \sqrt{\bar{\alpha}_{t-1}} \hat{x}_{0} + \sqrt{1 - \bar{\alpha}_{t-1} - \sigma_{t}^{2}} \hat{\epsilon} + \sigma_{t} z

    (checked on the DDIM page, ``diffusion_core/derivations/ddim/index.py``), with
    :math:`\sigma_t = \eta\sqrt{(1-\bar\alpha_{t-1})/(1-\bar\alpha_t)}\sqrt{1-\bar\alpha_t/\bar\alpha_{t-1}}`.

    :math:`\eta = 0` is deterministic (no noise is drawn); :math:`\eta = 1` gives :math:`\sigma_t^2 = \tilde\beta_t`,
    DDPM's posterior variance. With :math:`\eta > 0`, ``z`` is drawn from ``generator`` before each step but the
    last, outside any compiled code. ``compile=True`` compiles the whole step (network and update) into one
    graph, one CUDA graph replay per step on CUDA, as for :func:`ddpm_sample`. ``model``, ``labels`` and ``clip``
    are as for :func:`ddpm_sample`.

    Raises:
        ValueError: if ``eta`` is outside [0, 1] or ``steps`` is outside [1, T].
        NonFiniteError: a sample holds NaN or Inf (from ``x_T`` or the network); checked once, after the loop.
    """
    _check_start(x_T)
    compile = _check_compile(compile)
    eta = check_number("eta", eta, finite=False)  # True is not 1.0; NaN fails the range below
    if not 0.0 <= eta <= 1.0:
        raise InvalidInput(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM's variance), got {eta}")
    d = _schedule_for(diffusion, steps, spacing, x_T.device)
    s = d.schedule
    denoiser, clip, labels = as_denoiser(model), d.resolve_clip(clip), _labels_for(labels, x_T)

    def step(x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None):
        pred = denoiser(x, t, d, labels=labels)
        eps, x0 = d.apply_clip(pred.eps, pred.x0, x, t, clip)
        ab_prev = extract(s.alphas_cumprod_prev, t, x.ndim).to(x.dtype)
        # Song et al. eq. 16: sigma^2 = eta^2 (1-ab_prev)/(1-ab) (1-ab/ab_prev), which is eta^2 times the
        # (respaced) schedule's posterior variance; the table keeps the float64 precision near t = 0.
        sigma = eta * extract(s.posterior_variance, t, x.ndim).to(x.dtype).sqrt()
        x_prev = ab_prev.sqrt() * x0 + torch.sqrt((1 - ab_prev - sigma**2).clamp(min=0)) * eps
        if eta > 0:  # a constant of this sampling run, not of the step: no noise term at all for eta = 0
            x_prev = torch.where(_noise_mask(t, x.ndim), x_prev + sigma * noise, x_prev)
        return x_prev, x0

    return check_result(_run(_compiled(step, x_T, compile), d, x_T, noisy=eta > 0, generator=generator,
                             compiled=compile, progress=progress, return_trajectory=return_trajectory,
                             desc=f"DDIM-{d.num_timesteps}"), x_T, "ddim_sample")
