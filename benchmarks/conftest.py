"""pytest configuration of the benchmark suite (``pytest benchmarks``; plain ``pytest`` runs tests/ only).

Options:
    --bench-device auto|cpu|cuda   where to run (auto: CUDA when present, else the CPU)
    --bench-quick                  only the smoke subset (the rows marked ``quick``)

Each test function names its workloads with ``@pytest.mark.workloads(...)``; the rows come from
:mod:`benchmarks.matrix`, and the other device's rows are collected as skipped. The session ends
with a summary table (configuration, img/s, MFU or % of copy bandwidth, ratio to the like-for-like
peer, ratio to diffusers' best row), the target checks and the head-to-head lines (see
:mod:`benchmarks.pairing`); the pytest-benchmark JSON gets the hardware probes and the load average.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys

import pytest
import torch

from . import hardware, pairing, summary
from .matrix import cases
from .runner import Rows, run_case

_ROWS = Rows()
_START_LOAD = hardware.load_average()
# Environment variables that change CPU timings; recorded with the results.
_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "KMP_AFFINITY", "GOMP_SPINCOUNT",
        "CUDA_VISIBLE_DEVICES", "TORCHINDUCTOR_CACHE_DIR", "DIFFUSION_CORE_ADAPT_THREADS")
# Every row, ours and the peers', runs on the same fixed thread count: our samplers' adaptive thread count
# (diffusion_core.cpu_threads) is off unless the caller sets the variable.
os.environ.setdefault("DIFFUSION_CORE_ADAPT_THREADS", "0")


def pytest_addoption(parser):
    group = parser.getgroup("diffusion_core benchmarks")
    group.addoption("--bench-device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="device to benchmark (auto: CUDA when available, else the CPU)")
    group.addoption("--bench-quick", action="store_true", default=False,
                    help="run only the quick smoke subset (same as selecting -m quick)")
    group.addoption("--bench-threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice, one per core)")


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: the smoke subset of the benchmark matrix")
    config.addinivalue_line("markers", "workloads(*names): which matrix workloads a benchmark test runs")
    # diffusers and torch internals warn about deprecations that say nothing about the timings.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore::FutureWarning")
    if config.getoption("--bench-threads"):
        torch.set_num_threads(config.getoption("--bench-threads"))
    if bench_device(config).type == "cuda":
        # fp32 means IEEE fp32 everywhere, so the fp32 rows and the fp32 matmul peak agree.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def bench_device(config) -> torch.device:
    choice = config.getoption("--bench-device")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--bench-device cuda but CUDA is not available")
    return torch.device(choice)


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("workloads")
    if marker is None or "case" not in metafunc.fixturenames:
        return
    device = bench_device(metafunc.config)
    params = []
    for case in cases(device.type, metafunc.config.getoption("--bench-quick")):
        if case.workload not in marker.args:
            continue
        marks = [pytest.mark.quick] if case.quick else []
        if case.device != device.type:
            marks.append(pytest.mark.skip(reason=f"{case.device} matrix (running on {device.type})"))
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("case", params)


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    return bench_device(request.config)


@pytest.fixture(scope="session", autouse=True)
def _probes_at_start(request):
    """Measure the copy bandwidth, the generator and the matmul peaks before the first row (again at the end)."""
    if any(item.get_closest_marker("skip") is None for item in request.session.items):
        hardware.remeasure(str(bench_device(request.config)), "session start")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    # Before pytest-benchmark writes the JSON: probe again, keep the best, rescale every row.
    if _ROWS.rows:
        hardware.remeasure(str(bench_device(session.config)), "session end")
        _ROWS.rescale()
    yield


@pytest.fixture(scope="session")
def rows() -> Rows:
    """The rows measured so far this session (shared by every benchmark)."""
    return _ROWS


@pytest.fixture
def run(benchmark, device, rows):
    """``run(case)`` times one matrix row and returns its derived metrics."""
    return lambda case: run_case(case, benchmark, device, rows)


def pytest_benchmark_update_machine_info(config, machine_info):
    device = bench_device(config)
    import importlib.metadata as md

    def version(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    machine_info["diffusion_core_bench"] = {
        "command": " ".join(["pytest", *config.invocation_params.args]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": hardware.probe_summary(device),
        "cpu_model": hardware.cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16_cpu": hardware.native_bf16_cpu(),
        "load_average_start": _START_LOAD,
        "load_average_end": hardware.load_average(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": version("diffusers"),
        "pytest_benchmark": version("pytest-benchmark"),
        "quick": config.getoption("--bench-quick"),
        "env": {k: os.environ[k] for k in _ENV if k in os.environ},
        "argv": sys.argv,
    }


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _ROWS.rows:
        return
    device = bench_device(config)
    tr = terminalreporter
    tr.write_sep("=", "diffusion_core benchmark summary")
    tr.write_line(f"device: {hardware.device_description(device)}")
    probes = hardware.probe_summary(device)
    if "copy_bandwidth_gbs" in probes:
        tr.write_line(f"copy bandwidth: {probes['copy_bandwidth_gbs']:.2f} GB/s (read + write)")
    if "normal_rng_gsamples_per_s" in probes:
        tr.write_line(f"normal generator: {probes['normal_rng_gsamples_per_s'] * 1e3:.0f} M samples/s (fp32 normal_)")
    for name, tflops in probes["matmul_peak_tflops"].items():
        tr.write_line(f"matmul peak {name}: {tflops * 1e3:.1f} GFLOP/s")
    tr.write_line("(references: the best of the probes at session start and end; each: "
                  + ", ".join(f"{m['probe'].split('_')[0]}{'-' + m['dtype'] if 'dtype' in m else ''} {m['when']} "
                              f"{m['value'] * (1 if m['probe'].startswith('copy') else 1e3):.1f}" for m in probes["measurements"]) + ")")
    tr.write_line(f"load average at start / end: {_START_LOAD} / {hardware.load_average()}")
    tr.write_line("")
    for line in summary.table(_ROWS.rows):
        tr.write_line(line)
    tr.write_line("")
    for line in summary.target_lines(_ROWS.rows, device.type):
        tr.write_line(line)
    tr.write_line("")
    tr.write_line("head to head (each side's fastest setting, same precision):")
    for line in pairing.head_to_head(_ROWS.rows):
        tr.write_line(f"  {line}")
