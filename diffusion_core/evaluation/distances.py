r"""Distances between two sets of feature vectors (rows), each a pure function of the two arrays.

* :func:`frechet_distance` (re-exported from :mod:`diffusion_core.metrics`): the Fréchet distance between the
  Gaussians fitted to the two sets, :math:`\|\mu_a-\mu_b\|^2+\operatorname{tr}(\Sigma_a+\Sigma_b-2(\Sigma_a\Sigma_b)^{1/2})`
  (Heusel et al. 2017); biased upwards at finite N by about ``c / N``.
* :func:`kid`: Kernel Inception Distance (Bińkowski et al. 2018), the unbiased estimator of MMD² with the cubic
  polynomial kernel :math:`k(x, y) = (x^\top y / d + 1)^3`, averaged over random subsets.
* :func:`mmd_rbf`: the unbiased MMD² with a Gaussian kernel, for 2-D points.
* :func:`wasserstein2`: the exact W2 between the two empirical distributions (an optimal transport plan from POT's
  ``ot.emd2``); :func:`sliced_wasserstein` (from :mod:`diffusion_core.metrics`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int, check_seed
from ..errors import InvalidInput
from ..metrics import as_rows, frechet_distance, sliced_wasserstein

__all__ = ["KID", "frechet_distance", "kid", "kid_from_kernels", "mmd_rbf", "poly_kernel", "sliced_wasserstein",
           "unbiased_mmd2", "wasserstein2", "pot_available"]


@dataclass(frozen=True)
class KID:
    """KID over ``subsets`` random subsets of ``subset_size`` rows of each set."""

    mean: float  # the mean of the subsets' unbiased MMD² estimates: KID
    std: float  # their standard deviation (population, as torchmetrics reports it)
    std_error: float  # std / sqrt(subsets): the standard error of ``mean`` (subsets drawn independently)
    subsets: int
    subset_size: int


def _pair(a, b, what: str = "a and b") -> tuple[np.ndarray, np.ndarray]:
    a, b = as_rows(a), as_rows(b)
    if a.shape[1] != b.shape[1]:
        raise InvalidInput(f"{what} must have the same feature size, got {a.shape[1]} and {b.shape[1]}")
    return a, b


def poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's kernel :math:`(a b^\\top / d + 1)^3`, ``d`` the feature size."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def unbiased_mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """The unbiased MMD² from the three kernel matrices (diagonals of ``k_xx`` and ``k_yy`` left out), for sets of
    sizes m and n (they may differ)."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    if m < 2 or n < 2:
        raise InvalidInput(f"the unbiased MMD needs at least 2 rows in each set, got {m} and {n}")
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2 * k_xy.mean())


def kid_from_kernels(k_xx, k_yy, k_xy, *, subsets: int, subset_size: int, seed: int = 0) -> KID:
    """KID from the full kernel matrices: each subset is a draw without replacement of ``subset_size`` rows of
    each set, and its MMD² the sub-matrices' (the kernels are computed once)."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    if subset_size > min(m, n):
        raise InvalidInput(f"the KID subset size must be at most the number of rows ({min(m, n)}), got {subset_size}")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(subsets):
        i, j = rng.permutation(m)[:subset_size], rng.permutation(n)[:subset_size]
        scores.append(unbiased_mmd2(k_xx[np.ix_(i, i)], k_yy[np.ix_(j, j)], k_xy[np.ix_(i, j)]))
    s = np.asarray(scores)
    return KID(float(s.mean()), float(s.std()), float(s.std() / np.sqrt(subsets)), subsets, subset_size)


def kid(a, b, *, subsets: int = 100, subset_size: int | None = None, seed: int = 0) -> KID:
    """KID between the rows of ``a`` and ``b``: the unbiased MMD² with the cubic polynomial kernel, averaged over
    ``subsets`` subsets of ``subset_size`` rows (default: all rows of the smaller set, and then one subset)."""
    a, b = _pair(a, b)
    check_int("subsets", subsets, minimum=1)
    check_seed("seed", seed)
    size = min(len(a), len(b)) if subset_size is None else check_int("subset_size", subset_size, minimum=2)
    if size > min(len(a), len(b)):
        raise InvalidInput(f"subset_size must be at most the number of rows of the smaller set "
                           f"({min(len(a), len(b))}), got {size}")
    if subset_size is None:
        subsets = 1
    return kid_from_kernels(poly_kernel(a, a), poly_kernel(b, b), poly_kernel(a, b), subsets=subsets,
                            subset_size=size, seed=seed)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def mmd_rbf(a, b, bandwidth: float = 0.5) -> float:
    """The unbiased MMD² between the rows of ``a`` and ``b`` with the Gaussian kernel
    :math:`\\exp(-\\|x-y\\|^2 / (2 h^2))`, ``h = bandwidth`` (0.5 suits the unit-scale 2-D sets)."""
    a, b = _pair(a, b)
    if not bandwidth > 0:
        raise InvalidInput(f"bandwidth must be > 0, got {bandwidth!r}")
    k = [np.exp(-_sq_dists(x, y) / (2 * bandwidth ** 2)) for x, y in ((a, a), (b, b), (a, b))]
    return unbiased_mmd2(*k)


def pot_available() -> bool:
    """Whether POT (``pip install pot``, the ``eval`` extra), which :func:`wasserstein2` needs, is installed."""
    try:
        import ot  # noqa: F401
    except ImportError:
        return False
    return True


def wasserstein2(a, b) -> float:
    """The exact Wasserstein-2 distance between the empirical distributions of the rows of ``a`` and ``b`` (uniform
    weights, any sizes): the square root of POT's ``ot.emd2`` on squared Euclidean costs."""
    a, b = _pair(a, b)
    try:
        import ot
    except ImportError:
        raise InvalidInput("wasserstein2 needs POT: pip install pot (or the package's [eval] extra)") from None
    w = ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), _sq_dists(a, b), numItermax=10_000_000)
    return float(np.sqrt(max(w, 0.0)))
