"""Run one :class:`~benchmarks.matrix.Case`: build, guard, count FLOPs, time, derive the metrics.

The derived metrics go into ``benchmark.extra_info`` (so they land in the pytest-benchmark JSON)
and into the session's :class:`Rows`, which pairs each of our rows with its peer rows
(:mod:`benchmarks.pairing`: like for like only).
"""
from __future__ import annotations

import dataclasses
import gc
import time

import pytest
import torch
import torch._dynamo
import torch._inductor.utils
from torch.utils.flop_counter import FlopCounterMode

from . import hardware
from .matrix import SAMPLE_TOLERANCE, SOLVER_STEPS, TOLERANCE, Case
from .pairing import PAIR_KEYS, pair
from .workloads import build

PROBE_BATCH = 4  # the guard checks this many images: enough signal, a fraction of the cost
_FLOPS: dict[tuple, int] = {}
_REFERENCE_PROBES: dict[tuple, torch.Tensor] = {}


def count_flops(fn) -> int:
    """Matmul/conv FLOPs of one call of ``fn`` (forward and backward ops alike).

    Run on the meta device, attention takes PyTorch's math path, so it is counted as its two
    batched matmuls forward and four backward (no recomputation is counted).
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _net_kind(case: Case) -> str:
    if case.workload == "train":
        return "ours" if case.impl == "ours" else "diffusers"
    return "diffusers" if case.impl == "diffusers-unet" else "ours"


def flops_per_call(case: Case) -> int:
    """FLOPs of one timed call, counted on the fp32 eager build of the case on the meta device
    (the same ops without the arithmetic; compiled code would hide its ops from the counter).

    Training: one whole step, forward and backward. Sampling: one network forward over the batch (twice the
    batch with guidance: the probe makes the guided call) times the number of network calls (the sampler updates
    are elementwise: zero FLOPs either way).
    """
    if case.workload.startswith("qsample"):
        return 0
    key = (case.workload == "train", _net_kind(case), case.preset, case.batch, case.conditional, case.net_batch_factor)
    if key not in _FLOPS:
        reference = build(case.reference(), torch.device("meta"))
        if case.workload == "train":
            _FLOPS[key] = count_flops(reference)
        else:
            with torch.no_grad():
                _FLOPS[key] = count_flops(reference.probe)
    return _FLOPS[key] * (1 if case.workload == "train" else case.steps)


def guard(case: Case, workload, device: torch.device) -> dict:
    """Compare this configuration's probe output (network output on the first ``PROBE_BATCH`` inputs,
    or the whole noised batch for q(x_t | x_0)) with the fp32 eager build's; fail the row if too far."""
    if case.is_reference:
        return {"guard": "reference (fp32 eager)"}
    key = (case.workload, case.impl, case.preset, case.batch, str(device))
    if key not in _REFERENCE_PROBES:
        reference = build(case.reference(), device)
        _REFERENCE_PROBES[key] = reference.probe(PROBE_BATCH)
        del reference
    ref = _REFERENCE_PROBES[key]
    out = workload.probe(PROBE_BATCH)
    err = float((out - ref).norm() / ref.norm().clamp_min(1e-30))
    tol = TOLERANCE[case.precision]
    assert err <= tol, f"{case.id}: relative error {err:.2e} vs fp32 eager exceeds {tol:.0e}"
    info = {"guard": "passed", "guard_rel_err": err, "guard_tol": tol}
    if case.workload.startswith("qsample") and case.compile:
        # The timed path draws its own noise: check that the noise it implies is standard normal.
        eps = workload.implied_noise()
        mean, std = float(eps.mean()), float(eps.std())
        assert abs(mean) < 0.01 and abs(std - 1) < 0.01, f"{case.id}: implied noise mean {mean}, std {std}"
        info.update(guard_noise_mean=mean, guard_noise_std=std)
    return info


def sample_guard(case: Case, workload, device: torch.device) -> dict:
    """Whole-sample check of the solver peer rows (``dpmpp2m``, ``heun``): in fp32, diffusers' sample from our x_T
    must match ours (same ODE, same timesteps) within ``SAMPLE_TOLERANCE`` relative L2; both must be finite.
    Other rows of the new sampling workloads are checked for finiteness after timing (:func:`finite_guard`)."""
    if case.workload not in SOLVER_STEPS or case.impl != "diffusers" or case.precision != "fp32":
        return {}
    ours = build(dataclasses.replace(case, impl="ours"), device)
    ref, out = ours().float(), workload().float()
    del ours
    assert bool(torch.isfinite(ref).all()) and bool(torch.isfinite(out).all()), f"{case.id}: non-finite sample"
    err = float((out - ref).norm() / ref.norm().clamp_min(1e-30))
    assert err <= SAMPLE_TOLERANCE, (f"{case.id}: whole sample differs from ours from the same x_T by {err:.2e} "
                                     f"(relative L2) > {SAMPLE_TOLERANCE:.0e}")
    return {"guard_sample_rel_err": err, "guard_sample_tol": SAMPLE_TOLERANCE}


