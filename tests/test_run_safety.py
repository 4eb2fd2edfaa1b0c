"""Nothing a user made is lost, nothing wrong looks right: each case here reproduces a finding of the fault probe
(issue "Trustworthy training at any size") and checks what happens now."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

import diffusion_core.train.checkpoint as ckpt_mod
import diffusion_core.train.step as train_step
import diffusion_core.train.trainer as trainer
from diffusion_core.train import NonFiniteLossError, TrainConfig, TrainingInterrupted, load_checkpoint, train
from diffusion_core.train.checkpoint import tensors_sha256
from diffusion_core.train.run_log import read_metrics
from diffusion_core.cli import main
from support import run_cli as cli

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)  # the real preview is covered in test_train


def _config(out_dir, **kw) -> TrainConfig:
    base = dict(dataset="swiss-roll", model="mlp", num_timesteps=50, steps=4, batch_size=8, lr=1e-3, warmup_steps=0,
                precision="fp32", log_every=1, checkpoint_every=2, out_dir=str(out_dir))
    return TrainConfig(**{**base, **kw})




def one_line_error(code, err, message):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and message in err, err


# ----------------------------------------------------------------------------- the run folder

def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    run = tmp_path / "run"
    first = train(_config(run), progress=False)
    before = first.checkpoint.read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run .*--resume .*--overwrite"):
        train(_config(run, seed=1), progress=False)
    assert first.checkpoint.read_bytes() == before  # untouched
    (run / "notes.txt").write_text("mine")
    second = train(_config(run, seed=1, steps=2), overwrite=True, progress=False)
    c = load_checkpoint(second.checkpoint)
    assert c.step == 2 and c.train_config["seed"] == 1
    assert [r.step for r in read_metrics(run / "metrics.jsonl")] == [1, 2]  # the old run's log went with it
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_resume_defaults_to_the_checkpoints_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "elsewhere"
    train(_config(run, steps=2), progress=False)
    code, _, err = cli(["train", "--dataset", "swiss-roll", "--model", "mlp", "--num-timesteps", 50, "--steps", 3,
                        "--batch-size", 8, "--lr", 1e-3, "--warmup-steps", 0, "--precision", "fp32", "--log-every", 1,
                        "--checkpoint-every", 2, "--resume", run / "checkpoint.safetensors", "--no-progress"], capsys)
    assert code == 0, err
    assert not (tmp_path / "runs").exists()  # not the default runs/<dataset>
    assert load_checkpoint(run / "checkpoint.safetensors").step == 3
    assert [r.step for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]  # the log continues


def test_a_second_run_on_the_same_folder_fails_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from diffusion_core.train.run_dir import RunDir
            with RunDir({str(run)!r}):
                print("locked", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=rf"in use by another training run \(PID {holder.pid}\)"):
            train(_config(run), progress=False)
        assert not (run / "checkpoint.safetensors").exists() and not (run / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    train(_config(run, steps=1), progress=False)  # the kernel dropped the lock with the process


def test_stale_temp_files_of_a_killed_write_are_removed(tmp_path):
    run = tmp_path / "run"
    first = train(_config(run, steps=2), progress=False)
    stale = run / ".checkpoint.safetensors.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 1000)
    train(_config(run, steps=3), resume=first.checkpoint, progress=False)
    assert not stale.exists()


def test_periodic_checkpoints_by_default_by_steps_and_by_wall_time(tmp_path, monkeypatch):
    assert TrainConfig().checkpoint_every == 500 and TrainConfig().checkpoint_minutes == 10
    saved = []
    real = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", lambda path, **kw: saved.append(kw["step"]) or real(path, **kw))
    train(_config(tmp_path / "a", steps=7, checkpoint_every=3, checkpoint_minutes=0), progress=False)
    assert saved == [3, 6, 7]
    saved.clear()
    # By wall time: a clock that jumps 11 minutes per call makes every log step due.
    clock = iter(range(0, 10_000 * 660, 660))
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: float(next(clock)))
    train(_config(tmp_path / "b", steps=5, checkpoint_every=100, log_every=2), progress=False)
    assert saved == [2, 4, 5]


def test_ctrl_c_saves_the_last_finished_step_and_resume_continues_exactly(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT)  # default_int_handler; SIG_IGN when pytest runs as a background job
    cfg = _config(tmp_path / "whole", steps=6, checkpoint_every=100)
    whole = train(cfg, progress=False)
    real = train_step.TrainStep.__call__

    def interrupting(self, x0, t, noise, step, labels=None):
        out = real(self, x0, t, noise, step, labels)
        if step == 2:  # the user presses Ctrl-C during the third step
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(train_step.TrainStep, "__call__", interrupting)
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 3; checkpoint saved") as e:
        train(cfg.replace(out_dir=str(tmp_path / "cut")), progress=False)
    assert isinstance(e.value, KeyboardInterrupt) and load_checkpoint(e.value.checkpoint).step == 3
    monkeypatch.setattr(train_step.TrainStep, "__call__", real)
    rest = train(cfg.replace(out_dir=None), resume=e.value.checkpoint, progress=False)
    assert torch.equal(rest.losses, whole.losses[3:])
    assert all(torch.equal(a, b) for a, b in zip(rest.model.state_dict().values(), whole.model.state_dict().values()))
    assert signal.getsignal(signal.SIGINT) is before  # the handler was put back


# ----------------------------------------------------------------------------- non-finite values

def test_nan_weights_are_never_saved_and_the_last_good_checkpoint_stays(tmp_path, monkeypatch):
    """The loss can stay finite while the weights are not (here the EMA): the checkpoint refuses them."""
    real = trainer.TrainStep.__call__

    def poison_ema(self, x0, t, noise, step, labels=None):
        out = real(self, x0, t, noise, step, labels)
        if step == 2:
            next(iter(self.ema.model.parameters())).data[0] = float("nan")
        return out

    monkeypatch.setattr(trainer.TrainStep, "__call__", poison_ema)
    with pytest.raises(NonFiniteLossError, match=r"weights became NaN or Inf by step 4 \(.*tensor 'ema\.") as e:
        train(_config(tmp_path / "run", steps=6), progress=False)
    assert "last good checkpoint is" in str(e.value)
    c = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert c.step == 2


def _forge(path: Path, tensors: dict, meta: dict) -> Path:
    """A checkpoint file written around our writer's checks, as a diverged run of an older version could have."""
    save_file(tensors, str(path), metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    return path


def _good_parts(tmp_path):
    c = load_checkpoint(train(_config(tmp_path / "src", steps=1), progress=False).checkpoint)
    tensors = {f"model.{k}": v for k, v in c.model.items()} | {f"ema.{k}": v for k, v in c.ema.items()}
    # format 2: its hash covers the tensors only, so these forged headers reach the checks behind the hash
    meta = {"format": "diffusion-core/2", "step": "1", "train_config": c.train_config, "model_config": c.model_config,
            "optimizer": None, "scaler": None, "extra": {}}
    return tensors, meta


def test_sample_refuses_nan_weights_and_non_finite_samples_and_writes_nothing(tmp_path, capsys):
    tensors, meta = _good_parts(tmp_path)
    nan = dict(tensors)
    name = next(k for k in nan if k.startswith("ema."))
    nan[name] = nan[name].clone().fill_(float("nan"))
    bad = _forge(tmp_path / "nan.safetensors", nan, {**meta, "sha256": tensors_sha256(nan)})
    out = tmp_path / "s.png"
    code, _, err = cli(["sample", "--checkpoint", bad, "--out", out, "--num", 8, "--steps", 5, "--no-progress"], capsys)
    one_line_error(code, err, f"tensor {name!r} holds NaN or Inf")
    # Finite but absurd weights: the network's output overflows, and the samples with it.
    huge = {k: v * 1e30 if v.is_floating_point() else v for k, v in tensors.items()}
    bad = _forge(tmp_path / "huge.safetensors", huge, {**meta, "sha256": tensors_sha256(huge)})
    code, _, err = cli(["sample", "--checkpoint", bad, "--out", out, "--num", 8, "--steps", 5, "--no-progress"], capsys)
    one_line_error(code, err, "of 8 samples hold NaN or Inf; nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["huge.safetensors", "nan.safetensors"]


# ----------------------------------------------------------------------------- one-line errors, real tracebacks

def test_bad_checkpoints_give_one_line(tmp_path, capsys):
    tensors, meta = _good_parts(tmp_path)
    sha = tensors_sha256(tensors)
    cases = {
        "no step": (tensors, {k: v for k, v in {**meta, "sha256": sha}.items() if k != "step"}, "lacks the header entries ['step']"),
        "no optimizer": (tensors, {k: v for k, v in {**meta, "sha256": sha}.items() if k != "optimizer"},
                         "lacks the header entries ['optimizer']"),
        "deep json": (tensors, {**meta, "sha256": sha, "extra": "[" * 100_000 + "]" * 100_000},
                      "malformed header entry 'extra': RecursionError"),
        "bad step": (tensors, {**meta, "sha256": sha, "step": "-3"}, "has step '-3', expected an int >= 0"),
        # a header that asks for 16 TB of weights is refused before anything is allocated
        "huge config": (tensors, {**meta, "sha256": sha, "model_config": {**meta["model_config"], "hidden": 2_000_000}},
                        "has shape"),
        "size mismatch": ({**tensors, "model.out.weight": torch.zeros(3, 3)}, None, "has shape (3, 3)"),
    }
    for case, (t, m, message) in cases.items():
        m = m or {**meta, "sha256": tensors_sha256(t)}
        path = _forge(tmp_path / f"{case.replace(' ', '_')}.safetensors", t, m)
        code, _, err = cli(["sample", "--checkpoint", path, "--out", tmp_path / "o.png", "--no-progress"], capsys)
        one_line_error(code, err, message)


def test_a_flipped_bit_is_reported_not_trained_on(tmp_path, capsys):
    path = train(_config(tmp_path / "run", steps=1), progress=False).checkpoint
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # the last tensor's bytes: a silent flip that safetensors itself cannot see
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is corrupt: its tensors or header entries do not match the SHA-256"):
        load_checkpoint(path)
    code, _, err = cli(["train", "--dataset", "swiss-roll", "--model", "mlp", "--resume", path, "--steps", 3,
                        "--no-progress"], capsys)
    one_line_error(code, err, "is corrupt")


def test_unwritable_outputs_give_one_line(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    code, _, err = cli(["train", "--dataset", "swiss-roll", "--model", "mlp", "--steps", 1,
                        "--out-dir", blocker / "run", "--no-progress"], capsys)
    one_line_error(code, err, "cannot be written")
    ckpt = train(_config(tmp_path / "run", steps=1), progress=False).checkpoint
    for out, message in ((tmp_path, "is a folder"), (blocker / "x.png", "is not a writable folder"),
                         (tmp_path / "x.jpg", "--out must end in .png")):
        code, _, err = cli(["sample", "--checkpoint", ckpt, "--out", out, "--no-progress"], capsys)
        one_line_error(code, err, message)


def test_disk_full_while_saving_gives_one_line_and_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    first = train(_config(run, steps=2), progress=False).checkpoint
    before = first.read_bytes()

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # what a write cut short leaves
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ckpt_mod, "save_file", full)
    code, _, err = cli(["train", "--dataset", "swiss-roll", "--model", "mlp", "--num-timesteps", 50, "--steps", 4,
                        "--batch-size", 8, "--lr", 1e-3, "--warmup-steps", 0, "--precision", "fp32", "--log-every", 1,
                        "--checkpoint-every", 2, "--resume", first, "--no-progress"], capsys)
    one_line_error(code, err, "No space left on device while writing the checkpoint")
    assert first.read_bytes() == before and not list(run.glob(".*.tmp"))


def test_bugs_in_our_own_code_keep_their_traceback(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")  # a bug, not a user error

    monkeypatch.setattr(train_step, "training_losses", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["train", "--dataset", "swiss-roll", "--model", "mlp", "--steps", "1", "--precision", "fp32", "--out-dir", str(tmp_path / "r"),
              "--no-progress"])


def test_loss_history_memory_is_bounded(tmp_path, monkeypatch):
    """One preallocated buffer of log_every entries on the device, and at most HISTORY_STEPS floats on the CPU."""
    monkeypatch.setattr(trainer, "HISTORY_STEPS", 5)
    r = train(_config(tmp_path / "run", steps=12, log_every=4, checkpoint_every=100), progress=False)
    assert r.losses.shape == (5,)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [x.step for x in records] == [4, 8, 12]
    assert records[-1].loss == pytest.approx(float(np.mean(r.losses[-4:].numpy())), rel=1e-6)
    assert all(x.lr == 1e-3 and x.grad_norm > 0 and x.img_per_s > 0 for x in records)
    assert records[0].wall_s < records[1].wall_s < records[2].wall_s


def test_tensorboard_scalars_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_config(tmp_path / "run", steps=4, log_every=2, checkpoint_every=100), progress=False)
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/grad_norm", "train/img_per_s"} <= set(events.Tags()["scalars"])
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert logged == [(r.step, pytest.approx(r.loss, rel=1e-6)) for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
