"""The benchmark tooling: the site's Benchmarks page is exactly what the stored results render to, the
derived metrics are the stated arithmetic, ours is compared with diffusers like for like (or best setting
against best setting, both named), and compile time is a cold compile. (The benchmarks run with `pytest benchmarks`.)"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import hardware, matrix, pairing, report, runner, summary  # noqa: E402


def test_benchmarks_page_is_rendered_from_the_stored_results(monkeypatch):
    paths = sorted(report.RESULTS.glob("*.json"))
    assert paths, "benchmarks/results/ holds no run"
    monkeypatch.setattr(report, "plot", lambda rows, title, path: True)  # no PNGs written by the test
    runs = [report.load(p) for p in paths]
    quality = [json.loads(p.read_text()) for p in sorted((report.RESULTS / "quality").glob("*.json"))]
    rendered = report.render(runs, report.ASSETS, report.PAGE, quality, _stored_interleaved())
    assert report.PAGE.read_text() == rendered, "docs/benchmarks.md is stale: run `python -m benchmarks.report`"


def test_every_table_row_has_as_many_cells_as_its_header():
    rows, header = [], None
    for line in report.PAGE.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = len(re.split(r"(?<!\\)\|", line)) - 2  # a \| inside a cell does not split it
        if header is None:
            header = cells
        rows.append((line, cells, header))
    assert rows
    for line, cells, expected in rows:
        assert cells == expected, line


def test_every_img_per_s_on_the_page_is_in_the_results():
    page = report.PAGE.read_text()
    measured = {report._fmt(r["img_per_s"]) for p in report.RESULTS.glob("*.json") for r in report.load(p)["rows"]}
    for line in page.splitlines():
        if line.startswith("| ours") or line.startswith("| diffusers"):
            assert line.split("|")[6].strip() in measured, line


def test_rng_copy_bound_arithmetic(monkeypatch):
    monkeypatch.setattr(hardware, "copy_bandwidth", lambda dev: 20.0)  # GB/s
    monkeypatch.setattr(hardware, "normal_rate", lambda dev: 0.1)  # 1e9 normals/s
    row = {"device": "cpu", "precision": "fp32", "gbs": 0.5, "bytes": 8e8, "normals_drawn": 1e8, "seconds_best": 1.6}
    runner.rescale(row)
    bound_s = 1e8 / 0.1e9 + 8e8 / 20e9  # 1.0 s of drawing + 0.04 s of streaming
    assert row["bound_s"] == pytest.approx(bound_s)
    assert row["pct_bound"] == pytest.approx(bound_s / 1.6)
    assert row["pct_copy_bw"] == pytest.approx(0.5 / 20.0)


TRAIN = {"workload": "train", "preset": "ddpm-cifar10", "batch": 32, "device": "cpu"}


def row(impl: str, precision: str, img_per_s: float, mode: str = "eager", channels_last: bool = False, **kw):
    """A training row of the CPU target's workload, preset and batch."""
    return {**TRAIN, "impl": impl, "precision": precision, "compile": mode, "channels_last": channels_last,
            "img_per_s": img_per_s, **kw}


def test_bf16_target_is_not_met_by_our_fp32_against_their_bf16():
    rows = [row("ours", "fp32", 3.0, channels_last=True), row("diffusers", "fp32", 2.5),
            row("diffusers", "bf16", 1.0)]
    goal, val, threshold, detail = summary.targets(rows, "cpu")[1]
    assert "bf16" in goal and threshold == 1.3
    assert val is None  # 3.0 / 1.0 = 3x would have read "met"
    assert "no bf16 row of ours" in detail and "not compared with another precision" in detail
    line = report.targets_section({"rows": rows}, "cpu")[3]
    assert line.endswith("| not measured |") and "| met |" not in line
    # With a bf16 row of ours, bf16 is set against bf16 only: 0.9 / 1.0, missed.
    goal, val, _, detail = summary.targets(rows + [row("ours", "bf16", 0.9)], "cpu")[1]
    assert val == pytest.approx(0.9)
    assert "ours bf16 eager 0.9 img/s against diffusers bf16 eager 1 img/s: 0.90x, ours slower" in detail


