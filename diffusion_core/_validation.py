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


def check_timesteps(t: torch.Tensor, T: int, batch: int | None = None) -> torch.Tensor:
    """``t`` must be an integer tensor of shape ``(batch,)`` with values in ``[0, T-1]``.

    The range check needs the values on the host, so it runs only for CPU tensors and outside
    ``torch.compile``: on an accelerator it would force a synchronization in every step.
    """
    if not isinstance(t, torch.Tensor):
        raise InvalidInputType(f"t must be a torch.Tensor of integer timesteps, got {type(t).__name__}")
    # int64 or int32 only: the tables are gathered with index_select, which rejects other integer dtypes
    if t.dtype not in (torch.int64, torch.int32):
        raise InvalidInputType(f"t must have an integer dtype, torch.int64 or torch.int32 (timestep indices), got {t.dtype}")
    if t.ndim != 1 or (batch is not None and t.shape[0] != batch):
        want = f"({batch},)" if batch is not None else "(B,)"
        raise InvalidInput(f"t must have shape {want}, one timestep per example, got {tuple(t.shape)}")
    if t.device.type == "cpu" and not torch.compiler.is_compiling() and t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= T:
            raise InvalidInput(f"t must lie in [0, {T - 1}] for a schedule of T={T} steps, got values in [{lo}, {hi}]")
    return t


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
