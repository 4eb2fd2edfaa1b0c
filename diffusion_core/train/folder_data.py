"""Image folders streamed from disk: decoded once into a uint8 memory-mapped cache
(:func:`prepare_image_folder`), then batched by a DataLoader (:func:`folder_batches`).

Cache layout (``<data_dir>/.diffusion-core-cache/`` by default, else ``<cache_dir>/<name>-<hash of data_dir>/``),
one set of files per ``(image_size, channels)``, e.g. ``32px-3ch``:

* ``32px-3ch.images.npy``: ``(N, H, W, C)`` uint8 (NumPy ``.npy``, opened as a read-only memmap);
* ``32px-3ch.labels.npy``: ``(N,)`` int64 class labels;
* ``32px-3ch.json``: the index (format, settings, N, class names, file names, source fingerprint);
  written last, so a cache is only trusted once complete;
* ``lock``: held (``flock``) while a process checks or builds the cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import InvalidInput
from . import data as _data

try:
    import fcntl
except ImportError:  # Windows: no lock; prepare from one process at a time
    fcntl = None

__all__ = ["CACHE_DIR_NAME", "FORMAT_VERSION", "PreparedFolder", "prepare_image_folder", "global_batch",
           "folder_batches"]

CACHE_DIR_NAME = ".diffusion-core-cache"
FORMAT_VERSION = 1  # bump when the layout or the decoding (data.decode_image) changes: old caches are rebuilt


class PreparedFolder:
    """A prepared cache: ``images`` (read-only ``np.memmap``, uint8, ``(N, H, W, C)``), ``labels`` (int64,
    ``(N,)``), ``class_names`` (``[]`` for an unlabelled folder), ``fingerprint`` of the source files."""

    def __init__(self, folder: Path, index: dict) -> None:
        self.cache_dir = folder
        self.index = index
        self.images_path = folder / index["images"]
        self.labels_path = folder / index["labels"]
        self.image_size, self.channels = index["image_size"], index["channels"]
        self.class_names: list[str] = list(index["class_names"])
        self.fingerprint: str = index["fingerprint"]
        self._images = self._labels = None

    @property
    def images(self) -> np.memmap:
        if self._images is None:
            self._images = np.load(self.images_path, mmap_mode="r")
        return self._images

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.load(self.labels_path)
        return self._labels

    def __len__(self) -> int:
        return self.index["count"]

    def __getstate__(self) -> dict:  # paths travel, arrays do not
        return {**self.__dict__, "_images": None, "_labels": None}

    def __repr__(self) -> str:
        return (f"PreparedFolder({len(self)} images, {self.image_size}px, {self.channels} channel(s), "
                f"{len(self.class_names)} classes, cache {str(self.cache_dir)!r})")


def _fingerprint(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _cache_folder(root: Path, cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        return root / CACHE_DIR_NAME
    source = root.resolve()
    return Path(cache_dir) / f"{source.name or 'root'}-{hashlib.sha256(str(source).encode()).hexdigest()[:12]}"


def _lock(folder: Path):
    """Create ``folder`` and take its lock (an open file; closing it, or dying, releases the lock)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / "lock", "a")
    except OSError as e:
        raise PermissionError(f"cannot write the cache folder {str(folder)!r} ({e.strerror or e}); "
                              "pass cache_dir= a writable folder") from None
    if fcntl is not None:
        fcntl.flock(fh, fcntl.LOCK_EX)  # concurrent preparations of one folder run one after another
    return fh