def test_best_target_sets_our_best_setting_against_the_peers_best_and_names_both():
    rows = [row("ours", "fp32", 2.0), row("ours", "fp32", 3.0, channels_last=True), row("diffusers", "fp32", 2.5)]
    _, val, _, detail = summary.targets(rows, "cpu")[0]
    assert val == pytest.approx(3.0 / 2.5)
    assert detail.startswith("ours fp32 channels_last eager 3 img/s against diffusers fp32 eager 2.5 img/s: 1.20x, "
                             "ours faster (diffusers has no fp32 channels_last eager row in this run)")
    # On a machine with native bf16 the peer's best is its bf16 row, and we are slower: the target says so.
    amd = [row("ours", "bf16", 8.27, channels_last=True), row("ours", "fp32", 6.0),
           row("diffusers", "fp32", 5.0), row("diffusers", "bf16", 8.55)]
    (_, best, _, detail), (_, bf16, _, _) = summary.targets(amd, "cpu")[:2]
    assert best == bf16 == pytest.approx(8.27 / 8.55)
    statement = "ours bf16 channels_last eager 8.27 img/s against diffusers bf16 eager 8.55 img/s: 0.97x, ours slower"
    assert statement in detail
    assert f"train ddpm-cifar10, batch 32, bf16: {statement}" in "\n".join(pairing.head_to_head(amd))


def test_training_target_states_the_mfu_the_goal_needs():
    # 1e12 FLOPs per image on both sides, a 1 TFLOP/s peak: 2x the peer's 0.25 img/s needs 0.5 TFLOP/s, 50% MFU.
    rows = [row("ours", "fp32", 0.3, flops=32e12, peak_tflops=1.0, mfu=0.3),
            row("diffusers", "fp32", 0.25, flops=32e12, peak_tflops=1.0, mfu=0.25)]
    detail = summary.targets(rows, "cpu")[0][3]
    assert "ours runs at 30% MFU, diffusers at 25%, so 2x would need 50% of the measured fp32 matmul peak" in detail


def test_a_compiled_or_channels_last_row_with_only_an_eager_contiguous_peer_gets_no_ratio():
    rows = pairing.annotate([row("ours", "fp32", 4.0, mode="default", ratio=1.6, peer="diffusers fp32 eager"),
                             row("ours", "fp32", 3.0, channels_last=True), row("ours", "fp32", 2.0),
                             row("diffusers", "fp32", 2.5), row("diffusers-unet", "fp32", 2.2)])
    compiled, cl, eager = rows[:3]
    for r in (compiled, cl):
        assert "ratio" not in r and "ratios" not in r  # the stale stored ratio is dropped, none invented
        assert summary.ratio_text(r).startswith("no like peer")
    assert compiled["best_peer"] == "diffusers fp32 eager" and compiled["best_peer_ratio"] == pytest.approx(4.0 / 2.5)
    assert summary.best_peer_text(compiled) == "1.60x vs diffusers fp32 eager (ours faster)"
    assert eager["ratio"] == pytest.approx(2.0 / 2.5) and eager["peer"] == "diffusers fp32 eager"
    assert eager["ratios"] == {"diffusers fp32 eager": pytest.approx(0.8),
                               "diffusers-unet fp32 eager": pytest.approx(2.0 / 2.2)}
    assert summary.ratio_text(eager).startswith("0.80x vs diffusers fp32 eager (ours slower)")


def test_the_stored_run_is_paired_like_for_like():
    path = report.RESULTS / "cpu-2026-11-28.json"
    raw = {b["extra_info"]["case"]: b["extra_info"] for b in json.loads(path.read_text())["benchmarks"]}
    rows = {r["case"]: r for r in report.load(path)["rows"]}
    compiled = "cpu-qsample-ours-cifar10-b8192-fp32-compiled"
    assert "ratio" in raw[compiled] and "ratio" not in rows[compiled]  # stored: 0.49x vs eager diffusers; now none
    paired = [r for r in rows.values() if "ratio" in r]
    assert len(paired) >= 15
    for r in paired:
        peer = pairing.like_peer(r, list(rows.values()))
        assert peer is not None and pairing.setting(peer) == pairing.setting(r)
        assert r["ratio"] == pytest.approx(r["img_per_s"] / peer["img_per_s"])


