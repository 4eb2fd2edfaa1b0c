"""Where a run's batches come from: the built-in sets held on the device, image folders streamed from disk.

* Built-in sets (digits, 2-D toys) are small: the whole set lives on the device and step ``s`` draws its
  indices from the run's generator, so a resumed run continues the same sequence.
* Image folders are prepared once into a uint8 memory-mapped cache (``folder_data.prepare_image_folder``) and
  streamed by a DataLoader with workers; step ``s``'s batch is a function of (seed, s), so resuming and DDP
  see the very batches an uninterrupted single process would.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from ..errors import InvalidInput
from ..nn import get_preset
from .config import Dataset, TrainConfig
from .data import class_folders, load_builtin
from .distributed import DistInfo
from .folder_data import folder_batches, prepare_image_folder

__all__ = ["DataSource"]


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
        if config.dataset is Dataset.FOLDER:  # the preset fixes the channels; image_size may override its size
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
            where = "its images lie in no class subfolders" if self.prepared is not None else "it has no classes"
            raise InvalidInput(f"class_cond needs labelled data, but dataset={config.dataset.value!r}: {where} "
                               "(labelled: digits, two-moons, 8-gaussians, a folder with one subfolder per class)")
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
                world_size=self.info.world_size, device=self.device, hflip=c.hflip is not False,
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


def _prepare(data_dir: str, size: int, channels: int, fallback: Path, claim):
    """Every rank calls this: the cache's file lock makes the first one build it and the others reuse it."""
    try:
        return prepare_image_folder(data_dir, size, channels)
    except PermissionError:  # a read-only data folder: keep the cache beside the run instead
        if not fallback.exists():
            claim(fallback.name)  # the run's own: --overwrite deletes it with the run
        return prepare_image_folder(data_dir, size, channels, cache_dir=fallback)
