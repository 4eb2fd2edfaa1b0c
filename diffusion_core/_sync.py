"""The places where the training loop and the samplers read values back from the device, named.

Everything else in a training step or a sampling step is queued without a host sync, so a GPU never waits for
Python. Each read happens inside ``host_sync_point(reason)``: the trainer's log, non-finite check, checkpoint,
preview and ``--eval-every`` evaluation, and each sampler's one check of its result for NaN/Inf after the loop.
``tests/test_sync_free.py`` runs whole training runs and sampling loops under a dispatch mode that fails on any
op that forces a sync outside these points.
"""
from __future__ import annotations

import threading

__all__ = ["host_sync_point", "in_host_sync_point"]

_state = threading.local()


class host_sync_point:  # noqa: N801 (used as a function: with host_sync_point("log"): ...)
    """Mark a deliberate device-to-host read (``reason``: what it is for, e.g. "log", "checkpoint"). A class, not
    a generator context manager: every sampler call enters one, and this costs a fraction of the other's time."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __enter__(self) -> None:
        self.previous = getattr(_state, "reason", None)
        _state.reason = self.reason

    def __exit__(self, *exc) -> None:
        _state.reason = self.previous


def in_host_sync_point() -> str | None:
    """The reason of the enclosing :func:`host_sync_point`, or ``None`` outside one."""
    return getattr(_state, "reason", None)
