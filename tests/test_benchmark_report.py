"""The benchmark tooling: the site's Benchmarks page is exactly what the stored results render to,
and the derived metrics are the stated arithmetic. (The benchmarks themselves run with `pytest benchmarks`.)"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import hardware, report, runner, summary  # noqa: E402


def test_benchmarks_page_is_rendered_from_the_stored_results(monkeypatch):
    paths = sorted(report.RESULTS.glob("*.json"))
    assert paths, "benchmarks/results/ holds no run"
    monkeypatch.setattr(report, "plot", lambda rows, title, path: True)  # no PNGs written by the test
    runs = [report.load(p) for p in paths]
    rendered = report.render(runs, report.ASSETS, report.PAGE)
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


def test_cpu_training_target_is_the_best_of_ours_over_the_peer():
    base = {"workload": "train", "preset": "ddpm-cifar10", "batch": 32, "device": "cpu", "channels_last": False}
    rows = [
        {**base, "impl": "ours", "precision": "fp32", "compile": "eager", "img_per_s": 2.0, "mfu": 0.3},
        {**base, "impl": "ours", "precision": "fp32", "compile": "eager", "channels_last": True, "img_per_s": 3.0, "mfu": 0.45},
        {**base, "impl": "diffusers", "precision": "fp32", "compile": "eager", "img_per_s": 2.5, "mfu": 0.375},
        {**base, "impl": "diffusers", "precision": "bf16", "compile": "eager", "img_per_s": 1.0, "mfu": 0.8},
    ]
    (fp32_goal, fp32, _, detail), (bf16_goal, bf16, _, _) = summary.targets(rows, "cpu")[:2]
    assert fp32 == pytest.approx(3.0 / 2.5) and bf16 == pytest.approx(3.0)
    assert "channels_last" in detail and "75% of the measured fp32 matmul peak" in detail  # 2 x 37.5%
