"""The training loop: validate everything, take the run folder, then train, log and checkpoint.

Nothing is written before every input has been checked (config, data, resume checkpoint, out_dir): a :class:`_Run`
is built first. It then takes its folder (``RunDir``), an image folder's cache is built, and only when the run starts
writing is an earlier run it replaces removed (a run that fails before that leaves no trace, and no folder it made).
The step itself (``step.py``) never reads a value back from the device; the loop does so only at the named
``host_sync_point``s: every ``log_every`` steps (NaN/Inf check, ``metrics.jsonl``), before a checkpoint, and at
a preview or an ``eval_every`` evaluation (rank 0).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from .._progress import tqdm_class
from .._sync import host_sync_point
from .._validation import check_fits_memory
from ..cpu_threads import AdaptiveThreads
from ..errors import InvalidInput, NonFiniteError
from .checkpoint import save_checkpoint
from .config import DEFAULT_WARMUP, TrainConfig, TrainPath
from .data_source import DataSource
from .images import save_image_grid, save_scatter
from .models import build_model, model_config_for
from .init_from import initial_weights
from .path_sampling import default_samples
from .resume import check_resume, check_resume_data, gather_rng, restore, settle
from .run_dir import CHECKPOINT_NAME, NoRunDir, RunDir, write_json
from .run_log import EvalRecord, LogRecord, LossWindow, RunLog, first_non_finite
from .runtime import (StopRequest, TrainingInterrupted, agree, autocast_dtype, configure_backends, resolve_device,
                      setup_distributed)
from .step import TrainStep

__all__ = ["Evaluator", "NonFiniteLossError", "Objective", "TrainResult", "TrainingInterrupted", "train"]

log = logging.getLogger("diffusion_core.train")

HISTORY_STEPS = 100_000  # TrainResult.losses keeps at most this many recent per-step losses (400 kB)
# --eval-every's measurement: evaluator(samples (n, *shape) float64, config, step=, sample_s=) -> its record. It lives
# in diffusion_core.evaluation (``training_evaluator``), a layer above train, so the caller hands it in.
Evaluator = Callable[..., EvalRecord]


class Objective(Protocol):
    """What a run trains instead of the denoising loss (``train/distill_progressive.py``,
    ``train/distill_reflow.py``): the loop, its batches, optimizer, EMA, log, checkpoints, resume and safety stay
    the same."""

    def loss(self, network: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
             labels: torch.Tensor | None) -> torch.Tensor:
        """The batch's mean loss (the step's :data:`~.step.Loss`)."""

    def draw_times(self, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """The global batch's times, whatever the loss reads as ``t`` (a row per example)."""

    def begin_step(self, step: int, step_fn: TrainStep) -> None:
        """Called before optimizer step ``step`` (a new round may start there)."""

    def record(self) -> dict[str, Any]:
        """What the run is, for ``config.json`` and every checkpoint's ``extra`` (one JSON entry)."""

    def preview_grid(self) -> torch.Tensor:
        """The time grid the previews sample on (DDIM)."""

    def state(self) -> dict[str, torch.Tensor]:
        """The tensors a resume needs that the weights, EMA, optimizer and RNG states do not hold (each checkpoint
        stores them under ``objective.``)."""

    def restore(self, step: int, state: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Continue from a checkpoint of ``step``: its :meth:`state` and its ``extra`` (where :meth:`record` went);
        called before anything is written, after the weights, EMA and optimizer are restored."""


class NonFiniteLossError(NonFiniteError):
    """The loss or the weights became NaN or Inf; the message names the step and the last good checkpoint."""


@dataclass
class TrainResult:
    model: nn.Module  # the trained network (not the EMA), unwrapped from compile/DDP
    ema_model: nn.Module
    losses: torch.Tensor  # per-step losses of this run (the last HISTORY_STEPS of them), on the CPU
    step: int
    checkpoint: Path | None


def train(config: TrainConfig, *, resume: str | Path | None = None, overwrite: bool = False,
          progress: bool = True, init_from: str | Path | None = None,
          evaluator: Evaluator | None = None, objective: Objective | None = None) -> TrainResult:
    """Train as ``config`` says. ``resume``: continue from that checkpoint exactly where it stopped (its folder
    is the default ``out_dir``). ``overwrite``: replace a run already in ``out_dir``, which is refused otherwise.
    ``init_from``: start from the weights of that checkpoint or diffusers folder (fine-tuning; see
    :mod:`~diffusion_core.train.init_from`), a new run in every other respect. ``evaluator``: what measures the
    samples of ``config.eval_every``, :func:`diffusion_core.evaluation.training_evaluator` (the command line
    passes it; train sits below the evaluation package and does not import it). ``objective``: train that
    instead of the denoising loss (:class:`Objective`); with ``resume``, the objective the checkpoint was trained
    with, whose state it restores (a checkpoint holding an objective's state is not resumed without one).

    Raises:
        InvalidInput: a bad setting, data, checkpoint or out_dir, before anything is written.
        NonFiniteLossError: the loss or the weights became NaN/Inf; the last good checkpoint is kept.
        TrainingInterrupted: Ctrl-C or SIGTERM; a checkpoint of the last finished step was written first.
    """
    if init_from is not None and resume is not None:
        raise InvalidInput("resume and init_from (--resume, --init-from) exclude each other: resume continues a "
                           "run, init_from starts a new one from another model's weights")
    if config.eval_every and evaluator is None:
        raise InvalidInput("eval_every needs evaluator=diffusion_core.evaluation.training_evaluator (the "
                           "measurement lives in the evaluation package, above train; the command line passes it)")
    run = _Run(config, resume, init_from, evaluator, objective)
    if run.start == run.config.steps:
        log.warning("the checkpoint is already at step %d = steps; nothing to train", run.start)
        return run.result()
    return run.train(overwrite, progress)


def _check_sizes(config: TrainConfig, source: DataSource, device: torch.device) -> None:
    """Sizes no machine can hold are refused here, in words, instead of by the allocator mid-run."""
    per_example = 4 * math.prod(source.sample_shape)
    check_fits_memory("batch_size", config.batch_size, 4 * per_example, "a batch (data, noise, noisy data, "
                      "prediction)", device)
    check_fits_memory("log_every", min(config.log_every, config.steps), 8, "the per-step losses of a log window",
                      device)


def _warmup_notice(config: TrainConfig, auto: bool) -> None:
    """Say what the warmup does when it is not the plain default: shortened for a short run, or longer than it."""
    w, n = config.warmup_steps, config.steps
    if auto and w < DEFAULT_WARMUP:
        log.info("learning-rate warmup: %d steps, a fifth of this %d-step run (--warmup-steps sets it)", w, n)
    elif w > n:
        log.warning("warmup_steps=%d is longer than the run (steps=%d): the learning rate ends at %.0f%% of lr; "
                    "resuming with more steps finishes the warmup", w, n, 100 * n / w)


class _Run:
    """One training run. Built from the config, it checks every input and builds the data, network and optimizer
    step (restored from the checkpoint it resumes), writing nothing; :meth:`train` then takes the run's folder and
    runs the loop, whose parts (one step, the log, the checkpoint) are the methods below, sharing the run's state."""

    def __init__(self, config: TrainConfig, resume: str | Path | None, init_from: str | Path | None = None,
                 evaluator: Evaluator | None = None, objective: Objective | None = None) -> None:
        self.resume, self.init_from, self.evaluator, self.objective = resume, init_from, evaluator, objective
        self.device = resolve_device(config.device)
        self.auto_warmup = config.warmup_steps is None and resume is None
        self.config, self.ckpt, notices = settle(config, resume)
        self._join_processes()
        self._build()
        self.start, self.last_saved, self.history = 0, None, []
        if self.ckpt is not None:
            self.start = restore(self.ckpt, resume, self.model, self.step_fn, self.config, self.gen, self.device,
                                 self.info)
            self._restore_objective()
            if self.info.is_main:
                for line in notices:
                    log.warning("resuming with a changed optimizer setting, %s", line)

    # ------------------------------------------------------------------ before the run: checks and set-up
    def _restore_objective(self) -> None:
        """The objective's state back from the checkpoint; a checkpoint that holds one is not resumed without it
        (it would go on with another loss)."""
        if self.objective is not None:
            self.objective.restore(self.start, self.ckpt.objective, self.ckpt.extra)
        elif self.ckpt.objective:
            raise InvalidInput(f"cannot resume: checkpoint {str(self.resume)!r} was trained with an objective of its "
                               "own (a distillation); resume it with the command that started it (distill --resume)")

    def _join_processes(self) -> None:
        """Join torchrun's process group (each process on its own GPU) and turn on the CUDA backend switches."""
        self.info = info = setup_distributed(self.device)
        if info.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", info.local_rank)
            torch.cuda.set_device(self.device)
        if self.config.batch_size % info.world_size:
            raise InvalidInput(f"batch_size={self.config.batch_size} must be divisible by the number of processes "
                               f"({info.world_size})")
        configure_backends(self.device)

    def _build(self) -> None:
        """The data, network, diffusion, optimizer step and data generator, in the order the seeds fix: the same
        initial weights on every rank (DDP also broadcasts them), dropout that differs per rank."""
        config, device, info = self.config, self.device, self.info
        torch.manual_seed(config.seed)
        self.source = source = DataSource(config, device, info)
        self.model_config = model_config_for(config, source.channels, source.num_classes, source.data_size)
        _check_sizes(config, source, device)
        if self.ckpt is not None:
            check_resume(self.ckpt, source, self.model_config)
        model = build_model(self.model_config)
        if self.init_from is not None:  # before the EMA and the optimizer copy the weights
            model.load_state_dict(initial_weights(self.init_from, self.model_config, config))
        model = model.to(device)
        if info.rank > 0:  # dropout differs per rank; the data order (the generator below) is shared
            torch.manual_seed(config.seed + 1_000_003 * info.rank)
        # the DDPM a vp run trains (schedule indices), or the continuous path of the others (path times)
        self.diffusion = config.diffusion().to(device) if config.path is TrainPath.VP else config.gaussian_path()
        self.draw_times = config.time_sampler()  # continuous paths only: the run's time density
        if config.uses_channels_last and source.is_image:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        compile_model = config.compile if config.compile is not None else device.type == "cuda"
        self.step_fn = TrainStep(model, self.diffusion, config, device, info, autocast_dtype(config.precision, device),
                                 compile_model, loss=None if self.objective is None else self.objective.loss)
        self.gen = torch.Generator(device).manual_seed(config.seed)  # data order, timesteps and noise

    # ------------------------------------------------------------------ the run
    def train(self, overwrite: bool, progress: bool) -> TrainResult:
        """Take the run's folder, prepare the data, write ``config.json``, run the loop; close what it opened."""
        config, info = self.config, self.info
        resuming = Path(self.resume) if self.resume else None
        folder = RunDir(config.out_dir, resuming=resuming, overwrite=overwrite) if info.is_main \
            else NoRunDir(config.out_dir)
        with folder as self.run_dir:
            self.source.prepare(Path(config.out_dir) / "data-cache", self.run_dir.claim)  # Ctrl-C here stops at once
            if self.ckpt is not None:
                check_resume_data(self.ckpt, self.source)
            self.run_dir.start()  # from here on the run writes (and an earlier run it replaces is gone)
            if info.is_main:
                write_json(self.run_dir.claim("config.json"), {"train": config.to_dict(), "model": self.model_config,
                                                               **self._objective_record()})
                _warmup_notice(config, self.auto_warmup)
            self.run_log = RunLog(self.run_dir.path, resume_step=self.start if self.ckpt is not None else None,
                                  claim=self.run_dir.claim) if info.is_main else None
            try:
                with StopRequest() as stop:
                    return self._loop(stop, progress)
            finally:
                self.source.close()
                if self.run_log is not None:
                    self.run_log.close()

    def _loop(self, stop: StopRequest, progress: bool) -> TrainResult:
        """Steps ``start`` .. ``config.steps - 1``; after each, whatever is due (:meth:`_after_step`)."""
        config = self.config
        self.batches = self.source.batches(self.gen, self.start)
        self.window = LossWindow(min(config.log_every, config.steps), self.device)  # a log at least at the end
        self.started = time.perf_counter()
        self.wall_offset = self.run_log.wall_offset if self.run_log is not None else 0.0
        self.tick, self.tick_step, self.saved_at = self.started, self.start, self.started
        self.bar = tqdm_class()(range(self.start, config.steps), disable=not (progress and self.info.is_main),
                                desc="train", initial=self.start, total=config.steps)
        self.model.train()
        # On the CPU: as many threads as other programs leave cores free (a spinning thread pool sharing cores
        # with another busy process stalls at every parallel region).
        with AdaptiveThreads.for_device(self.device) as threads:
            try:
                for step in self.bar:
                    threads.update()
                    if self.objective is not None:
                        self.objective.begin_step(step, self.step_fn)
                    self._step(step)
                    self._after_step(step + 1, stop)
            finally:
                self.bar.close()
        if self.info.is_main and config.steps > self.start:
            self._preview("preview_final.png")
        return self.result()

    def _step(self, step: int) -> None:
        """Optimizer step ``step``. The global batch (examples, timesteps, noise, label dropout) is drawn
        identically on every rank and each keeps its slice, so N ranks see exactly the batch one process would."""
        B, local, gen, device = self.config.batch_size, self.source.local, self.gen, self.device
        x0, labels = next(self.batches)
        if self.objective is not None:  # the objective's own times
            t = self.objective.draw_times(B, gen, device)[local]
        elif self.config.path is TrainPath.VP:  # DDPM's schedule index, drawn as it always was
            t = torch.randint(0, self.diffusion.num_timesteps, (B,), generator=gen, device=device)[local]
        else:  # a time of the continuous path, from the run's time density
            t = self.draw_times(self.diffusion, B, generator=gen, device=device)[local]
        noise = torch.randn((B, *self.source.sample_shape), generator=gen, device=device)[local]
        if labels is not None:  # Ho & Salimans' label dropout (guidance.drop_labels), drawn for the global batch
            coin = torch.rand((B,), generator=gen, device=device)[local]
            labels = torch.where(coin < self.config.p_uncond, torch.full_like(labels, self.source.num_classes), labels)
        loss, grad_norm = self.step_fn(x0, t, noise, step, labels)
        self.window.add(loss, grad_norm)

    def _after_step(self, done: int, stop: StopRequest) -> None:
        """After ``done`` steps: the log and NaN/Inf check, a requested stop, a checkpoint, a preview, when due."""
        config, info = self.config, self.info
        at_log = done % config.log_every == 0 or done == config.steps
        if at_log:
            self._check_window(done)
            self._write_log(done)
        if agree(stop.requested, info, at_log):
            self._save(done)
            raise TrainingInterrupted(done, self.last_saved if info.is_main else None)
        due = done % config.checkpoint_every == 0 or done == config.steps
        if at_log and config.checkpoint_minutes and not due:
            due = agree(time.perf_counter() - self.saved_at >= 60 * config.checkpoint_minutes, info, True)
        if due:
            self._save(done)
        if info.is_main and config.preview_every and done % config.preview_every == 0:
            self._preview(f"preview_{done:06d}.png")
        if info.is_main and config.eval_every and (done % config.eval_every == 0 or done == config.steps):
            self._evaluate(done)

    def result(self) -> TrainResult:
        losses = torch.cat(self.history)[-HISTORY_STEPS:] if self.history else torch.empty(0)
        return TrainResult(self.model, self.step_fn.ema.model, losses, max(self.start, self.config.steps),
                           self.last_saved)

    # ------------------------------------------------------------------ what the loop writes
    def _check_window(self, step: int) -> None:
        """Stop at the first NaN/Inf loss since the last check (every rank together)."""
        w = self.window
        with host_sync_point("non-finite check"):
            bad = first_non_finite(w.losses[w.checked:w.n], self.info.enabled)
            if bad is not None:
                first = step - w.n + w.checked + bad + 1
                raise NonFiniteLossError(f"loss became NaN or Inf at step {first}{self._last_good()}")
            w.checked = w.n

    def _write_log(self, step: int) -> None:
        """One ``metrics.jsonl`` record for the window that ends at ``step``, and the progress bar's numbers."""
        w = self.window
        with host_sync_point("log"):
            losses = w.losses[:w.n].to("cpu", torch.float32, copy=True)  # the buffer is reused
            self.history.append(losses)
            if sum(h.numel() for h in self.history) > HISTORY_STEPS:
                self.history[:] = [torch.cat(self.history)[-HISTORY_STEPS:]]
            now = time.perf_counter()
            record = LogRecord(step=step, loss=float(losses.mean()), lr=self.step_fn.optimizer.param_groups[0]["lr"],
                               grad_norm=float(w.grad_norms[:w.n].float().mean()),
                               img_per_s=(step - self.tick_step) * self.config.batch_size / (now - self.tick),
                               wall_s=self.wall_offset + now - self.started)
        self.tick, self.tick_step = now, step
        w.reset()
        if self.run_log is not None:
            self.run_log.write(record)
        self.bar.set_postfix(loss=f"{record.loss:.4f}", img_s=f"{record.img_per_s:.0f}")

    def _save(self, step: int) -> None:
        """The checkpoint of ``step``, after the NaN/Inf check: every rank gives its RNG state, rank 0 writes."""
        with host_sync_point("checkpoint"):
            self._check_window(step)
            rng = gather_rng(self.gen, self.device, self.info)
            if self.info.is_main:
                self.last_saved = self._write_checkpoint(step, rng)
                self.run_log.plot()
            self.saved_at = time.perf_counter()

    def _write_checkpoint(self, step: int, rng: dict[str, torch.Tensor]) -> Path:
        s, source = self.step_fn, self.source
        try:
            return save_checkpoint(
                self.run_dir.claim(CHECKPOINT_NAME), step=step, train_config=self.config.to_dict(),
                model_config=self.model_config, model=self.model.state_dict(), ema=s.ema.state_dict(),
                optimizer=s.optimizer.state_dict(), scaler=s.scaler.state_dict() if s.scaler.is_enabled() else None,
                rng=rng, extra={"class_names": source.class_names,
                                **({"data": source.data_record} if source.data_record else {}),
                                **self._objective_record()},
                objective=None if self.objective is None else self.objective.state())
        except NonFiniteError as e:
            raise NonFiniteLossError(f"the weights became NaN or Inf by step {step} ({e}){self._last_good()}") from None

    def _objective_record(self) -> dict[str, Any]:
        return {} if self.objective is None else self.objective.record()

    def _last_good(self) -> str:
        return f"; the last good checkpoint is {self.last_saved}" if self.last_saved else ""

    def _evaluate(self, step: int) -> None:
        """``--eval-every``: ``eval_samples`` samples of the EMA model from fixed noise, measured by the evaluator
        and logged. Rank 0 only, at a host sync point, inside ``fork_rng``: the training's random stream is the same
        with or without it (the noise has a generator of its own; the measurement may seed torch)."""
        config, device = self.config, self.device
        with host_sync_point("evaluation"), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            started = time.perf_counter()
            x = default_samples(config, self.step_fn.ema.model, self.source.sample_shape, config.eval_samples, device)
            samples = x.to("cpu", torch.float64).numpy()
            record = self.evaluator(samples, config, step=step, sample_s=time.perf_counter() - started)
        self.tick += time.perf_counter() - started  # the next record's img/s counts training time only
        self.run_log.write(record)
        log.info("evaluation at step %d: FD %.4g, KID %.4g, precision %.3f, recall %.3f (%.1f s)", step, record.fd,
                 record.kid, record.precision, record.recall, record.sample_s + record.measure_s)

    def _preview(self, name: str) -> None:
        on_grid = {} if self.objective is None else {"grid": self.objective.preview_grid()}  # a student's DDIM grid
        preview(self.step_fn.ema.model, self.config, self.source.sample_shape, self.device, self.run_dir.claim(name),
                **on_grid)


@torch.no_grad()
def preview(model: nn.Module, config: TrainConfig, sample_shape: tuple[int, ...], device: torch.device, path: Path,
            n: int = 64, grid: torch.Tensor | None = None) -> Path:
    """Samples of ``model`` with its path's default sampler (:mod:`.path_sampling`; 50 network calls, or T if
    fewer), or DDIM on ``grid``: a PNG grid for images, a scatter PNG for 2-D points."""
    with host_sync_point("preview"):
        x = default_samples(config, model, sample_shape, 1000 if len(sample_shape) == 1 else n, device, grid=grid)
        if len(sample_shape) == 1:
            return save_scatter(x, path)
        # a class-conditional model samples each class in turn: one class per grid column
        classes = getattr(getattr(model, "config", None), "num_classes", 0) or 0
        return save_image_grid(x, path, nrow=classes or None, scale=max(1, 64 // sample_shape[-1]))
