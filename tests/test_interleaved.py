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


class _NetworkSide(_Side):
    """A workload that calls its (timed) network ``calls`` times per round."""

    def __init__(self, name, log, calls):
        super().__init__(name, log)
        self.net, self.calls = interleaved._Timed(torch.nn.Identity()), calls

    def __call__(self):
        for _ in range(self.calls):
            self.net(torch.zeros(1))


def test_time_pair_takes_the_seconds_inside_the_network_apart(monkeypatch):
    """With a fake clock that moves 1 s at each reading: a round reads it at its start and end, the network at each
    call's start and end. Ours calls the network twice a round (round 5 s, network 2 s: (5 - 2) / 2 = 1.5 s of loop
    per call), theirs once (3 s and 1 s: 2 s)."""
    clock = iter(range(10**6))
    monkeypatch.setattr(interleaved.time, "perf_counter", lambda: float(next(clock)))
    monkeypatch.setattr(interleaved, "_workload",
                        lambda case, device, zero: _NetworkSide(case, [], 2 if case == "ours" else 1))
    taken = interleaved.time_pair("ours", "theirs", torch.device("cpu"), rounds=6)
    assert taken["ours"] == [5.0] * 6 and taken["ours_network"] == [2.0] * 6
    assert taken["diffusers"] == [3.0] * 6 and taken["diffusers_network"] == [1.0] * 6
    assert interleaved.loop_per_call(taken, 2) == {"ours": 1.5, "diffusers": 1.0}


def test_loop_per_call_is_the_median_round_less_its_network():
    seconds = {"ours": [1.0, 2.0, 9.0], "ours_network": [0.5, 0.5, 0.5],
               "diffusers": [4.0, 4.0, 4.0], "diffusers_network": [1.0, 3.0, 2.0]}
    assert interleaved.loop_per_call(seconds, 1) == {"ours": 1.5, "diffusers": 2.0}
    assert interleaved.loop_per_call({"ours": [1.0], "diffusers": [1.0]}, 1) is None  # no network timed (CUDA)


def test_a_cpu_workload_is_timed_inside_its_network_and_gives_the_same_output(monkeypatch):
    """On the CPU the built workload's network is wrapped: the sampler sees the same outputs (the wrapper only
    reads the clock), and the seconds inside it are counted."""
    from benchmarks import workloads

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 3)

        def forward(self, x, t):
            return self.linear(x) * t.reshape(-1, 1)

    class Built:
        def __init__(self):
            self.net = Net()
            self.model_fn = self.net

        def __call__(self):
            return self.model_fn(torch.ones(2, 3), torch.tensor([1.0, 2.0]))

    monkeypatch.setattr(workloads, "build", lambda case, device: Built())
    plain = Built()
    timed = interleaved._workload("ours", torch.device("cpu"), zero_network=False)
    timed.net.network.load_state_dict(plain.net.state_dict())
    assert isinstance(timed.net, interleaved._Timed) and timed.model_fn is timed.net
    assert torch.equal(timed(), plain()) and timed.net.seconds > 0
    zero = interleaved._workload("ours", torch.device("cpu"), zero_network=True)
    assert torch.equal(zero(), torch.zeros(2, 3))
    assert isinstance(interleaved._workload("ours", torch.device("meta"), zero_network=False).net, Net)
