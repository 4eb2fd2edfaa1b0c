r"""The one sampling loop that every sampler runs: over a time grid, step by step, with the rules for compiled
graphs, noise, trajectories, progress bars, CPU threads and the final NaN check written once.

A sampler gives ``step(x, k, prev, z) -> (x_next, x0_hat)``: a pure tensor function of the state ``x`` at grid
position ``k`` (a LongTensor ``(1,)`` that the step uses to gather its coefficients from tables built before
the loop), the previous step's :math:`\hat x_0` ``prev`` (zeros at first; multistep solvers use it), and the
noise ``z`` (``None`` for a deterministic sampler). Gathering by a tensor ``k`` (never a Python int) keeps one
graph for every step: with ``compile=True`` the whole step, network and update, is compiled once, and on CUDA
(``mode="reduce-overhead"``) each step is one CUDA graph replay. Run eagerly, the step's reads are views cut
before the loop (:class:`~diffusion_core.step_grid.StepGrid`, which knows ``k`` by :func:`position`). The loop
never reads a value back to the host until the end, where it checks the sample once for NaN or Inf.
"""
from __future__ import annotations

import math
import threading
from typing import Callable, NamedTuple

import torch

from ._progress import progress_bar
from ._sync import host_sync_point
from .cpu_threads import AdaptiveThreads
from .errors import InvalidInput, InvalidInputType, NonFiniteError

__all__ = ["SampleResult", "Step", "run", "check_start", "step_index", "position"]

# step(x, k, prev, z) -> (x_next, x0_hat)
Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]]


# The loop's position tensors, made once per device and position and never freed, so that an id names one of them
# for the life of the process: per device, position i's (1,) LongTensor; and each tensor's position by its id.
_STEP_INDEX: dict[torch.device, list[torch.Tensor]] = {}
_POSITION: dict[int, int] = {}
_GROWING = threading.Lock()
_NO_ADAPTING = AdaptiveThreads(enabled=False)  # disabled, it holds no state: one serves every one-step run


def step_index(i: int, device: torch.device) -> torch.Tensor:
    """Grid position ``i`` as the ``(1,)`` LongTensor on ``device`` that :func:`run` passes to the step (the same
    tensor every time; read it, never write it)."""
    made = _STEP_INDEX.get(device)
    if made is None or len(made) <= i:
        with _GROWING:  # one thread at a time appends, so that position j is always the tensor holding j
            made = _STEP_INDEX.setdefault(device, [])
            while len(made) <= i:
                k = torch.full((1,), len(made), dtype=torch.long, device=device)
                _POSITION[id(k)] = len(made)
                made.append(k)
    return made[i]


def position(k: torch.Tensor) -> int | None:
    """The position of ``k`` when it is one of :func:`step_index`'s tensors (so known without reading it), else
    ``None``."""
    return _POSITION.get(id(k))


class SampleResult(NamedTuple):
    """``sample`` is :math:`x_0`. With ``return_trajectory=True``, ``trajectory[k]`` is the state after ``k`` steps
    (``trajectory[0]`` is the start) and ``pred_x0[k]`` the :math:`\\hat x_0` predicted at step ``k``; else both
    ``None``."""

    sample: torch.Tensor
    trajectory: torch.Tensor | None
    pred_x0: torch.Tensor | None


def check_start(x_T: torch.Tensor) -> None:
    if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point():
        raise InvalidInputType(f"x_T must be a floating-point torch.Tensor (the starting noise), got {type(x_T).__name__}")
    if x_T.ndim < 2:
        raise InvalidInput(f"x_T must be batch-first with at least 2 dimensions, got shape {tuple(x_T.shape)}")


def check_compile(compile) -> bool:
    if not isinstance(compile, bool):
        raise InvalidInputType(f"compile must be a bool, got {type(compile).__name__}")
    return compile


