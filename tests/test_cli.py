"""``diffusion-core train`` / ``sample``: help, one-line errors, and a real train -> sample round trip."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import diffusion_core.train.trainer as trainer
from diffusion_core.train import TrainConfig, load_checkpoint
from support import run_cli

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help at the terminal width; keep each help on one line




def _flat(text: str) -> str:
    return " ".join(text.split())


def test_train_help_lists_every_option_with_its_help(capsys):
    code, out, err = run_cli(["train", "--help"], capsys)
    assert code == 0 and err == ""
    flat = _flat(out)
    for f in dataclasses.fields(TrainConfig):
        option = "--" + f.name.replace("_", "-")
        assert option in out, option
        assert len(f.metadata["help"]) > 10 and _flat(f.metadata["help"]) in flat, f.name
    assert "--compile, --no-compile" in out and "--channels-last, --no-channels-last" in out
    for extra in ("--resume", "--no-progress"):
        assert extra in out
    # Choices come from the enums, defaults from the dataclass.
    assert "swiss-roll" in out and "learned_range" in out and "fp16" in out
    assert f"(default: {TrainConfig.steps})" in out and "(default: digits)" in out and "(default: vp)" in out


def test_sample_help(capsys):
    code, out, _ = run_cli(["sample", "--help"], capsys)
    assert code == 0
    for option in ("--checkpoint", "--out", "--num", "--sampler", "--steps", "--eta", "--seed", "--no-ema", "--device",
                   "--compile, --no-compile"):
        assert option in out


def test_module_help_in_a_subprocess():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "diffusion_core.cli", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout and "sample" in proc.stdout and proc.stderr == ""


BAD_ARGS = {
    "negative lr": (["train", "--lr", "-1"], "lr must lie in (0, 1], got -1.0"),
    "huge lr": (["train", "--lr", "1e39"], "lr must lie in (0, 1], got 1e+39"),
    "nan lr": (["train", "--lr", "nan"], "lr must be a finite number, got nan"),
    "bad train device": (["train", "--device", "cuda:abc"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cuda:abc'"),
    "bad sample device": (["sample", "--checkpoint", "c.safetensors", "--device", "foo"],
                          "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'foo'"),
    "bad sample device index": (["sample", "--checkpoint", "c.safetensors", "--device", "cuda:abc"],
                                "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cuda:abc'"),
    "unknown dataset": (["train", "--dataset", "foo"], "invalid choice: 'foo'"),
    "zero steps": (["train", "--steps", "0"], "steps must be a positive int"),
    "non-int steps": (["train", "--steps", "abc"], "invalid int value: 'abc'"),
    "unknown precision": (["train", "--precision", "fp8"], "invalid choice: 'fp8'"),
    "mlp on images": (["train", "--model", "mlp"], "model='mlp' is for the 2-D toy sets; dataset='digits' needs a U-Net"),
    "unknown preset": (["train", "--dataset", "folder", "--data-dir", "imgs", "--model", "nope"],
                       "unknown model 'nope'"),
    "bad ema": (["train", "--ema-decay", "1.5"], "--ema-decay must lie in [0, 1)"),  # the option, not the field
    "unknown flag": (["train", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    "no command": ([], "required: command"),
    "unknown command": (["fly"], "invalid choice: 'fly'"),
    "sample without checkpoint": (["sample"], "required: --checkpoint"),
}


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_bad_arguments_give_one_line_and_exit_2(capsys, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)  # nothing may be written to the repository even if a check failed
    argv, message = BAD_ARGS[case]
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "error" in err and message in err
    assert out == ""
    assert list(tmp_path.iterdir()) == []


def test_missing_and_foreign_files_give_one_line(capsys, tmp_path):
    missing = tmp_path / "missing.safetensors"
    code, _, err = run_cli(["sample", "--checkpoint", missing], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "does not exist" in err
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, pt)
    code, _, err = run_cli(["sample", "--checkpoint", pt], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "not a safetensors file" in err
    code, _, err = run_cli(["train", "--dataset", "folder", "--data-dir", tmp_path / "nope", "--model", "tiny",
                            "--out-dir", tmp_path / "run", "--no-progress"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "is not a folder" in err


def test_toy_train_then_sample(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)  # the real preview is covered in test_train
    run = tmp_path / "run"
    common = ["--dataset", "swiss-roll", "--model", "mlp", "--num-timesteps", 100, "--batch-size", 16,
              "--out-dir", run, "--no-progress", "--log-every", 1, "--precision", "fp32"]
    code, out, err = run_cli(["train", *common, "--steps", 2], capsys)
    assert code == 0, err
    ckpt = run / "checkpoint.safetensors"
    assert out.strip() == f"checkpoint: {ckpt}"
    assert load_checkpoint(ckpt).step == 2

    code, out, err = run_cli(["train", *common, "--steps", 3, "--resume", ckpt], capsys)
    assert code == 0, err
    c = load_checkpoint(ckpt)
    assert c.step == 3 and TrainConfig.from_dict(c.train_config).steps == 3

    png = tmp_path / "x.png"
    code, out, err = run_cli(["sample", "--checkpoint", ckpt, "--out", png, "--num", 16, "--steps", 10,
                              "--no-progress"], capsys)
    assert code == 0, err
    assert png.is_file() and str(png) in out
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (16, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    with Image.open(png) as im:
        assert im.size == (512, 512)

    # Same seed, same samples; the raw weights differ from the EMA; DDPM works too; new folders are made.
    code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--out", tmp_path / "new" / "y.png", "--num", 16,
                            "--steps", 10, "--no-progress"], capsys)
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "new" / "y.npy"), x)
    # --compile (CUDA graphs on a GPU; plain torch.compile here) gives the eager samples up to float32 rounding.
    code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--out", tmp_path / "c.png", "--num", 16, "--steps", 10,
                            "--compile", "--no-progress"], capsys)
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "c.npy"), x, rtol=1e-4, atol=1e-5)
    code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--out", tmp_path / "raw.png", "--num", 16, "--steps", 10,
                            "--no-ema", "--no-progress"], capsys)
    assert code == 0, err
    assert not np.array_equal(np.load(tmp_path / "raw.npy"), x)
    code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--out", tmp_path / "p.png", "--num", 4, "--steps", 5,
                            "--sampler", "ddpm", "--no-progress"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "p.npy").shape == (4, 2)

    for bad, message in ((["--steps", 101], "steps must be an int in [1, 100], got 101"),
                         (["--num", 0], "--num must be >= 1"), (["--eta", 2], "eta must lie in [0, 1]"),
                         (["--sampler", "ddpm", "--steps", 500], "steps must be an int in [1, 100], got 500")):
        code, out, err = run_cli(["sample", "--checkpoint", ckpt, "--out", tmp_path / "bad.png", *bad, "--no-progress"],
                                 capsys)
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and message in err, (bad, err)
    assert not (tmp_path / "bad.png").exists() and not (tmp_path / "bad.npy").exists()


def test_image_preset_train_then_sample_grid(capsys, tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8 + 4 * i, 8 + 2 * i, 3), dtype=np.uint8)).save(data / f"{i}.png")
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--dataset", "folder", "--data-dir", data, "--model", "tiny", "--steps", 2,
                            "--batch-size", 4, "--num-timesteps", 100, "--out-dir", run, "--no-progress"], capsys)
    assert code == 0, err
    # The real end-of-run preview: 64 images of 8x8 scaled by 8, 8 per row, 1-pixel gaps.
    with Image.open(run / "preview_final.png") as im:
        assert im.mode == "RGB" and im.size == (8 * 65 + 1, 8 * 65 + 1)
    ckpt = load_checkpoint(run / "checkpoint.safetensors")
    assert ckpt.model_config["kind"] == "unet" and ckpt.model_config["image_size"] == 8

    png = tmp_path / "grid.png"
    code, _, err = run_cli(["sample", "--checkpoint", run / "checkpoint.safetensors", "--out", png, "--num", 16,
                            "--steps", 10, "--no-progress"], capsys)
    assert code == 0, err
    x = np.load(tmp_path / "grid.npy")
    assert x.shape == (16, 3, 8, 8) and np.isfinite(x).all()
    with Image.open(png) as im:  # 4x4 tiles of 64x64 (8x8 scaled by 64 // 8) with 1-pixel gaps
        assert im.mode == "RGB" and im.size == (4 * 65 + 1, 4 * 65 + 1)
        grid = np.asarray(im)
    # The first tile holds the first sample, mapped from [-1, 1] to 0..255.
    tile = np.clip(np.round((x[0].transpose(1, 2, 0).clip(-1, 1) + 1) * 127.5), 0, 255).astype(np.uint8)
    assert np.array_equal(grid[1:65:8, 1:65:8], tile)
    assert (grid[0] == 0).all() and (grid[:, 0] == 0).all()  # the black gap around the tiles
