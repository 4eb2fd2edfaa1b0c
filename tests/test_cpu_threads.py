"""``AdaptiveThreads``: torch's thread count follows the cores other processes leave free, within the ceiling."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

import diffusion_core.cpu_threads as cpu_threads
from diffusion_core.cpu_threads import AdaptiveThreads, busy_cpu_seconds, threads_for_free_cores

STAT = """cpu  900 90 900 9000 90 9 9 9 0 0
cpu0 100 10 200 5000 50 1 2 3 40 0
cpu1 300 20 100 4000 40 4 5 6 0 0
cpu2 7 7 7 7 7 7 7 7 0 0
intr 12345 0 0
ctxt 999
"""


def test_busy_seconds_count_every_non_idle_field_of_the_listed_cpus():
    # cpu0: user 100 + nice 10 + system 200 + irq 1 + softirq 2 + steal 3 (idle 5000 and iowait 50 left out; guest
    # 40 is already inside user); cpu1 likewise: 300 + 20 + 100 + 4 + 5 + 6. Ticks of 1/100 s.
    assert busy_cpu_seconds({0}, STAT, 100.0) == pytest.approx(316 / 100)
    assert busy_cpu_seconds({0, 1}, STAT, 100.0) == pytest.approx((316 + 435) / 100)
    assert busy_cpu_seconds({5}, STAT, 100.0) == 0.0  # the aggregate "cpu" line is never counted


@pytest.mark.parametrize(("cores", "others", "ceiling", "expected"), [
    (2, 0.0, 2, 2), (2, 0.3, 2, 2), (2, 0.6, 2, 1), (2, 1.0, 2, 1), (2, 2.0, 2, 1), (2, 5.0, 2, 1),
    (16, 1.0, 8, 8), (16, 9.2, 8, 7), (2, 0.0, 1, 1)])
def test_threads_are_the_free_cores_rounded_within_one_and_the_ceiling(cores, others, ceiling, expected):
    assert threads_for_free_cores(cores, others, ceiling) == expected


class FakeMachine:
    """A /proc/stat, a clock and a process CPU clock that the test advances by hand."""

    def __init__(self, monkeypatch, cpus=(0, 1)):
        self.wall, self.busy, self.own = 100.0, {c: 0 for c in cpus}, 0.0
        monkeypatch.setattr(cpu_threads.os, "sched_getaffinity", lambda pid: set(cpus))
        monkeypatch.setattr(cpu_threads.time, "monotonic", lambda: self.wall)
        monkeypatch.setattr(cpu_threads.time, "process_time", lambda: self.own)
        monkeypatch.setattr(cpu_threads, "PROC_STAT", self)
        monkeypatch.setattr(cpu_threads.os, "sysconf", lambda name: 100)

    def is_file(self):
        return True

    def read_text(self):
        return "".join(f"cpu{c} {b} 0 0 1000 0 0 0 0 0 0\n" for c, b in self.busy.items())

    def run(self, seconds, ours, others):
        """``seconds`` pass; this process uses ``ours`` cores and other processes ``others`` cores."""
        self.wall += seconds
        self.own += ours * seconds
        per_cpu = round((ours + others) * seconds * 100 / len(self.busy))
        for c in self.busy:
            self.busy[c] += per_cpu


@pytest.fixture
def two_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def test_follows_other_load_and_restores_the_ceiling(monkeypatch, two_threads):
    machine = FakeMachine(monkeypatch)
    with AdaptiveThreads(interval=0.5) as threads:
        assert threads.enabled and threads.ceiling == 2
        machine.run(1.0, ours=1.2, others=0.8)  # a CPU-bound process appears beside our two spinning threads
        assert threads.update() == 1 and torch.get_num_threads() == 1
        machine.run(0.2, ours=1.0, others=0.0)
        assert threads.update() == 1  # not re-decided within the interval
        machine.run(1.0, ours=1.0, others=1.0)
        assert threads.update() == 1
        machine.run(1.0, ours=1.0, others=0.05)  # it has gone
        assert threads.update() == 2 and torch.get_num_threads() == 2
        machine.run(1.0, ours=0.7, others=1.3)  # two of them: still one thread, never zero
        assert threads.update() == 1
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("how", ["env", "argument", "device", "no-proc"])
def test_switched_off(monkeypatch, two_threads, how):
    machine = FakeMachine(monkeypatch)
    if how == "env":
        monkeypatch.setenv("DIFFUSION_CORE_ADAPT_THREADS", "0")
        threads = AdaptiveThreads()
    elif how == "argument":
        threads = AdaptiveThreads(enabled=False)
    elif how == "device":
        threads = AdaptiveThreads.for_device("cuda")
    else:
        monkeypatch.setattr(machine, "is_file", lambda: False)
        threads = AdaptiveThreads()
    with threads:
        machine.run(1.0, ours=1.0, others=1.0)
        assert threads.update() == 2 and torch.get_num_threads() == 2
    assert AdaptiveThreads.for_device("cpu").enabled is (how != "no-proc" and how != "env")


@pytest.mark.skipif(not (os.path.isfile("/proc/stat") and hasattr(os, "sched_setaffinity")), reason="needs Linux")
def test_a_real_busy_process_on_one_of_two_cpus_leaves_one_thread(two_threads):
    """Not faked: pin this process to two CPUs, pin a busy loop to one of them, and read the real counters."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    mine = os.sched_getaffinity(0)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(0, cpus[:2])
        os.sched_setaffinity(hog.pid, cpus[:1])
        time.sleep(0.5)  # the interpreter has started and is spinning
        with AdaptiveThreads(interval=0.5) as threads:
            time.sleep(0.7)  # this process idles; the other one keeps a whole CPU busy
            assert threads.update() == 1
    finally:
        hog.kill()
        hog.wait()
        os.sched_setaffinity(0, mine)


