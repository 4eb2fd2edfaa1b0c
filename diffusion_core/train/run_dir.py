"""The output folder of a training run: one run at a time, nothing of a user's or an earlier run's replaced by accident.

* An exclusive lock (``fcntl.flock`` on ``out_dir/.lock``, which records the holder's PID): a second run on the
  same folder fails at once naming that PID. The kernel drops the lock when the process dies, however it dies.
* A manifest (``.diffusion-core-run.json``) lists every file the run wrote, each entered before it is written.
  ``overwrite=True`` deletes exactly those files of the earlier run, nothing else; a folder holding files of the
  names a run writes (``config.json``, ``loss.png``, previews, TensorBoard events, ...) that no run there wrote
  is refused, with or without ``overwrite``.
* A folder that holds a run (a checkpoint, or a manifest) is only trained into by resuming that run, or with
  ``overwrite=True``. The earlier run is removed only when the new one is ready to write (:meth:`RunDir.start`):
  a run that fails before that leaves the earlier one whole, and a folder it created is removed again.
* Temp files left by a checkpoint write that was killed (``.checkpoint.safetensors.*.tmp``) are removed.
* Under DDP only rank 0 holds a ``RunDir``; the others hold a :class:`NoRunDir` (the path, no lock, no writes).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
from pathlib import Path

from ..errors import InvalidInput

__all__ = ["RunDir", "NoRunDir", "CHECKPOINT_NAME", "MANIFEST_NAME", "RUN_FILES", "RUN_MARKERS", "missing_folders",
           "remove_empty_folders", "write_json"]

CHECKPOINT_NAME = "checkpoint.safetensors"
MANIFEST_NAME = ".diffusion-core-run.json"  # the list of the files a run wrote (RunDir)
RUN_MARKERS = (MANIFEST_NAME, CHECKPOINT_NAME)  # a folder holding one of these is a training run's (not data)

# The names a run writes into its folder: these, previews of a step and TensorBoard event files (RUN_PATTERN),
# and data-cache/ when the data folder is read-only.
RUN_FILES = (CHECKPOINT_NAME, "config.json", "metrics.jsonl", "loss.png", "preview_final.png")
RUN_PATTERN = re.compile(r"preview_\d{6,}\.png|events\.out\.tfevents\..*")
# A run from before the manifest, replaced: what it wrote as far as names tell (not TensorBoard's event files,
# whose names cannot tell the run's from a user's).
_LEGACY_PATTERN = re.compile(r"preview_\d{6,}\.png")


def _is_run_name(name: str) -> bool:
    return name in RUN_FILES or RUN_PATTERN.fullmatch(name) is not None


class RunDir:
    """Hold ``path`` for one run: ``with RunDir(path, ...) as run_dir: ...; run_dir.start(); ...``."""

    def __init__(self, path: str | Path, *, resuming: Path | None = None, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.checkpoint = self.path / CHECKPOINT_NAME
        self.manifest = self.path / MANIFEST_NAME
        self._resuming = resuming
        self._overwrite = overwrite
        self._fd: int | None = None
        self._created: list[Path] = []
        self._files: set[str] = set()  # what this run's manifest lists
        self._replace: set[str] = set()  # an earlier run's files, deleted at start()
        self.started = False

    def __enter__(self) -> "RunDir":
        self._lock()
        try:
            self._check_earlier_run()
            self._remove_stale_temps()
        except BaseException:
            self._abandon()
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and not self.started:
            self._abandon()
        self._unlock()

    # ------------------------------------------------------------------ the run's files
    def start(self) -> None:
        """Replace the earlier run (``overwrite``) and write the manifest: the run writes from now on."""
        if self._replace:
            self._delete(self._replace)
        self._write_manifest()
        self.started = True

    def claim(self, name: str) -> Path:
        """``path / name``, entered in the manifest (before the caller writes it)."""
        if name not in self._files:
            self._files.add(name)
            if self.started:
                self._write_manifest()
        return self.path / name

    def _write_manifest(self) -> None:
        tmp = self.path / f"{MANIFEST_NAME}.tmp"
        tmp.write_text(json.dumps({"format": 1, "files": sorted(self._files)}, indent=1))
        os.replace(tmp, self.manifest)

    def _read_manifest(self) -> set[str] | None:
        if not self.manifest.exists():
            return None
        try:
            files = json.loads(self.manifest.read_text())["files"]
            if not isinstance(files, list) or not all(isinstance(f, str) and "/" not in f for f in files):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(f"out_dir {str(self.path)!r} holds a damaged {MANIFEST_NAME}, so the files of the run "
                               "there cannot be told from others; move them, or choose another --out-dir") from None
        return set(files)

    def _check_earlier_run(self) -> None:
        listed = self._read_manifest()
        here = {p.name for p in self.path.iterdir()}
        own: set[str] = set()
        if CHECKPOINT_NAME in here or listed is not None:
            resuming = self._resuming is not None and self._resuming.resolve() == self.checkpoint.resolve()
            # a run from before the manifest: its files as far as names tell (TensorBoard's only when resumed)
            legacy = {n for n in here if n in RUN_FILES or (RUN_PATTERN if resuming else _LEGACY_PATTERN).fullmatch(n)}
            own = listed if listed is not None else legacy
            if resuming:
                self._files = own & here
            elif self._overwrite:
                self._replace = own & here
            else:
                what = f"a run ({CHECKPOINT_NAME})" if CHECKPOINT_NAME in here else "the files of an earlier run"
                raise InvalidInput(
                    f"out_dir {str(self.path)!r} already holds {what}; continue it with --resume {self.checkpoint}, "
                    "replace it with --overwrite, or choose another --out-dir")
        foreign = sorted(n for n in here if _is_run_name(n) and n not in own)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise InvalidInput(f"out_dir {str(self.path)!r} holds {shown}, of the names a run writes, which no run "
                               "there wrote (a run would replace or mix with them); move them or choose another --out-dir")

    def _delete(self, names: set[str]) -> None:
        """Remove an earlier run's files in two steps: move them aside (undone if a move fails, so the earlier run
        stays whole), then delete them."""
        trash = self.path / f".diffusion-core-replaced.{os.getpid()}"
        trash.mkdir()
        moved = []
        try:
            for name in sorted(names | ({MANIFEST_NAME} if self.manifest.exists() else set())):
                os.rename(self.path / name, trash / name)
                moved.append(name)
        except OSError:
            for name in moved:
                os.rename(trash / name, self.path / name)
            trash.rmdir()
            raise
        shutil.rmtree(trash, ignore_errors=True)  # what cannot be deleted now, the next start removes

    # ------------------------------------------------------------------ lock and clean-up
    def _lock(self) -> None:
        missing = missing_folders(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            remove_empty_folders(missing)
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
        self._created = missing

    def _unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking it would race a waiting run)
            self._fd = None

    def _abandon(self) -> None:
        """A run that stops before :meth:`start` leaves no folder it made: everything in one is its own (the lock,
        an image cache it had to keep there)."""
        if self._created and self._fd is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            remove_empty_folders(self._created[1:])
            self._created = []

    def _remove_stale_temps(self) -> None:
        # We hold the lock, so no other run can be writing these: they are what a killed write left behind
        # (a temp folder holding safetensors' own temp file, or, from older versions, a temp file).
        for f in self.path.glob(f".{CHECKPOINT_NAME}.*.tmp"):
            if f.is_dir() and not f.is_symlink():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
        for f in self.path.glob(".diffusion-core-replaced.*"):  # an overwrite killed between its two steps
            shutil.rmtree(f, ignore_errors=True)


class NoRunDir:
    """What ranks other than 0 hold: the path, and no lock (they write nothing)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.checkpoint = self.path / CHECKPOINT_NAME

    def claim(self, name: str) -> Path:
        return self.path / name

    def start(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def write_json(path: Path, value) -> None:
    """``value`` as indented JSON at ``path``, replaced in one step."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where they are empty; stop at the first that is not."""
    for f in folders:
        try:
            f.rmdir()
        except OSError:
            return
