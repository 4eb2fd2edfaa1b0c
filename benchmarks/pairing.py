"""Which diffusers row each of our rows is compared with: like for like, or best setting against best setting.

* **Like for like** (the per-row ``ratio``): the peer row with the same device, workload, preset,
  batch, precision, memory format and compile mode. Where the peer has no such row there is no
  ratio; no other row of the peer stands in for it.
* **Best against best** (targets, head-to-head lines, ``best_peer_ratio``): the fastest row of each
  side within one device, workload, preset and batch (and one precision where a precision is named),
  both rows named.

The pairing is recomputed from the measured rows whenever they are read (:func:`annotate`), so a
stored run is always shown under these rules, whatever pairing it stored.
"""
from __future__ import annotations

from .matrix import PEERS

__all__ = ["GROUP", "LIKE", "PAIR_KEYS", "MODE", "PRECISIONS", "setting", "fmt_rate", "verdict", "like_peer",
           "best", "pair", "annotate", "versus", "unmatched", "head_to_head"]

GROUP = ("device", "workload", "preset", "batch")
LIKE = GROUP + ("precision", "channels_last", "compile")
PAIR_KEYS = ("peer", "ratio", "ratios", "best_peer", "best_peer_ratio")  # derived here, never trusted from a file
MODE = {"eager": "eager", "default": "compiled", "reduce-overhead": "CUDA graphs"}
PRECISIONS = ("fp32", "bf16", "fp16")


def setting(r: dict) -> str:
    """Precision, memory format and compile mode of a row, e.g. ``fp32 channels_last eager``."""
    return " ".join([r["precision"], *(["channels_last"] if r.get("channels_last") else []), MODE[r["compile"]]])


def fmt_rate(x: float) -> str:
    """img/s as printed everywhere: 3 significant digits, or a whole number with thousands separators."""
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def verdict(ratio: float) -> str:
    """Ours against the peer in plain words; a ratio that prints as 1.00x still says which side is ahead."""
    side = "faster" if ratio > 1 else "slower"
    if f"{ratio:.2f}" == "1.00":
        return f"ours {100 * abs(ratio - 1):.1f}% {side}"
    return f"ours {side}"


def _key(r: dict, keys: tuple[str, ...]) -> tuple:
    return tuple(bool(r.get(k)) if k == "channels_last" else r[k] for k in keys)


def like_peer(ours: dict, rows: list[dict], impl: str = PEERS[0]) -> dict | None:
    """The ``impl`` row measured in exactly our row's configuration, or None."""
    want = _key(ours, LIKE)
    return next((r for r in rows if r["impl"] == impl and _key(r, LIKE) == want), None)


def best(rows: list[dict], impl: str, like: dict, precision: str | None = None) -> dict | None:
    """The fastest ``impl`` row in ``like``'s device, workload, preset and batch (in ``precision`` if given)."""
    want = _key(like, GROUP)
    match = [r for r in rows if r["impl"] == impl and _key(r, GROUP) == want
             and (precision is None or r["precision"] == precision)]
    return max(match, key=lambda r: r["img_per_s"]) if match else None


def pair(ours: dict, rows: list[dict]) -> dict:
    """``peer``/``ratio`` (like for like with diffusers), ``ratios`` (every like peer),
    ``best_peer``/``best_peer_ratio`` (diffusers' fastest row at the same workload, preset and batch)."""
    out: dict = {}
    for impl in PEERS:
        peer = like_peer(ours, rows, impl)
        if peer:
            name, ratio = f"{impl} {setting(peer)}", ours["img_per_s"] / peer["img_per_s"]
            out.setdefault("ratios", {})[name] = ratio
            if impl == PEERS[0]:
                out.update(peer=name, ratio=ratio)
    top = best(rows, PEERS[0], ours)
    if top:
        out.update(best_peer=f"{PEERS[0]} {setting(top)}", best_peer_ratio=ours["img_per_s"] / top["img_per_s"])
    return out


def annotate(rows: list[dict]) -> list[dict]:
    """Copies of ``rows`` whose pairing keys are recomputed from the rows themselves (stored ones dropped)."""
    out = [{k: v for k, v in r.items() if k not in PAIR_KEYS} for r in rows]
    for r in out:
        if r["impl"] == "ours":
            r.update(pair(r, out))
    return out


def versus(ours: dict, peer: dict) -> str:
    """``ours fp32 eager 3.13 img/s against diffusers fp32 eager 2.77 img/s: 1.13x, ours faster``."""
    ratio = ours["img_per_s"] / peer["img_per_s"]
    return (f"ours {setting(ours)} {fmt_rate(ours['img_per_s'])} img/s against {peer['impl']} {setting(peer)} "
            f"{fmt_rate(peer['img_per_s'])} img/s: {ratio:.2f}x, {verdict(ratio)}")


def unmatched(ours: dict, rows: list[dict]) -> str:
    """A note when diffusers has no row in our row's own setting (so its best may not be its best here)."""
    return "" if like_peer(ours, rows) else f" (diffusers has no {setting(ours)} row in this run)"


def _group_name(r: dict) -> str:
    return f"{r['workload']} {r['preset']}, batch {r['batch']}"


def head_to_head(rows: list[dict]) -> list[str]:
    """One line per (workload, preset, batch, precision) that ours or diffusers measured: our best setting in
    that precision against diffusers' best in that precision, or which side has no row in it."""
    lines, firsts = [], {}
    for r in rows:
        if r["impl"] in ("ours", PEERS[0]):
            firsts.setdefault(_key(r, GROUP), r)
    for like in firsts.values():
        for prec in PRECISIONS:
            ours, peer = best(rows, "ours", like, prec), best(rows, PEERS[0], like, prec)
            if not ours and not peer:
                continue
            head = f"{_group_name(like)}, {prec}: "
            if ours and peer:
                lines.append(head + versus(ours, peer) + unmatched(ours, rows))
            else:
                have, side = (ours, "ours") if ours else (peer, PEERS[0])
                missing = PEERS[0] if ours else "ours"
                lines.append(head + f"not compared: no {prec} row of {missing} in this run "
                             f"({side} {setting(have)} {fmt_rate(have['img_per_s'])} img/s)")
    return lines
