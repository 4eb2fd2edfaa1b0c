"""Which path, target and time density give the best samples per network call on one budget: each row trained
once with the default budget of its data set, then sampled at 2-32 network evaluations with each path's samplers.

    python -m benchmarks.path_quality train --runs runs/paths          # timed: run it on an otherwise idle machine
    python -m benchmarks.path_quality step-cost --runs runs/paths      # timed too: training img/s per path
    python -m benchmarks.path_quality evaluate --runs runs/paths --out benchmarks/results/quality/paths-DATE.json

Rows: VP with the eps and the v target (DDPM's cosine schedule, uniform steps), rectified flow with uniform and
with logit-normal times (Esser et al. 2024), EDM (its preconditioning, log-normal sigma and weighting; Karras et
al. 2022). Data: the digits unconditional and class-conditional (p_uncond 0.1; sampled without guidance, 100
per class), with the default budget (the digits-8 U-Net, 1,000 steps at batch 128); the 2-D swiss roll and two
moons with the swiss-roll example's budget (the MLP, 3,000 steps at batch 256). All fp32, seed 0.

Samplers: Euler (DDIM with eta = 0), DPM-Solver++(2M), Heun (EDM's Algorithm 1, 2N - 1 calls for N steps), each
on its path's grid: the DDPM's linspace steps for Euler and DPM-Solver++ on VP, uniform t on rectified flow, and
EDM's karras sigmas from sigma = 80 for Heun everywhere and for all three on EDM. x0 is clipped to the data's
range ([-1, 1] for digits, none for points) on every path. Metrics: the library's evaluation tool
(``diffusion_core.evaluation``, what ``diffusion-core eval`` runs; ``benchmarks/eval_scores.py``), one call per
sample set, each metric next to its real-vs-real floor at the same N: digits (1,000 samples) FD, KID, precision
and recall in the ``digits-mlp`` features at N = 898 against half of the real digits, the other half giving the
floor; points (2,000 samples) sliced Wasserstein-1, exact W2 and MMD² against 2,000 fresh draws of the data, 2,000
other draws giving the floor. Training time: each run's wall time and its median images per second over the logged
windows (the first left out), one run after another: the machine's speed drifted by about 10% between runs, so
the cost of a step per path is measured apart (``step-cost``), the rows taking turns on one fixed batch.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diffusion_core import __version__
from diffusion_core.train import TrainConfig, digits, load_checkpoint, load_model, train
from diffusion_core.train.models import build_model, model_config_for
from diffusion_core.train.runtime import DistInfo
from diffusion_core.train.step import TrainStep
from diffusion_core.train.path_sampling import sample_on_path

from .eval_scores import POINTS_N, Scorer

ROWS = {  # name -> TrainConfig options
    "vp-eps": {"path": "vp", "parameterization": "eps"},
    "vp-v": {"path": "vp", "parameterization": "v"},
    "rf-uniform": {"path": "rectified-flow", "time_sampling": "uniform"},
    "rf-logit-normal": {"path": "rectified-flow", "time_sampling": "logit-normal"},
    "edm": {"path": "edm"},
}
DATA = {  # name -> TrainConfig options: each data set's default budget
    "digits": {"dataset": "digits"},
    "digits-cond": {"dataset": "digits", "class_cond": True, "p_uncond": 0.1},
    "swiss-roll": {"dataset": "swiss-roll", "steps": 3000, "batch_size": 256, "lr": 1e-3, "warmup_steps": 100},
    "two-moons": {"dataset": "two-moons", "steps": 3000, "batch_size": 256, "lr": 1e-3, "warmup_steps": 100},
}
NFES = (2, 4, 8, 16, 32)
REFERENCE = ("vp-v", "euler", 50)  # the goal's yardstick: VP DDIM-50 (Euler on linspace steps)
POINTS = POINTS_N  # samples per set of 2-D points
DIGITS = 1000  # samples per set of digits (100 per class when class-conditional)


@dataclass(frozen=True)
class Sampler:
    name: str
    cli_name: str  # the name `diffusion-core sample --sampler` gives it (ddim: Euler when eta = 0)
    spacing: dict  # path -> spacing of its grid
    from_sigma_80: bool  # start at EDM's sigma_max = 80 (Heun needs a finite x/alpha; rectified flow's t = 1 has none)

    def steps(self, nfe: int) -> int:
        return (nfe + 1) // 2 if self.name == "heun" else nfe

    def calls(self, steps: int) -> int:
        return 2 * steps - 1 if self.name == "heun" else steps


SAMPLERS = [Sampler("euler", "ddim", {"vp": "linspace", "rectified-flow": "uniform", "edm": "karras"}, False),
            Sampler("dpmpp-2m", "dpmpp-2m", {"vp": "linspace", "rectified-flow": "uniform", "edm": "karras"}, False),
            Sampler("heun", "heun", {"vp": "karras", "rectified-flow": "karras", "edm": "karras"}, True)]


def run_dir(runs: Path, data: str, row: str) -> Path:
    return runs / f"{data}-{row}"


def train_all(runs: Path, only: list[str] | None) -> None:
    """Every (data, row) in turn, each timed; a finished run (its timing file present) is skipped."""
    for data, data_opts in DATA.items():
        for row, row_opts in ROWS.items():
            out = run_dir(runs, data, row)
            if (only and f"{data}-{row}" not in only) or (out / "timing.json").exists():
                continue
            config = TrainConfig(**{"log_every": 50, **data_opts}, **row_opts, precision="fp32", out_dir=str(out))
            start = time.perf_counter()
            train(config, overwrite=True, progress=False)
            wall = time.perf_counter() - start
            log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            rate = statistics.median(r["img_per_s"] for r in log[1:] or log)
            (out / "timing.json").write_text(json.dumps({"wall_s": wall, "median_img_per_s": rate}))
            print(f"{data}-{row}: {wall:.1f} s, median {rate:.0f} img/s", flush=True)


def step_cost(runs: Path, rounds: int = 20, steps: int = 10) -> dict:
    """Seconds per training step of each path: the trainer's step (times from the run's density, noise, the loss,
    backward, AdamW, EMA) on one fixed batch of digits, the same initial network for every row, the rows taking
    turns ``steps`` steps at a time for ``rounds`` rounds, so that the machine's drifts fall on every row alike;
    the median over rounds of each row's mean step time."""
    x0 = digits()[:128]
    device, steps_of = torch.device("cpu"), {}
    for row, row_opts in ROWS.items():
        config = TrainConfig(dataset="digits", **row_opts, warmup_steps=10, precision="fp32",
                             out_dir=str(runs / "unused")).resolved_warmup()
        torch.manual_seed(0)
        model = build_model(model_config_for(config, 1, 0, x0.shape[-1])).to(memory_format=torch.channels_last)
        target = config.diffusion() if config.path.value == "vp" else config.gaussian_path()
        steps_of[row] = (config, target, TrainStep(model, target, config, device, DistInfo(), None, False))
    g = torch.Generator().manual_seed(0)

    def one(config, target, step, k):
        if config.path.value == "vp":
            t = torch.randint(0, target.num_timesteps, (len(x0),), generator=g)
        else:
            t = config.time_sampler()(target, len(x0), generator=g)
        step(x0, t, torch.randn(x0.shape, generator=g), k)

    times: dict[str, list[float]] = {row: [] for row in ROWS}
    for r in range(rounds + 1):
        for row, (config, target, step) in steps_of.items():
            start = time.perf_counter()
            for k in range(steps):
                one(config, target, step, r * steps + k)
            if r:  # round 0 warms up
                times[row].append((time.perf_counter() - start) / steps)
    seconds = {row: statistics.median(t) for row, t in times.items()}
    return {"steps_per_turn": steps, "rounds": rounds, "batch": len(x0), "seconds_per_step": seconds,
            "cost_vs_vp_v": {row: s / seconds["vp-v"] for row, s in seconds.items()}}


