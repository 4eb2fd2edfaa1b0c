"""Formatting shared by the terminal summary and the docs page: the row table and the target checks."""
from __future__ import annotations

from typing import Iterable, NamedTuple

from .matrix import GUIDANCE_SCALE, GUIDED_COST_GOAL, PEERS
from .pairing import LIKE, best, fmt_rate, setting, unmatched, verdict, versus

__all__ = ["Target", "AtMost", "config_name", "efficiency", "ratio_text", "best_peer_text", "table", "best_vs_best",
           "guided_cost", "targets", "target_lines"]


class Target(NamedTuple):
    """A goal: met when the measured ``value`` is at least ``threshold``; ``value`` None when not measured."""
    goal: str
    value: float | None
    threshold: float
    detail: str

    op = ">="  # how the goal reads: "goal >= 2"

    def met(self) -> bool:
        return self.value is not None and self.value >= self.threshold


class AtMost(Target):
    """A cost goal: met when the measured ``value`` is below ``threshold`` (e.g. guided / unguided time < 2.1)."""
    __slots__ = ()
    op = "<"

    def met(self) -> bool:
        return self.value is not None and self.value < self.threshold


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
    """Ratio to each peer row in exactly this row's setting, or ``no like peer`` (never another setting)."""
    if r["impl"] != "ours":
        return "(peer)"
    if not r.get("ratios"):
        return "no like peer (diffusers has no row in this setting)"
    return "; ".join(f"{x:.2f}x vs {name} ({verdict(x)})" for name, x in r["ratios"].items())


def best_peer_text(r: dict) -> str:
    """Ratio to diffusers' fastest row at the same workload, preset and batch, in any setting (named)."""
    if r["impl"] != "ours":
        return ""
    if "best_peer_ratio" not in r:
        return "no diffusers row"
    return f"{r['best_peer_ratio']:.2f}x vs {r['best_peer']} ({verdict(r['best_peer_ratio'])})"


