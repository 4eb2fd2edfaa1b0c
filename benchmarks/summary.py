"""Formatting shared by the terminal summary and the docs page: the row table and the target checks."""
from __future__ import annotations

from typing import Iterable

__all__ = ["config_name", "efficiency", "ratio_text", "table", "targets", "target_lines"]


def config_name(r: dict) -> str:
    parts = [r["workload"], r["impl"], r["preset"], f"b{r['batch']}", r["precision"]]
    if r.get("channels_last"):
        parts.append("channels_last")
    parts.append({"eager": "eager", "default": "compiled", "reduce-overhead": "CUDA graphs"}[r["compile"]])
    return " ".join(parts)


def efficiency(r: dict) -> str:
    """MFU for network workloads, % of copy bandwidth (and GB/s) for q(x_t | x_0)."""
    if "pct_copy_bw" in r:
        bound = f", {100 * r['pct_bound']:.0f}% of RNG+copy bound" if "pct_bound" in r else ""
        return f"{100 * r['pct_copy_bw']:.1f}% BW ({r['gbs']:.2f} GB/s){bound}"
    if "mfu" in r:
        if r["mfu"] > 1:  # e.g. fp16 on a CPU without fp16 matmuls: autocast ran ops faster than the probe
            return f"MFU n/a: above the {r['precision']} matmul probe ({r['tflops'] * 1e3:.1f} GFLOP/s)"
        return f"{100 * r['mfu']:.1f}% MFU ({r['tflops'] * 1e3:.1f} GFLOP/s)"
    return ""


def ratio_text(r: dict) -> str:
    if r["impl"] != "ours":
        return "(peer)"
    if "ratio" not in r:
        return ""
    return f"{r['ratio']:.2f}x vs {r['peer']}"


def _fmt_rate(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def table(rows: Iterable[dict]) -> list[str]:
    """A fixed-width text table, one line per row, in the order the rows ran."""
    head = ("configuration", "img/s", "MFU / bandwidth", "ratio to peer")
    body = [(config_name(r), _fmt_rate(r["img_per_s"]), efficiency(r), ratio_text(r)) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(4)]
    fmt = lambda x: "  ".join(str(v).ljust(w) if i != 1 else str(v).rjust(w)  # noqa: E731
                             for i, (v, w) in enumerate(zip(x, widths)))
    return [fmt(head), "  ".join("-" * w for w in widths), *(fmt(x) for x in body)]


def _best(rows, key="img_per_s", **want):
    match = [r for r in rows if all(r.get(k) == v for k, v in want.items())]
    return max(match, key=lambda r: r[key]) if match else None


def targets(rows: list[dict], device_type: str) -> list[tuple[str, float | None, float, str]]:
    """(goal, measured value or None when not measured, threshold, detail) for this device's targets."""
    out = []
    dev = "cuda" if device_type == "cuda" else "cpu"
    rows = [r for r in rows if r["device"].split(":")[0] == dev]
    if dev == "cpu":
        best = _best(rows, workload="train", impl="ours", preset="ddpm-cifar10", batch=32)
        for prec, goal in (("fp32", 2.0), ("bf16", 1.3)):
            peer = _best(rows, workload="train", impl="diffusers", preset="ddpm-cifar10", batch=32,
                         precision=prec, compile="eager")
            val = best["img_per_s"] / peer["img_per_s"] if best and peer else None
            detail = f"ours best = {config_name(best)}" if best else ""
            if val and prec == "fp32" and "mfu" in best and "mfu" in peer:
                # The same FLOPs on both sides: the ratio is bounded by how much MFU is left.
                detail += (f"; ours runs at {100 * best['mfu']:.0f}% MFU, diffusers at {100 * peer['mfu']:.0f}%, "
                           f"so {goal:g}x would need {100 * goal * peer['mfu']:.0f}% of the measured fp32 matmul peak")
            out.append((f"ddpm-cifar10 training step, batch 32: ours (best) / diffusers {prec} eager", val, goal, detail))
        q = _best(rows, "pct_copy_bw", workload="qsample", impl="ours", compile="eager", precision="fp32")
        qa = _best(rows, "pct_copy_bw", workload="qsample", impl="ours")
        out.append(("q(x_t|x_0) with noise, fp32 eager: % of copy bandwidth",
                    100 * q["pct_copy_bw"] if q else None, 50.0, _with_bound(q)))
        out.append(("q(x_t|x_0) with noise, best setting: % of copy bandwidth",
                    100 * qa["pct_copy_bw"] if qa else None, 50.0, _with_bound(qa)))
        return out
    tr = [r for r in rows if r["workload"] == "train" and r["impl"] == "ours" and r["preset"] == "ddpm-cifar10"
          and r["precision"] == "bf16" and r["compile"] != "eager"]
    top = max(tr, key=lambda r: r["mfu"]) if tr else None
    out.append(("ddpm-cifar10 training, bf16 compiled: MFU %", 100 * top["mfu"] if top else None, 35.0,
                config_name(top) if top else ""))
    dd = [r for r in rows if r["workload"] == "ddim" and r["impl"] == "ours" and r["preset"] == "ddpm-cifar10"
          and r["batch"] == 256]
    top = max(dd, key=lambda r: r["mfu"]) if dd else None
    out.append(("DDIM-50 sampling, batch 256: MFU %", 100 * top["mfu"] if top else None, 40.0,
                config_name(top) if top else ""))
    for wl in ("step", "ddim"):
        graph = _best(rows, workload=wl, impl="ours", preset="ddpm-cifar10", batch=1, compile="reduce-overhead")
        eager = _best(rows, workload=wl, impl="ours", preset="ddpm-cifar10", batch=1, compile="eager")
        val = graph["img_per_s"] / eager["img_per_s"] if graph and eager else None
        out.append((f"batch 1 {wl}: CUDA-graph / eager per-step rate", val, 3.0, ""))
    q = _best(rows, "pct_copy_bw", workload="qsample", impl="ours")
    out.append(("q(x_t|x_0) with noise: % of copy bandwidth", 100 * q["pct_copy_bw"] if q else None, 80.0,
                config_name(q) if q else ""))
    return out


def _with_bound(r: dict | None) -> str:
    """The row's name, and how close it runs to the limit set by the generator plus the copy."""
    if not r:
        return ""
    if "pct_bound" not in r:
        return config_name(r)
    most = r["bytes"] / r["bound_s"] / 1e9 / r["copy_gbs"]
    return (f"{config_name(r)}; drawing the noise alone caps it at {100 * most:.1f}% of copy bandwidth "
            f"(normal generator {r['normal_rng_gsps'] * 1e3:.0f} M/s), and it runs at {100 * r['pct_bound']:.0f}% of that cap")


def target_lines(rows: list[dict], device_type: str) -> list[str]:
    lines = [f"targets ({'GPU' if device_type == 'cuda' else 'CPU'}; goals, not asserts):"]
    for goal, val, threshold, detail in targets(rows, device_type):
        if val is None:
            lines.append(f"  [not measured] {goal} (goal >= {threshold:g})")
            continue
        mark = "met" if val >= threshold else "MISSED"
        lines.append(f"  [{mark}] {goal}: {val:.2f} (goal >= {threshold:g}){'; ' + detail if detail else ''}")
    return lines