def test_every_faster_or_slower_on_the_page_agrees_with_its_ratio():
    page = report.PAGE.read_text()
    found = re.findall(r"(\d+\.\d\d)x(?: vs [^()|;]+ \(|, )ours (?:\d+\.\d% )?(faster|slower)", page)
    assert len(found) > 40
    for ratio, word in found:
        assert word == ("faster" if float(ratio) > 1 else "slower" if float(ratio) < 1 else word), (ratio, word)
    assert "0.95x, ours slower" in page  # ours bf16 q(x_t|x_0) at 8192 against diffusers bf16


def test_compile_time_is_shown_only_when_measured_cold():
    old = row("ours", "fp32", 1.0, mode="default", compile_s=0.0044)
    assert "not measured" in report.compile_text(old)
    assert report.compile_text({**old, "compile_s": 12.3, "compile_cold": True}) == " (cold compile 12 s)"
    assert report.compile_text(row("ours", "fp32", 1.0)) == ""


def test_cold_first_call_compiles_again_what_was_compiled_before():
    torch = pytest.importorskip("torch")
    compiles = []

    def backend(gm, example_inputs):
        compiles.append(gm)
        return gm.forward

    fn = torch.compile(lambda x: (x * 2).sin(), backend=backend, dynamic=False)
    x = torch.ones(8)
    fn(x)
    fn(x)  # the guard's call and the timed calls reuse one compile
    assert len(compiles) == 1
    seconds = runner.cold_first_call(lambda: fn(x))
    assert len(compiles) == 2 and seconds > 0


def test_matrix_gives_the_cpu_training_target_like_peers_and_a_bf16_row_per_side():
    cases = matrix.cases("cpu", quick=False)
    assert len({c.id for c in cases}) == len(cases)
    target = [c for c in cases if c.device == "cpu" and c.workload == "train" and c.preset == "ddpm-cifar10"]
    settings = lambda impl: {(c.precision, c.compile, c.channels_last) for c in target if c.impl == impl}  # noqa: E731
    assert settings("ours") <= settings("diffusers")
    assert ("bf16", None, False) in settings("ours") & settings("diffusers")


def test_loader_section_states_the_measured_rates_next_to_the_training_step():
    from benchmarks.report import loader_section

    base = {"workload": "loader", "impl": "ours", "preset": "png-32px-rgb", "batch": 128, "images": 1000,
            "prepare_s": 2.0, "prepare_img_per_s": 500.0, "reuse_s": 0.5}
    rows = [{**base, "num_workers": 2, "img_per_s": 3000.0, "img_per_s_median": 2500.0},
            {**base, "num_workers": 0, "img_per_s": 6000.0, "img_per_s_median": 5000.0},
            {"workload": "train", "impl": "ours", "preset": "tiny", "batch": 16, "precision": "fp32",
             "compile": "eager", "img_per_s": 60.0},
            {"workload": "train", "impl": "diffusers", "preset": "tiny", "batch": 16, "precision": "fp32",
             "compile": "eager", "img_per_s": 600.0}]
    text = "\n".join(loader_section(rows))
    assert "| 0 | 6,000 | 5,000 |\n| 2 | 3,000 | 2,500 |" in text  # sorted by workers
    assert "took 2.0 s (500 img/s)" in text and "later run 0.5 s" in text
    assert "takes 60.0 img/s: the loader is 100x faster" in text  # ours only: 6,000 / 60
    assert loader_section(rows[2:]) == []


