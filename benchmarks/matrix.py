"""Which configurations run: a CPU matrix (about 15 minutes on 2 idle cores before the like-for-like peer rows and
the cold compiles were added; longer now, not yet timed) and a GPU matrix.

A :class:`Case` names one row: workload, implementation, model preset, batch size, precision,
compile mode and memory format. ``quick=True`` rows form the smoke subset (``--bench-quick``
or ``-m quick``). ``rounds`` is the number of timed rounds (after one warm-up round).
Our rows are compared only with a diffusers row in the same setting (:mod:`benchmarks.pairing`), so
the matrix gives most of our non-default settings (channels_last, compiled, CUDA graphs, bf16/fp16)
a diffusers row in that setting too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Case", "WORKLOADS", "PEERS", "cases", "TOLERANCE", "SAMPLE_TOLERANCE", "SOLVER_STEPS", "NUM_CLASSES",
           "GUIDANCE_SCALE", "GUIDED_COST_GOAL"]

# workload -> human name
WORKLOADS = {
    "qsample": "q(x_t | x_0) with noise generation",
    "qsample_given": "q(x_t | x_0) with the noise passed in (diagnostic: the cost without the RNG)",
    "train": "training step (noise, U-Net, loss, backward, AdamW, EMA)",
    "step": "one DDIM sampling step (U-Net + update)",
    "ddpm": "whole DDPM sample, 1000 steps",
    "ddim": "whole DDIM sample, 50 steps",
    "dpmpp2m": "whole DPM-Solver++(2M) sample, 20 steps (20 network calls)",
    "heun": "whole EDM Heun sample, 10 steps (19 network calls)",
    "ddim_cfg": "whole DDIM-50 sample with classifier-free guidance (scale 2: 50 network calls at twice the batch), "
                "class-conditional network (10 classes)",
    "ddim_cond": "whole DDIM-50 sample without guidance on the same class-conditional network (the baseline of ddim_cfg)",
}
# Steps of the ODE solvers' whole samples (Heun: 2 * steps - 1 network calls).
SOLVER_STEPS = {"dpmpp2m": 20, "heun": 10}
# The guided workloads: a class-conditional version of the preset (num_classes=K), ClassifierFreeGuidance(scale).
NUM_CLASSES, GUIDANCE_SCALE = 10, 2.0
GUIDED_COST_GOAL = 2.1  # ddim_cfg time / ddim_cond time: one batched call at 2B should cost under 2.1x one at B
PEERS = ("diffusers", "diffusers-unet")

# Correctness guard: relative L2 error of the probe output vs fp32 eager, by precision.
TOLERANCE = {"fp32": 1e-3, "bf16": 4e-2, "fp16": 1e-2}
# Sampler guard of the dpmpp2m / heun peer rows: relative L2 error of diffusers' whole sample against ours from the
# same x_T at the same timesteps, checked in fp32 only (the two solve the same ODE with the same steps, so they
# differ by float32 rounding of the coefficients; other precisions are checked for finiteness only).
SAMPLE_TOLERANCE = 1e-5  # measured on the CPU: 2e-7 to 4e-7 (tiny, digits-8); a mismatch of timesteps or betas: ~0.8


@dataclass(frozen=True)
class Case:
    workload: str  # a key of WORKLOADS
    impl: str  # "ours", "diffusers" (their scheduler/loss + ...), "diffusers-unet" (their UNet2DModel too)
    preset: str  # a model preset; "cifar10" (3x32x32 images, no model) for qsample
    batch: int
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; qsample: the data dtype)
    compile: str | None = None  # None (eager) | "default" | "reduce-overhead" (CUDA graphs)
    channels_last: bool = False
    device: str = "cpu"  # the matrix this row belongs to: "cpu" or "cuda"
    quick: bool = False
    rounds: int = 5

    @property
    def id(self) -> str:
        parts = [self.device, self.workload, self.impl, self.preset, f"b{self.batch}", self.precision]
        if self.channels_last:
            parts.append("cl")
        parts.append({None: "eager", "default": "compiled", "reduce-overhead": "cudagraph"}[self.compile])
        return "-".join(parts)

    @property
    def is_peer(self) -> bool:
        return self.impl != "ours"

    @property
    def is_reference(self) -> bool:
        """fp32, eager, contiguous: the configuration every other one is checked against."""
        return self.precision == "fp32" and self.compile is None and not self.channels_last

    def reference(self) -> "Case":
        return dataclasses.replace(self, precision="fp32", compile=None, channels_last=False, quick=False)

    @property
    def steps(self) -> int:
        """Network calls in one timed call."""
        return {"qsample": 0, "qsample_given": 0, "train": 1, "step": 1, "ddpm": 1000, "ddim": 50, "dpmpp2m": 20,
                "heun": 19, "ddim_cfg": 50, "ddim_cond": 50}[self.workload]

    @property
    def conditional(self) -> bool:
        """The network is the class-conditional version of the preset (num_classes=NUM_CLASSES)."""
        return self.workload in ("ddim_cfg", "ddim_cond")

    @property
    def net_batch_factor(self) -> int:
        """Images per network call over images sampled: 2 with guidance (one call on [x, x], labels [c, null])."""
        return 2 if self.workload == "ddim_cfg" else 1


def _rows(device: str, workload: str, preset: str, batch: int, specs: str, rounds: int, quick: bool = False):
    """Cases from a compact spec: space-separated ``impl:precision[:cl][:compiled|:cudagraph]``."""
    out = []
    for spec in specs.split():
        impl, precision, *flags = spec.split(":")
        compile_ = "default" if "compiled" in flags else "reduce-overhead" if "cudagraph" in flags else None
        out.append(Case(workload, impl, preset, batch, precision, compile_, "cl" in flags, device, quick, rounds))
    return out


def _cpu() -> list[Case]:
    r = []
    # q(x_t | x_0): 1024 images (12 MiB, cache-sized) and 8192 (96 MiB, memory-sized).
    r += _rows("cpu", "qsample", "cifar10", 1024, "ours:fp32 diffusers:fp32", 10, quick=True)
    r += _rows("cpu", "qsample", "cifar10", 8192,
               "ours:fp32 ours:bf16 ours:fp16 ours:fp32:compiled diffusers:fp32 diffusers:bf16 diffusers:fp16 "
               "diffusers:fp32:compiled", 5)
    r += _rows("cpu", "qsample_given", "cifar10", 8192, "ours:fp32 diffusers:fp32", 5)
    # Training: the smoke subset on `tiny`, a batch sweep on tiny-32, the target on ddpm-cifar10 at
    # batch 32. This CPU has no bf16/fp16 instructions (bf16 convs run ~4x slower than fp32), so the
    # big model's mixed-precision rows are one bf16 row per side (for the bf16 target), one round each.
    r += _rows("cpu", "train", "tiny", 16, "ours:fp32 diffusers:fp32 ours:bf16 diffusers:bf16", 5, quick=True)
    r += _rows("cpu", "train", "tiny", 16, "ours:fp16 diffusers:fp16", 5)
    for b in (8, 32, 128):
        r += _rows("cpu", "train", "tiny-32", b, "ours:fp32 diffusers:fp32", 5 if b < 128 else 3)
    r += _rows("cpu", "train", "tiny-32", 32, "ours:fp32:cl ours:fp32:compiled ours:bf16 diffusers:bf16 "
               "diffusers:fp32:cl diffusers:fp32:compiled", 5)
    r += _rows("cpu", "train", "ddpm-cifar10", 32, "ours:fp32 ours:fp32:cl ours:fp32:compiled diffusers:fp32 "
               "diffusers:fp32:cl diffusers:fp32:compiled", 2)
    r += _rows("cpu", "train", "ddpm-cifar10", 32, "diffusers:bf16 ours:bf16", 1)
    # Sampling: one step, DDPM-1000 on the small presets, DDIM-50.
    r += _rows("cpu", "step", "tiny", 1, "ours:fp32 diffusers:fp32", 20, quick=True)
    for b in (1, 16, 64):
        r += _rows("cpu", "step", "tiny-32", b, "ours:fp32 diffusers:fp32", 10)
    r += _rows("cpu", "step", "tiny-32", 1, "ours:fp32:compiled diffusers:fp32:compiled", 10)
    r += _rows("cpu", "step", "tiny-32", 16, "ours:bf16 diffusers:bf16", 10)
    r += _rows("cpu", "ddpm", "tiny", 1, "ours:fp32 diffusers:fp32", 2)
    r += _rows("cpu", "ddpm", "digits-8", 16, "ours:fp32 diffusers:fp32", 2)
    r += _rows("cpu", "ddim", "tiny", 4, "ours:fp32 diffusers:fp32", 3, quick=True)
    r += _rows("cpu", "ddim", "digits-8", 64, "ours:fp32 diffusers:fp32 diffusers-unet:fp32", 3)
    r += _rows("cpu", "ddim", "tiny-32", 16,
               "ours:fp32 ours:fp32:compiled diffusers:fp32 diffusers-unet:fp32 diffusers:fp32:compiled", 3)
    # ODE solvers against diffusers' DPMSolverMultistepScheduler / HeunDiscreteScheduler on our network, and guided
    # DDIM-50 against unguided DDIM-50 on the same class-conditional network (ours only): the ddim rows' sizes.
    for wl in ("dpmpp2m", "heun"):
        r += _rows("cpu", wl, "tiny", 4, "ours:fp32 diffusers:fp32", 3, quick=True)
        r += _rows("cpu", wl, "digits-8", 64, "ours:fp32 diffusers:fp32", 3)
    for wl in ("ddim_cfg", "ddim_cond"):
        r += _rows("cpu", wl, "tiny", 4, "ours:fp32", 3, quick=True)
        r += _rows("cpu", wl, "digits-8", 64, "ours:fp32", 3)
    return r


def _gpu() -> list[Case]:
    r = []
    r += _rows("cuda", "qsample", "cifar10", 1024, "ours:fp32 diffusers:fp32", 50, quick=True)
    r += _rows("cuda", "qsample", "cifar10", 65536,
               "ours:fp32 ours:bf16 ours:fp32:compiled ours:bf16:compiled diffusers:fp32 diffusers:bf16 "
               "diffusers:fp32:compiled diffusers:bf16:compiled", 20)
    r += _rows("cuda", "qsample_given", "cifar10", 65536, "ours:fp32 ours:bf16 diffusers:fp32 diffusers:bf16", 20)
    r += _rows("cuda", "train", "tiny-32", 64, "ours:bf16 diffusers:bf16", 20, quick=True)
    for b in (32, 64, 128, 256):
        r += _rows("cuda", "train", "ddpm-cifar10", b,
                   "ours:bf16:cl:compiled diffusers:bf16 diffusers:bf16:cl:compiled", 10)
    # (diffusers bf16 eager and bf16 channels_last compiled at batch 128 come from the loop above.)
    r += _rows("cuda", "train", "ddpm-cifar10", 128,
               "ours:fp32 ours:bf16 ours:fp16:cl:compiled diffusers:fp32 diffusers:fp16:cl:compiled", 10)
    # diffusers' CUDA-graph rows: their scheduler loop on our network compiled alone (workloads.network_alone_compiled).
    r += _rows("cuda", "step", "ddpm-cifar10", 1,
               "ours:bf16 ours:bf16:cudagraph diffusers:bf16 diffusers:bf16:cudagraph", 50)
    r += _rows("cuda", "ddim", "ddpm-cifar10", 1,
               "ours:bf16 ours:bf16:cudagraph diffusers:bf16 diffusers-unet:bf16 diffusers:bf16:cudagraph", 5)
    for b in (16, 64, 256):
        r += _rows("cuda", "ddim", "ddpm-cifar10", b,
                   "ours:bf16:cl:cudagraph diffusers:bf16 diffusers-unet:bf16 diffusers:bf16:cl:cudagraph", 5)
    r += _rows("cuda", "ddpm", "tiny-32", 16,
               "ours:bf16 ours:bf16:cudagraph diffusers:bf16 diffusers:bf16:cudagraph", 3)
    # The ODE solvers and guidance at the ddim rows' middle batch: fp32 (where the sampler guard compares the
    # samples) and bf16, eager. Never run yet.
    for wl in ("dpmpp2m", "heun"):
        r += _rows("cuda", wl, "ddpm-cifar10", 64, "ours:fp32 diffusers:fp32 ours:bf16 diffusers:bf16", 5)
    for wl in ("ddim_cfg", "ddim_cond"):
        r += _rows("cuda", wl, "ddpm-cifar10", 64, "ours:fp32 ours:bf16", 5)
    return r


def cases(device_type: str, quick: bool) -> list[Case]:
    """The rows for a run on ``device_type``; the other device's rows come back too (they are skipped)."""
    rows = _cpu() + _gpu()
    return [c for c in rows if c.quick] if quick else rows
