"""Training and sampling beside other busy processes: the wall time of the default ``diffusion-core train`` (and of a
``diffusion-core sample``) alone, beside one CPU-bound process and beside two.

    python -m benchmarks.busy_cpu --out benchmarks/results/busy-cpu/$(date +%F).json
    python -m benchmarks.busy_cpu --env DIFFUSION_CORE_ADAPT_THREADS=0   # the fixed thread count, for comparison

Each busy process is ``python -c "while True: pass"``, started before the command and killed after it. Nothing
else may run meanwhile. The command runs with this interpreter, so ``PYTHONPATH`` picks the code under test.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .hardware import cpu_model

TRAIN = ["train", "--no-progress", "--log-every", "50"]
SAMPLE = ["sample", "--no-progress", "--num", "256", "--steps", "50"]


def _timed(argv: list[str], env: dict[str, str], busy: int, limit: float, cwd: str) -> dict:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(1.0)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "diffusion_core.cli", *argv], env=env, capture_output=True,
                              text=True, timeout=limit, cwd=cwd)  # not the checkout: PYTHONPATH picks the code
        wall = time.perf_counter() - start
    except subprocess.TimeoutExpired:
        return {"busy": busy, "wall_s": None, "note": f"stopped after {limit:.0f} s"}
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return {"busy": busy, "wall_s": round(wall, 2)}


def _img_per_s(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "record" not in r]  # the training records, not --eval-every's
    return round(sum(r["img_per_s"] for r in rows) / len(rows), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="numbers of busy processes to try")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: train's default)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the timed command")
    parser.add_argument("--limit", type=float, default=1800.0, help="seconds after which a run is stopped")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for busy in args.busy:
            run_dir = Path(tmp) / f"train-{busy}"
            steps = ["--steps", str(args.steps)] if args.steps else []
            runs = [{"command": "train", **_timed([*TRAIN, *steps, "--out-dir", str(run_dir)], env, busy, args.limit, tmp)}]
            if runs[0]["wall_s"] is not None:
                runs[0]["img_per_s"] = _img_per_s(run_dir)
                sample = [*SAMPLE, "--checkpoint", str(run_dir / "checkpoint.safetensors"),
                          "--out", str(Path(tmp) / f"samples-{busy}.png")]
                runs.append({"command": "sample", **_timed(sample, env, busy, args.limit, tmp)})
            for row in runs:
                print(json.dumps(row), flush=True)
            rows += runs
    result = {"cpu": cpu_model(), "cores": os.cpu_count(),
              "env": dict(kv.split("=", 1) for kv in args.env), "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
