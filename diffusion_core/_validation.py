"""Argument checks shared by the public functions: each error names the argument and what is allowed."""
from __future__ import annotations

from enum import Enum
from typing import TypeVar

import torch

from .errors import InvalidInput, InvalidInputType

E = TypeVar("E", bound=Enum)


def check_choice(name: str, value, enum: type[E]) -> E:
    """Turn ``value`` (an enum member or its string value) into a member of ``enum``."""
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise InvalidInput(f"{name} must be one of {allowed}, got {value!r}") from None


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputType(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise InvalidInput(f"{name} must be >= 1, got {value}")
    return value


def _index_range(name: str, x: torch.Tensor, batch: int | None, noun: str, index: str) -> tuple[int, int] | None:
    """Check that ``x`` is an int64/int32 tensor of shape ``(batch,)`` (any ``(B,)`` for ``batch=None``) and return
    its (min, max), or ``None`` where reading them would cost a host sync: on an accelerator, inside
    ``torch.compile``, or for an empty tensor. (int64 or int32 only: tables are gathered with index_select, which
    rejects other integer dtypes.) ``noun``: what one entry is, ``index``: what it indexes, for the messages."""
    if not isinstance(x, torch.Tensor):
        raise InvalidInputType(f"{name} must be a torch.Tensor of integer {noun}s, got {type(x).__name__}")
    if x.dtype not in (torch.int64, torch.int32):
        raise InvalidInputType(f"{name} must have an integer dtype, torch.int64 or torch.int32 ({index}), "
                               f"got {x.dtype}")
    if x.ndim != 1 or (batch is not None and x.shape[0] != batch):
        want = f"({batch},)" if batch is not None else "(B,)"
        raise InvalidInput(f"{name} must have shape {want}, one {noun} per example, got {tuple(x.shape)}")
    if x.device.type != "cpu" or torch.compiler.is_compiling() or not x.numel():
        return None
    return int(x.min()), int(x.max())


def check_timesteps(t: torch.Tensor, T: int, batch: int | None = None) -> torch.Tensor:
    """``t`` must be an integer tensor of shape ``(batch,)`` with values in ``[0, T-1]``.

    The range check needs the values on the host, so it runs only for CPU tensors and outside
    ``torch.compile``: on an accelerator it would force a synchronization in every step.
    """
    bounds = _index_range("t", t, batch, "timestep", "timestep indices")
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= T):
        raise InvalidInput(f"t must lie in [0, {T - 1}] for a schedule of T={T} steps, got values in "
                           f"[{bounds[0]}, {bounds[1]}]")
    return t


def check_labels(labels: torch.Tensor, batch: int | None, num_classes: int | None = None, *, allow_null: bool = True,
                 name: str = "labels") -> torch.Tensor:
    """``labels`` must be an integer tensor of shape ``(batch,)`` (any ``(B,)`` for ``batch=None``); with
    ``num_classes`` K, its values must lie in ``[0, K]`` (K is the null label, "no class") or, with
    ``allow_null=False``, in ``[0, K)``.

    Like :func:`check_timesteps`, the range check reads values back, so it runs only for CPU tensors and outside
    ``torch.compile``: on an accelerator it would synchronize at every call.
    """
    bounds = _index_range(name, labels, batch, "class label", "class indices")
    if num_classes is not None and bounds is not None:
        lo, hi = bounds
        top = num_classes if allow_null else num_classes - 1
        if lo < 0 or hi > top:
            allowed = (f"[0, {num_classes}] ({num_classes} = num_classes is the null label, no class)" if allow_null
                       else f"[0, {num_classes - 1}] (the classes; the null label {num_classes} is not a class)")
            raise InvalidInput(f"{name} must lie in {allowed}, got values in [{lo}, {hi}]")
    return labels


def check_same_shape(name: str, a: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if a.shape != ref.shape:
        raise InvalidInput(f"{name} must have the same shape as {ref_name} {tuple(ref.shape)}, got {tuple(a.shape)}")


def check_device_name(name) -> str:
    """``name`` must be 'auto', 'cpu', 'cuda' or 'cuda:N' (checked as written; whether that GPU exists is not)."""
    try:
        device = None if name == "auto" else torch.device(name)
    except (RuntimeError, TypeError):
        device = False
    if device is False or (device is not None and (device.type not in ("cpu", "cuda") or
                                                   (device.type == "cpu" and device.index is not None))):
        raise InvalidInput(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return name
