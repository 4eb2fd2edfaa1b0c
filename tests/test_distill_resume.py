"""Resuming a distillation run (``distill --resume``, train/distill_resume.py): a run stopped by Ctrl-C and resumed
to the end is the unbroken run bit for bit (weights, EMA, optimizer, RNG, the objective's state, the record,
metrics.jsonl), for progressive distillation (mid-round in round 2, and exactly at a round boundary) and for reflow;
controls show that a resume without the round teacher, the round's grid or reflow's pairs would differ. A resume
that changes the distillation (a setting, the method, the teacher file) is refused in one line naming it."""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

import diffusion_core.train.step as train_step
import diffusion_core.train.trainer as trainer
from diffusion_core.train import TrainConfig, TrainingInterrupted, load_checkpoint, train
from diffusion_core.train.distill import DistillConfig, ProgressiveDistillation, Reflow, distill
from diffusion_core.train.run_log import read_metrics
from support import run_cli as cli

pytestmark = pytest.mark.usefixtures("one_thread")
CK = "checkpoint.safetensors"


@pytest.fixture(autouse=True)
def no_previews(monkeypatch):
    """The end-of-run preview is not what these tests check."""
    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)


def _teacher(tmp_path: Path, path: str = "vp", seed: int = 0, name: str = "teacher") -> Path:
    config = TrainConfig(dataset="swiss-roll", model="mlp", num_timesteps=100, path=path, steps=3, batch_size=16,
                         precision="fp32", seed=seed, out_dir=str(tmp_path / name))
    return train(config, progress=False).checkpoint


def _progressive(teacher: Path, out: Path) -> DistillConfig:
    """8 -> 4 -> 2 steps, 4 optimizer steps a round (steps 0-3 round 1, 4-7 round 2)."""
    return DistillConfig(checkpoint=str(teacher), steps_from=8, steps_to=2, iters_per_round=4, batch_size=16, lr=1e-3,
                         warmup_steps=2, log_every=1, checkpoint_every=1000, out_dir=str(out))


def _reflow(teacher: Path, out: Path) -> DistillConfig:
    return DistillConfig(checkpoint=str(teacher), method="reflow", pairs=40, steps_from=4, steps_to=2,
                         iters_per_round=6, batch_size=16, lr=1e-3, warmup_steps=2, log_every=1,
                         checkpoint_every=1000, out_dir=str(out))


def _interrupted(monkeypatch, config: DistillConfig, done: int) -> Path:
    """Run ``config`` and press Ctrl-C during step ``done`` (from 1): the checkpoint of ``done`` steps."""
    real = train_step.TrainStep.__call__

    def interrupting(self, x0, t, noise, step, labels=None):
        out = real(self, x0, t, noise, step, labels)
        if step == done - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(train_step.TrainStep, "__call__", interrupting)
    with pytest.raises(TrainingInterrupted, match=rf"interrupted at step {done}; checkpoint saved") as e:
        distill(config, progress=False)
    monkeypatch.setattr(train_step.TrainStep, "__call__", real)
    assert load_checkpoint(e.value.checkpoint).step == done
    return Path(e.value.checkpoint)


def _resumed(config: DistillConfig, checkpoint: Path):
    """Resume in the checkpoint's own folder (no out_dir)."""
    return distill(dataclasses.replace(config, out_dir=None), resume=checkpoint, progress=False)


def _tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _same_run(a: Path, b: Path) -> None:
    """The two run folders end in the same checkpoint, bit for bit, and the same metrics, each step logged once."""
    x, y = load_checkpoint(a / CK), load_checkpoint(b / CK)
    assert x.step == y.step
    for part in ("model", "ema", "rng", "objective"):
        assert _tensors_equal(getattr(x, part), getattr(y, part)), part
    assert x.optimizer["param_groups"] == y.optimizer["param_groups"]
    assert x.optimizer["state"].keys() == y.optimizer["state"].keys()
    assert all(_tensors_equal(x.optimizer["state"][i], y.optimizer["state"][i]) for i in x.optimizer["state"])
    assert x.extra == y.extra
    assert {**x.train_config, "out_dir": None} == {**y.train_config, "out_dir": None}
    logged = [[(r.step, r.loss, r.lr, r.grad_norm) for r in read_metrics(d / "metrics.jsonl")] for d in (a, b)]
    assert logged[0] == logged[1] and [r[0] for r in logged[1]] == list(range(1, x.step + 1))


