r"""Sample-quality measures used by the quality tests and the site.

* :func:`frechet_distance`: :math:`\|\mu_a-\mu_b\|^2 + \operatorname{tr}(\Sigma_a + \Sigma_b - 2(\Sigma_a\Sigma_b)^{1/2})`
  between Gaussians fitted to two sets of vectors (Heusel et al. 2017, on raw features here).
* :func:`sliced_wasserstein`: the mean over random directions of the 1-D Wasserstein-1 distance of the projections.
* :func:`DigitsClassifier`: a classifier fitted on scikit-learn's real digits, to ask whether samples look like digits.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .errors import InvalidInput

__all__ = ["frechet_distance", "sliced_wasserstein", "as_rows", "DigitsClassifier", "DigitsScore"]


def as_rows(x) -> np.ndarray:
    """``x`` (a tensor or array of N samples) as an (N, features) float64 array."""
    a = x.detach().double().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def frechet_distance(a, b) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b`` (flattened per sample).

    With fewer rows than features (Inception's 2048 at N <= 2000), the same value from the rows: with
    Sigma_a = A^T A and Sigma_b = B^T B (A, B the centred rows over sqrt(N - 1)), the eigenvalues of
    Sigma_a^{1/2} Sigma_b Sigma_a^{1/2} that are not 0 are the squared singular values of the N_a x N_b matrix
    A B^T, so tr((Sigma_a Sigma_b)^{1/2}) is the sum of its singular values: no d x d eigendecomposition."""
    a, b = as_rows(a), as_rows(b)
    if a.shape[1] != b.shape[1]:
        raise InvalidInput(f"a and b must have the same feature size, got {a.shape[1]} and {b.shape[1]}")
    if min(len(a), len(b)) < 2:
        raise InvalidInput(f"a and b need at least 2 rows each to fit a Gaussian, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    if max(len(a), len(b)) < a.shape[1]:
        ca, cb = (a - mu_a) / np.sqrt(len(a) - 1), (b - mu_b) / np.sqrt(len(b) - 1)
        trace_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum()
        return float(((mu_a - mu_b) ** 2).sum() + (ca**2).sum() + (cb**2).sum() - 2 * trace_sqrt)
    cov_a, cov_b = (np.atleast_2d(np.cov(rows, rowvar=False)) for rows in (a, b))  # 1 feature: a 1 x 1 matrix
    # tr((A B)^{1/2}) = sum of sqrt of the eigenvalues of A^{1/2} B A^{1/2}, which is symmetric PSD.
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    eig = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clip(min=0)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(eig).sum())


def sliced_wasserstein(a, b, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two equally sized point sets."""
    a, b = as_rows(a), as_rows(b)
    if a.shape != b.shape:
        raise InvalidInput(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((a.shape[1], num_projections))
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
    return float(np.abs(pa - pb).mean())  # W1 in 1-D = mean gap between sorted samples


class DigitsScore(NamedTuple):
    mean_confidence: float  # mean top-class probability of the samples
    class_fractions: np.ndarray  # fraction of samples given each of the 10 labels


class DigitsClassifier:
    """Logistic regression fitted on all 1,797 real 8x8 digits (in [-1, 1]); accuracy on held-out digits ~96%."""

    def __init__(self, seed: int = 0) -> None:
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression

        d = load_digits()
        self.model = LogisticRegression(max_iter=2000, random_state=seed)
        self.model.fit(d.data / 8.0 - 1.0, d.target)

    def score(self, samples) -> DigitsScore:
        """Confidence and label spread for samples shaped ``(N, 1, 8, 8)`` or ``(N, 64)`` in [-1, 1]."""
        x = as_rows(samples)
        if x.shape[1] != 64:
            raise InvalidInput(f"samples must hold 64 values each (8x8 digits), got {x.shape[1]}")
        p = self.model.predict_proba(np.clip(x, -1, 1))
        fractions = np.bincount(p.argmax(1), minlength=10) / len(x)
        return DigitsScore(float(p.max(1).mean()), fractions)
