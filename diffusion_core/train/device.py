"""Which device and autocast dtype a run uses, and the CUDA backend switches a training run turns on.

``auto`` precision, exactly:

* CUDA: bf16 on GPUs with native bf16, compute capability >= 8.0 (A100, H100, RTX 30xx and later); fp16 with a
  GradScaler on older GPUs (V100, T4, RTX 20xx), whose bf16 is emulated.
* CPU: bf16 where the processor has it natively (AVX512-BF16 or AMX), else fp32: emulated bf16 runs slower than
  fp32, and fp16 on the CPU is slower still.

The probes are plain functions so tests can fake either answer on any machine.
"""
from __future__ import annotations

import torch

from .._validation import check_device_name
from ..errors import InvalidInput
from .config import Precision

__all__ = ["resolve_device", "autocast_dtype", "cpu_has_native_bf16", "cuda_has_native_bf16", "configure_backends"]


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
