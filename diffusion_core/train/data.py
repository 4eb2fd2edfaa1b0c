"""The datasets a run trains on, each declared once: a member of :class:`Dataset` holding its :class:`DatasetSpec`.

A spec says everything the library needs to know about a dataset: its kind (2-D points, built-in images held in
memory, or a folder of the user's images streamed from disk), the shape of one example, its class names (the labels
of ``class_cond``), the model it trains when none is named, how the sampler clips the predicted x0, whether random
horizontal flips are on by default, and how to load it. A new built-in dataset is one more member (and its loader).
Nothing is downloaded: the 2-D sets are drawn from their generative definitions with a seeded generator, the digits
are scikit-learn's bundled 8x8 ones (values 0..16), and every set is scaled to about [-1, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import numpy as np
import torch

from ..errors import InvalidInput
from ..reverse import Clip

__all__ = ["Dataset", "DatasetSpec", "digits", "digits_labels", "load_builtin", "toy_data", "toy_data_labelled",
           "TOY_SIZE"]

TOY_SIZE = 100_000  # points drawn for a run on a 2-D set
Loader = Callable[[int, torch.Generator], "tuple[torch.Tensor, torch.Tensor | None]"]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset, as the rest of the library sees it."""

    name: str  # the --dataset value
    kind: str  # "points" (2-D toy sets, the MLP's), "images" (built in, held in memory) or "folder" (streamed)
    default_model: str  # --model when none is given: "mlp" for points, a U-Net preset for images
    clip: Clip  # the sampler's clip of the predicted x0: images live in [-1, 1]; points have no bounds
    shape: tuple[int, ...] | None = None  # one example's shape; None for a folder (the model preset sets it)
    # (n, generator) -> (data, labels or None): n points drawn from the generator for a 2-D set, the whole set
    # (n and the generator unused) for the digits; None for a folder, which is read from disk (folder_cache.py)
    load: Loader | None = None
    class_names: tuple[str, ...] = ()  # labels 0..K-1 of class_cond; () for a set without classes
    hflip: bool = False  # random horizontal flips by default; False: refused (a flipped digit is another digit)

    def __post_init__(self) -> None:
        if self.kind not in ("points", "images", "folder"):
            raise AssertionError(f"dataset {self.name!r}: unknown kind {self.kind!r}")
        if (self.kind == "folder") != (self.load is None) or (self.kind == "folder") != (self.shape is None):
            raise AssertionError(f"dataset {self.name!r}: a folder has neither load nor shape, a built-in set both")
        if (self.kind == "points") != (self.default_model == "mlp"):
            raise AssertionError(f"dataset {self.name!r}: points train the mlp, images a U-Net preset")

    @property
    def model_kind(self) -> str:
        """``"mlp"`` for 2-D points, ``"unet"`` for images: the only kind of network the data fits."""
        return "mlp" if self.kind == "points" else "unet"


def _uniform_and_noise(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Every 2-D set draws these first, in this order, so that each set's stream of random numbers is fixed."""
    return torch.rand(n, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g, dtype=torch.float64)


def _swiss_roll(n: int, g: torch.Generator) -> tuple[torch.Tensor, None]:
    u, noise = _uniform_and_noise(n, g)
    theta = 1.5 * math.pi * (1 + 2 * u)  # the classic roll: radius grows with the angle
    return torch.stack([theta * torch.cos(theta), theta * torch.sin(theta)], 1) / 10 + 0.025 * noise, None


def _two_moons(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    u, noise = _uniform_and_noise(n, g)
    upper = u < 0.5
    angle = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    x = torch.where(upper[:, None], torch.stack([torch.cos(angle), torch.sin(angle)], 1),
                    torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], 1))
    return (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) / 1.2 + 0.05 * noise, (~upper).long()


def _eight_gaussians(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    _, noise = _uniform_and_noise(n, g)
    k = torch.randint(0, 8, (n,), generator=g)
    centres = torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], 1).double()
    return 0.8 * centres + 0.05 * noise, k