@pytest.mark.parametrize("done", [6, 4], ids=["mid-round-2", "at-the-round-boundary"])
def test_progressive_resumed_is_the_unbroken_run(tmp_path, monkeypatch, done):
    """Stopped after 6 steps (round 2, whose teacher is round 1's student EMA: no file but the checkpoint holds it)
    or after 4 (round 1's last step: the checkpoint is round 1's, and the resumed run starts round 2 itself)."""
    teacher = _teacher(tmp_path)
    whole = distill(_progressive(teacher, tmp_path / "whole"), progress=False)
    assert whole.step == 8
    cut = _interrupted(monkeypatch, _progressive(teacher, tmp_path / "cut"), done)
    record = load_checkpoint(cut).extra["distillation"]
    assert record["round"] == (2 if done == 6 else 1) and record["steps"] == (2 if done == 6 else 4)
    rest = _resumed(_progressive(teacher, tmp_path / "cut"), cut)
    assert rest.step == 8 and torch.equal(rest.losses, whole.losses[done:])
    _same_run(tmp_path / "whole", tmp_path / "cut")
    final = load_checkpoint(tmp_path / "cut" / CK)
    assert final.extra["distillation"]["round"] == 2 and final.objective["grid"].numel() == 5  # the 4-step teacher


@pytest.mark.parametrize("forget", ["teacher", "grid"])
def test_a_resume_without_the_round_teacher_or_its_grid_would_differ(tmp_path, monkeypatch, forget):
    """Controls: in round 2, keeping the placeholder teacher (the student's EMA at the checkpoint) or the first
    round's 8-step grid instead of what the checkpoint holds changes the resumed run."""
    teacher = _teacher(tmp_path)
    whole = distill(_progressive(teacher, tmp_path / "whole"), progress=False)
    cut = _interrupted(monkeypatch, _progressive(teacher, tmp_path / "cut"), 6)
    real = ProgressiveDistillation.restore

    def forgetful(self, step, state, extra):
        grid = self.grid
        real(self, step, state, extra)
        if forget == "grid":
            self.grid = grid

    monkeypatch.setattr(ProgressiveDistillation, "restore", forgetful)
    if forget == "teacher":
        monkeypatch.setattr(ProgressiveDistillation, "_load_teacher", lambda self, weights: None)
    rest = _resumed(_progressive(teacher, tmp_path / "cut"), cut)
    assert not torch.equal(rest.losses, whole.losses[6:])
    assert not _tensors_equal(rest.model.state_dict(), whole.model.state_dict())


def test_a_resume_at_the_boundary_that_skipped_the_new_round_would_differ(tmp_path, monkeypatch):
    """Control of the boundary case: the resumed run's first step must start round 2 (the EMA becomes teacher and
    student, the grid halves); a resume that took the checkpoint's round for the next one would not."""
    teacher = _teacher(tmp_path)
    whole = distill(_progressive(teacher, tmp_path / "whole"), progress=False)
    cut = _interrupted(monkeypatch, _progressive(teacher, tmp_path / "cut"), 4)
    real = ProgressiveDistillation.begin_step
    monkeypatch.setattr(ProgressiveDistillation, "begin_step",
                        lambda self, step, step_fn: None if step == 4 else real(self, step, step_fn))
    rest = _resumed(_progressive(teacher, tmp_path / "cut"), cut)
    assert not torch.equal(rest.losses, whole.losses[4:])


def test_reflow_resumed_is_the_unbroken_run_and_needs_its_stored_pairs(tmp_path, monkeypatch):
    """Reflow stopped after 3 of 6 steps resumes on the pairs its checkpoint holds (40 noises and teacher samples),
    bit for bit the unbroken run. Control: without them the resume generates pairs from the network at hand (the
    student) and differs."""
    teacher = _teacher(tmp_path, path="rectified-flow")
    whole = distill(_reflow(teacher, tmp_path / "whole"), progress=False)
    cut = _interrupted(monkeypatch, _reflow(teacher, tmp_path / "cut"), 3)
    pairs = load_checkpoint(cut).objective
    assert sorted(pairs) == ["z_0", "z_1"] and pairs["z_0"].shape == pairs["z_1"].shape == (40, 2)
    assert torch.equal(pairs["z_1"], torch.randn((40, 2), generator=torch.Generator().manual_seed(0)))
    shutil.copytree(tmp_path / "cut", tmp_path / "control")
    rest = _resumed(_reflow(teacher, tmp_path / "cut"), cut)
    assert torch.equal(rest.losses, whole.losses[3:])
    _same_run(tmp_path / "whole", tmp_path / "cut")

    monkeypatch.setattr(Reflow, "_load_pairs", lambda self, state: None)
    other = _resumed(_reflow(teacher, tmp_path / "control"), tmp_path / "control" / CK)
    assert not torch.equal(other.losses, whole.losses[3:])


def _argv(teacher: Path, *changes: str) -> list[str]:
    """The command that distilled _progressive's run, with ``changes`` appended."""
    return ["distill", "--checkpoint", teacher, "--steps-from", 8, "--steps-to", 2, "--iters-per-round", 4,
            "--batch-size", 16, "--lr", 1e-3, "--warmup-steps", 2, "--log-every", 1, "--checkpoint-every", 1000,
            "--no-progress", *changes]