def _valid(folder: Path, want: dict) -> dict | None:
    """The index in ``folder`` if it describes a complete cache of exactly ``want``, else None."""
    try:
        index = json.loads((folder / f"{want['stem']}.json").read_text())
        if any(index.get(k) != v for k, v in want.items()):
            return None
        n, s, c = want["count"], want["image_size"], want["channels"]
        images = np.load(folder / index["images"], mmap_mode="r")
        labels = np.load(folder / index["labels"], mmap_mode="r")
        if (images.shape, images.dtype, labels.shape, labels.dtype) != ((n, s, s, c), np.uint8, (n,), np.int64):
            return None
        return index
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _commit(tmp: Path, final: Path) -> None:
    """Make ``tmp`` durable, then move it to ``final`` in one step."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _build(folder: Path, want: dict, source: Path, files: list[Path], labels: np.ndarray, progress: bool) -> dict:
    stem, n, s, c = want["stem"], want["count"], want["image_size"], want["channels"]
    names = {"index": f"{stem}.json", "images": f"{stem}.images.npy", "labels": f"{stem}.labels.npy"}
    for name in names.values():  # the index first: a build killed halfway leaves nothing to trust
        (folder / name).unlink(missing_ok=True)
    tmp = {k: folder / f"{v}.tmp-{os.getpid()}" for k, v in names.items()}
    try:
        images = np.lib.format.open_memmap(tmp["images"], mode="w+", dtype=np.uint8, shape=(n, s, s, c))
        if progress:
            from tqdm.auto import tqdm

            files = tqdm(files, desc=f"prepare {s}px", unit="img")
        for i, f in enumerate(files):
            images[i] = _data.decode_image(f, s, c)
        images.flush()
        del images
        with open(tmp["labels"], "wb") as fh:  # a handle: np.save would append ".npy" to the name
            np.save(fh, labels)
        index = {**want, "images": names["images"], "labels": names["labels"], "source": str(source.resolve())}
        tmp["index"].write_text(json.dumps(index, indent=1))
        for k in ("images", "labels", "index"):  # the index last
            _commit(tmp[k], folder / names[k])
        _fsync_dir(folder)
        return index
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)


def prepare_image_folder(data_dir: str | Path, image_size: int, channels: int, *,
                         cache_dir: str | Path | None = None, progress: bool = False) -> PreparedFolder:
    """Decode every image of ``data_dir`` once (:func:`~.data.decode_image`, labels from :func:`~.data.class_folders`)
    into a uint8 memory-mapped cache, or reuse the cache when the files (relative paths, sizes, mtimes) and
    settings are unchanged. ``cache_dir``: where to keep it instead of ``<data_dir>/.diffusion-core-cache``
    (one subfolder per data folder, so one ``cache_dir`` can serve many).

    Raises:
        FileNotFoundError: ``data_dir`` is not a folder.
        ValueError: bad ``image_size``/``channels``; no image; an unreadable image; a root/subfolder mix.
        PermissionError: the cache folder cannot be written (and holds no valid cache): pass ``cache_dir``.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {str(root)!r} is not a folder")
    _data._check_settings(image_size, channels)
    files, labels, class_names = _data.class_folders(root)
    want = {"format": FORMAT_VERSION, "stem": f"{image_size}px-{channels}ch", "image_size": image_size,
            "channels": channels, "count": len(files), "class_names": class_names,
            "fingerprint": _fingerprint(root, files)}
    folder = _cache_folder(root, cache_dir)
    try:
        lock = _lock(folder)
    except PermissionError:
        index = _valid(folder, want)  # a cache prepared earlier in a folder now read-only is still usable
        if index is None:
            raise
        return PreparedFolder(folder, index)
    with lock:
        for stale in folder.glob("*.tmp-*"):  # left by a killed preparation (we hold the lock: nobody writes them)
            stale.unlink(missing_ok=True)
        index = _valid(folder, want) or _build(folder, want, root, files, labels, progress)
    return PreparedFolder(folder, index)


