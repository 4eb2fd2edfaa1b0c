"""Training data, all in memory and scaled to [-1, 1]; nothing is downloaded.

* 2-D toy sets, drawn from their generative definitions with a seeded generator;
* scikit-learn's bundled 8x8 digits (values 0..16);
* a folder of the user's PNG/JPEG images, resized to a square.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .config import Dataset

__all__ = ["load_dataset", "toy_data", "digits", "image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def toy_data(name: Dataset | str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points of a 2-D toy set, shape ``(n, 2)``, roughly within [-1, 1] (unit-scale standard deviation)."""
    name = Dataset(name)
    g = generator or torch.Generator().manual_seed(0)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
    if name is Dataset.SWISS_ROLL:
        theta = 1.5 * math.pi * (1 + 2 * u)  # the classic roll: radius grows with the angle
        x = torch.stack([theta * torch.cos(theta), theta * torch.sin(theta)], 1) / 10 + 0.025 * noise
    elif name is Dataset.TWO_MOONS:
        upper = u < 0.5
        angle = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
        x = torch.where(
            upper[:, None],
            torch.stack([torch.cos(angle), torch.sin(angle)], 1),
            torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], 1),
        )
        x = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) / 1.2 + 0.05 * noise
    elif name is Dataset.EIGHT_GAUSSIANS:
        k = torch.randint(0, 8, (n,), generator=g)
        centres = torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], 1).double()
        x = 0.8 * centres + 0.05 * noise
    elif name is Dataset.CHECKERBOARD:
        # 4x4 board on [-1, 1]^2; keep the cells whose row and column have the same parity.
        col = torch.randint(0, 4, (n,), generator=g)
        row = 2 * torch.randint(0, 2, (n,), generator=g) + (col % 2)
        x = torch.stack([col, row], 1).double() / 2 - 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) / 2
    else:
        raise ValueError(f"{name.value!r} is not a 2-D toy set")
    return x.float()


def digits() -> torch.Tensor:
    """scikit-learn's 1,797 8x8 digits, shape ``(1797, 1, 8, 8)``, scaled from 0..16 to [-1, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32)
    return torch.from_numpy(images / 8.0 - 1.0).unsqueeze(1)


def digits_labels() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target)


def image_folder(path: str | Path, image_size: int, channels: int) -> torch.Tensor:
    """Every PNG/JPEG under ``path`` (recursively), centre-cropped to a square, resized to ``image_size``,
    as ``(N, channels, image_size, image_size)`` in [-1, 1].

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no image, or an image cannot be read.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {str(root)!r} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"data_dir {str(root)!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ValueError(f"channels must be 1 or 3 for an image folder, got {channels}")
    out = np.empty((len(files), image_size, image_size, channels), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                side = min(im.size)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side)).resize((image_size, image_size), Image.BICUBIC)
                out[i] = np.asarray(im).reshape(image_size, image_size, channels)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {str(f)!r}: {e}") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def load_dataset(dataset: Dataset, *, data_dir: str | None = None, image_size: int = 0, channels: int = 0,
                 toy_size: int = 100_000, seed: int = 0) -> torch.Tensor:
    """The whole training set as one tensor (``image_size`` and ``channels`` are for folders only)."""
    if dataset is Dataset.DIGITS:
        return digits()
    if dataset is Dataset.FOLDER:
        return image_folder(data_dir, image_size, channels)
    return toy_data(dataset, toy_size, torch.Generator().manual_seed(seed))
