"""Issue 17, part 4: the trip-ups and probe findings about options and the command line (each test failed before
its fix): defaults per dataset, help text, option names in errors, type and size checks, seeds, labels, Ctrl-C,
and sample's outputs (never replaced unless asked, a full disk in one line)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import diffusion_core._cli_sample as sample_mod
import diffusion_core.cli as cli_mod
import diffusion_core.train.trainer as trainer
from diffusion_core import NoiseSchedule
from diffusion_core.errors import InvalidInput
from diffusion_core.train import TrainConfig, load_checkpoint, save_checkpoint, train
from support import run_cli, run_on_tiny_disk

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)
    monkeypatch.setenv("COLUMNS", "1000")  # help on one line per option


def _toy(tmp_path, name="run", **kw) -> TrainConfig:
    base = dict(dataset="two-moons", model="mlp", num_timesteps=20, steps=2, batch_size=8, precision="fp32", log_every=1,
                checkpoint_every=100, out_dir=str(tmp_path / name))
    return TrainConfig(**{**base, **kw})


def one_line(code, err, message):
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and message in err, (code, err)


def test_the_model_defaults_to_the_datasets_own(tmp_path, capsys, monkeypatch):
    assert [TrainConfig(dataset=d).model for d in ("swiss-roll", "8-gaussians", "digits")] == ["mlp", "mlp", "digits-8"]
    assert TrainConfig(dataset="folder", data_dir="x").model == "tiny-32"
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["train", "--dataset", "swiss-roll", "--steps", 1, "--batch-size", 8, "--num-timesteps", 20,
                            "--out-dir", "roll", "--no-progress"], capsys)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "roll" / "checkpoint.safetensors").model_config["kind"] == "mlp"
    # the message for the one model that is wrong here no longer says it must be what it is
    code, _, err = run_cli(["train", "--model", "mlp"], capsys)
    one_line(code, err, "model='mlp' is for the 2-D toy sets; dataset='digits' needs a U-Net preset")
    code, _, err = run_cli(["train", "--dataset", "swiss-roll", "--model", "digits-8"], capsys)
    one_line(code, err, "the 2-D toy sets train model='mlp', got model='digits-8'")


def test_help_states_each_default_once(capsys):
    for command in ("train", "sample"):
        code, out, _ = run_cli([command, "--help"], capsys)
        assert code == 0
        assert "(default: None)" not in out, command
        assert not [line for line in out.splitlines() if line.count("(default") > 1], command
    code, out, _ = run_cli(["sample", "--help"], capsys)
    line = next(line for line in out.splitlines() if "--checkpoint" in line)
    assert "default" not in line  # a required option has none


def test_train_errors_name_the_options_not_the_config_fields(tmp_path, capsys):
    code, _, err = run_cli(["train", "--dataset", "folder"], capsys)
    one_line(code, err, "dataset='folder' needs --data-dir")
    assert "data_dir" not in err
    # quoted values (paths) are left as they are
    missing = tmp_path / "my_data_dir"
    code, _, err = run_cli(["train", "--dataset", "folder", "--data-dir", missing, "--out-dir", tmp_path / "r"], capsys)
    one_line(code, err, f"--data-dir {str(missing)!r} is not a folder")


@pytest.mark.parametrize("fields, message", [
    (dict(model=5), "model must be a str"),
    (dict(out_dir=5), "out_dir must be a path"),
    (dict(out_dir=""), "out_dir must name a file or folder"),
    (dict(compile="yes"), "compile must be True or False or None, got 'yes'"),
    (dict(class_cond=1), "class_cond must be True or False, got 1"),
    (dict(dataset="folder", data_dir="d", image_size=-3), "image_size must be a positive int"),
    (dict(image_size=16), "image_size is for dataset='folder' (the digits are 8x8)"),
    (dict(p_uncond=0.5), "p_uncond is the label dropout of a class-conditional run"),
    (dict(seed=2**64), "seed must be an int in [0, 18446744073709551615]"),
    (dict(seed=-1), "seed must be an int in [0, "),
    (dict(device=0), "device must be a str"),
    (dict(num_timesteps=10**13), "num_timesteps=10,000,000,000,000 needs 1.6 PB for the schedule's tables"),
])
def test_config_values_are_checked(fields, message):
    with pytest.raises(InvalidInput) as e:
        TrainConfig(**fields)
    assert message in str(e.value)


def test_settings_older_versions_stored_without_effect_still_load():
    old = {**TrainConfig(dataset="swiss-roll").to_dict(), "p_uncond": 0.1, "image_size": None, "warmup_steps": 200}
    assert TrainConfig.from_dict(old).p_uncond is None
    assert TrainConfig(class_cond=True).p_uncond == 0.1  # the default where it applies


def test_empty_out_dir_is_refused_not_runs_default(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["train", "--dataset", "swiss-roll", "--model", "mlp", "--steps", 1, "--out-dir", "",
                            "--no-progress"], capsys)
    one_line(code, err, "--out-dir must name a file or folder, got ''")
    assert list(tmp_path.iterdir()) == []


def test_a_28x28_preset_is_refused_on_the_8x8_digits_and_any_8x8_preset_fits(tmp_path):
    with pytest.raises(InvalidInput, match=r"'mnist-28' is a U-Net for 28x28 images, but the digits are 8x8 .*"
                                           r"use digits-8 or tiny"):
        train(TrainConfig(model="mnist-28", steps=1, batch_size=4, num_timesteps=20, out_dir=str(tmp_path / "m")),
              progress=False)
    assert not (tmp_path / "m").exists()
    # tiny (an RGB preset) takes the digits' one channel
    r = train(TrainConfig(model="tiny", steps=1, batch_size=4, num_timesteps=20, precision="fp32",
                          out_dir=str(tmp_path / "t")), progress=False)
    assert load_checkpoint(r.checkpoint).model_config["in_channels"] == 1


def test_the_default_warmup_ends_within_a_short_run_and_a_longer_one_is_announced(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="diffusion_core.train")
    r = train(_toy(tmp_path, steps=50, log_every=10), progress=False)
    saved = load_checkpoint(r.checkpoint).train_config
    assert saved["warmup_steps"] == 10  # a fifth of 50 steps, not 200
    assert "learning-rate warmup: 10 steps, a fifth of this 50-step run" in caplog.text
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["lr"] == TrainConfig.lr  # the warmup ended
    assert TrainConfig(steps=5000).resolved_warmup().warmup_steps == 200
    # a resumed run keeps the checkpoint's warmup, whatever its new length
    more = train(_toy(tmp_path, steps=60, log_every=10, out_dir=None), resume=r.checkpoint, progress=False)
    assert load_checkpoint(more.checkpoint).train_config["warmup_steps"] == 10
    caplog.clear()
    train(_toy(tmp_path, "long", steps=4, warmup_steps=8), progress=False)
    assert "warmup_steps=8 is longer than the run (steps=4): the learning rate ends at 50% of lr" in caplog.text


def test_sizes_no_machine_holds_are_refused_in_words(tmp_path, capsys):
    with pytest.raises(InvalidInput, match=r"T=10,000,000,000,000 needs 1\.6 PB for the schedule's tables"):
        NoiseSchedule.cosine(10**13)
    with pytest.raises(InvalidInput, match=r"batch_size=1,000,000,000,000 needs .* for a batch"):
        train(_toy(tmp_path, "big", batch_size=10**12), progress=False)
    assert not (tmp_path / "big").exists()
    r = train(_toy(tmp_path, log_every=10**15), progress=False)  # the log window holds at most the run's steps
    assert r.step == 2
    code, _, err = run_cli(["sample", "--checkpoint", r.checkpoint, "--num", 10**15, "--out", tmp_path / "s.png",
                            "--no-progress"], capsys)
    one_line(code, err, "--num=1,000,000,000,000,000 needs")
    # a checkpoint that claims such a T
    c = load_checkpoint(r.checkpoint)
    forged = save_checkpoint(tmp_path / "forged.safetensors", step=2, model_config=c.model_config, model=c.model,
                             train_config={**c.train_config, "num_timesteps": 10**13})
    code, _, err = run_cli(["sample", "--checkpoint", forged, "--out", tmp_path / "f.png", "--no-progress"], capsys)
    one_line(code, err, "num_timesteps=10,000,000,000,000 needs")


def test_an_allocation_failure_is_one_line(tmp_path, capsys, monkeypatch):
    ckpt = train(_toy(tmp_path), progress=False).checkpoint

    def fails(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 8000000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(sample_mod, "_samplers", lambda: {"ddim": fails})
    code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--out", tmp_path / "s.png", "--no-progress"], capsys)
    one_line(code, err, "out of memory ([enforce fail at alloc_cpu.cpp:127]")
    assert "lower --num" in err


def test_seeds_beyond_64_bits_and_labels_that_are_not_ascii_digits(tmp_path, capsys):
    ckpt = train(_toy(tmp_path, class_cond=True), progress=False).checkpoint
    out = tmp_path / "s.png"
    code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--seed", 2**70, "--out", out, "--no-progress"], capsys)
    one_line(code, err, "--seed must be an int in [0, 18446744073709551615]")
    code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--label", "²", "--out", out, "--no-progress"], capsys)
    one_line(code, err, "--label must be a class index 0..1 or one of ['upper', 'lower'], got '²'")
    code, _, err = run_cli(["train", "--dataset", "swiss-roll", "--model", "mlp", "--seed", 2**64], capsys)
    one_line(code, err, "seed must be an int in [0, 18446744073709551615]")


def test_ctrl_c_during_start_up_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod, "build_parser", interrupted)
    code, _, err = run_cli(["train"], capsys)
    assert code == 130 and err == "interrupted\n"


def test_a_file_name_that_is_not_utf8_prints(tmp_path):
    ckpt = train(_toy(tmp_path), progress=False).checkpoint
    out = os.fsencode(tmp_path) + b"/\xff.png"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8:strict", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "diffusion_core.cli", "sample", "--checkpoint", str(ckpt), "--out",
                           out, "--num", "4", "--steps", "2", "--no-progress"], env=env, capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert b"\\udcff.png" in proc.stdout and os.path.exists(out)


def test_sample_refuses_to_replace_files_unless_told(tmp_path, capsys):
    ckpt = train(_toy(tmp_path), progress=False).checkpoint
    out = tmp_path / "mine.png"
    for existing in (out, out.with_suffix(".npy")):
        existing.write_bytes(b"the user's own")
        code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--out", out, "--num", 4, "--steps", 2,
                                "--no-progress"], capsys)
        one_line(code, err, f"{str(existing)!r} exists; pass --overwrite")
        assert existing.read_bytes() == b"the user's own"
        existing.unlink()
    code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--out", out, "--num", 4, "--steps", 2, "--no-progress"],
                           capsys)
    assert code == 0, err
    code, _, err = run_cli(["sample", "--checkpoint", ckpt, "--out", out, "--num", 4, "--steps", 2, "--overwrite",
                            "--no-progress"], capsys)
    assert code == 0, err


def test_a_full_disk_while_writing_samples_is_one_line_naming_the_output(tmp_path):
    ckpt = train(_toy(tmp_path), progress=False).checkpoint
    disk = tmp_path / "disk"
    code = textwrap.dedent(f"""
        import os, sys
        from diffusion_core.cli import main
        rc = main(["sample", "--checkpoint", {str(ckpt)!r}, "--out", {str(disk / "s.png")!r}, "--num", "4096",
                   "--steps", "2", "--no-progress"])
        print("left:", sorted(os.listdir({str(disk)!r})))
        sys.exit(rc)
    """)
    proc = run_on_tiny_disk(disk, code, size_kb=8)  # the .npy of 4096 points (32 kB) does not fit
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip() == f"diffusion-core sample: error: {str(disk / 's.npy')!r} No space left on device"
    assert "left: []" in proc.stdout  # no temp file, no half output