def test_guided_cost_target_is_guided_time_over_unguided_time_in_the_same_setting():
    def sample(workload, img_per_s, precision="fp32", preset="tiny", batch=4):
        return {"workload": workload, "impl": "ours", "preset": preset, "batch": batch, "device": "cpu",
                "precision": precision, "compile": "eager", "channels_last": False, "img_per_s": img_per_s}

    def guided_target(rows):
        found = [t for t in summary.targets(rows, "cpu") if t.goal.startswith("DDIM-50 with classifier-free guidance")]
        assert len(found) == 1
        return found[0]

    # Met: guided 12.5 img/s, unguided 25 img/s at the same batch -> the guided sample takes 25 / 12.5 = 2.0x the time.
    met = guided_target([sample("ddim_cfg", 12.5), sample("ddim_cond", 25.0)])
    assert met.value == pytest.approx(2.0) and met.threshold == 2.1 and met.op == "<" and met.met()
    assert "guided 12.5 img/s against unguided 25 img/s: guidance costs 2.00x the unguided time" in met.detail
    line = report.targets_section({"rows": [sample("ddim_cfg", 12.5), sample("ddim_cond", 25.0)]}, "cpu")[-1]
    assert line.endswith("| 2.00 (guided 12.5 img/s against unguided 25 img/s: guidance costs 2.00x the unguided "
                         "time) | < 2.1 | met |")
    # Missed: 25 / 10 = 2.5x the unguided time (a ratio above the goal is a miss, not a "met" as for speed-ups).
    missed = guided_target([sample("ddim_cfg", 10.0), sample("ddim_cond", 25.0)])
    assert missed.value == pytest.approx(2.5) and not missed.met()
    assert "[MISSED]" in "\n".join(summary.target_lines([sample("ddim_cfg", 10.0), sample("ddim_cond", 25.0)], "cpu"))
    # Not measured: no guided row; or an unguided row only in another precision (never compared across settings).
    none = guided_target([sample("ddim_cond", 25.0)])
    assert none.value is None and not none.met() and "no ddim_cfg row of ours" in none.detail
    other = guided_target([sample("ddim_cfg", 5.0, precision="bf16"), sample("ddim_cond", 25.0)])
    assert other.value is None and "no unguided ddim_cond bf16 eager row of ours" in other.detail
    line = report.targets_section({"rows": [sample("ddim_cond", 25.0)]}, "cpu")[-1]
    assert line.endswith("| not measured: no ddim_cfg row of ours in this run | < 2.1 | not measured |")
    # The other targets still read ">=": a speed-up goal is met at or above its threshold.
    assert all(t.op == ">=" for t in summary.targets([], "cpu")[:-1])


def _stored_quality() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((report.RESULTS / "quality").glob("*.json"))]


def test_path_quality_cells_are_the_best_sampler_at_each_budget():
    """The per-path quality tables (benchmarks/path_quality.py): each cell of the first table is the smallest FD /
    floor (digits) or W2 (points) over the samplers run at that budget of network calls, and the second table gives
    the other metrics of that same setting."""
    from benchmarks import path_quality

    results = [q for q in _stored_quality() if q.get("kind") == "paths"]
    assert results, "no per-path quality results stored"
    page = report.PAGE.read_text()
    for q in results:
        lines = path_quality.section(q)
        assert "\n".join(lines) in page
        for entry in q["rows"]:
            digits = entry["data"].startswith("digits")
            key = path_quality.key_of(entry)
            assert key == ("fd_ratio" if digits else "w2")
            section = lines[lines.index(f"### {entry['data']}"):]
            first, second = [line for line in section if line.startswith(f"| {path_quality.LABELS[entry['row']]} | ")][:2]
            for n in q["nfes"]:
                best = min((m for m in entry["samples"] if m["budget"] == n), key=lambda m: m[key])
                assert f"{best[key]:.{2 if digits else 4}f} ({best['sampler']} {best['nfe']})" in first
                other = (f"{best['kid']:.2f} ± {best['kid_se']:.2f} / {best['precision']:.3f} / {best['recall']:.3f}"
                         if digits else f"{best['sw1']:.4f} / {best['mmd2']:.2e}")
                assert other in second


def test_conditional_quality_rows_are_the_stored_results():
    from benchmarks import conditional_quality

    results = [q for q in _stored_quality() if "kind" not in q]
    assert results, "no class-conditional quality results stored"
    page = report.PAGE.read_text()
    for q in results:
        rows = [line for line in page.splitlines() if line.startswith(("| ddim (", "| dpmpp-2m (", "| heun ("))]
        assert len(rows) == len(q["rows"])
        for r, line in zip(q["rows"], rows):
            cells = [c.strip() for c in line.split("|")[4:-1]]
            assert cells == [f"{r['fd_ratio']:.2f}", f"{r['kid']:.2f} ± {r['kid_se']:.2f}", f"{r['precision']:.3f}",
                             f"{r['recall']:.3f}", f"{r['label_accuracy']:.3f}"], line
        assert conditional_quality.table(q) in page


