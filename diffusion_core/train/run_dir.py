"""The output folder of a training run: one run at a time, nothing of an earlier run replaced by accident.

* An exclusive lock (``fcntl.flock`` on ``out_dir/.lock``, which records the holder's PID): a second run on the
  same folder fails at once naming that PID. The kernel drops the lock when the process dies, however it dies.
* A folder that holds a checkpoint is only trained into by resuming that run, or with ``overwrite=True``,
  which deletes the earlier run's files first.
* Temp files left by a checkpoint write that was killed (``.checkpoint.safetensors.*.tmp``) are removed.
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import InvalidInput

__all__ = ["RunDir", "CHECKPOINT_NAME", "RUN_FILES"]

CHECKPOINT_NAME = "checkpoint.safetensors"
# What a run writes into its folder; --overwrite deletes exactly these (and nothing a user put there).
RUN_FILES = (CHECKPOINT_NAME, "config.json", "metrics.jsonl", "loss.png", "preview_*.png", "events.out.tfevents.*")


class RunDir:
    """Hold ``path`` for one run: ``with RunDir(path, ...) as run_dir: ...``."""

    def __init__(self, path: str | Path, *, resuming: Path | None = None, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.checkpoint = self.path / CHECKPOINT_NAME
        self._resuming = resuming
        self._overwrite = overwrite
        self._fd: int | None = None

    def __enter__(self) -> "RunDir":
        self._lock()
        try:
            self._check_earlier_run()
            self._remove_stale_temps()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _lock(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise InvalidInput(f"out_dir {str(self.path)!r} cannot be written: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise InvalidInput(
                    f"out_dir {str(self.path)!r} is in use by another training run (PID {holder}); "
                    "wait for it to finish or choose another --out-dir") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking it would race a waiting run)
            self._fd = None

    def _check_earlier_run(self) -> None:
        if not self.checkpoint.exists():
            return
        if self._resuming is not None and self._resuming.resolve() == self.checkpoint.resolve():
            return  # continuing the run that lives here
        if not self._overwrite:
            raise InvalidInput(
                f"out_dir {str(self.path)!r} already holds a run ({CHECKPOINT_NAME}); continue it with "
                f"--resume {self.checkpoint}, replace it with --overwrite, or choose another --out-dir")
        for pattern in RUN_FILES:
            for f in self.path.glob(pattern):
                f.unlink()

    def _remove_stale_temps(self) -> None:
        # We hold the lock, so no other run can be writing these: they are what a killed write left behind.
        for f in self.path.glob(f".{CHECKPOINT_NAME}.*.tmp"):
            f.unlink(missing_ok=True)
