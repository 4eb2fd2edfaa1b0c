"""What the device can do, measured in the same session as the benchmarks.

* :func:`copy_bandwidth`: bytes read + written per second by ``dst.copy_(src)`` on buffers far
  larger than the last-level cache (the reference for memory-bound ops such as q(x_t | x_0)).
* :func:`matmul_peak`: the best FLOP/s of a square ``a @ b`` in a given dtype, over sizes that
  double until one call takes long enough to time (the reference for MFU).
* :func:`normal_rate`: standard normals per second from ``normal_()`` (with the copy bandwidth, the
  limit of q(x_t | x_0) when it draws its own noise).

Each probe is the best of as many calls as fit in about a second: on the shared 2-core development VM
single calls of the same matmul varied from 150 to 250 GFLOP/s. The suite measures them all when the session starts and again when it ends (:func:`remeasure`); the
reference is the best of those measurements, and every row of a run is divided by the same
numbers (the rows are recomputed at the end). On a CPU without AVX512-BF16/AMX, bf16 matmuls are emulated, and fp16 matmuls have no
fast kernel at all; the probes measure whatever the device really does.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Callable

import torch

__all__ = [
    "DTYPES", "sync", "time_call", "best_time", "copy_bandwidth", "matmul_peak", "cpu_model", "cpu_description",
    "load_average",
    "native_bf16_cpu", "device_description", "probe_summary", "remeasure", "HISTORY", "normal_rate",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], device: torch.device, budget_s: float = 1.0) -> float:
    """Best wall time of as many calls of ``fn`` as fit in about ``budget_s`` (at least 3, at most 100).

    On a shared (virtual) CPU single calls vary by 1.5x; the best of many is the machine's capability.
    """
    first = time_call(fn, device, repeats=1)
    return min(first, time_call(fn, device, repeats=max(2, min(99, int(budget_s / first)))))


def time_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (after one warm-up), synchronizing the device."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


# The reference values: the best of this session's measurements (other processes only slow a probe down).
_BANDWIDTH: dict[str, float] = {}
_PEAKS: dict[tuple[str, str], float] = {}
HISTORY: list[dict] = []  # every measurement, in order: {"probe", "device", "dtype", "value", "when"}


def copy_bandwidth(device_str: str) -> float:
    """Copy bandwidth of ``device_str`` in GB/s (1e9 bytes/s), counting bytes read plus bytes written.

    Measured on first use; :func:`remeasure` measures again and keeps the best value.
    """
    if device_str not in _BANDWIDTH:
        _measure_bandwidth(device_str, "first use")
    return _BANDWIDTH[device_str]


def _measure_bandwidth(device_str: str, when: str) -> None:
    device = torch.device(device_str)
    # 256 MiB per buffer on a GPU (well past its L2), 128 MiB on a CPU (past any L3).
    nbytes = (256 if device.type == "cuda" else 128) * 2**20
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    seconds = best_time(lambda: dst.copy_(src), device)
    value = 2 * nbytes / seconds / 1e9
    HISTORY.append({"probe": "copy_bandwidth_gbs", "device": device_str, "value": value, "when": when})
    _BANDWIDTH[device_str] = max(value, _BANDWIDTH.get(device_str, 0.0))


_NORMAL: dict[str, float] = {}


def normal_rate(device_str: str) -> float:
    """Standard-normal draws per second (``buf.normal_()``, fp32) of torch's default generator, in 1e9/s.

    q(x_t | x_0) with its noise drawn inside cannot beat drawing that noise plus streaming the data, so
    this is the second half of its limit (on a CPU the generator, not the memory, is the bottleneck).
    """
    if device_str not in _NORMAL:
        _measure_normal(device_str, "first use")
    return _NORMAL[device_str]


def _measure_normal(device_str: str, when: str) -> None:
    device = torch.device(device_str)
    buf = torch.empty((256 if device.type == "cuda" else 128) * 2**20 // 4, dtype=torch.float32, device=device)
    seconds = best_time(lambda: buf.normal_(), device)
    value = buf.numel() / seconds / 1e9
    HISTORY.append({"probe": "normal_rng_gsamples", "device": device_str, "value": value, "when": when})
    _NORMAL[device_str] = max(value, _NORMAL.get(device_str, 0.0))


def matmul_peak(device_str: str, dtype_name: str) -> float:
    """Best measured ``a @ b`` rate in TFLOP/s for ``dtype_name`` (``fp32``, ``bf16``, ``fp16``) on ``device_str``.

    Sizes start at 256 and double until one multiply takes at least 0.25 s (or the size cap:
    8192 on a GPU, 2048 on a CPU); the best rate over the sizes is the peak. fp32 on CUDA is
    measured with TF32 allowed only when the session allows it (``torch.backends.cuda.matmul``).
    """
    if (device_str, dtype_name) not in _PEAKS:
        _measure_peak(device_str, dtype_name, "first use")
    return _PEAKS[device_str, dtype_name]


def _measure_peak(device_str: str, dtype_name: str, when: str) -> None:
    device, dtype = torch.device(device_str), DTYPES[dtype_name]
    cap = 8192 if device.type == "cuda" else 2048
    best, n = 0.0, 256
    gen = torch.Generator(device).manual_seed(0)
    while n <= cap:
        a = torch.randn(n, n, generator=gen, device=device).to(dtype)
        b = torch.randn(n, n, generator=gen, device=device).to(dtype)
        seconds = best_time(lambda: torch.mm(a, b), device)
        best = max(best, 2 * n**3 / seconds / 1e12)
        if seconds >= 0.25:
            break
        n *= 2
    HISTORY.append({"probe": "matmul_peak_tflops", "device": device_str, "dtype": dtype_name, "value": best, "when": when})
    _PEAKS[device_str, dtype_name] = max(best, _PEAKS.get((device_str, dtype_name), 0.0))


def remeasure(device_str: str, when: str) -> None:
    """Measure the copy bandwidth, the normal generator and every dtype's matmul peak again; keep the best."""
    _measure_bandwidth(device_str, when)
    _measure_normal(device_str, when)
    for name in DTYPES:
        _measure_peak(device_str, name, when)


def native_bf16_cpu() -> bool:
    """True when the CPU has bf16 matmul instructions (AVX512-BF16 or AMX); otherwise bf16 is emulated."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return bool(amx or avx512_bf16)


def cpu_model() -> str:
    """The CPU's model name (from lscpu when available)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def cpu_description() -> str:
    """The CPU's model name and core count, as the quality and interleaved results store them."""
    return f"{cpu_model()}, {os.cpu_count()} cores"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other processes share the cores), or None."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def device_description(device: torch.device) -> str:
    """One line naming the device: GPU name, or CPU model with cores and torch threads."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    bf16 = "native bf16" if native_bf16_cpu() else "bf16 emulated (no AVX512-BF16/AMX)"
    return f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {bf16}"


def probe_summary(device: torch.device) -> dict:
    """The probes measured so far this session for ``device`` (nothing new is measured here)."""
    dev = str(device)
    out = {
        "device": dev,
        "description": device_description(device),
        "matmul_peak_tflops": {k[1]: round(v, 5) for k, v in _PEAKS.items() if k[0] == dev},
    }
    if dev in _BANDWIDTH:
        out["copy_bandwidth_gbs"] = round(_BANDWIDTH[dev], 3)
    if dev in _NORMAL:
        out["normal_rng_gsamples_per_s"] = round(_NORMAL[dev], 4)
    out["measurements"] = [m for m in HISTORY if m["device"] == dev]
    return out