def table(rows: Iterable[dict]) -> list[str]:
    """A fixed-width text table, one line per row, in the order the rows ran."""
    head = ("configuration", "img/s", "MFU / bandwidth", "ratio to like peer", "vs diffusers' best")
    body = [(config_name(r), fmt_rate(r["img_per_s"]), efficiency(r), ratio_text(r), best_peer_text(r)) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    fmt = lambda x: "  ".join(str(v).ljust(w) if i != 1 else str(v).rjust(w)  # noqa: E731
                             for i, (v, w) in enumerate(zip(x, widths)))
    return [fmt(head), "  ".join("-" * w for w in widths), *(fmt(x) for x in body)]


def _best(rows, key="img_per_s", **want):
    match = [r for r in rows if all(r.get(k) == v for k, v in want.items())]
    return max(match, key=lambda r: r[key]) if match else None


def best_vs_best(rows: list[dict], goal: str, threshold: float, precision: str | None = None, **where) -> tuple:
    """Target check: our fastest row against diffusers' fastest, both in ``precision`` when one is named.

    Returns (goal, ratio or None, threshold, detail); the detail names both settings and their img/s,
    or which side has no row (a precision goal is never measured against another precision).
    """
    like = next((r for r in rows if all(r[k] == v for k, v in where.items())), None)
    ours = best(rows, "ours", like, precision) if like else None
    peer = best(rows, PEERS[0], like, precision) if like else None
    if not (ours and peer):
        missing = " or ".join(n for n, x in (("ours", ours), (PEERS[0], peer)) if not x)
        have = ours or peer
        detail = f"no {precision + ' ' if precision else ''}row of {missing} in this run"
        if have:
            detail += f"; {have['impl']} {setting(have)} {fmt_rate(have['img_per_s'])} img/s is not compared"
            detail += " with another precision" if precision else ""
        return Target(goal, None, threshold, detail)
    ratio = ours["img_per_s"] / peer["img_per_s"]
    detail = versus(ours, peer) + unmatched(ours, rows)
    if all(k in ours for k in ("mfu", "flops", "peak_tflops")) and "mfu" in peer:
        # The MFU ours would need to reach the goal: the goal's img/s times our FLOPs per image.
        need = threshold * peer["img_per_s"] * ours["flops"] / ours["batch"] / (ours["peak_tflops"] * 1e12)
        detail += (f"; ours runs at {100 * ours['mfu']:.0f}% MFU, diffusers at {100 * peer['mfu']:.0f}%, so "
                   f"{threshold:g}x would need {100 * need:.0f}% of the measured {ours['precision']} matmul peak")
    return Target(goal, ratio, threshold, detail)


GUIDED_GOAL = (f"DDIM-50 with classifier-free guidance (scale {GUIDANCE_SCALE:g}, one network call at twice the batch "
               "per step): guided time / unguided time on the same class-conditional network, same setting")


def guided_cost(rows: list[dict]) -> list[Target]:
    """One cost target per guided row of ours (``ddim_cfg``): its time over the unguided ``ddim_cond`` row of ours
    in exactly its setting (device, preset, batch, precision, memory format, compile mode), i.e. unguided img/s over
    guided img/s; one "not measured" target when there is no guided row, or no unguided row in its setting."""
    guided = [r for r in rows if r["workload"] == "ddim_cfg" and r["impl"] == "ours"]
    if not guided:
        return [AtMost(GUIDED_GOAL, None, GUIDED_COST_GOAL, "no ddim_cfg row of ours in this run")]
    out = []
    for g in guided:
        want = [bool(g.get(k)) if k == "channels_last" else g[k] for k in LIKE if k != "workload"]
        plain = next((r for r in rows if r["workload"] == "ddim_cond" and r["impl"] == "ours"
                      and [bool(r.get(k)) if k == "channels_last" else r[k] for k in LIKE if k != "workload"] == want),
                     None)
        goal = f"{GUIDED_GOAL}: {g['preset']}, batch {g['batch']}, {setting(g)}"
        if plain is None:
            out.append(AtMost(goal, None, GUIDED_COST_GOAL, f"no unguided ddim_cond {setting(g)} row of ours in this "
                              f"run; guided {fmt_rate(g['img_per_s'])} img/s is not compared with another setting"))
            continue
        ratio = plain["img_per_s"] / g["img_per_s"]
        out.append(AtMost(goal, ratio, GUIDED_COST_GOAL,
                          f"guided {fmt_rate(g['img_per_s'])} img/s against unguided {fmt_rate(plain['img_per_s'])} "
                          f"img/s: guidance costs {ratio:.2f}x the unguided time"))
    return out


def targets(rows: list[dict], device_type: str) -> list[Target]:
    """(goal, measured value or None when not measured, threshold, detail) for this device's targets; each says
    whether it is met (``met()``) and how it reads (``op``: at least, or below for a cost)."""
    out = []
    dev = "cuda" if device_type == "cuda" else "cpu"
    rows = [r for r in rows if r["device"].split(":")[0] == dev]
    if dev == "cpu":
        train = dict(workload="train", preset="ddpm-cifar10", batch=32)
        out.append(best_vs_best(rows, "ddpm-cifar10 training step, batch 32: ours' best setting / diffusers' best "
                                "setting (any precision, memory format, compile mode)", 2.0, **train))
        out.append(best_vs_best(rows, "ddpm-cifar10 training step, batch 32, bf16: ours' best bf16 setting / "
                                "diffusers' best bf16 setting", 1.3, precision="bf16", **train))
        q = _best(rows, "pct_copy_bw", workload="qsample", impl="ours", compile="eager", precision="fp32")
        qa = _best(rows, "pct_copy_bw", workload="qsample", impl="ours")
        out.append(Target("q(x_t|x_0) with noise, fp32 eager: % of copy bandwidth",
                          100 * q["pct_copy_bw"] if q else None, 50.0, _with_bound(q)))
        out.append(Target("q(x_t|x_0) with noise, best setting: % of copy bandwidth",
                          100 * qa["pct_copy_bw"] if qa else None, 50.0, _with_bound(qa)))
        return out + guided_cost(rows)
    tr = [r for r in rows if r["workload"] == "train" and r["impl"] == "ours" and r["preset"] == "ddpm-cifar10"
          and r["precision"] == "bf16" and r["compile"] != "eager"]
    top = max(tr, key=lambda r: r["mfu"]) if tr else None
    out.append(Target("ddpm-cifar10 training, bf16 compiled: MFU %", 100 * top["mfu"] if top else None, 35.0,
                      config_name(top) if top else ""))
    dd = [r for r in rows if r["workload"] == "ddim" and r["impl"] == "ours" and r["preset"] == "ddpm-cifar10"
          and r["batch"] == 256]
    top = max(dd, key=lambda r: r["mfu"]) if dd else None
    out.append(Target("DDIM-50 sampling, batch 256: MFU %", 100 * top["mfu"] if top else None, 40.0,
                      config_name(top) if top else ""))
    for wl in ("step", "ddim"):
        out.append(_graph_vs_eager(rows, wl))
    q = _best(rows, "pct_copy_bw", workload="qsample", impl="ours")
    out.append(Target("q(x_t|x_0) with noise: % of copy bandwidth", 100 * q["pct_copy_bw"] if q else None, 80.0,
                      config_name(q) if q else ""))
    return out + guided_cost(rows)


def _graph_vs_eager(rows: list[dict], workload: str) -> tuple:
    """Our fastest CUDA-graph row at batch 1 against our eager row in the same precision and memory format."""
    goal = f"batch 1 {workload}: CUDA-graph / eager per-step rate (same precision and memory format)"
    graph = _best(rows, workload=workload, impl="ours", preset="ddpm-cifar10", batch=1, compile="reduce-overhead")
    if not graph:
        return Target(goal, None, 3.0, "no CUDA-graph row of ours in this run")
    eager = _best(rows, workload=workload, impl="ours", preset="ddpm-cifar10", batch=1, compile="eager",
                  precision=graph["precision"], channels_last=graph["channels_last"])
    if not eager:
        return Target(goal, None, 3.0, f"no eager {setting(graph)} counterpart of ours in this run")
    ratio = graph["img_per_s"] / eager["img_per_s"]
    return Target(goal, ratio, 3.0, (f"ours {setting(graph)} {fmt_rate(graph['img_per_s'])} img/s against ours "
                              f"{setting(eager)} {fmt_rate(eager['img_per_s'])} img/s"))


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
    for t in targets(rows, device_type):
        goal, val, threshold, detail = t
        if val is None:
            lines.append(f"  [not measured] {goal} (goal {t.op} {threshold:g}){'; ' + detail if detail else ''}")
            continue
        mark = "met" if t.met() else "MISSED"
        lines.append(f"  [{mark}] {goal}: {val:.2f} (goal {t.op} {threshold:g}){'; ' + detail if detail else ''}")
    return lines
