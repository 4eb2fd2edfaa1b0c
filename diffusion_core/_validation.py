"""Argument checks shared by the public functions: each error names the argument and what is allowed."""
from __future__ import annotations

import math
import os
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


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None, optional: bool = False):
    """``value`` must be an int (not a bool) in ``[minimum, maximum]``; ``None`` too when ``optional``."""
    if optional and value is None:
        return None
    if minimum == 1:
        kind = "a positive int"
    elif minimum is not None:
        kind = f"an int >= {minimum}"
    else:
        kind = "an int"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputType(f"{name} must be {kind}{' or None' if optional else ''}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is not None:
            kind = f"an int in [{minimum if minimum is not None else '-inf'}, {maximum}]"
        raise InvalidInput(f"{name} must be {kind}, got {value!r}")
    return value


def check_seed(name: str, value) -> int:
    """A seed: an int in ``[0, 2**64)``, the range of torch's and NumPy's generators."""
    return check_int(name, value, minimum=0, maximum=2**64 - 1)


def check_bool(name: str, value, *, optional: bool = False):
    """``value`` must be True or False (or ``None`` when ``optional``): ``'yes'`` or ``1`` are mistakes."""
    if (optional and value is None) or isinstance(value, bool):
        return value
    raise InvalidInputType(f"{name} must be True or False{' or None' if optional else ''}, got {value!r}")


def check_number(name: str, value, *, optional: bool = False, finite: bool = True, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False):
    """``value`` must be an int or float (not a bool), finite unless ``finite=False`` (then the caller's range
    check refuses NaN), and within the bounds given (:func:`check_range`); ``None`` too when ``optional``."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputType(f"{name} must be a number, got {value!r}")
    if finite and not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {value!r}")
    return check_range(name, value, low, high, low_open=low_open, high_open=high_open)


def check_range(name: str, value, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                high_open: bool = False):
    """``value`` (a number) must lie between ``low`` and ``high`` (either may be ``None``: no bound), excluding an
    end marked ``*_open``; NaN lies in no range. The message says ``lr must lie in (0, 1]`` or ``grad_clip must be
    > 0``."""
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    if above and below:
        return value
    if low is not None and high is not None:
        allowed = f"lie in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"be {'>' if low_open else '>='} {low}"
    else:
        allowed = f"be {'<' if high_open else '<='} {high}"
    raise InvalidInput(f"{name} must {allowed}, got {value}")


def check_fraction(name: str, value, *, high_open: bool = False) -> float:
    """A number in ``[0, 1]`` (``[0, 1)`` with ``high_open``), returned as a float."""
    return float(check_number(name, value, low=0, high=1, high_open=high_open))


def check_int_sequence(name: str, value, *, minimum: int | None = None, allow_empty: bool = False) -> tuple[int, ...]:
    """A list or tuple of ints (each as :func:`check_int` with ``minimum``), returned as a tuple (JSON gives lists;
    a frozen config keeps tuples, which hash)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise InvalidInputType(f"{name} must be a tuple of ints, got {type(value).__name__} {value!r}")
    if not value and not allow_empty:
        raise InvalidInput(f"{name} must hold at least one value, got an empty sequence")
    return tuple(check_int(f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(value))


def check_str(name: str, value, *, what: str = "", optional: bool = False) -> str | None:
    """``value`` must be a ``str`` (``what`` says which, in the message); ``None`` too when ``optional``."""
    if (optional and value is None) or isinstance(value, str):
        return value
    raise InvalidInputType(f"{name} must be a str{f' ({what})' if what else ''}{' or None' if optional else ''}, "
                           f"got {value!r}")


def check_dict(name: str, value) -> dict:
    """``value`` must be a ``dict``."""
    if isinstance(value, dict):
        return value
    raise InvalidInputType(f"{name} must be a dict, got {type(value).__name__}")


def check_in(name: str, value, allowed: tuple, *, what: str = ""):
    """``value`` must be one of ``allowed`` (plain values; :func:`check_choice` is for enums)."""
    if isinstance(value, bool) or value not in allowed:
        shown = " or ".join(", ".join(map(repr, allowed)).rsplit(", ", 1))
        raise InvalidInput(f"{name} must be {shown}{f' {what}' if what else ''}, got {value!r}")
    return value


def check_path(name: str, value, *, optional: bool = False) -> str | None:
    """A file or folder name: a non-empty ``str`` or ``os.PathLike``, returned as ``str``."""
    if optional and value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise InvalidInputType(f"{name} must be a path (str or os.PathLike), got {value!r}")
    if not value:
        raise InvalidInput(f"{name} must name a file or folder, got ''")
    return value


def memory_limit(device: torch.device | str | None = None) -> int:
    """Bytes of memory that ``device`` has: a CUDA device's total memory, else the machine's physical RAM."""
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no bound
        return 2**62


def _bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


def check_fits_memory(name: str, value: int, bytes_each: float, what: str,
                      device: torch.device | str | None = None) -> int:
    """Refuse a size that no machine of this kind can hold: ``value * bytes_each`` bytes (for ``what``) more than
    the memory of ``device`` (:func:`memory_limit`). A clear error up front instead of the allocator's."""
    need = value * bytes_each
    have = memory_limit(device)
    if need > have:
        where = "this GPU" if device is not None and torch.device(device).type == "cuda" else "this machine"
        raise InvalidInput(f"{name}={value:,} needs {_bytes(need)} for {what}, more than the {_bytes(have)} of "
                           f"memory {where} has")
    return value


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


def check_finite_values(name: str, x: torch.Tensor) -> torch.Tensor:
    """Refuse NaN or Inf in ``x``. Like :func:`check_timesteps`, it reads values back, so it runs only for CPU
    tensors and outside ``torch.compile``: on an accelerator it would force a sync at every call (the trainer
    checks its loss once per log window instead, and the samplers check their result once)."""
    if x.device.type == "cpu" and not torch.compiler.is_compiling() and x.is_floating_point() \
            and not bool(torch.isfinite(x).all()):
        raise InvalidInput(f"{name} holds NaN or Inf")
    return x
