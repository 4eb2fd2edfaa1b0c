"""Runs code snippets as a reader would, one forked child per snippet; used by tests/test_site_code.py.

Usage: ``python -I site_code_runner.py CHECKOUT JOBS.json RESULTS.json`` in a folder outside the checkout.
JOBS is ``{"groups": [{"preload": [module, ...], "jobs": [{"id": ..., "code": ...}, ...]}, ...]}``. For
each group the runner imports the ``preload`` modules, then runs every job in a child forked from that
state: the child executes the code in an empty ``__main__`` namespace, so a name the code neither defines
nor imports raises ``NameError``, and a state a job leaves behind (random seeds, caches) dies with its child.
RESULTS gets ``{"environment": {...}, "results": {id: {"ok", "error", "output", "seconds"}}}``.

Only the standard library is imported before the first group, so a group without preloads runs each job as
a fresh interpreter would. Before anything else the runner fails (exit 3) if any ``sys.path`` entry lies in
the checkout: the code must get ``diffusion_core`` from an installed distribution.
"""
import contextlib
import importlib
import io
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

JOB_TIMEOUT_S = 600
PARALLEL = max(1, min(4, os.cpu_count() or 1))


def _child(job: dict, out: Path) -> None:
    signal.alarm(JOB_TIMEOUT_S)
    buffer, start = io.StringIO(), time.perf_counter()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            exec(compile(job["code"], job["id"], "exec", dont_inherit=True), {"__name__": "__main__"})  # noqa: S102
        result = {"ok": True, "error": ""}
    except BaseException:  # noqa: BLE001 - every failure, SystemExit included, is the job's result
        result = {"ok": False, "error": traceback.format_exc(limit=-8)}
    result.update(output=buffer.getvalue()[-3000:], seconds=round(time.perf_counter() - start, 2))
    out.write_text(json.dumps(result))


def _run_group(jobs: list[dict], scratch: Path) -> dict:
    results, running, queue = {}, {}, list(enumerate(jobs))
    while queue or running:
        while queue and len(running) < PARALLEL:
            index, job = queue.pop(0)
            out = scratch / f"{index}.json"
            pid = os.fork()
            if pid == 0:
                try:
                    _child(job, out)
                finally:
                    os._exit(0)
            running[pid] = (job["id"], out)
        pid, status = os.wait()
        name, out = running.pop(pid)
        results[name] = json.loads(out.read_text()) if out.is_file() else {
            "ok": False, "error": f"the child died (wait status {status})", "output": "", "seconds": None}
    return results


def main(checkout: str, jobs_file: str, results_file: str) -> int:
    root = Path(checkout).resolve()
    inside = [p for p in sys.path if p and Path(p).resolve().is_relative_to(root)]
    if inside or Path.cwd().resolve().is_relative_to(root):
        print(f"the checkout {root} is importable here: sys.path {inside}, cwd {Path.cwd()}", file=sys.stderr)
        return 3
    spec = json.loads(Path(jobs_file).read_text())
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for number, group in enumerate(spec["groups"]):
            for module in group["preload"]:
                importlib.import_module(module)
            folder = Path(scratch) / str(number)
            folder.mkdir()
            results.update(_run_group(group["jobs"], folder))
    import diffusion_core

    environment = {"diffusion_core": diffusion_core.__file__, "sys_path": sys.path, "cwd": os.getcwd()}
    Path(results_file).write_text(json.dumps({"environment": environment, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
