"""``train --eval-every N``: the samples of the EMA model measured by :mod:`diffusion_core.evaluation` every N steps
and at the end, logged as their own records in metrics.jsonl, without touching the training's random stream."""
from __future__ import annotations

import dataclasses
import importlib.util
import math

import pytest
import torch

import diffusion_core.train.trainer as trainer
from diffusion_core.errors import InvalidInput
from diffusion_core.evaluation import training_evaluator
from diffusion_core.train import TrainConfig, load_checkpoint, train
from diffusion_core.train.run_log import read_evals, read_metrics
from support import run_cli as cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)  # the real preview is covered in test_train
    monkeypatch.setenv("DIFFUSION_CORE_CACHE", str(tmp_path / "cache"))  # the digits-mlp, trained on first use


def _moons(out_dir, **kw) -> TrainConfig:
    base = dict(dataset="two-moons", model="mlp", num_timesteps=50, steps=5, batch_size=16, lr=1e-3, warmup_steps=0,
                precision="fp32", log_every=2, checkpoint_every=100, out_dir=str(out_dir))
    return TrainConfig(**{**base, **kw})


def _finite(record) -> None:
    values = [v for k, v in dataclasses.asdict(record).items() if isinstance(v, float)]
    assert values and all(math.isfinite(v) for v in values), record


def test_records_at_every_n_steps_and_the_end_and_the_same_weights_as_without(tmp_path):
    """Evaluations at steps 2, 4 and 5 (the end), finite, next to the training records; and the weights of the run
    are bit-identical to those of the same run without evaluations (the training's random stream is untouched)."""
    plain = train(_moons(tmp_path / "plain"), progress=False)
    evaluated = train(_moons(tmp_path / "eval", eval_every=2, eval_samples=200), progress=False,
                      evaluator=training_evaluator)
    records = read_evals(tmp_path / "eval" / "metrics.jsonl")
    assert [r.step for r in records] == [2, 4, 5]
    for r in records:
        _finite(r)
        assert r.features == "raw" and r.n == 200 and r.sw1 is not None and r.sample_s > 0 and r.measure_s > 0
    assert [r.step for r in read_metrics(tmp_path / "eval" / "metrics.jsonl")] == [2, 4, 5]  # the training records
    assert read_evals(tmp_path / "plain" / "metrics.jsonl") == []
    if importlib.util.find_spec("tensorboard") is not None:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "eval"))
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("eval/fd")] == [(r.step, pytest.approx(r.fd)) for r in records]
        assert {"eval/kid", "eval/precision", "eval/recall", "eval/sw1", "eval/measure_s"} <= set(events.Tags()["scalars"])
    for a, b in [(plain.model, evaluated.model), (plain.ema_model, evaluated.ema_model)]:
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), name
    rng_a, rng_b = load_checkpoint(plain.checkpoint).rng, load_checkpoint(evaluated.checkpoint).rng
    assert rng_a.keys() == rng_b.keys() and all(torch.equal(rng_a[k], rng_b[k]) for k in rng_a)


def test_digits_are_measured_on_the_digits_feature_network(tmp_path):
    config = TrainConfig(dataset="digits", model="digits-8", num_timesteps=20, steps=2, batch_size=8, warmup_steps=0,
                         precision="fp32", log_every=1, checkpoint_every=100, out_dir=str(tmp_path / "run"),
                         eval_every=2, eval_samples=100)
    train(config, progress=False, evaluator=training_evaluator)
    [record] = read_evals(tmp_path / "run" / "metrics.jsonl")
    _finite(record)
    assert (record.step, record.features, record.n) == (2, "digits-mlp", 100)
    assert record.sw1 is None and record.mmd2 is None and record.w2 is None  # the 2-D sets' metrics
    assert record.fd > record.fd_floor  # two steps of training are far from the data


def test_a_resumed_run_can_change_eval_every(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--dataset", "two-moons", "--num-timesteps", "50", "--batch-size", "16", "--warmup-steps", "0",
            "--precision", "fp32", "--log-every", "2", "--checkpoint-every", "100", "--no-progress"]
    code, _, err = cli([*args, "--steps", "4", "--out-dir", run], capsys)
    assert code == 0, err
    code, _, err = cli([*args, "--steps", "8", "--resume", run / "checkpoint.safetensors", "--eval-every", "3",
                        "--eval-samples", "100"], capsys)
    assert code == 0, err
    assert [r.step for r in read_evals(run / "metrics.jsonl")] == [6, 8]
    assert [r.step for r in read_metrics(run / "metrics.jsonl")] == [2, 4, 6, 8]
    assert load_checkpoint(run / "checkpoint.safetensors").train_config["eval_every"] == 3


def test_a_folder_dataset_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    with pytest.raises(InvalidInput, match="eval_every .*built-in dataset"):
        TrainConfig(dataset="folder", data_dir=str(tmp_path / "images"), eval_every=10)
    code, _, err = cli(["train", "--dataset", "folder", "--data-dir", tmp_path / "images", "--eval-every", "10",
                        "--out-dir", tmp_path / "run"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--eval-every" in err, err
    assert not (tmp_path / "run").exists()


def test_train_without_an_evaluator_refuses_eval_every(tmp_path):
    with pytest.raises(InvalidInput, match="training_evaluator"):
        train(_moons(tmp_path / "run", eval_every=2), progress=False)
    assert not (tmp_path / "run").exists()


def test_too_few_eval_samples_are_refused():
    with pytest.raises(InvalidInput, match="eval_samples"):
        TrainConfig(dataset="two-moons", eval_every=1, eval_samples=3)
