"""Image-folder loader: a synthetic folder of 32x32 RGB PNGs (50,000, like CIFAR-10; 2,000 with
``--bench-quick``), prepared once into the uint8 cache, then the img/s of ``folder_batches`` at
batch 128 with 0, 2 and 4 worker processes, on the suite's device.

Rows go into ``benchmark.extra_info`` like the matrix rows (``img_per_s`` from the best round,
``img_per_s_median``, ``seconds_best``, ...) with ``workload: "loader"``; they are not matrix rows,
so the summary table, the targets and the pairing leave them out. ``DIFFUSION_CORE_BENCH_LOADER_IMAGES``
overrides the number of images.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from diffusion_core.train import folder_batches, prepare_image_folder

from . import hardware

IMAGES, IMAGES_QUICK = 50_000, 2_000
SIZE, CLASSES, BATCH, WORKERS = 32, 10, 128, (0, 2, 4)
ROUNDS = 5


def _quick(config) -> bool:
    expr = config.getoption("markexpr") or ""
    return config.getoption("--bench-quick") or ("quick" in expr and "not quick" not in expr)


def _write_pngs(root, n: int) -> None:
    """``n`` deterministic 32x32 RGB PNGs in 10 class folders: a per-image colour gradient plus noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0.0, 1.0, SIZE)
    for c in range(CLASSES):
        (root / f"class{c}").mkdir()
    for start in range(0, n, 1000):
        m = min(1000, n - start)
        lo, hi = rng.integers(0, 128, (m, 1, 1, 3)), rng.integers(128, 256, (m, 1, 1, 3))
        grad = (ramp[:, None] + ramp[None, :])[None, :, :, None] / 2
        pixels = lo + (hi - lo) * grad + rng.integers(-12, 13, (m, SIZE, SIZE, 3))
        for j, img in enumerate(np.clip(pixels, 0, 255).astype(np.uint8)):
            i = start + j
            Image.fromarray(img).save(root / f"class{i % CLASSES}" / f"{i:05d}.png")


def _say(config, line: str) -> None:
    """Print ``line`` now, past pytest's output capture."""
    reporter, capture = (config.pluginmanager.get_plugin(p) for p in ("terminalreporter", "capturemanager"))
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


@pytest.fixture(scope="module")
def folder(request, tmp_path_factory):
    """The prepared folder and what its preparation took (generated and prepared once per session)."""
    n = int(os.environ.get("DIFFUSION_CORE_BENCH_LOADER_IMAGES", 0))
    n = n or (IMAGES_QUICK if _quick(request.config) else IMAGES)
    root = tmp_path_factory.mktemp("loader-pngs")
    t0 = time.perf_counter()
    _write_pngs(root, n)
    t1 = time.perf_counter()
    prepared = prepare_image_folder(root, SIZE, 3)
    t2 = time.perf_counter()
    prepare_image_folder(root, SIZE, 3)  # the second call checks the fingerprint and decodes nothing
    t3 = time.perf_counter()
    meta = dict(images=n, classes=len(prepared.class_names), generate_s=t1 - t0, prepare_s=t2 - t1,
                prepare_img_per_s=n / (t2 - t1), reuse_s=t3 - t2,
                png_mb=sum(f.stat().st_size for f in root.rglob("*.png")) / 1e6)
    _say(request.config, f"\nloader: {n:,} PNGs ({meta['png_mb']:.0f} MB) prepared into the uint8 cache in "
                         f"{meta['prepare_s']:.1f} s ({meta['prepare_img_per_s']:,.0f} img/s, one process); "
                         f"reusing it took {meta['reuse_s']:.2f} s")
    return prepared, meta


@pytest.mark.quick
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 4 workers on fewer cores, on purpose
@pytest.mark.parametrize("num_workers", WORKERS, ids=lambda w: f"workers{w}")
def test_folder_batches(benchmark, request, folder, device, num_workers):
    """Batches per second of the stream, as img/s: ``per_round`` batches per timed round after a warm-up."""
    prepared, meta = folder
    per_round = 10 if meta["images"] < IMAGES else 40
    benchmark.group = f"loader png {SIZE}px b{BATCH}"
    it = folder_batches(prepared, batch_size=BATCH, seed=0, device=device, hflip=True, num_workers=num_workers)
    for _ in range(2 * num_workers + 2):  # start the workers, fill the prefetch queue
        next(it)

    def timed():
        for _ in range(per_round):
            x0, labels = next(it)
        hardware.sync(device)
        return x0

    try:
        x0 = benchmark.pedantic(timed, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    finally:
        it.close()
    assert x0.shape == (BATCH, 3, SIZE, SIZE) and -1 <= x0.min() and x0.max() <= 1
    stats = benchmark.stats.stats
    images = per_round * BATCH
    benchmark.extra_info.update(
        workload="loader", impl="ours", preset=f"png-{SIZE}px-rgb", batch=BATCH, precision="uint8",
        compile="eager", channels_last=False, device=str(device), num_workers=num_workers,
        batches_per_round=per_round, seconds_best=stats.min, seconds_median=stats.median,
        img_per_s=images / stats.min, img_per_s_median=images / stats.median, batches_per_s=per_round / stats.min,
        **meta)
    _say(request.config, f"\nloader, {num_workers} workers: {images / stats.min:,.0f} img/s (best round), "
                         f"{images / stats.median:,.0f} img/s (median)")
