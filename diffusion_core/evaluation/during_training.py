"""``diffusion-core train --eval-every``'s measurement: the trainer draws the samples (with its path's default
sampler, at a host sync point, on rank 0) and hands them to :func:`training_evaluator`, which measures them as
``eval`` would against the run's built-in dataset, at the one size N = the samples' count (at most half the
reference, the other half giving the real-vs-real floor), and returns the ``metrics.jsonl`` record.

The trainer cannot import this package (train sits below it), so the caller passes the function to
:func:`~diffusion_core.train.train` (``evaluator=``); the command line does."""
from __future__ import annotations

import time

import numpy as np

from ..train.config import TrainConfig
from ..train.run_log import EvalRecord
from .inputs import Examples, load_reference
from .measure import EvalOptions, evaluate_examples

__all__ = ["training_evaluator"]


def training_evaluator(samples: np.ndarray, config: TrainConfig, *, step: int, sample_s: float) -> EvalRecord:
    """The :class:`~diffusion_core.train.run_log.EvalRecord` of ``samples`` (``(n, *shape)``, the models' scale)
    of the run ``config`` describes, after ``step`` steps; ``sample_s``: the seconds drawing them took."""
    started = time.perf_counter()
    reference = load_reference(config.dataset.value, n_points=2 * len(samples))  # 2-D sets: seed 1, not training's
    n = min(len(samples), len(reference.data) // 2)
    report = evaluate_examples(Examples(samples, f"step {step}"), reference, EvalOptions(sizes=(n,), max_n=n))
    at = {m.name: m.at_n[0] for m in report.metrics}

    def value(name: str) -> float | None:
        return at[name].value if name in at else None

    return EvalRecord(step=step, features=report.feature_network, n=n, fd=at["FD"].value, fd_floor=at["FD"].floor,
                      kid=at["KID"].value, kid_std_error=at["KID"].std_error, kid_floor=at["KID"].floor,
                      precision=at["precision"].value, recall=at["recall"].value, sw1=value("SW1"),
                      mmd2=value("MMD2"), w2=value("W2"), sample_s=sample_s, measure_s=time.perf_counter() - started)
