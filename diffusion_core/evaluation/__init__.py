"""Offline sample-quality evaluation (``diffusion-core eval``): Fréchet distance, KID, precision/recall on a named
feature network, exact distances for 2-D points, each at several sample sizes next to the real-vs-real floor.

* ``distances``: FD, KID, MMD, sliced and exact Wasserstein on feature arrays;
* ``precision_recall``: Kynkäänniemi et al.'s k-NN precision and recall;
* ``features``: the feature networks (``digits-mlp``, trained here and cached; ``raw``; ``inception-v3``);
* ``inception``: the FID Inception-v3 (pytorch-fid's network and resize) from a weights file the user supplies,
  checked by SHA-256; its 2048 pool3 features;
* ``inputs``: reading samples and references; ``measure``: :func:`evaluate`, the sizes, floors and extrapolation;
* ``report``: the result's dataclasses, its table and JSON;
* ``during_training``: :func:`training_evaluator`, what ``train --eval-every`` logs (the trainer draws the samples).
"""
from .during_training import training_evaluator
from .distances import KID, frechet_distance, kid, mmd_rbf, sliced_wasserstein, wasserstein2
from .measure import EvalOptions, evaluate, evaluate_examples, extrapolate
from .features import FEATURE_NETWORKS, FeatureNetwork, feature_network
from .inputs import Examples, load_reference, load_samples
from .precision_recall import PrecisionRecall, precision_recall
from .report import AtN, EvalReport, MetricReport, format_table, write_json

__all__ = ["AtN", "EvalOptions", "EvalReport", "Examples", "FEATURE_NETWORKS", "FeatureNetwork", "KID", "MetricReport",
           "PrecisionRecall", "evaluate", "evaluate_examples", "extrapolate", "feature_network", "format_table",
           "frechet_distance", "kid", "load_reference", "load_samples", "mmd_rbf", "precision_recall",
           "sliced_wasserstein", "training_evaluator", "wasserstein2", "write_json"]
