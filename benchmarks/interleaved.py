"""Our samplers against diffusers' scheduler loops on the same network, timed in alternation: every sampling row of
the matrix that has a like-for-like ``diffusers`` row (:mod:`benchmarks.pairing`), both built once, then rounds
of ours and theirs in turns (the order flips every round), so that whatever else slows the machine for a while
slows both sides alike. Writes a JSON file and prints a table.

    python -m benchmarks.interleaved --out benchmarks/results/interleaved/cpu-DATE.json [--quick] [--rounds 9]
        [--seconds 60]

Why a script beside the pytest-benchmark suite: the suite times each row's rounds one after the other, and on a
shared 2-core VM rows taken a minute apart move by 20-30%, far more than the per-call difference between two
sampler loops around one network. Here each row's figures are the ratio of the two sides' best rounds and the median
of the per-round ratios (each round's two timings taken seconds apart) with its 95% interval. The interval is
distribution-free (order statistics of the per-round ratios, from the binomial distribution of how many fall below
the median), and it decides the row's verdict: ours faster when the whole interval lies above 1, slower when it
lies below, else level within the machine's noise. A row runs at least ``--rounds`` rounds and, with
``--seconds S``, more until its rounds took S seconds (an even number, so each side leads as often).

The loop's own time per network call comes two ways. On the CPU the network is timed inside each of its calls
(:class:`_Timed`), and a round's seconds less its network's are what the loop adds around the real network, with the
caches as the network leaves them (``loop_*``). And each side runs once more on a network that returns zeros at once
(the ``overhead`` rows): the loop alone, warm.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from . import hardware
from .matrix import Case, cases
from .pairing import like_peer

__all__ = ["pairs", "time_pair", "median_interval", "verdict", "summarize", "loop_per_call", "table", "section"]

SAMPLING = ("step", "ddpm", "ddim", "dpmpp2m", "heun")
# The most rounds a time budget (--seconds) adds up to: even, so that each side leads as often.
MAX_ROUNDS = 100


def pairs(device_type: str, quick: bool) -> list[tuple[Case, Case]]:
    """Each of our sampling rows on ``device_type`` with its like-for-like diffusers row."""
    rows = [c for c in cases(device_type, quick) if c.device == device_type and c.workload in SAMPLING]
    out = []
    for ours in (c for c in rows if c.impl == "ours"):
        peer = like_peer(_row(ours), [_row(c) for c in rows])
        if peer is not None:
            out.append((ours, next(c for c in rows if c.id == peer["case"])))
    return out


def _row(c: Case) -> dict:
    """The keys :func:`~benchmarks.pairing.like_peer` compares, for a case not yet measured."""
    return {"case": c.id, "impl": c.impl, "device": c.device, "workload": c.workload, "preset": c.preset,
            "batch": c.batch, "precision": c.precision, "channels_last": c.channels_last,
            "compile": c.compile or "eager"}


class _Zeros(torch.nn.Module):
    """A network that returns zeros of its input's shape: what remains is the sampler loop's own time."""

    def forward(self, x, t, labels=None):
        return torch.zeros_like(x)


class _Timed(torch.nn.Module):
    """The network, adding up the seconds spent inside its calls (on the CPU a call returns when its work is done),
    so that a round's seconds less its network's are the sampler loop's own, taken around the real network, with
    the caches as the network leaves them. It adds a module call per network call to both sides alike."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network, self.seconds = network, 0.0

    def forward(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.network(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        return out


def _workload(case: Case, device: torch.device, zero_network: bool):
    """The built workload, its network replaced by zeros or (on the CPU) wrapped in :class:`_Timed`."""
    from .workloads import build

    w = build(case, device)
    if zero_network or device.type == "cpu":
        w.net = _Zeros() if zero_network else _Timed(w.net)
        if hasattr(w, "model_fn"):
            w.model_fn = w.net
    return w


def time_pair(ours: Case, peer: Case, device: torch.device, rounds: int, zero_network: bool = False,
              seconds: float = 0.0, max_rounds: int = MAX_ROUNDS) -> dict:
    """Seconds of alternating rounds of each side (after one untimed round each): ``rounds`` rounds, then more while
    the rounds so far took under ``seconds`` (at most ``max_rounds``), ending on an even count. The garbage collector
    runs once before the rounds and is off during them, as in ``timeit``: a collection inside one side's round is
    the other side's luck, and collecting before every round left each round's first operations cache-cold (a
    one-call round paid that on top of the call; the suite times its rounds back to back).

    Where the network is :class:`_Timed` (real networks on the CPU), ``ours_network`` and ``diffusers_network`` hold
    each round's seconds inside it."""
    torch.manual_seed(0)
    sides = {"ours": _workload(ours, device, zero_network), "diffusers": _workload(peer, device, zero_network)}
    for w in sides.values():
        w()
        hardware.sync(device)
    taken = {k: [] for k in sides}
    timed = {k: w.net for k, w in sides.items() if isinstance(getattr(w, "net", None), _Timed)}
    taken.update({f"{k}_network": [] for k in timed})
    gc.collect()
    gc.disable()
    try:
        r, spent = 0, 0.0
        while r < rounds or r % 2 or (spent < seconds and r < max_rounds):
            for k in (("ours", "diffusers") if r % 2 == 0 else ("diffusers", "ours")):
                if k in timed:
                    timed[k].seconds = 0.0
                start = time.perf_counter()
                sides[k]()
                hardware.sync(device)
                taken[k].append(time.perf_counter() - start)
                spent += taken[k][-1]
                if k in timed:
                    taken[f"{k}_network"].append(timed[k].seconds)
            r += 1
    finally:
        gc.enable()
    return taken


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free interval for the median of the distribution ``values`` were drawn from: the k-th smallest
    and the k-th largest value, k the largest with P(Binomial(n, 1/2) < k) <= (1 - level) / 2 (each value falls
    below the median with probability 1/2), so that it covers the median with probability at least ``level``.
    ``None`` when there are too few values for any such k (n < 6 at 0.95)."""
    n, tail = len(values), (1 - level) / 2
    k, below = 0, 0.0  # below = P(Binomial(n, 1/2) <= k - 1)
    while below + math.comb(n, k) / 2**n <= tail:
        below += math.comb(n, k) / 2**n
        k += 1
    if k == 0:
        return None
    ordered = sorted(values)
    return ordered[k - 1], ordered[n - k]


def verdict(row: dict) -> str:
    """``faster``, ``slower`` or ``level`` (within the noise) from a row's 95% interval of the median ratio."""
    if row["ratio_low"] is not None and row["ratio_low"] > 1:
        return "faster"
    if row["ratio_high"] is not None and row["ratio_high"] < 1:
        return "slower"
    return "level"


def summarize(seconds: dict[str, list[float]], calls: int) -> dict:
    """Speed of ours over diffusers' (> 1: ours faster) from the rounds' seconds: the ratio of the best rounds, the
    median of the per-round ratios with its 95% interval (:func:`median_interval`) and their range; the best seconds
    per network call of each side."""
    per_round = sorted(d / o for o, d in zip(seconds["ours"], seconds["diffusers"]))
    low, high = median_interval(per_round) or (None, None)
    return {"ratio_best": min(seconds["diffusers"]) / min(seconds["ours"]),
            "ratio_median": statistics.median(per_round), "ratio_low": low, "ratio_high": high,
            "ratio_min": per_round[0], "ratio_max": per_round[-1],
            "ours_per_call_s": min(seconds["ours"]) / calls, "diffusers_per_call_s": min(seconds["diffusers"]) / calls}


def loop_per_call(seconds: dict[str, list[float]], calls: int) -> dict[str, float] | None:
    """Each side's median over rounds of (round seconds - seconds inside the network) per network call: the loop's
    own time around the real network; ``None`` without the network's seconds (a CUDA run)."""
    if "ours_network" not in seconds:
        return None
    return {k: statistics.median((whole - net) / calls for whole, net in zip(seconds[k], seconds[f"{k}_network"]))
            for k in ("ours", "diffusers")}


def measure(device_type: str, quick: bool, rounds: int | None, seconds: float = 0.0,
            max_rounds: int = MAX_ROUNDS) -> list[dict]:
    """Every pair's row; the zero-network rounds get a quarter of ``seconds``."""
    device = torch.device(device_type)
    rows = []
    for ours, peer in pairs(device_type, quick):
        n = rounds or max(ours.rounds, 9)
        row = {"workload": ours.workload, "preset": ours.preset, "batch": ours.batch, "precision": ours.precision,
               "compile": ours.compile or "eager", "channels_last": ours.channels_last, "calls": ours.steps,
               "ours": ours.id, "peer": peer.id}
        row["seconds"] = time_pair(ours, peer, device, n, seconds=seconds, max_rounds=max_rounds)
        row["rounds"] = len(row["seconds"]["ours"])
        row.update(summarize(row["seconds"], ours.steps))
        loop = loop_per_call(row["seconds"], ours.steps)
        row.update(loop_ours_per_call_s=loop and loop["ours"], loop_diffusers_per_call_s=loop and loop["diffusers"])
        row["overhead_seconds"] = time_pair(ours, peer, device, n, zero_network=True, seconds=seconds / 4,
                                            max_rounds=max_rounds)
        over = summarize(row["overhead_seconds"], ours.steps)
        row.update(overhead_ours_per_call_s=over["ours_per_call_s"],
                   overhead_diffusers_per_call_s=over["diffusers_per_call_s"])
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _line(r: dict) -> str:
    setting = " ".join([r["precision"], *(["channels_last"] if r["channels_last"] else []), r["compile"]])
    return (f"| {r['workload']} | {r['preset']} | {r['batch']} | {setting} | {r['calls']} | {r['rounds']} "
            f"| {1e3 * r['ours_per_call_s']:.2f} | {1e3 * r['diffusers_per_call_s']:.2f} | {r['ratio_best']:.3f}x "
            f"| {r['ratio_median']:.3f}x | {_interval(r)} | {verdict(r)} "
            f"| {_micro(r.get('loop_ours_per_call_s'))} | {_micro(r.get('loop_diffusers_per_call_s'))} "
            f"| {1e6 * r['overhead_ours_per_call_s']:.0f} | {1e6 * r['overhead_diffusers_per_call_s']:.0f} |")


def _micro(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e6 * seconds:.0f}"


def _interval(r: dict) -> str:
    return "too few rounds" if r["ratio_low"] is None else f"{r['ratio_low']:.3f}-{r['ratio_high']:.3f}"


def table(result: dict) -> str:
    head = ("| Sampler | Preset | Batch | Setting | Network calls | Rounds | Ours ms / call | diffusers ms / call "
            "| Speed, best rounds | Speed, median round | 95% interval of the median | Verdict "
            "| Ours loop µs / call | diffusers loop µs / call | Ours loop µs / call, zero network "
            "| diffusers loop µs / call, zero network |\n"
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    return "\n".join([head, *(_line(r) for r in result["rows"])])


def section(result: dict) -> list[str]:
    """The Benchmarks page's section for one stored result."""
    rows = result["rows"]
    counts = {v: [r for r in rows if verdict(r) == v] for v in ("faster", "level", "slower")}
    result_line = (f"ours faster on {len(counts['faster'])} of {len(rows)} rows, level within the noise on "
                   f"{len(counts['level'])}, slower on {len(counts['slower'])}"
                   + "".join(f" ({_name(r)}, median {r['ratio_median']:.3f}x)"
                             for r in counts["slower"]))
    loops = _cheaper(rows, "overhead")
    network = ""
    if all(r.get("loop_ours_per_call_s") is not None for r in rows):
        loops = f"around the real network {_cheaper(rows, 'loop')}; around a zero network {loops}"
        inside = [statistics.median(d / o for o, d in zip(r["seconds"]["ours_network"],
                                                          r["seconds"]["diffusers_network"])) for r in rows]
        network = (" The network's own seconds, the same module on inputs of the same values on both sides, "
                   f"differed by a median per-round ratio of {min(inside):.3f} to {max(inside):.3f} across the rows "
                   "(diffusers' over ours): the machine's noise, and it, not the loops, moves the rows' speeds "
                   "around 1.")
    return ["## Sampling against diffusers, interleaved", "",
            f"Every sampling row with a like-for-like diffusers row (their scheduler loop calling our network), "
            f"both sides built once and timed in alternating rounds on {result['machine']}, {result['threads']} "
            f"torch threads (load average {result['loadavg_start'][0]:.2f} at the start, "
            f"{result['loadavg_end'][0]:.2f} at the end). Command: `python -m benchmarks.interleaved "
            f"{' '.join(result['argv'])}`. Speed is diffusers' seconds over ours (above 1: ours faster). *Loop µs / "
            "call*: the median round's seconds outside the network (timed inside each network call) per network "
            "call, what each loop adds to the same network with the caches as the network leaves them; *zero "
            "network*: the same loops, warm, around a network that returns zeros. *Verdict*: from the "
            "distribution-free 95% interval of the median per-round ratio (faster: the interval above 1; slower: "
            "below 1; level: it holds 1); it covers the noise between this run's rounds, not the drift between runs "
            f"(see benchmarks/README.md). Result: {result_line}. The loops alone: {loops}.{network} A row's speed "
            "is mostly the network's, the same on both sides: where the rounds' ratios spread wider than the loops "
            "differ, a level row is what the measurement can say, and its best-round ratio says which side the "
            "machine favoured more than which loop is faster.", "", table(result), ""]


def _name(r: dict) -> str:
    setting = "" if r["compile"] == "eager" else " compiled" if r["compile"] == "default" else f" {r['compile']}"
    return f"{r['workload']} {r['preset']} b{r['batch']} {r['precision']}{setting}"


def _cheaper(rows: list[dict], figure: str) -> str:
    """Which loop is the cheaper per network call by ``figure`` (``loop``: around the real network, ``overhead``:
    around a zero network), naming the rows where ours is the dearer."""
    dearer = [r for r in rows if r[f"{figure}_ours_per_call_s"] > r[f"{figure}_diffusers_per_call_s"]]
    if not dearer:
        return "ours is the cheaper on every row"
    return (f"ours is the cheaper on {len(rows) - len(dearer)} of {len(rows)} rows; dearer on "
            + ", ".join(f"{_name(r)} ({1e6 * r[f'{figure}_ours_per_call_s']:.0f} "
                        f"against {1e6 * r[f'{figure}_diffusers_per_call_s']:.0f} µs)" for r in dearer))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="the matrix's quick rows only")
    parser.add_argument("--rounds", type=int, default=None,
                        help="least rounds per side (default: the row's, at least 9); 6 or more")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="more rounds until a row's rounds took this long (the zero-network rounds a quarter)")
    parser.add_argument("--max-rounds", type=int, default=MAX_ROUNDS,
                        help="the most rounds --seconds adds up to (even)")
    ns = parser.parse_args(argv)
    if ns.rounds is not None and ns.rounds < 6:
        parser.error(f"--rounds must be at least 6 (fewer give no 95% interval of the median), got {ns.rounds}")
    if ns.max_rounds < 6 or ns.max_rounds % 2:
        parser.error(f"--max-rounds must be an even number, 6 or more, got {ns.max_rounds}")
    if not ns.seconds >= 0:
        parser.error(f"--seconds must be 0 or more, got {ns.seconds}")
    load_start = os.getloadavg()
    rows = measure(ns.device, ns.quick, ns.rounds, ns.seconds, ns.max_rounds)
    result = {"kind": "interleaved", "rows": rows, "machine": hardware.cpu_description(),
              "threads": torch.get_num_threads(),
              "torch": torch.__version__, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
              "argv": sys.argv[1:] if argv is None else argv}
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {ns.out}")


if __name__ == "__main__":
    main()