def test_distillation_rows_are_the_stored_results():
    """The distillation table (benchmarks/distill_quality.py): one line per stored row, its cells the stored
    figures, FD / teacher's DDIM-50 computed from them."""
    from benchmarks import distill_quality

    results = [q for q in _stored_quality() if q.get("kind") == "distillation"]
    if not results:
        pytest.skip("no distillation results stored")
    page = report.PAGE.read_text()
    for q in results:
        table = distill_quality.table(q)
        assert table in page
        teacher_50 = [r["fd"] for r in q["rows"] if r["model"] == "teacher" and r["steps"] == 50]
        assert len(teacher_50) == 1
        lines = [line for line in table.splitlines() if line.startswith(("| teacher | ", "| student | "))]
        assert len(lines) == len(q["rows"])
        for r, line in zip(q["rows"], lines):
            cells = [c.strip() for c in line.split("|")[1:-1]]
            assert cells[2:6] == [str(r["steps"]), f"{r['fd']:.2f}", f"{r['fd_ratio']:.2f}",
                                  f"{r['fd'] / teacher_50[0]:.2f}"], line
            assert cells[9] == f"{r['images_per_s']:.0f}", line


def test_a_guided_distillation_table_adds_the_classifiers_measures():
    """A class-conditional teacher's result (``distill_quality --guidance S``): the same eleven columns, then the
    requested-label share, the mean confidence and the smallest class share of each row; the section names the
    guidance; a result without them keeps eleven columns."""
    import copy

    from benchmarks import distill_quality

    stored = [q for q in _stored_quality() if q.get("kind") == "distillation"]
    if not stored:
        pytest.skip("no distillation results stored")
    q = copy.deepcopy(stored[0])
    for i, r in enumerate(q["rows"]):
        r.update(label_accuracy=0.9 + i / 100, mean_confidence=0.8 + i / 1000, min_class_share=0.05 + i / 1000)
    q["guidance"] = 2.0
    lines = distill_quality.table(q).splitlines()
    assert lines[0].endswith("| Distillation wall s | Requested label | Confidence | Smallest class share |")
    for r, line in zip(q["rows"], lines[2:]):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert len(cells) == 14 and cells[9] == f"{r['images_per_s']:.0f}", line
        assert cells[11:] == [f"{r['label_accuracy']:.3f}", f"{r['mean_confidence']:.3f}",
                              f"{r['min_class_share']:.3f}"], line
    text = "\n".join(distill_quality.section(q))
    assert "guided at s = 2" in text and "guidance s = 2" in text and "w = 1" in text and "--guidance 2" in text
    assert all(len(line.split("|")) == 13 for line in distill_quality.table(stored[0]).splitlines())


def test_label_scores_on_the_real_digits():
    """benchmarks.conditional_quality.label_scores (the conditional benchmarks' one implementation): on the real
    digits asked for their own labels, the requested-label share is the classifier's training accuracy (above 0.95),
    the smallest class share within 0.01 of the rarest digit's share in the data, and the
    confidence DigitsClassifier.score's; asked for shifted labels, the share falls below 0.05."""
    import numpy as np
    from sklearn.datasets import load_digits

    from benchmarks.conditional_quality import label_scores
    from diffusion_core.metrics import DigitsClassifier

    d, classifier = load_digits(), DigitsClassifier()
    x, labels = torch.tensor(d.data / 8.0 - 1.0).reshape(-1, 1, 8, 8), torch.tensor(d.target)
    scores = label_scores(classifier, x, labels)
    assert scores["label_accuracy"] > 0.95
    assert scores["mean_confidence"] == classifier.score(x).mean_confidence
    predicted = classifier.model.predict(x.reshape(len(x), -1).numpy())
    assert scores["min_class_share"] == np.bincount(predicted, minlength=10).min() / len(x)
    assert abs(scores["min_class_share"] - np.bincount(d.target).min() / len(x)) < 0.01
    assert label_scores(classifier, x, (labels + 1) % 10)["label_accuracy"] < 0.05


def _quality_sets() -> list[tuple[dict, list[dict]]]:
    """(the evaluation's description, the scored sample sets) of every data set in the stored quality results."""
    out = []
    for q in _stored_quality():
        if q.get("kind") == "paths":
            for data, ev in q["evaluation"].items():
                out.append((ev, [m for e in q["rows"] if e["data"] == data for m in e["samples"]]))
        else:
            out.append((q["evaluation"], q["rows"]))
    return out


