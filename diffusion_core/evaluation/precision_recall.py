"""Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of the balls around
its points whose radius is the distance to the point's k-th nearest neighbour in the same set (itself left out).

Precision is the fraction of the samples inside the reference's manifold (are the samples realistic?); recall is
the fraction of the reference inside the samples' manifold (do the samples cover the data?).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._validation import check_int
from ..errors import InvalidInput
from .distances import _pair

__all__ = ["PrecisionRecall", "knn_radii", "precision_recall"]


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float  # fraction of the samples inside the reference's k-NN manifold
    recall: float  # fraction of the reference inside the samples' k-NN manifold
    k: int


def _dists(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    return torch.cdist(torch.from_numpy(a), torch.from_numpy(b))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """The distance from each row of ``x`` to its k-th nearest other row."""
    if len(x) <= k:
        raise InvalidInput(f"k-NN radii with k={k} need more than k rows, got {len(x)}")
    d = _dists(x, x)
    return d.kthvalue(k + 1, dim=1).values.numpy()  # the first (k=0) is the point itself, at distance 0


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """The fraction of ``points`` within some ball (centre, radius), in chunks of rows to bound memory."""
    r = torch.from_numpy(radii)
    inside = [(_dists(points[i:i + 2048], centres) <= r).any(dim=1) for i in range(0, len(points), 2048)]
    return float(torch.cat(inside).double().mean())


def precision_recall(samples, reference, k: int = 3) -> PrecisionRecall:
    """Kynkäänniemi et al.'s precision and recall of ``samples`` against ``reference`` (rows are feature
    vectors), with k-NN radii (k=3 as in the paper)."""
    check_int("k", k, minimum=1)
    s, r = _pair(samples, reference, "samples and reference")
    for name, x in (("samples", s), ("reference", r)):
        if len(x) <= k:
            raise InvalidInput(f"precision/recall with k={k} need more than {k} rows of {name}, got {len(x)}")
    return PrecisionRecall(_coverage(s, r, knn_radii(r, k)), _coverage(r, s, knn_radii(s, k)), k)
