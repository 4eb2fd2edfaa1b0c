"""The interleaved sampler benchmark's statistics (benchmarks/interleaved.py): the distribution-free interval of the
median per-round ratio, the verdict drawn from it, and the rounds a time budget adds."""
import math
import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import interleaved  # noqa: E402


@pytest.mark.parametrize("n, k", [(6, 1), (9, 2), (10, 2), (20, 6), (25, 8), (30, 10)])
def test_median_interval_takes_the_sign_test_ranks(n, k):
    """The k-th smallest and k-th largest of n values, k from the sign test's tables (Conover, Practical
    Nonparametric Statistics, table A3): the largest k with P(Binomial(n, 1/2) < k) <= 0.025."""
    values = random.Random(n).sample(range(100, 100 + n), n)
    assert interleaved.median_interval([float(v) for v in values]) == (100 + k - 1, 100 + n - k)


def test_median_interval_needs_six_values():
    """Below six values even (min, max) covers the median with probability under 95% (1 - 2 / 2**5 for five)."""
    assert interleaved.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None


def test_median_interval_covers_the_median_as_often_as_the_binomial_says():
    """Monte Carlo: 4,000 samples of 15 log-normal values (median 1). With k = 4 the interval covers the median with
    probability 1 - 2 P(Binomial(15, 1/2) <= 3) = 1 - 2 * 576 / 32768 = 0.9648; the estimate's standard error is
    sqrt(0.9648 * 0.0352 / 4000) = 0.0029, and a rank off by one would give 0.9926 or 0.8815."""
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(4000, 15, generator=g, dtype=torch.float64).exp()
    covered = sum(low <= 1.0 <= high for low, high in (interleaved.median_interval(row.tolist()) for row in draws))
    expected = 1 - 2 * 576 / 32768
    assert abs(covered / 4000 - expected) < 4 * math.sqrt(expected * (1 - expected) / 4000)


@pytest.mark.parametrize("low, high, expected", [(1.01, 1.2, "faster"), (0.8, 0.99, "slower"), (0.9, 1.1, "level"),
                                                 (1.0, 1.1, "level"), (None, None, "level")])
def test_verdict_reads_the_interval(low, high, expected):
    assert interleaved.verdict({"ratio_low": low, "ratio_high": high}) == expected


class _Side:
    """A workload that records its calls."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def __call__(self):
        self.log.append(self.name)
        torch.zeros(1).add_(1)


def _fake_sides(monkeypatch, log):
    monkeypatch.setattr(interleaved, "_workload", lambda case, device, zero: _Side(case, log))


def test_time_pair_alternates_and_ends_on_an_even_count(monkeypatch):
    log = []
    _fake_sides(monkeypatch, log)
    taken = interleaved.time_pair("ours", "theirs", torch.device("cpu"), rounds=7)
    assert len(taken["ours"]) == len(taken["diffusers"]) == 8
    # one untimed call each, then ours first in even rounds, theirs first in odd ones
    assert log == ["ours", "theirs"] + ["ours", "theirs", "theirs", "ours"] * 4


def test_time_pair_adds_rounds_until_the_budget_is_spent(monkeypatch):
    clock = iter(range(10**6))
    monkeypatch.setattr(interleaved.time, "perf_counter", lambda: float(next(clock)))  # every call takes 1 s
    _fake_sides(monkeypatch, [])
    taken = interleaved.time_pair("ours", "theirs", torch.device("cpu"), rounds=6, seconds=31)
    # 2 s a round: 15 rounds spend 30 s, the 16th reaches 32 s and is even
    assert len(taken["ours"]) == 16 and sum(taken["ours"]) + sum(taken["diffusers"]) == 32
    assert len(interleaved.time_pair("ours", "theirs", torch.device("cpu"), rounds=10, seconds=3)["ours"]) == 10
    assert len(interleaved.time_pair("ours", "theirs", torch.device("cpu"), rounds=6, seconds=1e9,
                                     max_rounds=12)["ours"]) == 12
    # more least rounds than the budget's bound, odd: still an even count
    assert len(interleaved.time_pair("ours", "theirs", torch.device("cpu"), rounds=7, seconds=1e9,
                                     max_rounds=6)["ours"]) == 8