def test_quality_results_come_from_the_evaluation_tool_and_state_network_n_and_floor():
    """Every stored quality number was measured by diffusion_core.evaluation at one N, with one floor per data set
    (the held-out real half, the same for every sample set), and the page says which network, N and floor."""
    page = report.PAGE.read_text()
    sets = _quality_sets()
    assert sets
    for ev, samples in sets:
        points = ev["feature_network"] == "raw"
        assert ev["tool"].startswith("diffusion_core.evaluation.evaluate_examples") and ev["diffusion_core"]
        assert ev["feature_network"] == ("raw" if ev["reference"] in ("swiss-roll", "two-moons") else "digits-mlp")
        assert ev["options"]["sizes"] == [ev["n"]] and ev["n"] == min(ev["num_reference"], ev["num_floor"])
        assert f"at N = {ev['n']:,} samples, in the `{ev['feature_network']}` features ({ev['feature_description']})" in page
        floors = [k for k in samples[0] if k.endswith("_floor")]
        assert set(floors) == ({"sw1_floor", "w2_floor", "mmd2_floor"} if points else
                               {"fd_floor", "kid_floor", "precision_floor", "recall_floor"})
        for m in samples:
            assert all(m[k] == samples[0][k] for k in floors)
            if not points:
                assert m["fd_ratio"] == pytest.approx(m["fd"] / m["fd_floor"], rel=1e-12)
        f = samples[0]
        assert (f"Floors: W2 {f['w2_floor']:.4f}," if points else f"Floors: FD {f['fd_floor']:.3f}, KID ") in page


@pytest.mark.parametrize("dataset", ["digits", "swiss-roll", "two-moons"])
def test_stored_floors_are_what_the_evaluation_tool_reports_now(dataset, tmp_path, monkeypatch):
    """The floors do not depend on the samples: scoring any set now gives the stored ones (digits-mlp rebuilt in a
    fresh cache) in every stored result of that data set, so the stored numbers are the tool's."""
    from benchmarks.eval_scores import POINTS_N, Scorer

    monkeypatch.setenv("DIFFUSION_CORE_CACHE", str(tmp_path))
    stored = [(ev, s[0]) for ev, s in _quality_sets() if ev["reference"] == dataset]
    assert stored, f"no stored quality result for {dataset}"
    points = dataset != "digits"
    scorer = Scorer(dataset, POINTS_N if points else 1000)
    x = torch.randn(POINTS_N, 2) if points else torch.rand(1000, 1, 8, 8) * 2 - 1
    now = scorer(x)
    for ev, first in stored:
        assert ev["n"] == scorer.n and ev["feature_description"] == scorer.description["feature_description"]
        floors = [k for k in first if k.endswith("_floor")]
        assert floors
        for k in floors:
            assert now[k] == pytest.approx(first[k], rel=1e-6, abs=1e-12), k


def _prose(path: Path) -> str:
    """A README's or a notebook's text with its line breaks (and a notebook's comment marks) as single spaces."""
    text = path.read_text(encoding="utf-8")
    lines = [line[2:] if line.startswith("# ") else line for line in text.splitlines()] if path.suffix == ".py" else [text]
    return " ".join(" ".join(lines).split())


def test_readme_quotes_the_stored_digits_quality():
    """The README's figures for the default digits model (VP-v, DDIM-50) are the stored per-path result's."""
    (q,) = [q for q in _stored_quality() if q.get("kind") == "paths"]
    (m,) = [m for e in q["rows"] if (e["data"], e["row"]) == ("digits", "vp-v") for m in e["samples"]
            if m["budget"] is None]
    assert (m["sampler"], m["steps"]) == ("euler", 50) and q["evaluation"]["digits"]["n"] == 898
    assert (f"samples score FD {m['fd']:.2f}, {m['fd_ratio']:.2f} times the real-vs-real floor of {m['fd_floor']:.2f}, "
            f"KID {m['kid']:.1f} ± {m['kid_se']:.1f} (floor {m['kid_floor']:.1f} ± {m['kid_floor_se']:.1f}), precision "
            f"{m['precision']:.2f} (floor {m['precision_floor']:.2f}) and recall {m['recall']:.2f} (floor "
            f"{m['recall_floor']:.2f})") in _prose(ROOT / "README.md")


