"""Helpers shared by several test modules (imported as ``from support import ...``; pytest puts ``tests/`` on
the path)."""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import types

import torch

from diffusion_core.cli import main


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Exit code, stdout, stderr of ``diffusion-core ARGV`` run in-process (argparse exits via SystemExit)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


class StaticOutputs:
    """What a CUDA graph replay does to its outputs, on the CPU: every call returns THE SAME output buffers,
    overwritten; and when a new step begins, the previous step's outputs are dead (poisoned with NaN here,
    freed or overwritten under cudagraph trees), so reading them, or feeding them back, would be a bug.
    Wraps a sampler step ``step(x, k, prev, z) -> (x_next, x0)`` (diffusion_core.sampling's ``Step``)."""

    def __init__(self, step):
        self.step, self.out, self.calls = step, None, 0

    def __call__(self, *args):
        if self.out is not None:
            for o in self.out:
                o.fill_(float("nan"))
        x_next, x0 = self.step(*args)
        if self.out is None:
            self.out = (torch.empty_like(x_next), torch.empty_like(x0))
        self.out[0].copy_(x_next)
        self.out[1].copy_(x0)
        self.calls += 1
        return self.out


def fake_cuda_graphs(monkeypatch, module) -> tuple[list[StaticOutputs], list[int]]:
    """Make ``module._compiled`` (``diffusion_core.sampling``'s) wrap each step in :class:`StaticOutputs` (when compiling) and count
    ``torch.compiler.cudagraph_mark_step_begin`` calls; returns the (fakes, marks) lists that fill as it runs."""
    fakes, marks = [], []

    def fake_compiled(step, x_T, compile):
        if not compile:
            return step
        fakes.append(StaticOutputs(step))
        return fakes[-1]

    monkeypatch.setattr(module, "_compiled", fake_compiled)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    return fakes, marks


def run_on_tiny_disk(disk, code: str, size_kb: int):
    """``python -c code`` with ``disk`` (a new folder) a tmpfs of ``size_kb`` kB, mounted in a private mount
    namespace (``unshare -rm``, so nothing outside sees it): a full disk, for real, without root on the host.
    Skips the test where user namespaces or tmpfs mounts are not allowed. Returns the CompletedProcess."""
    import os
    import shlex
    import shutil
    import subprocess
    import sys

    import pytest

    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to mount a tiny file system")
    disk.mkdir(parents=True, exist_ok=True)
    mount = f"mount -t tmpfs -o size={size_kb}k none {shlex.quote(str(disk))}"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()[-200:]}")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && exec {shlex.quote(sys.executable)} -c "
                           f"{shlex.quote(code)}"], env=env, capture_output=True, text=True, timeout=600)


@contextlib.contextmanager
def torch_fidelity_modules():
    """torch-fidelity importable module by module, without its package ``__init__`` (which imports torchvision;
    the README's command installs torch-fidelity ``--no-deps``, as the torchvision on PyPI does not load beside the
    CPU build of torch): while the block runs, a bare package stands in for ``torch_fidelity``, so ``import
    torch_fidelity.feature_extractor_inceptionv3`` loads that file and the siblings it imports. torchmetrics imports
    that module whenever torch-fidelity is installed. Yields False, doing nothing, when torch-fidelity is absent."""
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None or "torch_fidelity" in sys.modules:  # absent, or already a package (real or a stand-in)
        yield spec is not None
        return
    package = types.ModuleType("torch_fidelity")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["torch_fidelity"] = package
    try:
        yield True
    finally:
        if sys.modules.get("torch_fidelity") is package:
            del sys.modules["torch_fidelity"]
