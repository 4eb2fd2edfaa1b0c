"""The training loop: validate everything, take the run folder, then train, log and checkpoint.

Nothing is written before every input has been checked (config, data, resume checkpoint, out_dir); then the run
takes its folder (``RunDir``), an image folder's cache is built, and only when the run starts writing is an earlier
run it replaces removed (a run that fails before that leaves no trace, and no folder it made). The step
itself (``step.py``) never reads a value back from the device; the loop does so only at the named
``host_sync_point``s: every ``log_every`` steps (NaN/Inf check, ``metrics.jsonl``) and before a checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .._progress import tqdm_class
from .._validation import check_fits_memory
from ..cpu_threads import AdaptiveThreads
from ..errors import InvalidInput, NonFiniteError
from ..ddpm_samplers import ddim_sample
from .checkpoint import save_checkpoint
from .config import DEFAULT_WARMUP, TrainConfig
from .data_source import DataSource
from .device import autocast_dtype, configure_backends, resolve_device
from .distributed import setup_distributed
from .images import save_image_grid, save_scatter
from .interrupt import StopRequest, TrainingInterrupted
from .models import build_model, model_config_for
from .resume import (OPTIMIZER_SETTINGS, RUN_CONTROL, check_resume, check_resume_data, gather_rng,  # noqa: F401
                     resume_changes, restore, settle)
from .run_dir import CHECKPOINT_NAME, RunDir
from .run_log import LogRecord, RunLog
from .step import TrainStep
from .sync import host_sync_point

__all__ = ["NonFiniteLossError", "TrainResult", "TrainingInterrupted", "train"]

log = logging.getLogger("diffusion_core.train")

HISTORY_STEPS = 100_000  # TrainResult.losses keeps at most this many recent per-step losses (400 kB)


class NonFiniteLossError(NonFiniteError):
    """The loss or the weights became NaN or Inf; the message names the step and the last good checkpoint."""


@dataclass
class TrainResult:
    model: nn.Module  # the trained network (not the EMA), unwrapped from compile/DDP
    ema_model: nn.Module
    losses: torch.Tensor  # per-step losses of this run (the last HISTORY_STEPS of them), on the CPU
    step: int
    checkpoint: Path | None


def _check_sizes(config: TrainConfig, source: DataSource, device: torch.device) -> None:
    """Sizes no machine can hold are refused here, in words, instead of by the allocator mid-run."""
    per_example = 4 * math.prod(source.sample_shape)
    check_fits_memory("batch_size", config.batch_size, 4 * per_example, "a batch (data, noise, noisy data, "
                      "prediction)", device)
    check_fits_memory("log_every", min(config.log_every, config.steps), 8, "the per-step losses of a log window",
                      device)


def train(config: TrainConfig, *, resume: str | Path | None = None, overwrite: bool = False,
          progress: bool = True) -> TrainResult:
    """Train as ``config`` says. ``resume``: continue from that checkpoint exactly where it stopped (its folder
    is the default ``out_dir``). ``overwrite``: replace a run already in ``out_dir``, which is refused otherwise.

    Raises:
        InvalidInput: a bad setting, data, checkpoint or out_dir, before anything is written.
        NonFiniteLossError: the loss or the weights became NaN/Inf; the last good checkpoint is kept.
        TrainingInterrupted: Ctrl-C or SIGTERM; a checkpoint of the last finished step was written first.
    """
    device = resolve_device(config.device)
    auto_warmup = config.warmup_steps is None and resume is None
    config, ckpt, notices = settle(config, resume)
    info = setup_distributed(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if config.batch_size % info.world_size:
        raise InvalidInput(f"batch_size={config.batch_size} must be divisible by the number of processes ({info.world_size})")
    configure_backends(device)

    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    source = DataSource(config, device, info)
    model_config = model_config_for(config, source.channels, source.num_classes, source.data_size)
    _check_sizes(config, source, device)
    if ckpt is not None:
        check_resume(ckpt, source, model_config)
    model = build_model(model_config).to(device)
    if info.rank > 0:  # dropout differs per rank; the data order (the generator below) is shared
        torch.manual_seed(config.seed + 1_000_003 * info.rank)
    diffusion = config.diffusion().to(device)
    if config.uses_channels_last and source.is_image:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(config.precision, device)
    compile_model = config.compile if config.compile is not None else device.type == "cuda"
    step_fn = TrainStep(model, diffusion, config, device, info, amp_dtype, compile_model)
    gen = torch.Generator(device).manual_seed(config.seed)  # data order, timesteps and noise

    start = 0
    if ckpt is not None:
        start = restore(ckpt, resume, model, step_fn, config, gen, device, info)
        if info.is_main:
            for line in notices:
                log.warning("resuming with a changed optimizer setting, %s", line)
        if start == config.steps:
            log.warning("the checkpoint is already at step %d = steps; nothing to train", start)
            return TrainResult(model, step_fn.ema.model, torch.empty(0), start, None)

    with RunDir(config.out_dir, resuming=Path(resume) if resume else None, overwrite=overwrite) if info.is_main \
            else _NoRunDir(config.out_dir) as run_dir:
        source.prepare(Path(config.out_dir) / "data-cache", run_dir.claim)  # Ctrl-C here stops at once
        if ckpt is not None:
            check_resume_data(ckpt, source)
        run_dir.start()  # from here on the run writes (and an earlier run it replaces is gone)
        if info.is_main:
            _write_json(run_dir.claim("config.json"), {"train": config.to_dict(), "model": model_config})
            _warmup_notice(config, auto_warmup)
        run_log = RunLog(run_dir.path, resume_step=start if ckpt is not None else None,
                         claim=run_dir.claim) if info.is_main else None
        try:
            with StopRequest() as stop:
                return _loop(config, model_config, model, diffusion, step_fn, source, gen, info, device, start,
                             run_dir, run_log, stop, progress)
        finally:
            source.close()
            if run_log is not None:
                run_log.close()


def _warmup_notice(config: TrainConfig, auto: bool) -> None:
    """Say what the warmup does when it is not the plain default: shortened for a short run, or longer than it."""
    w, n = config.warmup_steps, config.steps
    if auto and w < DEFAULT_WARMUP:
        log.info("learning-rate warmup: %d steps, a fifth of this %d-step run (--warmup-steps sets it)", w, n)
    elif w > n:
        log.warning("warmup_steps=%d is longer than the run (steps=%d): the learning rate ends at %.0f%% of lr; "
                    "resuming with more steps finishes the warmup", w, n, 100 * n / w)


class _NoRunDir:
    """What ranks other than 0 hold: the path, and no lock (they write nothing)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.checkpoint = self.path / CHECKPOINT_NAME

    def claim(self, name: str) -> Path:
        return self.path / name

    def start(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _loop(config, model_config, model, diffusion, step_fn, source, gen, info, device, start, run_dir, run_log, stop,
          progress):
    B, T, local = config.batch_size, diffusion.num_timesteps, source.local
    batches = source.batches(gen, start)
    window = _Window(min(config.log_every, config.steps), device)  # a log at least at the end
    history: list[torch.Tensor] = []
    last_saved: Path | None = None
    started = time.perf_counter()
    wall_offset = run_log.wall_offset if run_log is not None else 0.0
    tick, tick_step, saved_at = started, start, started

    def last_good() -> str:
        return f"; the last good checkpoint is {last_saved}" if last_saved else ""

    def save(step_now: int) -> None:
        with host_sync_point("checkpoint"):
            _save(step_now)

    def _save(step_now: int) -> None:
        nonlocal last_saved, saved_at
        check_window(step_now)
        rng = gather_rng(gen, device, info)
        if info.is_main:
            try:
                last_saved = save_checkpoint(
                    run_dir.claim(CHECKPOINT_NAME), step=step_now, train_config=config.to_dict(),
                    model_config=model_config, model=model.state_dict(), ema=step_fn.ema.state_dict(),
                    optimizer=step_fn.optimizer.state_dict(), scaler=step_fn.scaler.state_dict() if step_fn.scaler.is_enabled() else None, rng=rng,
                    extra={"class_names": source.class_names,
                           **({"data": source.data_record} if source.data_record else {})})
            except NonFiniteError as e:
                raise NonFiniteLossError(f"the weights became NaN or Inf by step {step_now} ({e}){last_good()}") from None
            run_log.plot()
        saved_at = time.perf_counter()

    def check_window(step_now: int) -> None:
        with host_sync_point("non-finite check"):
            bad = _first_bad(window.losses[window.checked:window.n], info.enabled)
            if bad is not None:
                first = step_now - window.n + window.checked + bad + 1
                raise NonFiniteLossError(f"loss became NaN or Inf at step {first}{last_good()}")
            window.checked = window.n

    def write_log(step_now: int) -> None:
        nonlocal tick, tick_step
        with host_sync_point("log"):
            losses = window.losses[:window.n].to("cpu", torch.float32, copy=True)  # the buffer is reused
            history.append(losses)
            if sum(h.numel() for h in history) > HISTORY_STEPS:
                history[:] = [torch.cat(history)[-HISTORY_STEPS:]]
            now = time.perf_counter()
            record = LogRecord(step=step_now, loss=float(losses.mean()), lr=step_fn.optimizer.param_groups[0]["lr"],
                               grad_norm=float(window.grad_norms[:window.n].float().mean()),
                               img_per_s=(step_now - tick_step) * B / (now - tick), wall_s=wall_offset + now - started)
        tick, tick_step = now, step_now
        window.reset()
        if run_log is not None:
            run_log.write(record)
        bar.set_postfix(loss=f"{record.loss:.4f}", img_s=f"{record.img_per_s:.0f}")

    bar = tqdm_class()(range(start, config.steps), disable=not (progress and info.is_main), desc="train", initial=start,
               total=config.steps)
    model.train()
    done = start
    # On the CPU: as many threads as other programs leave cores free (a spinning thread pool sharing cores
    # with another busy process runs several times slower).
    with AdaptiveThreads.for_device(device) as threads:
        try:
            for step in bar:
                threads.update()
                # The global batch is drawn identically on every rank; each keeps its slice, so N ranks
                # see exactly the batch one process would.
                x0, labels = next(batches)
                t = torch.randint(0, T, (B,), generator=gen, device=device)[local]
                noise = torch.randn((B, *source.sample_shape), generator=gen, device=device)[local]
                if labels is not None:  # Ho & Salimans' label dropout (guidance.drop_labels), drawn for the global batch
                    coin = torch.rand((B,), generator=gen, device=device)[local]
                    labels = torch.where(coin < config.p_uncond, torch.full_like(labels, source.num_classes), labels)
                loss, grad_norm = step_fn(x0, t, noise, step, labels)
                window.add(loss, grad_norm)
                done = step + 1
                at_log = done % config.log_every == 0 or done == config.steps
                if at_log:
                    check_window(done)
                    write_log(done)
                if _agree(stop.requested, info, at_log):
                    save(done)
                    raise TrainingInterrupted(done, last_saved if info.is_main else None)
                due = done % config.checkpoint_every == 0 or done == config.steps
                if at_log and config.checkpoint_minutes and not due:
                    due = _agree(time.perf_counter() - saved_at >= 60 * config.checkpoint_minutes, info, True)
                if due:
                    save(done)
                if info.is_main and config.preview_every and done % config.preview_every == 0:
                    preview(step_fn.ema.model, diffusion, source.sample_shape, device, run_dir.claim(f"preview_{done:06d}.png"))
        finally:
            bar.close()
    if info.is_main and config.steps > start:
        preview(step_fn.ema.model, diffusion, source.sample_shape, device, run_dir.claim("preview_final.png"))
    losses = torch.cat(history)[-HISTORY_STEPS:] if history else torch.empty(0)
    return TrainResult(model, step_fn.ema.model, losses, max(start, config.steps), last_saved)


class _Window:
    """Per-step losses and gradient norms since the last log record, in preallocated device buffers: the step
    writes into them without a sync, and the memory stays the same however long the run."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.losses = torch.zeros(size, device=device)
        self.grad_norms = torch.zeros(size, device=device)
        self.n = self.checked = 0

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.losses[self.n].copy_(loss)
        self.grad_norms[self.n].copy_(grad_norm)
        self.n += 1

    def reset(self) -> None:
        self.n = self.checked = 0


def _first_bad(losses: torch.Tensor, distributed: bool) -> int | None:
    """Index of the first non-finite entry of ``losses`` (one host read), agreed over ranks."""
    bad = torch.cat([~torch.isfinite(losses), torch.ones(1, dtype=torch.bool, device=losses.device)])
    idx = bad.to(torch.uint8).argmax().to(torch.int64)  # the first True; the appended one means "none"
    if distributed:  # every rank must stop together, or the others hang in the next all-reduce
        dist.all_reduce(idx, op=dist.ReduceOp.MIN)
    i = int(idx)
    return None if i >= len(losses) else i


def _agree(flag: bool, info, at_sync_point: bool) -> bool:
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


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


@torch.no_grad()
def preview(model: nn.Module, diffusion, sample_shape: tuple[int, ...], device: torch.device, path: Path,
            n: int = 64) -> Path:
    """DDIM samples (50 steps, or T if fewer) from ``model``: a PNG grid for images, a scatter PNG for 2-D points."""
    with host_sync_point("preview"):
        g = torch.Generator(device).manual_seed(0)
        n = 1000 if len(sample_shape) == 1 else n
        x_T = torch.randn((n, *sample_shape), generator=g, device=device)
        # At most T steps: ddim_sample rejects steps > T, which used to crash every run with num_timesteps < 50.
        x = ddim_sample(model, diffusion, x_T, steps=min(50, diffusion.num_timesteps), progress=False).sample
        if len(sample_shape) == 1:
            return save_scatter(x, path)
        return save_image_grid(x, path, scale=max(1, 64 // sample_shape[-1]))
