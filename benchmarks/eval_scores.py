"""The quality benchmarks' measure: one call of :func:`diffusion_core.evaluation.evaluate_examples` (what
``diffusion-core eval`` runs) per sample set, against the built-in reference, at one sample size N, each metric
next to its real-vs-real floor at the same N (held-out real data against the same reference half).

Digits: FD, KID (± its standard error), precision and recall in the ``digits-mlp`` features; N = 898, the
held-out half of the 1,797 real digits. 2-D points: sliced Wasserstein-1, exact W2 and the Gaussian-kernel MMD²
on the coordinates; N = 2,000 (the reference is 4,000 fresh draws of the data, seed 1, split in two halves).
"""
from __future__ import annotations

import dataclasses

import torch

from diffusion_core import __version__
from diffusion_core.evaluation import EvalOptions, Examples, evaluate_examples, load_reference

# the evaluation package's metric name -> the key the results store (with ``_floor``, and ``_se`` for KID)
DIGITS_METRICS = {"FD": "fd", "KID": "kid", "precision": "precision", "recall": "recall"}
POINTS_METRICS = {"SW1": "sw1", "W2": "w2", "MMD2": "mmd2"}
POINTS_N = 2000  # the package's default N_max (--max-n)


class Scorer:
    """Scores sample sets of one built-in data set (``digits`` or a 2-D set) with the evaluation package."""

    def __init__(self, dataset: str, num_samples: int) -> None:
        self.dataset = dataset
        self.reference = load_reference(dataset, n_points=2 * num_samples)
        self.points = self.reference.shape == (2,)
        self.n = min(num_samples, len(self.reference.data) // 2)  # the reference's halves bound N
        self.options = EvalOptions(sizes=(self.n,), max_n=self.n)
        self.metrics = POINTS_METRICS if self.points else DIGITS_METRICS
        self.description: dict | None = None

    def __call__(self, x: torch.Tensor) -> dict:
        """The stored scores of one sample set: each metric at N and its floor (``fd_ratio`` = FD / floor)."""
        report = evaluate_examples(Examples(x.detach().double().numpy(), "samples"), self.reference, self.options)
        if report.skipped:
            raise RuntimeError(f"the evaluation left metrics out: {report.skipped} (pip install pot for W2)")
        out = {}
        for name, key in self.metrics.items():
            (at,) = report.metric(name).at_n
            out[key], out[f"{key}_floor"] = at.value, at.floor
            if at.std_error is not None:
                out[f"{key}_se"], out[f"{key}_floor_se"] = at.std_error, at.floor_std_error
        if "fd" in out:
            out["fd_ratio"] = out["fd"] / out["fd_floor"]
        self.description = {
            "tool": "diffusion_core.evaluation.evaluate_examples (diffusion-core eval)",
            "diffusion_core": __version__, "reference": self.dataset, "n": self.n,
            "num_reference": report.num_reference, "num_floor": report.num_floor,
            "feature_network": report.feature_network, "feature_description": report.feature_description,
            "metrics": {m.name: m.description for m in report.metrics if m.name in self.metrics},
            "options": dataclasses.asdict(self.options)}
        return out
