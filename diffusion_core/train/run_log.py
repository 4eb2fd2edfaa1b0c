"""What a run logs: ``metrics.jsonl`` (one JSON object per logged step, appended as it trains and continued on
resume; with ``--eval-every`` also one :class:`EvalRecord` per evaluation, marked ``"record": "eval"``),
TensorBoard scalars when the ``tensorboard`` package is installed, and ``loss.png``.

Memory stays bounded: the losses of the steps since the last record wait in preallocated device buffers
(:class:`LossWindow`, read once per ``log_every`` steps), and the trainer hands over one record per window.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = ["EvalRecord", "LogRecord", "LossWindow", "RunLog", "first_non_finite", "read_evals", "read_metrics"]

METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class LogRecord:
    step: int  # optimizer steps done
    loss: float  # mean training loss over the steps since the previous record
    lr: float  # learning rate of the last step
    grad_norm: float  # mean global gradient norm (before clipping) over those steps
    img_per_s: float  # training images per second (all processes) since the previous record
    wall_s: float  # seconds of training so far, summed over the run's resumes


@dataclass(frozen=True)
class EvalRecord:
    """One ``--eval-every`` measurement (:mod:`diffusion_core.evaluation`): ``n`` samples of the EMA model, drawn
    with the path's default sampler, against ``n`` examples of the built-in data, on the ``features`` network."""

    step: int  # optimizer steps done
    features: str  # the feature network: digits-mlp for the digits, raw for 2-D points
    n: int
    fd: float  # Frechet distance
    fd_floor: float  # the same for held-out real data at this n: what a perfect model would score
    kid: float  # unbiased KID
    kid_std_error: float
    kid_floor: float
    precision: float
    recall: float
    sw1: float | None  # sliced Wasserstein-1 (2-D sets; None for images)
    mmd2: float | None  # Gaussian-kernel MMD^2 (2-D sets)
    w2: float | None  # exact Wasserstein-2 (2-D sets, with POT installed)
    sample_s: float  # seconds drawing the samples
    measure_s: float  # seconds measuring them
    record: str = "eval"  # tells its line in metrics.jsonl from a LogRecord's


def _lines(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_metrics(path: str | Path) -> list[LogRecord]:
    """The training records of a ``metrics.jsonl`` (its evaluations: :func:`read_evals`)."""
    return [LogRecord(**d) for d in _lines(path) if "record" not in d]


def read_evals(path: str | Path) -> list[EvalRecord]:
    """The ``--eval-every`` records of a ``metrics.jsonl``."""
    return [EvalRecord(**d) for d in _lines(path) if d.get("record") == "eval"]


class RunLog:
    """Append-only metrics of one run in ``out_dir``. ``resume_step``: keep the records up to that step (the
    checkpoint's) and drop later ones, which came from the part of the earlier run that the checkpoint lost.
    ``claim(name) -> path``: enters each file in the run's manifest before it is written (``RunDir.claim``)."""

    def __init__(self, out_dir: str | Path, *, resume_step: int | None = None, claim=None) -> None:
        self._claim = claim or (lambda name: Path(out_dir) / name)
        self.path = self._claim(METRICS_NAME)
        kept: list[dict] = []
        if resume_step is not None and self.path.exists():
            kept = [d for d in _lines(self.path) if d["step"] <= resume_step]
        tmp = self.path.with_name(f".{METRICS_NAME}.tmp")
        tmp.write_text("".join(json.dumps(d) + "\n" for d in kept))
        os.replace(tmp, self.path)
        train_records = [d for d in kept if "record" not in d]
        self.wall_offset = train_records[-1]["wall_s"] if train_records else 0.0
        self._file = open(self.path, "a")
        self._tb = _tensorboard_writer(out_dir, None if resume_step is None else resume_step + 1, self._claim)

    def write(self, record: LogRecord | EvalRecord) -> None:
        self._file.write(json.dumps(dataclasses.asdict(record)) + "\n")
        self._file.flush()
        if self._tb is not None:
            if isinstance(record, EvalRecord):
                scalars = {f"eval/{k}": v for k, v in dataclasses.asdict(record).items()
                           if k not in ("step", "features", "n", "record") and v is not None}
            else:
                scalars = {f"train/{k}": getattr(record, k) for k in ("loss", "lr", "grad_norm", "img_per_s")}
            for tag, value in scalars.items():
                self._tb.add_scalar(tag, value, record.step)
            self._tb.flush()

    def plot(self) -> Path | None:
        """Draw ``loss.png`` (log-scale loss against step) from the file; ``None`` when there is nothing yet.
        Drawn with matplotlib's object API: pyplot's backend (a notebook's inline plots) is left alone. A short
        log is drawn with markers: a line through a single record draws nothing."""
        records = read_metrics(self.path)
        if not records:
            return None
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.5), dpi=100)
        ax = fig.subplots()
        few = len(records) <= 50
        ax.plot([r.step for r in records], [r.loss for r in records], lw=1, marker="o" if few else None, ms=3)
        ax.set(xlabel="step", ylabel=f"training loss (mean per {METRICS_NAME} record)", yscale="log")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out = self._claim("loss.png")
        tmp = out.with_name(".loss.png.tmp")
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
        return out

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _tensorboard_writer(out_dir: str | Path, purge_step: int | None, claim):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra: pip install "diffusion-core-torch[tensorboard]"
        return None
    before = set(os.listdir(out_dir))
    # purge_step: on resume TensorBoard hides the earlier events from that step on, as metrics.jsonl drops them
    writer = SummaryWriter(log_dir=str(out_dir), purge_step=purge_step)
    for name in sorted(set(os.listdir(out_dir)) - before):  # the event file it opened (its name has a timestamp)
        if name.startswith("events.out.tfevents."):
            claim(name)
    return writer


class LossWindow:
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


def first_non_finite(losses: torch.Tensor, distributed: bool) -> int | None:
    """Index of the first non-finite entry of ``losses`` (one host read), agreed over ranks."""
    bad = torch.cat([~torch.isfinite(losses), torch.ones(1, dtype=torch.bool, device=losses.device)])
    idx = bad.to(torch.uint8).argmax().to(torch.int64)  # the first True; the appended one means "none"
    if distributed:  # every rank must stop together, or the others hang in the next all-reduce
        dist.all_reduce(idx, op=dist.ReduceOp.MIN)
    i = int(idx)
    return None if i >= len(losses) else i