def test_a_recent_sample_is_the_next_baseline(monkeypatch, two_threads):
    """A second AdaptiveThreads entered within the interval of the first's sample starts from that sample (no new
    read of /proc/stat) and still decides from the load since then; one entered later reads again."""
    machine = FakeMachine(monkeypatch)
    reads = []
    real = machine.read_text
    monkeypatch.setattr(machine, "read_text", lambda: reads.append(1) or real())
    with AdaptiveThreads(interval=0.5):
        pass
    machine.run(0.3, ours=1.0, others=0.0)
    with AdaptiveThreads(interval=0.5) as threads:
        assert len(reads) == 1  # the first one's sample, 0.3 s old
        machine.run(0.5, ours=1.0, others=1.0)
        assert threads.update() == 1 and len(reads) == 2  # others kept a core busy over 0.8 s since that sample
    machine.run(0.6, ours=0.0, others=0.0)
    with AdaptiveThreads(interval=0.5):
        assert len(reads) == 3  # 0.6 s after the last sample: read again


@pytest.mark.parametrize("steps", [1, 4])
def test_a_sampler_adapts_from_its_second_step_and_a_one_step_run_reads_nothing(monkeypatch, two_threads, steps):
    """The sampling loop (diffusion_core.sampling.run) decides at each step's start from the load since its baseline;
    a one-step run has no later step, so it takes no baseline (no /proc/stat read) and runs on the ceiling."""
    import diffusion_core as dc

    machine = FakeMachine(monkeypatch)
    reads, seen = [], []
    real = machine.read_text
    monkeypatch.setattr(machine, "read_text", lambda: reads.append(1) or real())

    def net(x, t):  # each call: one second passes, another process keeping a core busy
        seen.append(torch.get_num_threads())
        machine.run(1.0, ours=1.0, others=1.0)
        return torch.zeros_like(x)

    path = dc.ContinuousVP.cosine()
    dc.sample_ddim(dc.Denoiser(net, path, "eps"), torch.randn(2, 3), dc.time_grid(path, steps), progress=False)
    if steps == 1:
        assert reads == [] and seen == [2]
    else:
        assert seen == [2, 1, 1, 1] and len(reads) == 4  # the baseline, then a decision at each later step
    assert torch.get_num_threads() == 2
