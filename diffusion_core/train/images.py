"""Writing samples: PNG grids of images, scatter PNGs of 2-D points."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidInput

__all__ = ["image_grid", "save_image_grid", "save_scatter"]


def image_grid(images: torch.Tensor, nrow: int | None = None, scale: int = 1, pad: int = 1) -> np.ndarray:
    """``(N, C, H, W)`` images in [-1, 1] tiled into one ``uint8`` array ``(rows*(H+pad), cols*(W+pad), C)``."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise InvalidInput(f"images must have shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    h, w = h * scale, w * scale
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top:top + h, left:left + w] = x[i].permute(1, 2, 0).numpy()
    return grid


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    from PIL import Image

    grid = image_grid(images, nrow, scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).save(path)
    return path


def save_scatter(points: torch.Tensor, path: str | Path, size: int = 512, extent: float = 2.0) -> Path:
    """2-D points drawn as dark pixels on white over ``[-extent, extent]^2``."""
    from PIL import Image

    p = points.detach().float().cpu().numpy()
    ij = np.round((p + extent) / (2 * extent) * (size - 1)).astype(int)
    keep = ((ij >= 0) & (ij < size)).all(1)
    canvas = np.full((size, size), 255, dtype=np.uint8)
    canvas[size - 1 - ij[keep, 1], ij[keep, 0]] = 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