def _sample(model, config: TrainConfig, sampler: Sampler, steps: int, noise: torch.Tensor, labels) -> torch.Tensor:
    return sample_on_path(config, model, noise, sampler=sampler.cli_name, steps=steps,
                          spacing=sampler.spacing[config.path.value], labels=labels,
                          sigma_max=80.0 if sampler.from_sigma_80 else None)


def _noise_and_labels(points: bool, class_cond: bool):
    if points:
        return torch.randn(POINTS, 2, generator=torch.Generator().manual_seed(1)), None
    noise = torch.randn(DIGITS, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return noise, (torch.arange(10).repeat_interleave(DIGITS // 10) if class_cond else None)


def evaluate(runs: Path) -> dict:
    results, evaluation = [], {}
    for data, data_opts in DATA.items():
        points = not data.startswith("digits")
        scorer = Scorer(data_opts["dataset"], POINTS if points else DIGITS)
        for row in ROWS:
            out = run_dir(runs, data, row)
            ckpt = load_checkpoint(out / "checkpoint.safetensors")
            config = TrainConfig.from_dict(ckpt.train_config)
            model = load_model(ckpt)
            noise, labels = _noise_and_labels(points, config.class_cond)
            entry = {"data": data, "row": row, **json.loads((out / "timing.json").read_text()), "samples": []}
            settings = [(s, s.steps(n), n) for s in SAMPLERS for n in NFES]
            if row == REFERENCE[0]:
                settings.append((next(s for s in SAMPLERS if s.name == REFERENCE[1]), REFERENCE[2], None))
            for sampler, steps, budget in settings:
                x = _sample(model, config, sampler, steps, noise, labels)
                m = {"sampler": sampler.name, "steps": steps, "nfe": sampler.calls(steps), "budget": budget,
                     **scorer(x if points else x.clamp(-1, 1))}
                entry["samples"].append(m)
                print(data, row, m, flush=True)
            results.append(entry)
        evaluation[data] = scorer.description
    cost = runs / "step_cost.json"
    return {"kind": "paths", "nfes": NFES, "reference": REFERENCE, "date": time.strftime("%Y-%m-%d"),
            "step_cost": json.loads(cost.read_text()) if cost.exists() else None, "evaluation": evaluation,
            "rows": results, "diffusion_core": __version__, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


LABELS = {"vp-eps": "VP, eps target, uniform t", "vp-v": "VP, v target, uniform t",
          "rf-uniform": "rectified flow, velocity, uniform t", "rf-logit-normal": "rectified flow, velocity, logit-normal t",
          "edm": "EDM, preconditioned D, log-normal sigma"}


def _best(entry: dict, budget: int, key: str) -> dict:
    return min((m for m in entry["samples"] if m["budget"] == budget), key=lambda m: m[key])


def key_of(entry: dict) -> str:
    """What a table ranks the samplers by: FD / floor for digits, the exact W2 for points."""
    return "fd_ratio" if "fd_ratio" in entry["samples"][0] else "w2"


def measured_by(ev: dict) -> str:
    """Which tool, feature network, reference and N a data set's numbers come from."""
    return (f"Measured by `{ev['tool']}` (diffusion_core {ev['diffusion_core']}) against the built-in "
            f"`{ev['reference']}` at N = {ev['n']:,} samples, in the `{ev['feature_network']}` features "
            f"({ev['feature_description']}); each floor is held-out real data against the same reference half at "
            "the same N: what a perfect sampler would score.")


def _digits_text(entries: list[dict], ev: dict) -> list[str]:
    ref = next(m for e in entries for m in e["samples"] if m["budget"] is None)
    f = entries[0]["samples"][0]
    return [f"Each cell: FD / floor of the best sampler at that budget (the sampler and its network calls in brackets; "
            f"Heun uses one call fewer than the budget). FD: {ev['metrics']['FD']}. {measured_by(ev)} Floors: FD "
            f"{f['fd_floor']:.3f}, KID {f['kid_floor']:.2f} ± {f['kid_floor_se']:.2f}, precision "
            f"{f['precision_floor']:.3f}, recall {f['recall_floor']:.3f}. VP-v with DDIM-50: FD / floor "
            f"**{ref['fd_ratio']:.2f}** (FD {ref['fd']:.3f}), KID {ref['kid']:.2f} ± {ref['kid_se']:.2f}, precision "
            f"{ref['precision']:.3f}, recall {ref['recall']:.3f}.", ""]


def _points_text(entries: list[dict], ev: dict) -> list[str]:
    f = entries[0]["samples"][0]
    return [f"Each cell: W2 of the best sampler at that budget to fresh draws of the data (the sampler and its network "
            f"calls in brackets); W2: {ev['metrics']['W2']}. {measured_by(ev)} Floors: W2 {f['w2_floor']:.4f}, sliced W1 "
            f"{f['sw1_floor']:.4f}, MMD² {f['mmd2_floor']:.2e}.", ""]


def section(result: dict) -> list[str]:
    """The Benchmarks page's tables: per data set, the best sampler's quality at each budget of network calls."""
    nfes = result["nfes"]
    head = "| path (target, time density) | training s (img/s) | " + " | ".join(f"{n} NFE" for n in nfes) + " |"
    rule = "|---|---:|" + "---:|" * len(nfes)
    rows_text, samplers_text = (p.replace("\n", " ") for p in __doc__.split("\n\n")[2:4])
    lines = ["## Sample quality per path: VP, rectified flow, EDM", "", rows_text, "", samplers_text, "",
             f"Trained: {result.get('trained') or 'python -m benchmarks.path_quality train'}. Evaluated: "
             f"`{result.get('command', 'python -m benchmarks.path_quality evaluate')}`.", ""]
    for data in dict.fromkeys(e["data"] for e in result["rows"]):
        entries = [e for e in result["rows"] if e["data"] == data]
        ev, key = result["evaluation"][data], key_of(entries[0])
        digits = key == "fd_ratio"
        lines += [f"### {data}", "", *(_digits_text if digits else _points_text)(entries, ev), head, rule]
        for e in entries:
            cells = []
            for n in nfes:
                b = _best(e, n, key)
                cells.append(f"{b[key]:.{2 if digits else 4}f} ({b['sampler']} {b['nfe']})")
            lines.append(f"| {LABELS[e['row']]} | {e['wall_s']:.0f} ({e['median_img_per_s']:.0f}) | "
                         + " | ".join(cells) + " |")
        other = ("KID ± its standard error / precision / recall" if digits else "sliced W1 / MMD²")
        lines += ["", f"{other} of the same settings (floors above):", "", head, rule]
        for e in entries:
            if digits:
                cells = [f"{b['kid']:.2f} ± {b['kid_se']:.2f} / {b['precision']:.3f} / {b['recall']:.3f}"
                         for n in nfes for b in [_best(e, n, key)]]
            else:
                cells = [f"{b['sw1']:.4f} / {b['mmd2']:.2e}" for n in nfes for b in [_best(e, n, key)]]
            lines.append(f"| {LABELS[e['row']]} | | " + " | ".join(cells) + " |")
        lines.append("")
    cost = result.get("step_cost")
    if cost:
        per_row = ", ".join(f"{LABELS[row]} {1000 * s:.0f} ms ({cost['cost_vs_vp_v'][row]:.2f}x VP-v's)"
                            for row, s in cost["seconds_per_step"].items())
        lines += ["### Cost of a training step per path", "",
                  f"`python -m benchmarks.path_quality step-cost`: the training step on one batch of {cost['batch']} "
                  f"digits, the rows taking turns {cost['steps_per_turn']} steps at a time for {cost['rounds']} "
                  f"rounds; median seconds per step: {per_row}.", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["train", "step-cost", "evaluate"])
    parser.add_argument("--runs", type=Path, required=True, help="folder of the runs (one subfolder each)")
    parser.add_argument("--only", nargs="*", help="train only these runs, e.g. digits-edm")
    parser.add_argument("--out", type=Path, help="JSON file the evaluation writes")
    parser.add_argument("--trained", help="evaluate: how the runs were trained (the page prints it with the command)")
    ns = parser.parse_args(argv)
    if ns.stage == "train":
        train_all(ns.runs, ns.only)
    elif ns.stage == "step-cost":
        (ns.runs / "step_cost.json").write_text(json.dumps(step_cost(ns.runs), indent=1))
        print((ns.runs / "step_cost.json").read_text())
    else:
        command = f"python -m benchmarks.path_quality evaluate --runs {ns.runs} --out {ns.out}"
        result = {**evaluate(ns.runs), "command": command, "trained": ns.trained}
        ns.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