def global_batch(n: int, batch_size: int, seed: int, step: int, *, hflip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (int64, drawn uniformly with replacement from ``range(n)``) and horizontal-flip flags (bool;
    all False without ``hflip``) of the global batch of optimizer step ``step``: a pure function of
    ``(seed, step)``, from a CPU ``torch.Generator`` seeded by NumPy's ``SeedSequence([seed, step])``."""
    state = np.random.SeedSequence([seed % 2**64, step]).generate_state(1, np.uint64)[0]
    g = torch.Generator().manual_seed(int(state))
    idx = torch.randint(0, n, (batch_size,), generator=g)
    flip = torch.rand(batch_size, generator=g) < 0.5 if hflip else torch.zeros(batch_size, dtype=torch.bool)
    return idx, flip


class _StepBatches(Sampler):
    """Endless: for step = start_step, start_step + 1, ... this rank's ``[(index, flip), ...]``."""

    def __init__(self, n, batch_size, seed, start_step, rank, world_size, hflip) -> None:
        self.args = n, batch_size, seed, hflip
        self.start_step = start_step
        per = batch_size // world_size
        self.local = slice(rank * per, (rank + 1) * per)

    def __iter__(self):
        n, batch_size, seed, hflip = self.args
        step = self.start_step
        while True:
            idx, flip = global_batch(n, batch_size, seed, step, hflip=hflip)
            yield list(zip(idx[self.local].tolist(), flip[self.local].tolist()))
            step += 1


class _MemmapBatches(Dataset):
    """Whole batches gathered from the cache by fancy indexing; each worker opens the memmap itself."""

    def __init__(self, images_path: Path, labels_path: Path) -> None:
        self.paths = images_path, labels_path
        self._arrays = None

    def __getstate__(self) -> dict:
        return {"paths": self.paths, "_arrays": None}

    def __getitems__(self, batch: list[tuple[int, bool]]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._arrays is None:
            self._arrays = np.load(self.paths[0], mmap_mode="r"), np.load(self.paths[1])
        images, labels = self._arrays
        idx = np.array([i for i, _ in batch], dtype=np.int64)
        flip = np.array([f for _, f in batch], dtype=bool)
        x = np.asarray(images[idx])  # (b, H, W, C) uint8, a copy
        if flip.any():
            x[flip] = x[flip][:, :, ::-1]
        return torch.from_numpy(x), torch.from_numpy(labels[idx])

    def __getitem__(self, item: tuple[int, bool]):
        x, y = self.__getitems__([item])
        return x[0], y[0]


def _as_is(batch):
    return batch


def folder_batches(prepared: PreparedFolder, *, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                   world_size: int = 1, device: str | torch.device = "cpu", hflip: bool = False,
                   num_workers: int = 0, channels_last: bool = False):
    """Endless ``(x0, labels)`` for steps ``start_step, start_step + 1, ...``: ``x0`` float32 in [-1, 1], shape
    ``(batch_size // world_size, C, H, W)``, and int64 labels, on ``device``. Step ``s``'s global batch is
    :func:`global_batch` ``(len(prepared), batch_size, seed, s)``; rank ``r`` keeps its ``r``-th contiguous slice.

    uint8 batches come from a DataLoader (``num_workers`` processes, pinned memory for CUDA), are copied
    non-blocking and converted on the device. Closing or dropping the iterator stops the workers.
    """
    for name, v, lo in (("batch_size", batch_size, 1), ("world_size", world_size, 1), ("start_step", start_step, 0),
                        ("num_workers", num_workers, 0)):
        if not isinstance(v, int) or v < lo:
            raise InvalidInput(f"{name} must be an integer >= {lo}, got {v!r}")
    if not isinstance(seed, int):
        raise InvalidInput(f"seed must be an integer, got {seed!r}")
    if batch_size % world_size:
        raise InvalidInput(f"batch_size={batch_size} must be divisible by world_size={world_size}")
    if not 0 <= rank < world_size:
        raise InvalidInput(f"rank must be in [0, world_size={world_size}), got {rank}")
    device = torch.device(device)
    loader = DataLoader(
        _MemmapBatches(prepared.images_path, prepared.labels_path),
        batch_sampler=_StepBatches(len(prepared), batch_size, seed, start_step, rank, world_size, hflip),
        num_workers=num_workers, collate_fn=_as_is, pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0, prefetch_factor=2 if num_workers else None,
        generator=torch.Generator().manual_seed(0),  # the loader's base seed; leaves the global RNG alone
    )
    return _stream(iter(loader), device, torch.channels_last if channels_last else torch.contiguous_format)


def _stream(it, device: torch.device, memory_format: torch.memory_format):
    try:
        for xb, yb in it:
            x = xb.to(device, non_blocking=True).permute(0, 3, 1, 2)  # uint8 NCHW view of NHWC
            x0 = x.to(torch.float32, memory_format=memory_format).div_(127.5).sub_(1.0)
            yield x0, yb.to(device, non_blocking=True)
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # the workers stop now, not at garbage collection
        if shutdown is not None:
            shutdown()
