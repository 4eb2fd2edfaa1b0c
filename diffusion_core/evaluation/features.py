"""The feature networks ``eval`` measures in, each under a name that the report prints.

* ``digits-mlp``: for 8x8 one-channel images in [-1, 1] (the built-in digits). A 64-128-64-10 ReLU classifier
  trained here on a fixed 80% of scikit-learn's digits (full-batch Adam, seeded, one CPU thread: deterministic,
  about a second); the features are its 64 penultimate activations. It is built on first use and cached (a
  ~70 kB safetensors file under :func:`cache_dir`, the recipe's version in its name); nothing is downloaded.
* ``raw``: the values as they are, flattened (2-D points; any image, as a pixel-space baseline).
* ``inception-v3``: the 2048 pool3 features of the FID Inception-v3 (:mod:`.inception`), from the weights file
  pytorch-fid uses, which the user supplies (``--inception-weights``, else ``$DIFFUSION_CORE_INCEPTION_WEIGHTS``)
  and which is checked by SHA-256; images are resized to 299x299 as pytorch-fid does (bilinear, not clean-fid's
  bicubic), one-channel images repeated to three channels.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import InvalidInput

__all__ = ["FEATURE_NETWORKS", "FeatureNetwork", "INCEPTION_ENV", "build_digits_mlp", "cache_dir", "digits_mlp",
           "feature_network", "inception_v3"]

log = logging.getLogger("diffusion_core.evaluation")
CACHE_ENV = "DIFFUSION_CORE_CACHE"
DIGITS_RECIPE = "digits-mlp-v1"  # bump when the recipe below changes: the cached file is then rebuilt
INCEPTION_ENV = "DIFFUSION_CORE_INCEPTION_WEIGHTS"
FEATURE_NETWORKS = ("digits-mlp", "raw", "inception-v3")


@dataclass(frozen=True)
class FeatureNetwork:
    name: str
    description: str  # one line, printed with every report
    embed: Callable[[np.ndarray], np.ndarray]  # (N, *shape) -> (N, dim) float64


def cache_dir() -> Path:
    """``$DIFFUSION_CORE_CACHE``, else ``$XDG_CACHE_HOME/diffusion-core``, else ``~/.cache/diffusion-core``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "diffusion-core"


def _mlp() -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 10))


def _digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from ..train.data import digits, digits_labels

    x, y = digits().reshape(-1, 64), digits_labels()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(x))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


def build_digits_mlp(steps: int = 400) -> tuple[torch.nn.Sequential, float]:
    """Train the ``digits-mlp`` classifier; returns it and its accuracy on the held-out 20%."""
    x, y, x_test, y_test = _digits_split()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order on every run
    try:
        torch.manual_seed(0)
        net = _mlp()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        with torch.no_grad():
            accuracy = float((net(x_test).argmax(1) == y_test).double().mean())
    finally:
        torch.set_num_threads(threads)
    return net.eval(), accuracy


def _load_cached(path: Path) -> tuple[torch.nn.Sequential, float] | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            accuracy = float(f.metadata()["held_out_accuracy"])
        net = _mlp()
        net.load_state_dict(load_file(str(path)))
        return net.eval(), accuracy
    except Exception as e:  # a damaged or foreign file: rebuilt, never trusted
        log.warning("the cached feature network %s cannot be read (%s); rebuilding it", path, e)
        return None


def _save_cached(net: torch.nn.Sequential, accuracy: float, path: Path) -> None:
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
                  metadata={"recipe": DIGITS_RECIPE, "held_out_accuracy": repr(accuracy)})
        os.replace(tmp, path)
    except OSError as e:  # an unwritable cache costs a second of training next time, nothing else
        log.warning("cannot cache the feature network in %s (%s); set %s to a writable folder", path.parent,
                    e.strerror or e, CACHE_ENV)


def digits_mlp(cache: str | Path | None = None) -> FeatureNetwork:
    """The ``digits-mlp`` features, from the cache or trained now (and cached)."""
    path = Path(cache or cache_dir()) / f"{DIGITS_RECIPE}.safetensors"
    loaded = _load_cached(path) if path.is_file() else None
    if loaded is None:
        loaded = build_digits_mlp()
        _save_cached(*loaded, path)
    net, accuracy = loaded
    body = net[:4]

    def embed(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return body(torch.as_tensor(x, dtype=torch.float32).reshape(len(x), 64)).double().numpy()

    return FeatureNetwork("digits-mlp", f"64 penultimate ReLU activations of {DIGITS_RECIPE}, an MLP classifier "
                          f"trained here on 80% of the 8x8 digits (held-out accuracy {accuracy:.1%})", embed)


def _raw(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def inception_v3(weights: str | Path | None, sha256: str | None = None) -> FeatureNetwork:
    """The ``inception-v3`` features from the weights file ``weights`` (None: ``$DIFFUSION_CORE_INCEPTION_WEIGHTS``),
    checked against ``sha256`` (None: the official file's) before it is loaded."""
    from . import inception

    weights = weights or os.environ.get(INCEPTION_ENV) or None
    if weights is None:
        raise InvalidInput(f"--features inception-v3 needs --inception-weights FILE (or ${INCEPTION_ENV}): "
                           f"download {inception.INCEPTION_FILE} (SHA-256 {inception.INCEPTION_SHA256}) from "
                           f"{inception.INCEPTION_URL}")
    net = inception.load_inception(weights, sha256)

    def embed(x: np.ndarray) -> np.ndarray:
        return inception.inception_features(net, x)

    digest = (sha256 or inception.INCEPTION_SHA256)[:8]
    return FeatureNetwork("inception-v3", f"2048 pool3 features of the FID Inception-v3 (pytorch-fid's port of the "
                          f"2015-12-05 TF graph; weights {Path(weights).name}, SHA-256 {digest}...); images in [-1, 1] "
                          "-> [0, 1], 1 channel repeated to 3, bilinear resize to 299x299 (F.interpolate, "
                          "align_corners=False, no antialias), 2x-1: pytorch-fid's convention, comparable with "
                          "pytorch-fid/torchmetrics-style FIDs, not clean-fid's (PIL bicubic resize)", embed)


def feature_network(name: str | None, shape: tuple[int, ...], cache: str | Path | None = None,
                    inception_weights: str | Path | None = None) -> FeatureNetwork:
    """The feature network ``name`` for examples of ``shape``; ``None`` picks ``digits-mlp`` for 8x8 one-channel
    images and ``raw`` otherwise. ``inception_weights``: the weights file of ``inception-v3`` (only)."""
    if name is None:
        name = "digits-mlp" if tuple(shape) == (1, 8, 8) else "raw"
    if name not in FEATURE_NETWORKS:
        raise InvalidInput(f"--features must be one of {', '.join(FEATURE_NETWORKS)}, got {name!r}")
    if inception_weights is not None and name != "inception-v3":
        raise InvalidInput(f"--inception-weights is for --features inception-v3, not {name}")
    if name == "inception-v3":
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise InvalidInput(f"--features inception-v3 is for images (C, H, W) with C 1 or 3, got examples of "
                               f"shape {tuple(shape)}")
        return inception_v3(inception_weights)
    if name == "raw":
        what = "2-D coordinates" if tuple(shape) == (2,) else "pixel values"
        return FeatureNetwork("raw", f"the {what} as they are ({int(np.prod(shape))} per example)", _raw)
    if tuple(shape) != (1, 8, 8):
        raise InvalidInput(f"--features digits-mlp is for 8x8 one-channel images (1, 8, 8), got examples of "
                           f"shape {tuple(shape)}; use --features raw")
    return digits_mlp(cache)
