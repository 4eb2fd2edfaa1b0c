"""Image files in and out: the PNG/JPEG files of an image folder (listed, labelled by class subfolder, decoded to
uint8 arrays) and the PNGs a run or ``diffusion-core sample`` writes (image grids, scatter plots of 2-D points)."""
from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from .._validation import check_in, check_int
from ..errors import InvalidInput
from .run_dir import RUN_MARKERS

__all__ = ["IMAGE_SUFFIXES", "list_images", "class_folders", "decode_image", "image_grid", "save_image_grid",
           "save_scatter"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # greyscale PNGs with 16-bit samples


# ---------------------------------------------------------------------------------------------- reading images

def _raise(error: OSError) -> None:
    raise error


def list_images(root: str | Path) -> list[Path]:
    """The PNG/JPEG files under ``root`` (recursively), sorted; hidden files and folders (a name starting
    with ".", such as the ``.diffusion-core-cache`` folder or macOS ``._x.jpg`` files) are skipped, and so is
    any subfolder that holds a training run (``RUN_MARKERS``): a run kept inside its data folder does not
    train on its own loss plot and previews. A folder that cannot be read is an error (``PermissionError``),
    not an empty folder."""
    root = Path(root)
    found = []
    for folder, dirs, names in os.walk(root, onerror=_raise):
        here = Path(folder)
        if here != root and any(m in names for m in RUN_MARKERS):
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [here / n for n in names
                  if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES and (here / n).is_file()]
    return sorted(found)


def class_folders(data_dir: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """``(files, labels, class_names)`` of a folder, torchvision ImageFolder style: each first-level subfolder
    holding images is a class (``class_names`` sorted, label = index); a folder whose images all lie at its
    top level is unlabelled (``class_names == []``, every label 0). Files as :func:`list_images`.

    Raises:
        FileNotFoundError: ``data_dir`` is not a folder.
        ValueError: no image, or images both at the top level and in subfolders.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {str(root)!r} is not a folder")
    files = list_images(root)
    if not files:
        raise InvalidInput(f"data_dir {str(root)!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    top = [f.name for f in files if f.parent == root]
    first = [f.relative_to(root).parts[0] for f in files]
    names = sorted({c for f, c in zip(files, first) if f.parent != root})
    if top and names:
        raise InvalidInput(f"data_dir {str(root)!r} mixes images at its top level ({top[0]!r}, ...) with class "
                         f"subfolders ({names[0]!r}, ...): put every image in a class subfolder, or none")
    label = {c: i for i, c in enumerate(names)}
    return files, np.array([label.get(c, 0) for c in first], dtype=np.int64), names


def check_settings(image_size: int, channels: int) -> str:
    """The PIL mode for ``channels``; ValueError for a bad ``channels`` or ``image_size``."""
    check_in("channels", channels, (1, 3), what="for an image folder")
    check_int("image_size", image_size, minimum=1)
    return "L" if channels == 1 else "RGB"


def _bomb_error(path: Path, error: Exception) -> InvalidInput:
    """One line for PIL's decompression-bomb error (or warning): the file and its pixel count."""
    from PIL import Image

    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = f"{int(found.group(1)):,} pixels" if found else f"too many pixels ({error})"
    return InvalidInput(f"image {str(path)!r} has {pixels}, more than PIL.Image.MAX_IMAGE_PIXELS "
                      f"({Image.MAX_IMAGE_PIXELS:,}) allows (a decompression-bomb guard); shrink it first")


def _to_mode(im, mode: str):
    """``im`` converted to ``mode`` ("L" or "RGB"): 16-bit greyscale scaled to 8 bits (``round(v * 255 / 65535)``,
    where a plain ``convert`` would clip at 255), palette images through RGB(A), alpha dropped."""
    from PIL import Image

    if im.mode in _SIXTEEN_BIT:
        v = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        im = Image.fromarray(((2 * v + 257) // 514).astype(np.uint8))  # v / 257 rounded; never a tie
    elif im.mode in ("P", "PA"):
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    return im if im.mode == mode else im.convert(mode)


def decode_image(path: str | Path, image_size: int, channels: int) -> np.ndarray:
    """One image file as ``(image_size, image_size, channels)`` uint8: converted to L (ITU-R 601-2 luma)
    or RGB, centre-cropped to a square, resized (bicubic), as the prepared (streamed) folders hold it.

    Raises:
        ValueError: ``channels`` is not 1 or 3, or ``image_size`` not positive; the file cannot be read;
            it has more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (PIL's warning for that is an error here).
    """
    from PIL import Image, UnidentifiedImageError

    mode = check_settings(image_size, channels)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                im = _to_mode(im, mode)
                side = min(im.size)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side)).resize((image_size, image_size), Image.BICUBIC)
                return np.asarray(im).reshape(image_size, image_size, channels)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _bomb_error(path, e) from None
        except (UnidentifiedImageError, OSError) as e:
            raise InvalidInput(f"cannot read image {str(path)!r}: {e}") from None


# ---------------------------------------------------------------------------------------------- writing images

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
