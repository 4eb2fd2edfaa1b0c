"""Share the CPU: use as many torch threads as other processes leave cores free, re-decided as they come and go.

On a CPU, PyTorch runs each operation on ``torch.get_num_threads()`` OpenMP threads that meet at a barrier after
every parallel region and spin there while they wait. When another program keeps a core busy, one of our
threads is descheduled now and then, and every other thread spins at the barrier until it runs again: with every
core in use the run becomes several times slower, while one thread fewer (a whole core, undisturbed) loses only
that thread's share (the README's "A busy CPU" gives the measured table).

:class:`AdaptiveThreads` measures, from the kernel's per-CPU counters (``/proc/stat``) minus this process's own
CPU time, how many of the cores this process may run on (its affinity) the rest of the machine kept busy over
the last ``interval`` seconds, and sets ``torch.set_num_threads`` to the cores left free, between 1 and the
thread count it started with (so ``OMP_NUM_THREADS`` or an earlier ``torch.set_num_threads`` stays the
ceiling). On exit it restores that count. ``diffusion-core train`` and ``sample`` and every sampler use it on
the CPU; a hand-written training loop can do the same::

    with AdaptiveThreads() as threads:
        for batch in loader:
            threads.update()  # cheap: reads /proc/stat at most every `interval` seconds
            ...

It does nothing where the counters are missing (not Linux) and when ``DIFFUSION_CORE_ADAPT_THREADS=0``; then
pick the thread count yourself (``torch.set_num_threads``), or start Python with ``OMP_WAIT_POLICY=PASSIVE``,
which makes waiting threads sleep instead of spin (it must be set before torch is imported, and costs some
speed on an idle machine).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

__all__ = ["AdaptiveThreads", "busy_cpu_seconds", "threads_for_free_cores"]

ENV_SWITCH = "DIFFUSION_CORE_ADAPT_THREADS"
PROC_STAT = Path("/proc/stat")
# Fields of a /proc/stat cpu line: user nice system idle iowait irq softirq steal (guest time is inside user).
_IDLE_FIELDS = (3, 4)
_COUNTED_FIELDS = 8
# The last counters sample taken (of which /proc/stat, over which CPUs, the sample), shared by every AdaptiveThreads.
_LAST: tuple[object, frozenset[int], tuple[float, float, float] | None] = (None, frozenset(), None)


def busy_cpu_seconds(cpus: set[int], stat_text: str, ticks_per_second: float) -> float:
    """CPU seconds the listed CPUs spent not idle (user, nice, system, irq, softirq, steal), from the text of
    ``/proc/stat``. Time stolen by a hypervisor counts as busy: it is not ours to use either."""
    busy = 0
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        values = [int(v) for v in rest.split()[:_COUNTED_FIELDS]]
        busy += sum(v for i, v in enumerate(values) if i not in _IDLE_FIELDS)
    return busy / ticks_per_second


def threads_for_free_cores(cores: int, others_busy: float, ceiling: int) -> int:
    """Threads to run when ``others_busy`` of ``cores`` cores are kept busy by other processes: the free cores,
    rounded to the nearest whole one, at least 1 and at most ``ceiling``."""
    return max(1, min(ceiling, int(cores - others_busy + 0.5)))


class AdaptiveThreads:
    """Matches ``torch.get_num_threads()`` to the cores other processes leave free (see the module's docstring).

    ``enabled=False`` (or a device that is not the CPU, or no ``/proc/stat``) makes every method a no-op.
    """

    def __init__(self, *, enabled: bool = True, interval: float = 0.5) -> None:
        self.enabled = (enabled and os.environ.get(ENV_SWITCH, "1") != "0" and hasattr(os, "sched_getaffinity")
                        and PROC_STAT.is_file())
        self.interval = interval
        self.ceiling = torch.get_num_threads()
        self._mark: tuple[float, float, float] | None = None
        if self.enabled:
            self.cpus = set(os.sched_getaffinity(0))
            self.ticks = float(os.sysconf("SC_CLK_TCK"))

    @classmethod
    def for_device(cls, device: torch.device | str) -> AdaptiveThreads:
        """Enabled for the CPU only: on a GPU, torch's CPU threads are not what bounds the speed."""
        return cls(enabled=torch.device(device).type == "cpu")

    def __enter__(self) -> AdaptiveThreads:
        if self.enabled:
            self._mark = self._recent() or self._sample()
        return self

    def _recent(self) -> tuple[float, float, float] | None:
        """The last sample any instance took of this machine's counters, if it is less than ``interval`` old: a
        baseline as good as a new one, without reading ``/proc/stat`` again (a sampler called once per batch
        enters here each call)."""
        source, cpus, mark = _LAST
        if source is PROC_STAT and cpus == self.cpus and mark is not None and \
                0 <= time.monotonic() - mark[0] < self.interval:
            return mark
        return None

    def __exit__(self, *exc) -> None:
        if self.enabled and torch.get_num_threads() != self.ceiling:
            torch.set_num_threads(self.ceiling)

    def _sample(self) -> tuple[float, float, float]:
        """(wall clock, busy CPU seconds of the allowed CPUs, this process's CPU seconds), kept for
        :meth:`_recent`."""
        global _LAST
        mark = (time.monotonic(), busy_cpu_seconds(self.cpus, PROC_STAT.read_text(), self.ticks), time.process_time())
        _LAST = (PROC_STAT, frozenset(self.cpus), mark)
        return mark

    def update(self) -> int:
        """Re-decide the thread count if ``interval`` seconds passed since the last decision; returns it."""
        if not self.enabled:
            return torch.get_num_threads()
        if self._mark is None:
            self._mark = self._sample()
        if time.monotonic() - self._mark[0] < self.interval:
            return torch.get_num_threads()
        now = self._sample()
        wall = now[0] - self._mark[0]
        others = max(0.0, (now[1] - self._mark[1]) - (now[2] - self._mark[2])) / wall
        self._mark = now
        threads = threads_for_free_cores(len(self.cpus), others, self.ceiling)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads
