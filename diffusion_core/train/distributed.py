"""Data parallelism through torch.distributed, launched by ``torchrun``; nothing home-made.

``torchrun --nproc_per_node N -m diffusion_core.cli train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK;
without them everything here is a no-op and the run is single-process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "setup_distributed", "teardown_distributed"]


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
