"""``eval``'s computation: features of the samples and of the two halves of the reference, every metric at
several sample sizes N against one half (the reference), the same against the other half (held-out real data: the
floor, what a perfect model would score at that N), and the extrapolation of each to infinite N.

The sets at size N are the first N rows of a seeded permutation of each set, so the N are nested."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._validation import check_int, check_seed
from ..errors import InvalidInput
from .distances import frechet_distance, kid, mmd_rbf, pot_available, sliced_wasserstein, wasserstein2
from .features import feature_network
from .inputs import Examples, load_reference, load_samples
from .precision_recall import precision_recall
from .report import AtN, EvalReport, MetricReport

__all__ = ["EvalOptions", "evaluate", "evaluate_examples", "sample_sizes", "extrapolate"]


@dataclass(frozen=True)
class EvalOptions:
    features: str | None = None  # a name of FEATURE_NETWORKS; None: digits-mlp for 8x8 digits, raw otherwise
    k: int = 3  # precision/recall's k-th nearest neighbour
    kid_subsets: int = 100
    kid_subset_size: int | None = None  # None: half of N (at most 1000) at each N
    sizes: tuple[int, ...] | None = None  # the N; None: 5 sizes from N_max / 8 to N_max, geometric
    max_n: int = 2000  # N_max is the smallest of this, the samples' count and each reference half's
    seed: int = 0
    cache_dir: str | None = None  # where digits-mlp is cached (None: features.cache_dir())
    inception_weights: str | None = None  # inception-v3's weights file (None: $DIFFUSION_CORE_INCEPTION_WEIGHTS)


Metric = Callable[[np.ndarray, np.ndarray], "tuple[float, float | None]"]


def _metrics(points: bool, o: EvalOptions) -> tuple[dict[str, tuple[str, Metric]], list[str]]:
    def kid_at(x, y):
        size = o.kid_subset_size or min(1000, len(x) // 2)
        r = kid(x, y, subsets=o.kid_subsets, subset_size=size, seed=o.seed)
        return r.mean, r.std_error

    def pr(which):
        return lambda x, y: (getattr(precision_recall(x, y, o.k), which), None)

    m = {"FD": ("Frechet distance of Gaussians fitted to the features (Heusel et al. 2017); biased up by ~c/N",
                lambda x, y: (frechet_distance(x, y), None)),
         "KID": (f"unbiased MMD^2, cubic polynomial kernel (Binkowski et al. 2018), mean over {o.kid_subsets} "
                 "subsets of min(N/2, 1000) ± its standard error", kid_at),
         "precision": (f"fraction of samples inside the reference's {o.k}-NN balls (Kynkaanniemi et al. 2019)",
                       pr("precision")),
         "recall": (f"fraction of the reference inside the samples' {o.k}-NN balls", pr("recall"))}
    skipped = []
    if points:
        m["SW1"] = ("sliced Wasserstein-1, 256 random directions", lambda x, y: (sliced_wasserstein(x, y), None))
        m["MMD2"] = ("unbiased MMD^2, Gaussian kernel of bandwidth 0.5", lambda x, y: (mmd_rbf(x, y), None))
        if pot_available():
            m["W2"] = ("exact Wasserstein-2 of the point sets (POT's ot.emd2)", lambda x, y: (wasserstein2(x, y), None))
        else:
            skipped.append("W2: POT is not installed (pip install pot, or the [eval] extra)")
    return m, skipped


def sample_sizes(n_max: int, sizes: tuple[int, ...] | None, *, k: int, kid_subset_size: int | None) -> list[int]:
    """The N to measure at: ``sizes`` (checked against ``n_max``) or 5 geometric steps from n_max / 8 to n_max."""
    if sizes is None:
        sizes = tuple(int(round(n_max / 8 * 2 ** (3 * i / 4))) for i in range(5))
    sizes = sorted(set(check_int("--sizes", s, minimum=1) for s in sizes))
    if sizes[-1] > n_max:
        raise InvalidInput(f"--sizes must be at most {n_max} (the fewest examples of the samples and of each half of "
                           f"the reference, capped by --max-n), got {sizes[-1]}")
    if sizes[0] <= k:
        raise InvalidInput(f"--k {k} needs more than {k} examples at every N, but the smallest N is {sizes[0]} "
                           f"(N_max {n_max}); lower --k or give more samples / a larger reference")
    kid_min = kid_subset_size or min(1000, sizes[0] // 2)
    if kid_min < 2 or kid_min > sizes[0]:
        raise InvalidInput(f"--kid-subset-size must be between 2 and the smallest N ({sizes[0]}), got {kid_min}"
                           + ("" if kid_subset_size else " (half of N); give more samples"))
    return sizes


def extrapolate(ns: list[int], values: list[float]) -> float | None:
    """The least-squares line ``value = a + b / N`` read at infinite N (``a``); None with fewer than 2 N."""
    if len(ns) < 2:
        return None
    slope, intercept = np.polyfit(1.0 / np.asarray(ns, dtype=np.float64), np.asarray(values), 1)
    return float(intercept)


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of range(n) into the floor half (held-out real) and the reference half."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n // 2], perm[n // 2:]


def _metric_report(name, description, fn, s, a, b, sizes) -> MetricReport:
    at = []
    for n in sizes:
        value, se = fn(s[:n], b[:n])
        floor, floor_se = fn(a[:n], b[:n])
        at.append(AtN(n, value, floor, se, floor_se))
    return MetricReport(name, description, at, extrapolate(sizes, [x.value for x in at]),
                        extrapolate(sizes, [x.floor for x in at]))


def evaluate_examples(samples: Examples, reference: Examples, options: EvalOptions = EvalOptions()) -> EvalReport:
    """Every metric of ``samples`` against ``reference`` (see the module's docstring)."""
    o = options
    check_int("--k", o.k, minimum=1)  # the options' command-line names: EvalOptions mirrors them field by field
    check_int("--kid-subsets", o.kid_subsets, minimum=1)
    check_int("--max-n", o.max_n, minimum=2)
    check_seed("--seed", o.seed)
    if samples.shape != reference.shape:
        raise InvalidInput(f"SAMPLES ({samples.source!r}) hold examples of shape {samples.shape} but the reference "
                           f"({reference.source!r}) holds {reference.shape}; they must match")
    net = feature_network(o.features, reference.shape, o.cache_dir, o.inception_weights)
    floor_rows, ref_rows = _split(len(reference.data), o.seed)
    rng = np.random.default_rng(o.seed + 1)
    s = net.embed(samples.data[rng.permutation(len(samples.data))])
    a, b = net.embed(reference.data[floor_rows]), net.embed(reference.data[ref_rows])
    n_max = min(len(s), len(a), len(b), o.max_n)
    sizes = sample_sizes(n_max, o.sizes, k=o.k, kid_subset_size=o.kid_subset_size)
    metrics, skipped = _metrics(reference.shape == (2,), o)
    reports = [_metric_report(name, d, fn, s, a, b, sizes) for name, (d, fn) in metrics.items()]
    return EvalReport(samples.source, reference.source, net.name, net.description, len(s), len(b), len(a), o.seed,
                      reports, skipped)


def evaluate(samples: str, reference: str, options: EvalOptions = EvalOptions()) -> EvalReport:
    """:func:`evaluate_examples` on files: ``samples`` a ``.npy`` or an image folder; ``reference`` a built-in
    dataset's name (a 2-D set draws twice the samples' count, at most 2 * ``max_n``), a folder or a ``.npy``."""
    s = load_samples(samples)
    r = load_reference(reference, n_points=2 * min(len(s.data), options.max_n), shape=s.shape)
    if s.shape != r.shape and len(r.shape) == 3 and len(s.shape) == 3 and not samples.endswith(".npy"):
        s = load_samples(samples, r.shape)  # a folder of samples: decoded at the reference's size and channels
    return evaluate_examples(s, r, options)
