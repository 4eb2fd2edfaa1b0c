"""Sample quality of a class-conditional digits model per sampler, number of network evaluations and guidance
scale, measured with the library's evaluation tool; writes a JSON file and prints a markdown table.

    diffusion-core train --class-cond --precision fp32 --out-dir runs/digits-cond
    python -m benchmarks.conditional_quality runs/digits-cond/checkpoint.safetensors \\
        --out benchmarks/results/quality/digits-cond-DATE.json

For each setting: 1,000 samples (100 per class, the same x_T for every setting), DDIM-style x0 clipping as the
checkpoint's config says; metrics: the library's evaluation tool (``diffusion_core.evaluation``, what
``diffusion-core eval`` runs; ``benchmarks/eval_scores.py``), one call per setting: FD, KID, precision and recall in
the ``digits-mlp`` features at N = 898 against half of the real digits, each next to its floor (the other half
against the same one at the same N); and the share of samples that a logistic regression fitted on the real digits
(``diffusion_core.metrics.DigitsClassifier``) classifies as the label they were asked for, which the evaluation
tool does not measure (:func:`label_scores`, with the classifier's mean confidence and smallest class share). NFE
counts network evaluations (a guided evaluation is one batched call on twice the batch).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from diffusion_core import ClassifierFreeGuidance, __version__, ddim_sample, dpmpp_2m_sample, heun_sample
from diffusion_core.metrics import DigitsClassifier
from diffusion_core.train import TrainConfig, load_checkpoint, load_model

from .eval_scores import Scorer

# (name, sampler, spacing, sigma_max): each sampler with its defaults, and Heun also from the schedule's top step
# with log-SNR spacing (its default before it took EDM's grid), to show what the start costs at few steps.
SETTINGS = [("ddim", ddim_sample, "linspace", None), ("dpmpp-2m", dpmpp_2m_sample, "linspace", None),
            ("heun", heun_sample, "karras", 80.0), ("heun", heun_sample, "log-snr", None)]
NFES = (5, 10, 20, 50)
SCALES = (1.0, 2.0, 4.0)


def steps_for(sampler: str, nfe: int) -> int:
    """Steps giving at most ``nfe`` network evaluations (Heun costs 2 * steps - 1)."""
    return (nfe + 1) // 2 if sampler == "heun" else nfe


def label_scores(classifier: DigitsClassifier, x: torch.Tensor, labels: torch.Tensor) -> dict:
    """The classifier's measures of class-conditional digits ``x`` (N, 1, 8, 8) in [-1, 1] asked for ``labels``:
    ``label_accuracy``, the share classified as the label asked for; ``mean_confidence``, the mean top-class
    probability, and ``min_class_share``, the smallest share of samples given one label (both
    :meth:`~diffusion_core.metrics.DigitsClassifier.score`)."""
    predicted = classifier.model.predict(x.reshape(len(x), -1).double().numpy())
    score = classifier.score(x)
    return {"label_accuracy": float((predicted == labels.cpu().numpy()).mean()),
            "mean_confidence": score.mean_confidence, "min_class_share": float(score.class_fractions.min())}


def evaluate(checkpoint: str, n_per_class: int = 100) -> dict:
    ckpt = load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(ckpt.train_config)
    model = load_model(ckpt)
    diffusion = config.diffusion()
    classes = ckpt.extra["class_names"]
    labels = torch.arange(len(classes)).repeat_interleave(n_per_class)
    x_T = torch.randn(len(labels), 1, 8, 8, generator=torch.Generator().manual_seed(1))
    scorer = Scorer("digits", len(labels))
    classifier = DigitsClassifier()
    rows = []
    for name, sample, spacing, sigma_max in SETTINGS:
        for nfe in NFES:
            steps = steps_for(name, nfe)
            for scale in SCALES:
                denoiser = model if scale == 1.0 else ClassifierFreeGuidance(model, scale)
                x = sample(denoiser, diffusion, x_T, steps=steps, spacing=spacing, labels=labels,
                           progress=False, **({"sigma_max": sigma_max} if name == "heun" else {})).sample.clamp(-1, 1)
                rows.append({
                    "sampler": name, "spacing": spacing, "sigma_max": sigma_max, "steps": steps,
                    "nfe": 2 * steps - 1 if name == "heun" else steps, "guidance": scale,
                    **label_scores(classifier, x, labels), **scorer(x),
                })
                print(_row(rows[-1]), flush=True)
    return {"checkpoint": str(checkpoint), "train_config": ckpt.train_config, "classes": classes,
            "samples_per_setting": len(labels), "evaluation": scorer.description, "rows": rows,
            "diffusion_core": __version__, "torch": torch.__version__, "threads": torch.get_num_threads()}


def _row(r: dict) -> str:
    start = f", from sigma {r['sigma_max']:g}" if r.get("sigma_max") else (", from the top step" if r["sampler"] == "heun"
                                                                          else "")
    return (f"| {r['sampler']} ({r['spacing']}{start}) | {r['nfe']} | {r['guidance']:g} | {r['fd_ratio']:.2f} "
            f"| {r['kid']:.2f} ± {r['kid_se']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['label_accuracy']:.3f} |")


def table(result: dict) -> str:
    head = ["| sampler (spacing) | NFE | guidance s | FD / floor | KID ± SE | precision | recall | requested label |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    return "\n".join(head + [_row(r) for r in result["rows"]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="JSON file to write")
    ns = parser.parse_args(argv)
    result = {**evaluate(ns.checkpoint), "command": " ".join(["python -m benchmarks.conditional_quality",
                                                               *(sys.argv[1:] if argv is None else argv)])}
    Path(ns.out).write_text(json.dumps(result, indent=1))
    print(table(result))


if __name__ == "__main__":
    main()
