"""Few-step generation by distillation, measured: quality with the library's evaluation tool and images per second,
for a teacher's samplers and its distilled students, on one data set; writes a JSON file and prints a table.

    python -m benchmarks.distill_quality --teacher docs/examples/checkpoints/digits/checkpoint.safetensors \\
        --runs runs/distill --iters-per-round 200,450,450 --distill-args "--lr 5e-4" \\
        --out benchmarks/results/quality/distill-DATE.json

With ``--runs`` the students are distilled first, with ``diffusion-core distill`` (its defaults unless given):
progressive ``--steps-from`` (64) -> 4 steps, then 4 -> 2 and 2 -> 1, each run's wall time recorded from its
``metrics.jsonl`` and its command's, start to end. ``--iters-per-round A,B,C`` gives the three runs their own
counts: the rounds down to 4 steps are the easy ones (each student starts from a teacher one halving away), the
last two the hard ones.
With ``--students`` already distilled checkpoints are measured instead. Every sample set: 1,000 samples from the
same seed, scored by ``benchmarks/eval_scores.py`` (FD, KID, precision, recall in the ``digits-mlp`` features at
N = 898 with their floors). Images per second: the best of three timed samplings of ``--timing-batch`` images,
in-process, after one untimed run; meaningful only on an otherwise idle machine (the load average at the start
and the end is stored beside it).

A class-conditional teacher is sampled with its labels cycling through the classes (0..9, 0..9, ...: equal counts
per class), with classifier-free guidance ``--guidance S`` (diffusers' ``guidance_scale``; Ho & Salimans'
:math:`w = S - 1`; default 1, none) in every teacher row, and its students distilled with ``diffusion-core distill
--guidance S`` in the first round (Meng et al. 2023 at a fixed :math:`w`; the later rounds distill the guided
student on) and sampled without further guidance. Its rows add the requested-label share, the classifier's mean
confidence and the smallest class share (``benchmarks.conditional_quality.label_scores``)::

    python -m benchmarks.distill_quality --teacher docs/examples/checkpoints/digits-cond/checkpoint.safetensors \
        --guidance 2 --runs runs/distill-cond --out benchmarks/results/quality/distill-cond-DATE.json

S = 2: in ``benchmarks/results/quality/digits-cond-2026-12-07.json`` (scales 1, 2, 4) the best FD / floor is at
s = 1, no guidance (0.93 at DDIM-50, requested label 0.972); of the guided scales, 2 has the better FD / floor
(3.83 against s = 4's 8.09 at DDIM-50; 3.64 against 7.44 with DPM-Solver++ at 10) and recall (0.585 against 0.342)
at the same requested-label share (0.999 against 1.000): the smallest scale that gets every requested label.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from diffusion_core import __version__
from diffusion_core.cli import main as cli
from diffusion_core.train import TrainConfig, load_checkpoint, load_model
from diffusion_core.train.path_sampling import sample_on_grid, sample_on_path

from diffusion_core.metrics import DigitsClassifier

from . import hardware
from .conditional_quality import label_scores
from .eval_scores import Scorer

# (sampler, steps, spacing): at 1-4 steps "trailing" starts at the top step, as the students' grids do (the
# default "linspace" grid of 1 step is step 1 alone, numpy's and diffusers' linspace(0, 999, 1) = [0]).
TEACHER_ROWS = [("ddim", 1, "trailing"), ("ddim", 2, "trailing"), ("ddim", 4, "trailing"), ("dpmpp-2m", 10, "linspace"),
                ("ddim", 50, "linspace")]
ROUNDS = [(4, "dg4"), (2, "dg2"), (1, "dg1")]  # the students: each distilled from the one before (the first from
# the teacher at --steps-from steps)


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


def distill_students(teacher: str, runs: Path, extra: list[str], guidance: float = 1.0,
                     steps_from: int = 64, iters: list[int] | None = None) -> list[dict]:
    """Progressive rounds ``steps_from`` -> 4 -> 2 -> 1 with ``diffusion-core distill`` (the first at ``guidance``,
    the others distilling its guided student on; ``iters``: each run's ``--iters-per-round``, else distill's default
    or ``extra``'s); returns each student and its wall time."""
    students, source = [], teacher
    for (steps_to, name), n in zip(ROUNDS, iters or [None] * len(ROUNDS)):
        out = runs / name
        guided = ["--guidance", str(guidance)] if source == teacher and guidance != 1.0 else []
        per_run = [] if n is None else ["--iters-per-round", str(n)]
        start = time.perf_counter()
        cli(["distill", "--checkpoint", source, "--method", "progressive", "--steps-from", str(steps_from),
             "--steps-to", str(steps_to), "--out-dir", str(out), "--no-progress", *guided, *extra, *per_run])
        source = str(out / "checkpoint.safetensors")
        students.append({"checkpoint": source, "rounds": f"{steps_from} -> {steps_to}",
                         "wall_s": _round_of(out)["wall_s"], "command_s": time.perf_counter() - start})
        steps_from = steps_to
    return students


def cycling_labels(num: int, classes: int) -> torch.Tensor | None:
    """The labels of ``num`` samples of a model of ``classes`` classes: 0, 1, ..., K - 1, 0, 1, ... (``None`` for an
    unconditional model)."""
    return torch.arange(num) % classes if classes else None


def sampler_of(checkpoint: str, guidance: float = 1.0):
    """``(steps, classes, draw)``, ``draw(noise, generator) -> samples`` as ``diffusion-core sample`` draws them for
    this checkpoint: DDIM on a student's distilled grid (no guidance: a guided student includes its own), or
    ``(sampler, steps)`` of its path for a teacher, guided at ``guidance``. ``classes``: K of a class-conditional
    checkpoint, whose samples take :func:`cycling_labels`, else 0."""
    ckpt = load_checkpoint(checkpoint)
    config, model = TrainConfig.from_dict(ckpt.train_config), load_model(ckpt).eval()
    classes = len((ckpt.extra or {}).get("class_names", []))
    grid = (ckpt.extra or {}).get("distillation", {}).get("grid")
    if grid is not None:
        return len(grid) - 1, classes, lambda noise, g: sample_on_grid(
            config, model, noise, grid, labels=cycling_labels(len(noise), classes), progress=False)
    return None, classes, lambda noise, g, sampler, steps, spacing: sample_on_path(
        config, model, noise, sampler=sampler, steps=steps, spacing=spacing, labels=cycling_labels(len(noise), classes),
        guidance=guidance, generator=g, progress=False)


@torch.no_grad()
def measure(draw, scorer: Scorer, num: int, timing_batch: int, shape, classifier: DigitsClassifier | None = None,
            classes: int = 0, **kw) -> dict:
    """One row: the scores of ``num`` samples of ``draw`` (with ``classifier``, also its label measures against the
    cycling labels of ``classes``) and images per second at ``timing_batch``."""
    g = torch.Generator().manual_seed(0)
    x = draw(torch.randn(num, *shape, generator=g), g, **kw).clamp(-1, 1)
    row = scorer(x)
    if classifier is not None:
        row.update(label_scores(classifier, x, cycling_labels(num, classes)))
    noise = torch.randn(timing_batch, *shape, generator=torch.Generator().manual_seed(1))
    draw(noise, torch.Generator().manual_seed(1), **kw)  # untimed: first-call costs
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        draw(noise, torch.Generator().manual_seed(1), **kw)
        best = min(best, time.perf_counter() - start)
    return {**row, "images_per_s": timing_batch / best}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--runs", help="a folder to distill the students into (it must not exist)")
    group.add_argument("--students", nargs="+", help="distilled checkpoints to measure")
    parser.add_argument("--distill-args", default="", help="extra arguments for diffusion-core distill, one string")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale S of a "
                        "class-conditional teacher (diffusers' convention, 1: none): its rows' and its students' "
                        "first distillation round's")
    parser.add_argument("--steps-from", type=int, default=64, help="the teacher's DDIM steps the first student is "
                        "distilled from (then 4 -> 2 -> 1)")
    parser.add_argument("--iters-per-round", type=lambda v: [int(n) for n in v.split(",")], default=None,
                        help="three comma-separated counts: --iters-per-round of the runs to 4, to 2 and to 1 steps")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--timing-batch", type=int, default=100)
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    ns = _parse(argv)
    load_start = os.getloadavg()
    students = (distill_students(ns.teacher, Path(ns.runs), ns.distill_args.split(), ns.guidance, ns.steps_from,
                                 ns.iters_per_round) if ns.runs
                else [{"checkpoint": c, **_round_of(Path(c).parent)} for c in ns.students])
    scorer, shape = Scorer("digits", ns.num), (1, 8, 8)
    _, classes, teacher = sampler_of(ns.teacher, ns.guidance)
    if ns.guidance != 1.0 and not classes:
        raise SystemExit(f"--guidance needs a class-conditional teacher, and {ns.teacher!r} is unconditional")
    labelled = {"classifier": DigitsClassifier(), "classes": classes} if classes else {}
    rows = []
    for sampler, steps, spacing in TEACHER_ROWS:
        rows.append({"model": "teacher", "sampler": sampler, "steps": steps, "spacing": spacing,
                     **({"guidance": ns.guidance} if classes else {}),
                     **measure(teacher, scorer, ns.num, ns.timing_batch, shape, sampler=sampler, steps=steps,
                               spacing=spacing, **labelled)})
        print(rows[-1], flush=True)
    for student in students:
        steps, _, draw = sampler_of(student["checkpoint"])
        rows.append({"model": "student", "sampler": "ddim", "steps": steps, **student,
                     **measure(draw, scorer, ns.num, ns.timing_batch, shape, **labelled)})
        print(rows[-1], flush=True)
    result = {"kind": "distillation", "teacher": ns.teacher, "rows": rows, "timing_batch": ns.timing_batch,
              "machine": hardware.cpu_description(), "evaluation": scorer.description,
              "diffusion_core": __version__,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "argv": sys.argv[1:]}
    if classes:
        result["guidance"] = ns.guidance
    Path(ns.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {ns.out}")


def _row(q: dict, r: dict) -> str:
    teacher_50 = next(x["fd"] for x in q["rows"] if x["model"] == "teacher" and x["steps"] == 50)
    wall = f"{r['wall_s']:.0f}" if r.get("wall_s") is not None else ""
    who = "student" if r["model"] == "student" else "teacher"
    return (f"| {who} | {r['sampler']} ({r.get('spacing', 'its grid')}) | {r['steps']} | {r['fd']:.2f} | {r['fd_ratio']:.2f} | {r['fd'] / teacher_50:.2f} "
            f"| {r['kid']:.2f} ± {r['kid_se']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['images_per_s']:.0f} | {wall} |" + (
                f" {r['label_accuracy']:.3f} | {r['mean_confidence']:.3f} | {r['min_class_share']:.3f} |"
                if "label_accuracy" in r else ""))


def table(q: dict) -> str:
    """The result's markdown table; a class-conditional teacher's (rows with the classifier's measures) has three
    more columns."""
    head = ("| Model | Sampler | Steps (network calls) | FD | FD / floor | FD / teacher's DDIM-50 | KID | Precision "
            "| Recall | Images / s | Distillation wall s |")
    rule = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if "label_accuracy" in q["rows"][0]:
        head, rule = head + " Requested label | Confidence | Smallest class share |", rule + "---:|---:|---:|"
    return "\n".join([f"{head}\n{rule}", *(_row(q, r) for r in q["rows"])])


def section(q: dict) -> list[str]:
    """The Benchmarks page's section for one stored result."""
    from .path_quality import measured_by

    f, ev = q["rows"][0], q["evaluation"]
    rounds = ", ".join(r["rounds"] for r in q["rows"] if r.get("rounds"))
    guided = "guidance" in q
    return ["## Few-step generation: progressive distillation" + (
                f" of the class-conditional model, guided at s = {q['guidance']:g}" if guided else ""), "",
            f"Teacher: `{q['teacher']}`, sampled with DDIM and DPM-Solver++(2M)"
            f"{_guided_teacher(q) if guided else ''}. Students: `diffusion-core distill "
            f"--method progressive` from it, rounds {rounds or 'as stored'}, each sampled with DDIM on the grid it "
            f"was distilled for{_guided_students(q) if guided else ''}. Command: `python -m "
            f"benchmarks.distill_quality {' '.join(q['argv'])}`.", "",
            f"FD / floor, KID (± its standard error), precision and recall: one call of the evaluation tool per row, "
            f"{len(q['rows'])} rows. {measured_by(ev)} Floors: FD {f['fd_floor']:.3f}, KID {f['kid_floor']:.2f} ± "
            f"{f['kid_floor_se']:.2f}, precision {f['precision_floor']:.3f}, recall {f['recall_floor']:.3f}. Images "
            f"per second: the best of three samplings of {q['timing_batch']} images after one untimed run, on "
            f"{q['machine']}, {q['threads']} torch threads (load average {q['loadavg_start'][0]:.2f} at the start, "
            f"{q['loadavg_end'][0]:.2f} at the end). Distillation wall s: each round's `wall_s` in its "
            f"`metrics.jsonl`, on the same machine.{_total(q)}", "", table(q), ""]


def _total(q: dict) -> str:
    """The whole distillation's time, where the result has each command's (set-up, final preview and checkpoint
    included): empty for results stored before it was recorded."""
    runs = [r for r in q["rows"] if r.get("command_s") is not None]
    if not runs:
        return ""
    return (f" In all, {sum(r['wall_s'] for r in runs):.0f} s of training loops and "
            f"{sum(r['command_s'] for r in runs):.0f} s for the {len(runs)} `diffusion-core distill` commands, "
            "start to end.")


def _guided_teacher(q: dict) -> str:
    return (f", every row with classifier-free guidance s = {q['guidance']:g} (diffusers' guidance_scale; Ho & "
            f"Salimans' w = {q['guidance'] - 1:g}) and the labels cycling through the classes")


def _guided_students(q: dict) -> str:
    return (f", with the same labels and no further guidance: the first round (`--guidance {q['guidance']:g}`) "
            "distilled the guided teacher (Meng et al. 2023 at a fixed w), the later ones its student. Requested "
            "label: the share of samples that `diffusion_core.metrics.DigitsClassifier` assigns to the label asked "
            "for; confidence: its mean top-class probability; smallest class share: the smallest share of samples it "
            "gives one label (0.1 is even)")


if __name__ == "__main__":
    main()
