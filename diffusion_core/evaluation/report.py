"""What ``eval`` reports, as dataclasses (``--json`` writes :func:`dataclasses.asdict` of :class:`EvalReport`), and
the table it prints."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AtN", "EvalReport", "MetricReport", "format_table", "write_json"]


@dataclass(frozen=True)
class AtN:
    """One metric at one sample size N: samples vs reference, and the floor (held-out real vs reference)."""

    n: int
    value: float
    floor: float
    std_error: float | None = None  # KID's standard error over subsets; None for the other metrics
    floor_std_error: float | None = None


@dataclass(frozen=True)
class MetricReport:
    name: str  # "FD", "KID", "precision", "recall", "SW1", "W2", "MMD2"
    description: str
    at_n: list[AtN]
    # the least-squares line value = a + b / N over the N above, read at 1/N = 0 (Chong & Forsyth 2020); None
    # with a single N
    extrapolated: float | None
    extrapolated_floor: float | None


@dataclass(frozen=True)
class EvalReport:
    samples: str
    reference: str
    feature_network: str
    feature_description: str
    num_samples: int  # rows of SAMPLES
    num_reference: int  # rows of the reference half every set is compared with
    num_floor: int  # rows of the other, held-out half: the real-vs-real floor
    seed: int
    metrics: list[MetricReport]
    skipped: list[str] = field(default_factory=list)  # "W2: ..." for a metric left out, with the reason

    def metric(self, name: str) -> MetricReport:
        return next(m for m in self.metrics if m.name == name)


def _num(v: float | None, se: float | None = None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    text = f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return text + (f"±{se:.2g}" if se and se < 10 else f"±{se:.0f}" if se else "")


def _cells(m: MetricReport) -> list[str]:
    cells = [f"{_num(a.value, a.std_error)} ({_num(a.floor, a.floor_std_error)})" for a in m.at_n]
    return cells + [f"{_num(m.extrapolated)} ({_num(m.extrapolated_floor)})"]


def format_table(r: EvalReport) -> str:
    """The report as text: a header naming the sets and the feature network, then one row per metric, one column
    per N (each cell ``value (floor)``) and the extrapolation to infinite N."""
    lines = [f"samples:   {r.samples} ({r.num_samples} examples)",
             f"reference: {r.reference} ({r.num_reference} examples; floor: {r.num_floor} held-out real examples "
             "against the same reference)",
             f"features:  {r.feature_network}: {r.feature_description}", ""]
    head = ["metric"] + [f"N={a.n}" for a in r.metrics[0].at_n] + ["N->inf (1/N fit)"]
    rows = [[m.name] + _cells(m) for m in r.metrics]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    lines += ["", "each cell: samples vs reference (real held-out vs reference: the floor at the same N)"]
    lines += [f"{m.name}: {m.description}" for m in r.metrics]
    lines += [f"skipped {s}" for s in r.skipped]
    return "\n".join(lines)


def write_json(r: EvalReport, path: str | Path) -> None:
    Path(path).write_text(json.dumps(dataclasses.asdict(r), indent=2) + "\n")
