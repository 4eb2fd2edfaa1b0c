"""Few-step generation by distillation, measured: quality with the library's evaluation tool and images per second,
for a teacher's samplers and its distilled students, on one data set; writes a JSON file and prints a table.

    python -m benchmarks.distill_quality --teacher docs/examples/checkpoints/digits/checkpoint.safetensors \\
        --runs runs/distill --out benchmarks/results/quality/distill-DATE.json

With ``--runs`` the students are distilled first, with ``diffusion-core distill`` (its defaults unless given):
progressive 64 -> 4 steps, then 4 -> 2 and 2 -> 1, each run's wall time recorded from its ``metrics.jsonl``.
With ``--students`` already distilled checkpoints are measured instead. Every sample set: 1,000 samples from the
same seed, scored by ``benchmarks/eval_scores.py`` (FD, KID, precision, recall in the ``digits-mlp`` features at
N = 898 with their floors). Images per second: the best of three timed samplings of ``--timing-batch`` images,
in-process, after one untimed run; meaningful only on an otherwise idle machine (the load average at the start
and the end is stored beside it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from diffusion_core import __version__
from diffusion_core.cli import main as cli
from diffusion_core.train import TrainConfig, load_checkpoint, load_model
from diffusion_core.train.path_sampling import sample_on_grid, sample_on_path

from .eval_scores import Scorer

# (sampler, steps, spacing): at 1-4 steps "trailing" starts at the top step, as the students' grids do (the
# default "linspace" grid of 1 step is step 1 alone, numpy's and diffusers' linspace(0, 999, 1) = [0]).
TEACHER_ROWS = [("ddim", 1, "trailing"), ("ddim", 2, "trailing"), ("ddim", 4, "trailing"), ("dpmpp-2m", 10, "linspace"),
                ("ddim", 50, "linspace")]
ROUNDS = [(64, 4, "dg4"), (4, 2, "dg2"), (2, 1, "dg1")]


def _round_of(run: Path) -> dict:
    """A distilled run's rounds and wall time, from its ``metrics.jsonl`` and checkpoint record (empty if absent)."""
    log = run / "metrics.jsonl"
    if not log.is_file():
        return {}
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    record = (load_checkpoint(str(run / "checkpoint.safetensors")).extra or {}).get("distillation", {})
    grid = record.get("grid") or []
    return {"wall_s": max(r["wall_s"] for r in records if "wall_s" in r),
            "rounds": f"{record.get('steps_from', '?')} -> {len(grid) - 1}"}


def distill_students(teacher: str, runs: Path, extra: list[str]) -> list[dict]:
    """Progressive rounds 64 -> 4 -> 2 -> 1 with ``diffusion-core distill``; returns each student and its wall time."""
    students, source = [], teacher
    for steps_from, steps_to, name in ROUNDS:
        out = runs / name
        cli(["distill", "--checkpoint", source, "--method", "progressive", "--steps-from", str(steps_from),
             "--steps-to", str(steps_to), "--out-dir", str(out), "--no-progress", *extra])
        source = str(out / "checkpoint.safetensors")
        students.append({"checkpoint": source, "rounds": f"{steps_from} -> {steps_to}",
                         "wall_s": _round_of(out)["wall_s"]})
    return students


def sampler_of(checkpoint: str):
    """``draw(noise, generator) -> samples`` as ``diffusion-core sample`` draws them for this checkpoint: DDIM on a
    student's distilled grid, or ``(sampler, steps)`` of its path for a teacher."""
    ckpt = load_checkpoint(checkpoint)
    config, model = TrainConfig.from_dict(ckpt.train_config), load_model(ckpt).eval()
    grid = (ckpt.extra or {}).get("distillation", {}).get("grid")
    if grid is not None:
        return len(grid) - 1, lambda noise, g: sample_on_grid(config, model, noise, grid, progress=False)
    return None, lambda noise, g, sampler, steps, spacing: sample_on_path(
        config, model, noise, sampler=sampler, steps=steps, spacing=spacing, generator=g, progress=False)


