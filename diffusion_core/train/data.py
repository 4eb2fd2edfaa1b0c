"""Training data, all in memory and scaled to [-1, 1]; nothing is downloaded.

* 2-D toy sets, drawn from their generative definitions with a seeded generator;
* scikit-learn's bundled 8x8 digits (values 0..16);
* the reading of a folder of the user's PNG/JPEG images (listing, class subfolders, decoding), which
  :mod:`diffusion_core.train.folder_data` prepares once into a memory-mapped file.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidInput
from ._fs import RUN_MARKERS
from .config import Dataset

__all__ = ["toy_data", "digits", "decode_image", "list_images",
           "class_folders", "IMAGE_SUFFIXES", "TOY_CLASSES", "toy_data_labelled", "load_builtin",
           "digits_labels"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # greyscale PNGs with 16-bit samples


TOY_CLASSES = {Dataset.TWO_MOONS: ["upper", "lower"], Dataset.EIGHT_GAUSSIANS: [f"{45 * k} deg" for k in range(8)]}


def toy_data(name: Dataset | str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points of a 2-D toy set, shape ``(n, 2)``, roughly within [-1, 1] (unit-scale standard deviation)."""
    return toy_data_labelled(name, n, generator)[0]


def toy_data_labelled(name: Dataset | str, n: int, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`toy_data` and, for the sets made of natural components (two moons, eight Gaussians; see
    ``TOY_CLASSES``), each point's component as its class label; ``None`` for the others."""
    name = Dataset(name)
    labels = None
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
        labels = (~upper).long()
        x = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) / 1.2 + 0.05 * noise
    elif name is Dataset.EIGHT_GAUSSIANS:
        k = torch.randint(0, 8, (n,), generator=g)
        centres = torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], 1).double()
        x = 0.8 * centres + 0.05 * noise
        labels = k
    elif name is Dataset.CHECKERBOARD:
        # 4x4 board on [-1, 1]^2; keep the cells whose row and column have the same parity.
        col = torch.randint(0, 4, (n,), generator=g)
        row = 2 * torch.randint(0, 2, (n,), generator=g) + (col % 2)
        x = torch.stack([col, row], 1).double() / 2 - 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) / 2
    else:
        raise InvalidInput(f"{name.value!r} is not a 2-D toy set")
    return x.float(), labels


def digits() -> torch.Tensor:
    """scikit-learn's 1,797 8x8 digits, shape ``(1797, 1, 8, 8)``, scaled from 0..16 to [-1, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32)
    return torch.from_numpy(images / 8.0 - 1.0).unsqueeze(1)


def digits_labels() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target)


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


def _check_settings(image_size: int, channels: int) -> str:
    """The PIL mode for ``channels``; ValueError for a bad ``channels`` or ``image_size``."""
    if channels not in (1, 3):
        raise InvalidInput(f"channels must be 1 or 3 for an image folder, got {channels}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise InvalidInput(f"image_size must be a positive integer, got {image_size!r}")
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

    mode = _check_settings(image_size, channels)
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


def load_builtin(dataset: Dataset, *, toy_size: int = 100_000, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """A built-in set as ``(data, labels, class_names)``; ``labels`` is ``None`` (and ``class_names`` empty) for
    the toy sets without natural classes (swiss roll, checkerboard)."""
    if dataset is Dataset.DIGITS:
        return digits(), digits_labels(), [str(k) for k in range(10)]
    if dataset is Dataset.FOLDER:
        raise InvalidInput("load_builtin is for the built-in sets; image folders are streamed (folder_data)")
    x, labels = toy_data_labelled(dataset, toy_size, torch.Generator().manual_seed(seed))
    return x, labels, TOY_CLASSES.get(dataset, [])
