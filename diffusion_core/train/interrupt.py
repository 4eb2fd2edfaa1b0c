"""Stop a training run cleanly on Ctrl-C (SIGINT) or SIGTERM (a scheduler's preemption, ``torchrun`` ending a job).

The first signal only sets a flag: the loop finishes the step it is in, writes a checkpoint and stops, so
the checkpoint is never taken halfway through an optimizer update. A second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import signal
import threading

__all__ = ["StopRequest", "TrainingInterrupted"]


class TrainingInterrupted(KeyboardInterrupt):
    """The run stopped on a signal after saving ``checkpoint`` (``None`` if no step had run) at ``step``."""

    def __init__(self, step: int, checkpoint) -> None:
        where = f"; checkpoint saved: {checkpoint} (continue with --resume {checkpoint})" if checkpoint else ""
        super().__init__(f"interrupted at step {step}{where}")
        self.step, self.checkpoint = step, checkpoint


class StopRequest:
    """``with StopRequest() as stop:`` ... ``if stop.requested: ...``. Handlers are installed only in the
    main thread (Python delivers signals there) and restored on exit."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
