"""Class-conditional training and sampling through the trainer and the CLI: labels from the data, label dropout
to the null class, classes recorded by name, guidance and the fast solvers on the command line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import diffusion_core.train.step as train_step
import diffusion_core.train.trainer as trainer
from diffusion_core.train import TrainConfig, load_checkpoint, train
from support import run_cli as cli


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)


def _config(tmp_path, **kw) -> TrainConfig:
    base = dict(dataset="8-gaussians", model="mlp", num_timesteps=50, steps=3, batch_size=400, lr=1e-3,
                precision="fp32", class_cond=True, p_uncond=0.25, log_every=1, checkpoint_every=100,
                out_dir=str(tmp_path / "run"))
    config = {**base, **kw}
    if not config["class_cond"]:
        del config["p_uncond"]  # the label dropout of a class-conditional run only (refused without class_cond)
    return TrainConfig(**config)




def test_labels_reach_the_loss_with_null_dropout_and_classes_are_recorded(tmp_path, monkeypatch):
    seen = []
    real = train_step.training_losses

    def spy(*args, labels=None, **kwargs):
        seen.append(labels.clone())
        return real(*args, labels=labels, **kwargs)

    monkeypatch.setattr(train_step, "training_losses", spy)
    r = train(_config(tmp_path), progress=False)
    labels = torch.cat(seen)
    assert labels.shape == (1200,) and labels.min() >= 0 and labels.max() <= 8
    # 1,200 Bernoulli(0.25) draws: the null share has standard deviation 0.0125, so 0.25 +- 0.05 is 4 sigma.
    assert abs((labels == 8).float().mean().item() - 0.25) < 0.05
    assert set(labels[labels < 8].tolist()) == set(range(8))  # every component appears as a class
    c = load_checkpoint(r.checkpoint)
    assert c.model_config["num_classes"] == 8
    assert c.extra["class_names"] == [f"{45 * k} deg" for k in range(8)]
    # the network got a label embedding of K + 1 rows (the last one the null class)
    assert r.model.label_embed.weight.shape[0] == 9


def test_unconditional_runs_are_unchanged_and_class_cond_needs_classes(tmp_path):
    plain = train(_config(tmp_path, class_cond=False, out_dir=str(tmp_path / "a")), progress=False)
    assert load_checkpoint(plain.checkpoint).model_config["num_classes"] == 0
    with pytest.raises(ValueError, match=r"class_cond needs labelled data, but dataset='swiss-roll'"):
        train(_config(tmp_path, dataset="swiss-roll", out_dir=str(tmp_path / "b")), progress=False)
    with pytest.raises(ValueError, match=r"p_uncond must lie in \[0, 1\)"):
        _config(tmp_path, p_uncond=1.0)
    # resume keeps the classes; a conditional checkpoint cannot be resumed unconditionally
    cond = train(_config(tmp_path, out_dir=str(tmp_path / "c")), progress=False)
    more = train(_config(tmp_path, steps=4, out_dir=None), resume=cond.checkpoint, progress=False)
    assert more.step == 4
    with pytest.raises(ValueError, match="cannot resume"):
        train(_config(tmp_path, steps=5, class_cond=False, out_dir=None), resume=cond.checkpoint, progress=False)


def test_cli_samples_classes_with_guidance_and_every_sampler(tmp_path, capsys):
    ckpt = train(_config(tmp_path, steps=20), progress=False).checkpoint
    for sampler in ("ddim", "ddpm", "dpmpp-2m", "heun"):
        out = tmp_path / f"s-{sampler}.png"  # an existing --out is refused without --overwrite
        code, _, err = cli(["sample", "--checkpoint", ckpt, "--out", out, "--num", 16, "--steps", 5, "--sampler",
                            sampler, "--label", "90 deg", "--guidance", 2, "--no-progress"], capsys)
        assert code == 0, (sampler, err)
        x = np.load(out.with_suffix(".npy"))
        assert x.shape == (16, 2) and np.isfinite(x).all()
    # a label by index is the same class as by name
    code, _, err = cli(["sample", "--checkpoint", ckpt, "--out", tmp_path / "i.png", "--num", 16, "--steps", 5,
                        "--label", 2, "--guidance", 2, "--no-progress"], capsys)
    assert code == 0, err
    code, _, err = cli(["sample", "--checkpoint", ckpt, "--out", tmp_path / "n.png", "--num", 16, "--steps", 5,
                        "--label", "90 deg", "--guidance", 2, "--no-progress"], capsys)
    assert np.array_equal(np.load(tmp_path / "i.npy"), np.load(tmp_path / "n.npy"))
    for bad, message in ((["--label", "9"], "--label must be a class index 0..7 or one of"),
                         (["--label", "north"], "--label must be a class index 0..7"),
                         (["--sampler", "heun", "--eta", "0.5"], "--eta is for --sampler ddim only"),
                         (["--spacing", "cubic"], "argument --spacing: invalid choice: 'cubic'")):
        code, _, err = cli(["sample", "--checkpoint", ckpt, "--out", tmp_path / "bad.png", "--steps", 5, *bad,
                            "--no-progress"], capsys)
        assert code == 2 and len(err.splitlines()) == 1 and message in err, (bad, err)
    plain = train(_config(tmp_path, class_cond=False, out_dir=str(tmp_path / "plain")), progress=False).checkpoint
    code, _, err = cli(["sample", "--checkpoint", plain, "--out", tmp_path / "bad.png", "--guidance", 3,
                        "--no-progress"], capsys)
    assert code == 2 and "need a class-conditional checkpoint" in err
