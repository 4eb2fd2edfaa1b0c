"""Batches of a prepared image folder (:func:`~.folder_data.prepare_image_folder`): step ``s``'s global batch is a
function of (seed, s), read from the memory-mapped cache by a DataLoader with workers."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import InvalidInput

if TYPE_CHECKING:
    from pathlib import Path

    from .folder_data import PreparedFolder

__all__ = ["global_batch", "folder_batches"]


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
