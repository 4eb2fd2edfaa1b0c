"""What a run finds out about, and sets up in, the process it runs in: the device and its autocast dtype, the data
parallelism ``torchrun`` asks for, and the stop requests the signals bring.

``auto`` precision, exactly:

* CUDA: bf16 on GPUs with native bf16, compute capability >= 8.0 (A100, H100, RTX 30xx and later); fp16 with a
  GradScaler on older GPUs (V100, T4, RTX 20xx), whose bf16 is emulated.
* CPU: bf16 where the processor has it natively (AVX512-BF16 or AMX), else fp32: emulated bf16 runs slower than
  fp32, and fp16 on the CPU is slower still.

The probes are plain functions so tests can fake either answer on any machine.

Data parallelism goes through torch.distributed, launched by ``torchrun``; nothing home-made.
``torchrun --nproc_per_node N -m diffusion_core.cli train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them
the run is single-process and everything DDP-related here is a no-op.

Ctrl-C (SIGINT) and SIGTERM (a scheduler's preemption, ``torchrun`` ending a job) stop a run cleanly: the first
signal only sets a flag (:class:`StopRequest`), the loop finishes the step it is in, writes a checkpoint and stops,
so the checkpoint is never taken halfway through an optimizer update. A second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .._sync import host_sync_point
from .._validation import check_device_name
from ..errors import InvalidInput
from .config import Precision

__all__ = ["resolve_device", "autocast_dtype", "cpu_has_native_bf16", "cuda_has_native_bf16", "configure_backends",
           "DistInfo", "setup_distributed", "teardown_distributed", "agree", "StopRequest", "TrainingInterrupted"]


# ---------------------------------------------------------------------------------------------- device and precision

def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is a GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput(f"device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidInput(f"device={name!r} but this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bf16 natively (AMX tiles or AVX512-BF16)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True for GPUs of compute capability 8.0 or newer. (``torch.cuda.is_bf16_supported()`` also says yes
    for emulated bf16 on older GPUs, which is slow.)"""
    return torch.cuda.get_device_capability(device)[0] >= 8


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means fp32 without autocast."""
    if precision is Precision.AUTO:
        if device.type == "cuda":
            return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return {Precision.FP32: None, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}[precision]


def configure_backends(device: torch.device) -> None:
    """On CUDA: allow TF32 in fp32 matmuls and convolutions (10-bit mantissa inputs, fp32 accumulation; what
    NVIDIA's and PyTorch's recommendations for training assume) and let cuDNN pick the fastest convolution
    algorithm for our fixed shapes. Nothing to do on the CPU."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


# ---------------------------------------------------------------------------------------------- data parallelism

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes checkpoints, previews and logs."""
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the process group that torchrun describes (NCCL on CUDA, gloo on the CPU)."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def teardown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def agree(flag: bool, info: DistInfo, at_sync_point: bool) -> bool:
    """A decision every rank takes together. Under DDP it is exchanged only at log steps, which read
    the device anyway; a single process decides at once."""
    if not info.enabled:
        return flag
    if not at_sync_point:
        return False
    with host_sync_point("stop or checkpoint decision"):
        t = torch.tensor(int(flag), device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


# ------------------------------------------------------------------------------------------------- stop requests

class TrainingInterrupted(KeyboardInterrupt):
    """The run stopped on a signal after saving ``checkpoint`` (``None`` if no step had run) at ``step``."""

    def __init__(self, step: int, checkpoint) -> None:
        where = f"; checkpoint saved: {checkpoint} (continue with --resume {checkpoint})" if checkpoint else ""
        super().__init__(f"interrupted at step {step}{where}")
        self.step, self.checkpoint = step, checkpoint


class StopRequest:
    """``with StopRequest() as stop:`` ... ``if stop.requested: ...``. Handlers are installed only in the
    main thread (Python delivers signals there) and restored on exit."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