def _checkerboard(n: int, g: torch.Generator) -> tuple[torch.Tensor, None]:
    _uniform_and_noise(n, g)
    # 4x4 board on [-1, 1]^2; keep the cells whose row and column have the same parity.
    col = torch.randint(0, 4, (n,), generator=g)
    row = 2 * torch.randint(0, 2, (n,), generator=g) + (col % 2)
    return torch.stack([col, row], 1).double() / 2 - 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) / 2, None


def digits() -> torch.Tensor:
    """scikit-learn's 1,797 8x8 digits, shape ``(1797, 1, 8, 8)``, scaled from 0..16 to [-1, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32)
    return torch.from_numpy(images / 8.0 - 1.0).unsqueeze(1)


def digits_labels() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target)


def _points(draw) -> Loader:
    """A 2-D set's loader: its ``draw(n, generator)``, computed in float64, returned as float32."""
    def load(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, labels = draw(n, g)
        return x.float(), labels
    return load


class Dataset(str, Enum):
    """Built-in data (nothing is downloaded) or a folder of the user's images; ``Dataset.X.spec`` declares it."""

    spec: DatasetSpec

    def __new__(cls, spec: DatasetSpec) -> "Dataset":
        member = str.__new__(cls, spec.name)
        member._value_ = spec.name
        member.spec = spec
        return member

    DIGITS = DatasetSpec("digits", "images", "digits-8", Clip.STATIC, shape=(1, 8, 8),
                         load=lambda n, g: (digits(), digits_labels()), class_names=tuple(str(k) for k in range(10)))
    SWISS_ROLL = DatasetSpec("swiss-roll", "points", "mlp", Clip.NONE, shape=(2,), load=_points(_swiss_roll))
    TWO_MOONS = DatasetSpec("two-moons", "points", "mlp", Clip.NONE, shape=(2,), load=_points(_two_moons),
                            class_names=("upper", "lower"))
    EIGHT_GAUSSIANS = DatasetSpec("8-gaussians", "points", "mlp", Clip.NONE, shape=(2,), load=_points(_eight_gaussians),
                                  class_names=tuple(f"{45 * k} deg" for k in range(8)))
    CHECKERBOARD = DatasetSpec("checkerboard", "points", "mlp", Clip.NONE, shape=(2,), load=_points(_checkerboard))
    # PNG/JPEG files under data_dir, as RGB 32x32 for the default model (tiny-32); flipped as DDPM's CIFAR-10 runs
    FOLDER = DatasetSpec("folder", "folder", "tiny-32", Clip.STATIC, hflip=True)

    @property
    def is_toy(self) -> bool:
        """A 2-D point set (trains the MLP)."""
        return self.spec.kind == "points"


def toy_data(name: Dataset | str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points of a 2-D toy set, shape ``(n, 2)``, roughly within [-1, 1] (unit-scale standard deviation)."""
    return toy_data_labelled(name, n, generator)[0]


def toy_data_labelled(name: Dataset | str, n: int, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`toy_data` and, for the sets made of natural components (two moons, eight Gaussians: those with
    ``class_names``), each point's component as its class label; ``None`` for the others."""
    dataset = Dataset(name)
    if not dataset.is_toy:
        raise InvalidInput(f"{dataset.value!r} is not a 2-D toy set")
    return dataset.spec.load(n, generator or torch.Generator().manual_seed(0))


def load_builtin(dataset: Dataset, *, toy_size: int = TOY_SIZE, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """A built-in set as ``(data, labels, class_names)``; ``labels`` is ``None`` (and ``class_names`` empty) for
    the toy sets without natural classes (swiss roll, checkerboard). A 2-D set draws ``toy_size`` points from
    ``seed``."""
    spec = Dataset(dataset).spec
    if spec.load is None:
        raise InvalidInput("load_builtin is for the built-in sets; image folders are streamed (folder_cache)")
    data, labels = spec.load(toy_size, torch.Generator().manual_seed(seed))
    return data, labels, list(spec.class_names)