def test_a_resume_that_changes_the_distillation_is_refused_in_one_line(tmp_path, monkeypatch, capsys, caplog):
    """Settings, method, batch size, seed and the teacher file must be the run's: each refusal is one line naming
    the option, and leaves the run's folder as it was. The optimizer's settings may change (with train's notice);
    a teacher file that is gone is no obstacle; the resumed checkpoint samples; train --resume refuses it."""
    teacher = _teacher(tmp_path)
    cut = _interrupted(monkeypatch, _progressive(teacher, tmp_path / "cut"), 6)
    before = {p.name: p.read_bytes() for p in (tmp_path / "cut").iterdir()}
    other = _teacher(tmp_path, seed=1, name="other")
    refused = [(["--steps-to", 4], "different --steps-to (--steps-to 2 there"),
               (["--iters-per-round", 5], "different --iters-per-round"),
               (["--method", "reflow"], "different method, pairs, --teacher-sampler"),
               (["--seed", 1], "different seed"), (["--batch-size", 8], "different batch_size"),
               (["--checkpoint", other], "is not the file this run started from")]
    for changes, message in refused:
        code, _, err = cli([*_argv(teacher, *changes), "--resume", cut], capsys)
        assert code == 2 and len(err.splitlines()) == 1 and message.replace("batch_size", "--batch-size") in err, err
    shutil.copy(other, teacher)  # the same path, another file
    code, _, err = cli([*_argv(teacher), "--resume", cut], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "give --checkpoint that file" in err, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "cut").iterdir()} == before

    teacher.unlink()
    with caplog.at_level("INFO", logger="diffusion_core.train"):
        code, out, err = cli([*_argv(teacher, "--lr", 5e-4), "--resume", cut], capsys)
    assert code == 0 and out.strip() == f"checkpoint: {cut}", err
    assert "lr: 0.001 -> 0.0005" in caplog.text and "does not need it" in caplog.text
    assert load_checkpoint(cut).step == 8
    assert [r.step for r in read_metrics(tmp_path / "cut" / "metrics.jsonl")] == list(range(1, 9))
    code, _, err = cli(["sample", "--checkpoint", cut, "--out", tmp_path / "s.png", "--num", 4, "--no-progress"],
                       capsys)
    assert code == 0, err
    same = TrainConfig.from_dict(load_checkpoint(cut).train_config).replace(out_dir=None, steps=9)
    with pytest.raises(ValueError, match=r"cannot resume: .* was trained with an objective of its own .*distill "
                       "--resume"):
        train(same, resume=cut, progress=False)


@pytest.mark.parametrize("done", [2, 6], ids=["round-1-guided", "round-2-unguided"])
def test_guided_progressive_resumed_is_the_unbroken_run(tmp_path, monkeypatch, done):
    """With --guidance, the first round's teacher is the guided one and the second round's the plain student EMA: a
    resume in either round rebuilds the teacher that round had (guidance again in round 2 would change the run)."""
    config = TrainConfig(dataset="8-gaussians", model="mlp", num_timesteps=100, steps=3, batch_size=16,
                         precision="fp32", class_cond=True, p_uncond=0.3, out_dir=str(tmp_path / "teacher"))
    teacher = train(config, progress=False).checkpoint

    def guided(out):
        return dataclasses.replace(_progressive(teacher, out), guidance=2.0)

    whole = distill(guided(tmp_path / "whole"), progress=False)
    cut = _interrupted(monkeypatch, guided(tmp_path / "cut"), done)
    rest = _resumed(guided(tmp_path / "cut"), cut)
    assert torch.equal(rest.losses, whole.losses[done:])
    _same_run(tmp_path / "whole", tmp_path / "cut")
    assert load_checkpoint(tmp_path / "cut" / CK).extra["distillation"]["guidance"] == 2.0
    # control: a teacher guided in every round gives another run
    real = ProgressiveDistillation._set_teacher

    def always_guided(self, network):
        round_, self.round = self.round, 0
        real(self, network)
        self.round = round_

    monkeypatch.setattr(ProgressiveDistillation, "_set_teacher", always_guided)
    again = distill(guided(tmp_path / "again"), progress=False)
    assert not torch.equal(again.losses[4:], whole.losses[4:]) and torch.equal(again.losses[:4], whole.losses[:4])


@pytest.mark.parametrize("native_bf16", [False, True])
def test_distillation_runs_in_the_precision_the_probe_says(tmp_path, monkeypatch, native_bf16):
    """A teacher trained with precision auto is distilled in what auto means on this machine: bf16 autocast where
    the CPU has native bf16, fp32 elsewhere; both branches on any CPU (the probe is faked). The teacher's two
    steps and the student's prediction all run inside the step's autocast."""
    import diffusion_core.train.distill_progressive as progressive
    import diffusion_core.train.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    config = TrainConfig(dataset="swiss-roll", model="mlp", num_timesteps=100, steps=2, batch_size=16,
                         precision="auto", out_dir=str(tmp_path / "teacher"))
    teacher = train(config, progress=False).checkpoint
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native_bf16)
    seen, real = [], progressive.progressive_distillation_loss

    def spy(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(progressive, "progressive_distillation_loss", spy)
    result = distill(_progressive(teacher, tmp_path / "student"), progress=False)
    assert seen == [torch.bfloat16 if native_bf16 else None] * 8 and torch.isfinite(result.losses).all()