def _compiled(step: Step, x_T: torch.Tensor, compile: bool) -> Step:
    """``step`` itself, or compiled whole (network and update) for a fixed batch shape: ``fullgraph=True``
    (a graph break is an error, not a silent split), ``dynamic=False``, and on CUDA ``mode="reduce-overhead"``
    (CUDA graphs)."""
    if not compile:
        return step
    return torch.compile(step, fullgraph=True, dynamic=False, mode="reduce-overhead" if x_T.is_cuda else None)


def _check_result(x: torch.Tensor, x_T: torch.Tensor, fn: str) -> None:
    """Raise :class:`NonFiniteError` when a sample holds NaN or Inf: one read-back after the loop (a named
    ``host_sync_point``), none in it. A NaN in ``x_T`` or in the network's output reaches every later state, so
    checking the result catches both. First the sum, finite unless an element is NaN or Inf or the sum overflows
    (one pass, no mask, read as a Python float; elementwise ``isfinite(x).all()`` costs several times as much on a
    CPU), then, only when it is not, every element."""
    with host_sync_point("non-finite check"):
        if math.isfinite(float(x.sum())) or bool(torch.isfinite(x).all()):
            return
        bad = int((~torch.isfinite(x.reshape(len(x), -1))).any(1).sum())
        cause = ("x_T holds NaN or Inf" if not bool(torch.isfinite(x_T).all())
                 else "the network's predictions became NaN or Inf")
        raise NonFiniteError(f"{fn}: {cause}: {bad} of {len(x)} samples hold NaN or Inf")


def run(step: Step, x_T: torch.Tensor, steps: int, *, last: Step | None = None, noisy: bool = False,
        generator: torch.Generator | None = None, compile: bool = False, progress: bool = True,
        return_trajectory: bool = False, desc: str = "sample", name: str = "run") -> SampleResult:
    """Take ``steps`` steps from ``x_T``: ``step`` at grid positions ``0 .. steps-2`` and ``last`` (default:
    ``step``) at ``steps - 1``, the step to the data.

    ``desc`` labels the progress bar, ``name`` (the sampler's) the error a NaN or Inf sample raises.
    ``z`` is :math:`\\mathcal N(0, I)` from ``generator``, drawn here, eagerly, before every step but the last
    (which gets zeros and spends no draw), or ``None`` when ``noisy`` is False.

    With ``compile``, the step's outputs belong to the compiled graph: under CUDA graphs the next replay writes
    the same buffers. So each step starts with ``torch.compiler.cudagraph_mark_step_begin()`` and nothing the
    graph returned is kept: the state and :math:`\\hat x_0` are copied at once into tensors of our own (with
    ``x_T``'s layout, so every step sees the same strides and the graph is never recompiled).
    """
    compile = check_compile(compile)
    step_c = _compiled(step, x_T, compile)
    last_c = step_c if last is None else _compiled(last, x_T, compile)
    own = (lambda y: torch.empty_like(x_T).copy_(y)) if compile else (lambda y: y)
    x, prev = own(x_T), torch.zeros_like(x_T)
    states, preds = ([x_T], []) if return_trajectory else (None, None)
    # On the CPU: the cores others leave free. Not for one step: the first decision comes at a later step's update
    # (it needs the load over `interval` seconds since the start), so one step would only read /proc/stat.
    with AdaptiveThreads.for_device(x.device) if steps > 1 else _NO_ADAPTING as threads:
        for i in progress_bar(range(steps), disable=not progress, desc=desc, leave=False):
            threads.update()
            k = step_index(i, x.device)
            z = None
            if noisy:
                z = (torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if i < steps - 1
                     else torch.zeros(x.shape, device=x.device, dtype=x.dtype))
            if compile:
                torch.compiler.cudagraph_mark_step_begin()
            x_next, x0 = (step_c if i < steps - 1 else last_c)(x, k, prev, z)
            x, prev = own(x_next), own(x0)
            if return_trajectory:
                states.append(x)
                preds.append(x0.clone())  # x0 can be the network's own output tensor
    _check_result(x, x_T, name)
    if not return_trajectory:
        return SampleResult(x, None, None)
    return SampleResult(x, torch.stack(states), torch.stack(preds))
