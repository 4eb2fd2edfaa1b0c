"""Where a run's batches come from: the built-in sets held on the device, image folders streamed from disk.

* Built-in sets (digits, 2-D toys) are small: the whole set lives on the device and step ``s`` draws its
  indices from the run's generator, so a resumed run continues the same sequence.
* Image folders are prepared once into a uint8 memory-mapped cache (``folder_cache.prepare_image_folder``) and
  streamed by a DataLoader with workers (:func:`folder_batches`); step ``s``'s global batch is a function of
  (seed, s) (:func:`global_batch`), so resuming and DDP see the very batches an uninterrupted single process would.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from .._validation import check_int
from ..errors import InvalidInput
from ..nn import get_preset
from .config import TrainConfig
from .data import Dataset, load_builtin
from .folder_cache import PreparedFolder, prepare_image_folder
from .images import class_folders
from .runtime import DistInfo

__all__ = ["DataSource", "folder_batches", "global_batch"]


class DataSource:
    """The run's data, checked at construction, which writes nothing; an image folder's cache is built (or
    reused) by :meth:`prepare`, once the run holds its folder."""

    def __init__(self, config: TrainConfig, device: torch.device, info: DistInfo) -> None:
        self.config, self.device, self.info = config, device, info
        self.local = slice(info.rank * (config.batch_size // info.world_size),
                           (info.rank + 1) * (config.batch_size // info.world_size))
        self._stream = None
        self.prepared = self._folder = None
        self.data = self.labels = None
        if config.dataset.spec.kind == "folder":  # the preset fixes the channels; image_size may override its size
            preset = get_preset(config.model)
            size = config.image_size or preset.image_size
            self._folder = (config.data_dir, size, preset.in_channels)
            self._listed = class_folders(config.data_dir)[2]  # lists and checks the files (a missing folder, ...)
            self.sample_shape = (preset.in_channels, size, size)
            self.class_names = list(self._listed)
        else:
            data, labels, self.class_names = load_builtin(config.dataset, seed=config.seed)
            self.data = data.to(device)
            if labels is not None and config.class_cond:
                self.labels = labels.to(device)
            if self.data.ndim == 4 and config.uses_channels_last:
                self.data = self.data.contiguous(memory_format=torch.channels_last)
            self.sample_shape = tuple(self.data.shape[1:])
        if config.class_cond and not self.class_names:
            raise InvalidInput(f"class_cond needs labelled data, but dataset={config.dataset.value!r}: "
                               f"{_unlabelled(config)}")
        if not config.class_cond:
            self.class_names = []

    def prepare(self, cache_fallback: Path, claim) -> None:
        """Decode an image folder into its cache, or reuse it (nothing to do for built-in data). ``claim(name)``
        enters ``cache_fallback``'s name in the run's manifest when the cache has to go there."""
        if self._folder is None:
            return
        self.prepared = _prepare(*self._folder, cache_fallback, claim)
        if list(self.prepared.class_names) != self._listed:
            raise InvalidInput(f"data_dir {self.config.data_dir!r} changed while the run started (its classes were "
                               f"{self._listed}, now {list(self.prepared.class_names)}); start it again")

    @property
    def data_record(self) -> dict | None:
        """What a checkpoint records of an image folder's data (the decoded contents' SHA-256 and count), so that
        a resumed run can refuse other data; ``None`` for built-in data (fixed by the dataset and seed)."""
        if self.prepared is None:
            return None
        return {"sha256": self.prepared.sha256, "count": len(self.prepared)}

    @property
    def data_size(self) -> int | None:
        """The side of built-in images (8 for the digits); ``None`` for points and for folders (resized)."""
        return self.sample_shape[-1] if self.is_image and self._folder is None else None

    @property
    def num_classes(self) -> int:
        """K of a class-conditional run (labels 0..K-1; K is the null label), else 0."""
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.sample_shape[0]

    @property
    def is_image(self) -> bool:
        return len(self.sample_shape) == 3

    def batches(self, gen: torch.Generator, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """This rank's ``(x0, labels)`` for steps ``start_step, start_step + 1, ...``; labels ``None`` unless the
        run is class-conditional."""
        c = self.config
        if self.prepared is not None:
            self._stream = folder_batches(
                self.prepared, batch_size=c.batch_size, seed=c.seed, start_step=start_step, rank=self.info.rank,
                world_size=self.info.world_size, device=self.device,
                hflip=c.hflip if c.hflip is not None else c.dataset.spec.hflip,
                num_workers=c.workers if c.workers is not None else (2 if self.device.type == "cuda" else 0),
                channels_last=c.uses_channels_last)
            keep = self.num_classes > 0
            return ((x0, labels if keep else None) for x0, labels in self._stream)
        return self._in_memory(gen)

    def _in_memory(self, gen: torch.Generator) -> Iterator[torch.Tensor]:
        n = self.data.shape[0]
        while True:
            idx = torch.randint(0, n, (self.config.batch_size,), generator=gen, device=self.device)[self.local]
            yield self.data[idx], None if self.labels is None else self.labels[idx]

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()  # stops the loader's worker processes now
            self._stream = None


def _unlabelled(config: TrainConfig) -> str:
    """Why ``config``'s data has no classes, and which data has (from the datasets' declarations)."""
    where = "its images lie in no class subfolders" if config.dataset.spec.kind == "folder" else "it has no classes"
    labelled = [d.value for d in Dataset if d.spec.class_names]
    return f"{where} (labelled: {', '.join(labelled)}, a folder with one subfolder per class)"


def _prepare(data_dir: str, size: int, channels: int, fallback: Path, claim):
    """Every rank calls this: the cache's file lock makes the first one build it and the others reuse it."""
    try:
        return prepare_image_folder(data_dir, size, channels)
    except PermissionError:  # a read-only data folder: keep the cache beside the run instead
        if not fallback.exists():
            claim(fallback.name)  # the run's own: --overwrite deletes it with the run
        return prepare_image_folder(data_dir, size, channels, cache_dir=fallback)


# --------------------------------------------------------------------------------------------- image folders

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


class _MemmapBatches(TorchDataset):
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
    """Endless ``(x0, labels)`` of a prepared folder (:func:`~.folder_cache.prepare_image_folder`) for steps ``start_step, start_step + 1, ...``: ``x0`` float32 in [-1, 1], shape
    ``(batch_size // world_size, C, H, W)``, and int64 labels, on ``device``. Step ``s``'s global batch is
    :func:`global_batch` ``(len(prepared), batch_size, seed, s)``; rank ``r`` keeps its ``r``-th contiguous slice.

    uint8 batches come from a DataLoader (``num_workers`` processes, pinned memory for CUDA), are copied
    non-blocking and converted on the device. Closing or dropping the iterator stops the workers.
    """
    for name, v, lo in (("batch_size", batch_size, 1), ("world_size", world_size, 1), ("start_step", start_step, 0),
                        ("num_workers", num_workers, 0)):
        check_int(name, v, minimum=lo)
    check_int("seed", seed)
    if batch_size % world_size:
        raise InvalidInput(f"batch_size={batch_size} must be divisible by world_size={world_size}")
    check_int("rank", rank, minimum=0, maximum=world_size - 1)
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