@torch.no_grad()
def measure(draw, scorer: Scorer, num: int, timing_batch: int, shape, **kw) -> dict:
    g = torch.Generator().manual_seed(0)
    x = draw(torch.randn(num, *shape, generator=g), g, **kw)
    row = scorer(x.clamp(-1, 1))
    noise = torch.randn(timing_batch, *shape, generator=torch.Generator().manual_seed(1))
    draw(noise, torch.Generator().manual_seed(1), **kw)  # untimed: first-call costs
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        draw(noise, torch.Generator().manual_seed(1), **kw)
        best = min(best, time.perf_counter() - start)
    return {**row, "images_per_s": timing_batch / best}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--runs", help="a folder to distill the students into (it must not exist)")
    group.add_argument("--students", nargs="+", help="distilled checkpoints to measure")
    parser.add_argument("--distill-args", default="", help="extra arguments for diffusion-core distill, one string")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--timing-batch", type=int, default=100)
    parser.add_argument("--out", required=True)
    ns = parser.parse_args(argv)
    load_start = os.getloadavg()
    students = (distill_students(ns.teacher, Path(ns.runs), ns.distill_args.split()) if ns.runs
                else [{"checkpoint": c, **_round_of(Path(c).parent)} for c in ns.students])
    scorer, shape = Scorer("digits", ns.num), (1, 8, 8)
    _, teacher = sampler_of(ns.teacher)
    rows = []
    for sampler, steps, spacing in TEACHER_ROWS:
        rows.append({"model": "teacher", "sampler": sampler, "steps": steps, "spacing": spacing,
                     **measure(teacher, scorer, ns.num, ns.timing_batch, shape, sampler=sampler, steps=steps,
                               spacing=spacing)})
        print(rows[-1], flush=True)
    for student in students:
        steps, draw = sampler_of(student["checkpoint"])
        rows.append({"model": "student", "sampler": "ddim", "steps": steps, **student,
                     **measure(draw, scorer, ns.num, ns.timing_batch, shape)})
        print(rows[-1], flush=True)
    result = {"kind": "distillation", "teacher": ns.teacher, "rows": rows, "timing_batch": ns.timing_batch,
              "machine": _machine(), "evaluation": scorer.description, "diffusion_core": __version__,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "argv": sys.argv[1:]}
    Path(ns.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {ns.out}")


def _machine() -> str:
    """The CPU's model name (``/proc/cpuinfo``) and core count, or the platform's description."""
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _row(q: dict, r: dict) -> str:
    teacher_50 = next(x["fd"] for x in q["rows"] if x["model"] == "teacher" and x["steps"] == 50)
    wall = f"{r['wall_s']:.0f}" if r.get("wall_s") is not None else ""
    who = "student" if r["model"] == "student" else "teacher"
    return (f"| {who} | {r['sampler']} ({r.get('spacing', 'its grid')}) | {r['steps']} | {r['fd']:.2f} | {r['fd_ratio']:.2f} | {r['fd'] / teacher_50:.2f} "
            f"| {r['kid']:.2f} ± {r['kid_se']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['images_per_s']:.0f} | {wall} |")


def table(q: dict) -> str:
    head = ("| Model | Sampler | Steps (network calls) | FD | FD / floor | FD / teacher's DDIM-50 | KID | Precision "
            "| Recall | Images / s | Distillation wall s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    return "\n".join([head, *(_row(q, r) for r in q["rows"])])


def section(q: dict) -> list[str]:
    """The Benchmarks page's section for one stored result."""
    from .path_quality import measured_by

    f, ev = q["rows"][0], q["evaluation"]
    rounds = ", ".join(r["rounds"] for r in q["rows"] if r.get("rounds"))
    return ["## Few-step generation: progressive distillation", "",
            f"Teacher: `{q['teacher']}`, sampled with DDIM and DPM-Solver++(2M). Students: `diffusion-core distill "
            f"--method progressive` from it, rounds {rounds or 'as stored'}, each sampled with DDIM on the grid it "
            f"was distilled for. Command: `python -m benchmarks.distill_quality {' '.join(q['argv'])}`.", "",
            f"FD / floor, KID (± its standard error), precision and recall: one call of the evaluation tool per row, "
            f"{len(q['rows'])} rows. {measured_by(ev)} Floors: FD {f['fd_floor']:.3f}, KID {f['kid_floor']:.2f} ± "
            f"{f['kid_floor_se']:.2f}, precision {f['precision_floor']:.3f}, recall {f['recall_floor']:.3f}. Images "
            f"per second: the best of three samplings of {q['timing_batch']} images after one untimed run, on "
            f"{q['machine']}, {q['threads']} torch threads (load average {q['loadavg_start'][0]:.2f} at the start, "
            f"{q['loadavg_end'][0]:.2f} at the end). Distillation wall s: each round's `wall_s` in its "
            "`metrics.jsonl`, on the same machine.", "", table(q), ""]


if __name__ == "__main__":
    main()
