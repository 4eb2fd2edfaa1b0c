"""What ``eval`` compares: the samples (a ``.npy`` written by ``diffusion-core sample``, or a folder of images) and
the reference (a built-in dataset's name, a folder or a ``.npy``), as float arrays ``(N, *shape)`` in the models'
scale ([-1, 1] for images; images in files are read as 0..255 and mapped to [-1, 1])."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInput

__all__ = ["Examples", "builtin_names", "load_reference", "load_samples"]

_ALLOWED = "a .npy written by diffusion-core sample or a folder of PNG/JPEG images"


@dataclass(frozen=True)
class Examples:
    data: np.ndarray  # (N, *shape), float64
    source: str  # what the report names: the path, or the built-in set's name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])


def builtin_names() -> list[str]:
    from ..train.data import Dataset

    return [d.value for d in Dataset if d.spec.load is not None]


def _check_array(x: np.ndarray, name: str, path: str) -> np.ndarray:
    if x.dtype.kind not in "fiu":
        raise InvalidInput(f"{name} {path!r} holds {x.dtype} values; expected numbers")
    if not (x.ndim == 2 and x.shape[1] == 2) and not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise InvalidInput(f"{name} {path!r} has shape {x.shape}; expected (N, 2) points or (N, C, H, W) images "
                           "with C 1 or 3, as diffusion-core sample writes them")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise InvalidInput(f"{name} {path!r} holds NaN or infinite values")
    return x


def _read_npy(path: Path, name: str) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise InvalidInput(f"{name} {str(path)!r} is not a readable .npy file ({e})") from None
    return _check_array(np.asarray(x), name, str(path))


def _image_mode(path: Path) -> tuple[int, int]:
    """(side, channels) of one image file: its shorter side, 1 channel for greyscale files, else 3."""
    from PIL import Image

    with Image.open(path) as im:
        return min(im.size), 1 if im.mode in ("L", "LA", "1", "I;16", "I") else 3


def _read_folder(path: Path, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    from ..train.images import decode_image, list_images

    files = list_images(path)
    if not files:
        raise InvalidInput(f"{name} {str(path)!r} holds no image (.png, .jpg, .jpeg)")
    if shape is not None and len(shape) != 3:
        raise InvalidInput(f"{name} {str(path)!r} is a folder of images, but the other set holds points of "
                           f"shape {shape}")
    side, channels = (shape[1], shape[0]) if shape is not None else _image_mode(files[0])
    x = np.stack([decode_image(f, side, channels) for f in files])  # (N, H, W, C) uint8
    return x.transpose(0, 3, 1, 2).astype(np.float64) / 127.5 - 1.0


def _read(path_str: str, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    path = Path(path_str)
    if path.is_dir():
        return _read_folder(path, name, shape)
    if not path.exists():
        raise InvalidInput(f"{name} {path_str!r} does not exist; give {_ALLOWED}")
    if path.suffix.lower() != ".npy":
        raise InvalidInput(f"{name} {path_str!r} is neither a .npy file nor a folder; give {_ALLOWED}")
    return _read_npy(path, name)


def load_samples(path: str, shape: tuple[int, ...] | None = None) -> Examples:
    """The samples at ``path``; a folder's images are decoded at ``shape`` (the reference's) when given."""
    return Examples(_read(path, "SAMPLES", shape), path)


def _builtin(name: str, n_points: int, seed: int) -> np.ndarray:
    import torch

    from ..train.data import Dataset, digits, toy_data

    if Dataset(name).spec.kind == "images":
        return digits().double().numpy()
    return toy_data(name, n_points, torch.Generator().manual_seed(seed)).double().numpy()


def load_reference(ref: str, *, n_points: int, seed: int = 1, shape: tuple[int, ...] | None = None) -> Examples:
    """The reference: a built-in set (a 2-D set draws ``n_points`` points from ``seed``, a stream apart from
    training's seed 0; the digits are all 1,797), a folder (decoded at ``shape`` when given) or a ``.npy``."""
    if ref in builtin_names():
        return Examples(_builtin(ref, n_points, seed), ref)
    if not Path(ref).exists():
        raise InvalidInput(f"--reference {ref!r} is neither a built-in dataset ({', '.join(builtin_names())}) nor an "
                           f"existing file or folder")
    return Examples(_read(ref, "--reference", shape), ref)
