"""Sample quality of trained models: the bars of the networks-and-training issue.

These train real models (minutes on 2 CPU cores), so they are marked slow: plain `pytest` (and CI) runs
them, `pytest -m "not slow"` skips them. Training time is printed for the record, never asserted (speed
goals live in the benchmarks). The sample sizes are the issue's: 1,000 digits, 5,000 points.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from diffusion_core import ddim_sample
from diffusion_core.metrics import DigitsClassifier, frechet_distance, sliced_wasserstein
from diffusion_core.train import Dataset, TrainConfig, digits, toy_data, train

pytestmark = pytest.mark.slow


def test_default_digits_model_samples_are_recognizable(tmp_path, capsys):
    # `diffusion-core train`'s defaults, with precision pinned to fp32: "auto" is fp32 on CPUs without native bf16
    # and bf16 on those with it, and a test's outcome must not depend on which CPU runs it.
    config = TrainConfig(out_dir=str(tmp_path / "digits"), precision="fp32")
    start = time.perf_counter()
    result = train(config, progress=False)
    seconds = time.perf_counter() - start

    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(1000, 1, 8, 8, generator=g)
    samples = ddim_sample(result.ema_model, config.diffusion(), x_T, steps=50, progress=False).sample.clamp(-1, 1)

    real = digits()
    perm = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    half = len(real) // 2
    fd_halves = frechet_distance(real[perm[:half]], real[perm[half:]])
    fd_samples = frechet_distance(samples, real)
    score = DigitsClassifier().score(samples)
    with capsys.disabled():
        print(
            f"\n[digits] train {seconds:.0f}s, confidence {score.mean_confidence:.3f}, "
            f"min class fraction {score.class_fractions.min():.3f}, FD {fd_samples:.2f} vs halves {fd_halves:.2f}"
        )
    # A confident linear classifier alone can be fooled (noise gets confident labels), so all three must hold.
    assert score.mean_confidence >= 0.85
    assert score.class_fractions.min() >= 0.03, score.class_fractions
    assert fd_samples <= 4 * fd_halves


def test_swiss_roll_matches_held_out_data(tmp_path, capsys):
    config = TrainConfig(
        dataset=Dataset.SWISS_ROLL, model="mlp", steps=3000, batch_size=256, lr=1e-3,
        warmup_steps=100, out_dir=str(tmp_path / "roll"), checkpoint_every=3000, precision="fp32",
    )
    start = time.perf_counter()
    result = train(config, progress=False)
    seconds = time.perf_counter() - start

    x_T = torch.randn(5000, 2, generator=torch.Generator().manual_seed(1))
    samples = ddim_sample(result.ema_model, config.diffusion(), x_T, steps=50, progress=False).sample
    held_out = toy_data(Dataset.SWISS_ROLL, 5000, torch.Generator().manual_seed(101))  # training used seed 0
    other = toy_data(Dataset.SWISS_ROLL, 5000, torch.Generator().manual_seed(202))
    sw_samples = sliced_wasserstein(samples, held_out)
    sw_data = sliced_wasserstein(other, held_out)
    with capsys.disabled():
        print(f"\n[swiss roll] train {seconds:.0f}s, SW1 samples {sw_samples:.4f} vs data {sw_data:.4f}")
    assert np.isfinite(sw_samples)
    assert sw_samples <= 2 * sw_data
