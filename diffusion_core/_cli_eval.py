"""``diffusion-core eval SAMPLES --reference REF``: sample quality, offline, as a table (and ``--json FILE``)."""
from __future__ import annotations

import argparse

from .errors import InvalidInput

__all__ = ["add_eval_parser", "run_eval"]


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated counts such as 100,200,400, got {text!r}") from None


def add_eval_parser(sub, formatter_class) -> None:
    ev = sub.add_parser("eval", help="measure samples against a reference, offline (FD, KID, precision/recall)",
                        formatter_class=formatter_class)
    ev.add_argument("samples", metavar="SAMPLES", help="a .npy written by sample, or a folder of PNG/JPEG images")
    ev.add_argument("--reference", required=True, help="a built-in dataset (digits, swiss-roll, two-moons, "
                    "8-gaussians, checkerboard), a folder of images or a .npy")
    ev.add_argument("--features", default=None, choices=["digits-mlp", "raw", "inception-v3"], help="feature "
                    "network (default: digits-mlp for 8x8 one-channel images, raw values otherwise); inception-v3: "
                    "FID's 2048 pool3 features, needs --inception-weights")
    ev.add_argument("--inception-weights", default=None, metavar="FILE", help="inception-v3's weights: pytorch-fid's "
                    "pt_inception-2015-12-05-6726825d.pth, which you download (SHA-256 6726825d0af5...; checked), "
                    "default $DIFFUSION_CORE_INCEPTION_WEIGHTS. Images are resized as pytorch-fid does: [-1, 1] -> "
                    "[0, 1], one channel repeated to three, bilinear resize to 299x299 (align_corners=False, no "
                    "antialias), 2x-1; comparable with pytorch-fid/torchmetrics FIDs, not clean-fid's (bicubic)")
    ev.add_argument("--k", type=int, default=3, help="precision/recall's k-th nearest neighbour")
    ev.add_argument("--kid-subsets", type=int, default=100, help="KID's number of random subsets")
    ev.add_argument("--kid-subset-size", type=int, default=None, help="KID's subset size (default: half of N, at "
                    "most 1000)")
    ev.add_argument("--sizes", type=_sizes, default=None, help="the sample sizes N, comma-separated (default: 5 "
                    "sizes from N_max/8 to N_max)")
    ev.add_argument("--max-n", type=int, default=2000, help="largest N (also bounded by the samples' count and "
                    "half the reference's)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the reference's split and of the subsets")
    ev.add_argument("--cache-dir", default=None, help="where the digits-mlp feature network is cached (default: "
                    "$DIFFUSION_CORE_CACHE, else ~/.cache/diffusion-core)")
    ev.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")


def run_eval(ns: argparse.Namespace) -> None:
    from pathlib import Path

    from .evaluation import EvalOptions, evaluate, format_table, write_json

    if ns.json is not None and Path(ns.json).is_dir():
        raise InvalidInput(f"--json {ns.json!r} is a folder; give a file name such as report.json")
    options = EvalOptions(features=ns.features, k=ns.k, kid_subsets=ns.kid_subsets,
                          kid_subset_size=ns.kid_subset_size, sizes=ns.sizes, max_n=ns.max_n, seed=ns.seed,
                          cache_dir=ns.cache_dir, inception_weights=ns.inception_weights)
    report = evaluate(ns.samples, ns.reference, options)
    print(format_table(report))
    if ns.json is not None:
        write_json(report, ns.json)
        print(f"wrote {ns.json}")