def test_guidance_notebook_quotes_the_stored_conditional_quality():
    """The guidance notebook's figures are the stored class-conditional rows of its sampler (DPM-Solver++(2M), 20
    steps), and its claim holds: FD / floor grows and recall falls with the scale at every sampler and number of
    evaluations but Heun's 5."""
    (q,) = [q for q in _stored_quality() if "kind" not in q]
    by_setting: dict = {}
    for r in q["rows"]:
        by_setting.setdefault((r["sampler"], r["spacing"], r["sigma_max"], r["nfe"]), {})[r["guidance"]] = r
    for (sampler, _, _, nfe), rows in by_setting.items():
        fd, recall = ([rows[s][k] for s in sorted(rows)] for k in ("fd_ratio", "recall"))
        ordered = fd == sorted(fd) and recall == sorted(recall, reverse=True)
        assert ordered != (sampler == "heun" and nfe == 5), (sampler, nfe, fd, recall)
    rows = by_setting[("dpmpp-2m", "linspace", None, 20)]
    assert sorted(rows) == [1.0, 2.0, 4.0]
    fd, recall = (", ".join(f"{rows[s][k]:.2f}" for s in (1.0, 2.0)) + f" and {rows[4.0][k]:.2f}"
                  for k in ("fd_ratio", "recall"))
    notebook = _prose(ROOT / "docs" / "examples" / "guidance_digits.py")
    assert "dpmpp_2m_sample(denoiser, diffusion, x_T, steps=20," in notebook
    assert f"FD {fd} times the floor, recall {recall} at s = 1, 2 and 4" in notebook


def _stored_interleaved() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((report.RESULTS / "interleaved").glob("*.json"))]


def test_interleaved_rows_are_the_stored_rounds():
    """The interleaved sampler table (benchmarks/interleaved.py): each row's speed figures are recomputed here from
    its stored per-round seconds (the interval with the function tests/test_interleaved.py checks), and the page
    shows them."""
    from benchmarks import interleaved

    results = _stored_interleaved()
    if not results:
        pytest.skip("no interleaved results stored")
    page = report.PAGE.read_text()
    for q in results:
        assert interleaved.table(q) in page
        for r in q["rows"]:
            ours, theirs = r["seconds"]["ours"], r["seconds"]["diffusers"]
            assert len(ours) == len(theirs) == r["rounds"]
            per_round, half = sorted(d / o for o, d in zip(ours, theirs)), len(ours) // 2
            middle = per_round[half] if len(ours) % 2 else (per_round[half - 1] + per_round[half]) / 2
            assert r["ratio_best"] == pytest.approx(min(theirs) / min(ours), rel=1e-12)
            assert r["ratio_median"] == pytest.approx(middle, rel=1e-12)
            assert (r["ratio_min"], r["ratio_max"]) == (per_round[0], per_round[-1])
            assert (r["ratio_low"], r["ratio_high"]) == interleaved.median_interval(per_round)
            assert r["ours_per_call_s"] == pytest.approx(min(ours) / r["calls"], rel=1e-12)
            if "ours_network" in r["seconds"]:  # each side's loop around the real network, per network call
                for side in ("ours", "diffusers"):
                    loops = sorted((w - n) / r["calls"] for w, n in zip(r["seconds"][side],
                                                                        r["seconds"][f"{side}_network"]))
                    assert all(n > 0 for n in r["seconds"][f"{side}_network"]) and loops[0] > 0
                    mid = loops[half] if len(loops) % 2 else (loops[half - 1] + loops[half]) / 2
                    assert r[f"loop_{side}_per_call_s"] == pytest.approx(mid, rel=1e-12)


def test_interleaved_pairs_every_sampling_row_with_its_like_peer():
    """Every CPU sampling row of ours that has a diffusers row in the same setting is in the interleaved list, and
    each pair differs in the implementation only."""
    from benchmarks import interleaved

    got = interleaved.pairs("cpu", quick=False)
    for ours, peer in got:
        assert (ours.impl, peer.impl) == ("ours", "diffusers")
        assert dataclasses.replace(peer, impl="ours", rounds=ours.rounds, quick=ours.quick) == ours
    sampling = [c for c in matrix.cases("cpu", quick=False) if c.device == "cpu" and c.workload in interleaved.SAMPLING]
    peers = {dataclasses.replace(p, impl="ours", rounds=0, quick=False) for p in sampling if p.impl == "diffusers"}
    expected = {c.id for c in sampling
                if c.impl == "ours" and dataclasses.replace(c, rounds=0, quick=False) in peers}
    assert {o.id for o, _ in got} == expected and len(expected) >= 10
