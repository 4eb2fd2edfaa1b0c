"""The training loop: autocast (bf16 default, GradScaler only for fp16), compile, then DDP.

The step never reads a value back to the host: losses stay on the device and are checked for NaN/Inf
(and logged) every ``log_every`` steps and before every checkpoint, so a bad step is caught before a
checkpoint could be written after it.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..losses import training_losses
from ..samplers import ddim_sample
from .checkpoint import load_checkpoint, save_checkpoint
from ..nn import get_preset
from .config import Dataset, Precision, TrainConfig
from .data import load_dataset
from .distributed import setup_distributed
from .ema import EMA
from .images import save_image_grid, save_scatter
from .models import build_model, model_config_for

__all__ = ["NonFiniteLossError", "TrainResult", "train", "resolve_device", "autocast_dtype"]

# Fields a resumed run may change; any other difference means a different experiment.
_RESUMABLE_CHANGES = {"steps", "out_dir", "log_every", "checkpoint_every", "preview_every", "device", "compile", "channels_last"}


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the first bad step. The last checkpoint is kept."""


@dataclass
class TrainResult:
    model: nn.Module  # the trained network (not the EMA), unwrapped from compile/DDP
    ema_model: nn.Module
    losses: torch.Tensor  # the mean loss of every step of this run, on the CPU
    step: int
    checkpoint: Path | None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    return device


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means fp32 without autocast."""
    if precision is Precision.AUTO:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        native_bf16 = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)() or getattr(
            torch.cpu, "_is_avx512_bf16_supported", lambda: False
        )()
        return torch.bfloat16 if native_bf16 else None  # emulated bf16 is slower than fp32
    return {Precision.FP32: None, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}[precision]


def _check_resume(config: TrainConfig, saved: dict) -> None:
    now = config.to_dict()
    differ = sorted(k for k in now if k not in _RESUMABLE_CHANGES and now[k] != saved.get(k))
    if differ:
        raise ValueError(f"cannot resume: the checkpoint was trained with different {', '.join(differ)}")


def _first_bad_step(losses: list[torch.Tensor], first_step: int, distributed: bool) -> int | None:
    """The step number of the first non-finite loss among ``losses`` (one host sync), agreed over ranks."""
    bad = ~torch.isfinite(torch.stack(losses))
    idx = torch.where(bad.any(), bad.float().argmax(), torch.tensor(-1, device=bad.device)).to(torch.int64)
    if distributed:  # every rank must stop together, or the others hang in the next all-reduce
        flag = torch.where(idx >= 0, idx, torch.tensor(len(losses), device=idx.device))
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        idx = torch.where(flag < len(losses), flag, torch.tensor(-1, device=idx.device))
    i = int(idx)
    return None if i < 0 else first_step + i


def train(config: TrainConfig, *, resume: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Train as ``config`` says; with ``resume``, continue from that checkpoint exactly where it stopped."""
    device = resolve_device(config.device)
    info = setup_distributed(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    torch.manual_seed(config.seed)  # same initial weights on every rank (DDP also broadcasts them)
    gen = torch.Generator(device).manual_seed(config.seed)  # data order, timesteps and noise

    image_size, channels = 0, 0
    if config.dataset is Dataset.FOLDER:  # the preset fixes the channels; image_size may override its size
        preset = get_preset(config.model)
        image_size, channels = config.image_size or preset.image_size, preset.in_channels
    data = load_dataset(config.dataset, data_dir=config.data_dir, image_size=image_size, channels=channels, seed=config.seed).to(device)
    model_config = model_config_for(config, data.shape[1])
    diffusion = config.diffusion().to(device)

    model = build_model(model_config).to(device)
    use_channels_last = config.channels_last if config.channels_last is not None else True
    if use_channels_last and data.ndim == 4:
        model = model.to(memory_format=torch.channels_last)
        data = data.contiguous(memory_format=torch.channels_last)
    ema = EMA(model, config.ema_decay)
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused, foreach=None if fused else True
    )
    amp_dtype = autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)

    start = 0
    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=device)
        _check_resume(config, ckpt.train_config)
        model.load_state_dict(ckpt.model)
        ema.load_state_dict(ckpt.ema)
        optimizer.load_state_dict(ckpt.optimizer)
        if ckpt.scaler:
            scaler.load_state_dict(ckpt.scaler)
        gen.set_state(ckpt.rng["data"].cpu())
        torch.set_rng_state(ckpt.rng["torch"].cpu())
        if device.type == "cuda" and "cuda" in ckpt.rng:
            torch.cuda.set_rng_state(ckpt.rng["cuda"].cpu(), device)
        start = ckpt.step

    compile_model = config.compile if config.compile is not None else device.type == "cuda"
    net = torch.compile(model) if compile_model else model
    if info.enabled:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()

    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / "checkpoint.safetensors"
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps({"train": config.to_dict(), "model": model_config}, indent=2))

    B, N, T = config.batch_size, data.shape[0], diffusion.num_timesteps
    if B % info.world_size:
        raise ValueError(f"batch_size={B} must be divisible by the number of processes ({info.world_size})")
    local = slice(info.rank * (B // info.world_size), (info.rank + 1) * (B // info.world_size))

    def save(step: int) -> Path:
        rng = {"data": gen.get_state(), "torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        return save_checkpoint(
            ckpt_path, step=step, train_config=config.to_dict(), model_config=model_config,
            model=model.state_dict(), ema=ema.state_dict(), optimizer=optimizer.state_dict(),
            scaler=scaler.state_dict() if scaler.is_enabled() else None, rng=rng,
        )

    losses: list[torch.Tensor] = []
    unchecked_from = 0  # index into losses of the first loss not yet checked for NaN/Inf
    last_saved: Path | None = None
    bar = tqdm(range(start, config.steps), disable=not (progress and info.is_main), desc="train", initial=start, total=config.steps)
    tick, tick_step = time.perf_counter(), start

    def check(step_now: int) -> None:
        nonlocal unchecked_from
        if unchecked_from < len(losses):
            bad = _first_bad_step(losses[unchecked_from:], start + unchecked_from + 1, info.enabled)
            if bad is not None:
                where = f"; the last good checkpoint is {last_saved}" if last_saved else ""
                raise NonFiniteLossError(f"loss became NaN or Inf at step {bad}{where}")
            unchecked_from = len(losses)

    model.train()
    for step in bar:
        # The global batch is drawn identically on every rank; each keeps its slice, so N ranks
        # see exactly the batch one process would.
        idx = torch.randint(0, N, (B,), generator=gen, device=device)[local]
        t = torch.randint(0, T, (B,), generator=gen, device=device)[local]
        noise = torch.randn((B, *data.shape[1:]), generator=gen, device=device)[local]
        x0 = data[idx]
        for group in optimizer.param_groups:  # linear warmup, then constant (Ho et al.)
            group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
        with autocast:
            terms = training_losses(net, diffusion, x0, t, noise, loss_type=config.loss_type,
                                    min_snr_gamma=config.min_snr_gamma, vlb_weight=config.vlb_weight)
            loss = terms.loss.mean()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model, step)
        losses.append(loss.detach())

        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            check(done)
            now = time.perf_counter()
            recent = torch.stack(losses[-config.log_every:]).mean().item()
            bar.set_postfix(loss=f"{recent:.4f}", img_s=f"{(done - tick_step) * B / (now - tick):.0f}")
            tick, tick_step = now, done
        if info.is_main and config.preview_every and done % config.preview_every == 0:
            preview(ema.model, diffusion, data, out_dir / f"preview_{done:06d}.png")
        if done % config.checkpoint_every == 0 or done == config.steps:
            check(done)
            if info.is_main:
                last_saved = save(done)
    bar.close()
    if info.is_main and config.steps > start:
        preview(ema.model, diffusion, data, out_dir / "preview_final.png")
    stacked = torch.stack(losses).float().cpu() if losses else torch.empty(0)
    return TrainResult(model, ema.model, stacked, max(start, config.steps), last_saved)


@torch.no_grad()
def preview(model: nn.Module, diffusion, data: torch.Tensor, path: Path, n: int = 64) -> Path:
    """DDIM samples (50 steps, or T if fewer) from ``model``: a PNG grid for images, a scatter PNG for 2-D points."""
    g = torch.Generator(data.device).manual_seed(0)
    n = 1000 if data.ndim == 2 else n
    x_T = torch.randn((n, *data.shape[1:]), generator=g, device=data.device)
    # At most T steps: ddim_sample rejects steps > T, which used to crash every run with num_timesteps < 50.
    x = ddim_sample(model, diffusion, x_T, steps=min(50, diffusion.num_timesteps), progress=False).sample
    if data.ndim == 2:
        return save_scatter(x, path)
    return save_image_grid(x, path, scale=max(1, 64 // data.shape[-1]))