def finite_guard(case: Case, out) -> dict:
    """The new sampling workloads' timed output (the last round's sample) must be finite."""
    if case.workload not in (*SOLVER_STEPS, "ddim_cfg", "ddim_cond"):
        return {}
    assert bool(torch.isfinite(out).all()), f"{case.id}: the sample has non-finite values"
    return {"guard_sample_finite": True}


def cold_first_call(fn) -> float:
    """Seconds of the first call of compiled ``fn``, compiled from nothing: dynamo's caches reset and an empty
    inductor cache directory, so nothing the guard, an earlier row or an earlier run compiled is reused
    (the process's one-time imports are not counted)."""
    torch._dynamo.reset()
    utils = torch._inductor.utils
    fresh = getattr(utils, "fresh_cache", None) or utils.fresh_inductor_cache  # renamed in newer torch
    with fresh():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def run_case(case: Case, benchmark, device: torch.device, rows) -> dict:
    """Time ``case`` with pytest-benchmark and record its metrics; returns the row."""
    if case.is_peer:
        pytest.importorskip("diffusers")
    torch.manual_seed(0)
    benchmark.group = f"{case.workload} {case.preset} b{case.batch}"
    workload = build(case, device)
    info = {"case": case.id, **guard(case, workload, device), **sample_guard(case, workload, device)}
    flops = flops_per_call(case)
    gc.collect()

    def timed():
        out = workload()
        hardware.sync(device)  # CUDA: the timed call includes the device work
        return out

    if case.compile:  # the guard compiled already: measure a cold compile of the timed call
        info.update(first_call_s=cold_first_call(timed), compile_cold=True)
    out = benchmark.pedantic(timed, rounds=case.rounds, warmup_rounds=1, iterations=1)
    info.update(finite_guard(case, out))
    del out
    stats = benchmark.stats.stats
    row = derive(case, device, stats.min, stats.median, flops, getattr(workload, "bytes", 0),
                 getattr(workload, "drawn", 0))
    row.update(info)
    if "first_call_s" in row:
        row["compile_s"] = max(0.0, row["first_call_s"] - stats.median)
    benchmark.extra_info.update(row)
    rows.add(row, benchmark.extra_info)
    workload = None  # free the network and its buffers before the next row (timed() closes over it)
    gc.collect()
    return row


def derive(case: Case, device: torch.device, best: float, median: float, flops: int, nbytes: int,
           drawn: int = 0) -> dict:
    """Throughput from the best round (other processes only ever add time), plus the median for reference."""
    dev = str(device)
    row = {
        "workload": case.workload, "impl": case.impl, "preset": case.preset, "batch": case.batch,
        "precision": case.precision, "compile": case.compile or "eager", "channels_last": case.channels_last,
        "device": dev, "seconds_best": best, "seconds_median": median,
        "img_per_s": case.batch / best, "img_per_s_median": case.batch / median,
    }
    if case.steps > 1:
        row["steps_per_s"] = case.steps / best
    if flops:
        row.update(flops=flops, tflops=flops / best / 1e12)
    if nbytes:
        row.update(bytes=nbytes, gbs=nbytes / best / 1e9)
    if drawn:
        row["normals_drawn"] = drawn
    return rescale(row)


def rescale(row: dict) -> dict:
    """(Re)compute MFU and % of copy bandwidth from the session's current reference probes."""
    if "tflops" in row:
        peak = hardware.matmul_peak(row["device"], row["precision"])
        row.update(peak_tflops=peak, mfu=row["tflops"] / peak)
    if "gbs" in row:
        bw = hardware.copy_bandwidth(row["device"])
        row.update(copy_gbs=bw, pct_copy_bw=row["gbs"] / bw)
        if row.get("normals_drawn"):
            # Limit with the noise drawn inside: draw it at the generator's rate, then stream the bytes.
            rate = hardware.normal_rate(row["device"])
            bound_s = row["normals_drawn"] / (rate * 1e9) + row["bytes"] / (bw * 1e9)
            row.update(normal_rng_gsps=rate, bound_s=bound_s, pct_bound=bound_s / row["seconds_best"])
    return row


class Rows:
    """The rows of this session; each of ours gets ``ratio`` = our img/s / its like-for-like peer's, if any."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._extra: list[dict] = []

    def rescale(self) -> None:
        """Recompute every row's MFU and bandwidth share after the probes were measured again."""
        for r, extra in zip(self.rows, self._extra):
            rescale(r)
            extra.update({k: r[k] for k in ("peak_tflops", "mfu", "copy_gbs", "pct_copy_bw", "normal_rng_gsps",
                                            "bound_s", "pct_bound") if k in r})

    def add(self, row: dict, extra_info: dict) -> None:
        self.rows.append(row)
        self._extra.append(extra_info)
        for r, extra in zip(self.rows, self._extra):
            if r["impl"] == "ours":
                for k in PAIR_KEYS:
                    r.pop(k, None)
                    extra.pop(k, None)
                paired = pair(r, self.rows)
                r.update(paired)
                extra.update(paired)
