"""Progressive distillation (diffusion_core.distillation) against exact teachers: the closed-form denoiser of a
Gaussian mixture (tests/oracles.py), whose DDIM steps are known exactly, on DDPM's discrete path, continuous VP and
rectified flow."""
from __future__ import annotations


import pytest
import torch

from diffusion_core import NoiseSchedule
from diffusion_core.denoiser import Denoiser
from diffusion_core.distillation import (ddim_prediction_between, draw_step_times, halve_grid,
                                         progressive_distillation_loss, progressive_distillation_target,
                                         teacher_two_ddim_steps, truncated_snr_weight)
from diffusion_core.errors import InvalidInput
from diffusion_core.grids import time_grid
from diffusion_core.metrics import sliced_wasserstein
from diffusion_core.paths import ContinuousVP, DiscreteVP, RectifiedFlow
from diffusion_core.samplers import sample_ddim
from oracles import BIMODAL, CorrectedNetwork, Mixture, progressive_rounds

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64

PATHS = {
    "ddpm-cosine": (lambda: DiscreteVP(NoiseSchedule.make("cosine", 1000, dtype=F64)), "v",
                    [(1000, 700, 400), (640, 320, 0), (37, 20, 3)]),
    "vp-cosine": (lambda: ContinuousVP.cosine(), "v", [(0.999, 0.6, 0.3), (0.5, 0.25, 0.0), (0.05, 0.03, 0.01)]),
    "rectified-flow": (lambda: RectifiedFlow(), "velocity", [(1.0, 0.5, 0.25), (0.7, 0.4, 0.0), (0.1, 0.05, 0.02)]),
}


def _teacher(name: str):
    make, target, triples = PATHS[name]
    path = make()
    return Denoiser(BIMODAL.network(path, target), path, target), triples


def _z(path, t: float, n: int = 512, seed: int = 0) -> torch.Tensor:
    """Points at time t: alpha_t x + sigma_t eps with x from the mixture, 2-D, float64."""
    g = torch.Generator().manual_seed(seed)
    x, eps = BIMODAL.sample((n, 2), generator=g), torch.randn(n, 2, generator=g, dtype=F64)
    tt = torch.tensor([t], dtype=F64)
    return path.alpha(tt) * x + path.sigma(tt) * eps


def _grid(*times: float) -> torch.Tensor:
    """A sampler grid through ``times`` (ending at 0, which is added when missing)."""
    return torch.tensor(list(times) + ([] if times[-1] == 0 else [0.0]), dtype=F64)


def _one_step_miss(teacher, target_fn, t: float, t_mid: float, t_end: float) -> float:
    """max |one DDIM step t -> t_end predicting x0 := target_fn(...) - the teacher's two DDIM steps|, both taken by
    the library's sampler (sample_ddim), relative to the size of the teacher's result."""
    z = _z(teacher.path, t)
    rows = lambda v: torch.full((z.shape[0],), v, dtype=F64)  # noqa: E731
    x_tilde = target_fn(teacher, z, rows(t), rows(t_mid), rows(t_end))
    two = sample_ddim(teacher, z, _grid(t, t_mid, t_end), progress=False, return_trajectory=True).trajectory[2]
    student = Denoiser(lambda x_in, t_in: x_tilde, teacher.path, "x0")  # "predicts" x_tilde
    one = sample_ddim(student, z, _grid(t, t_end), progress=False, return_trajectory=True).trajectory[1]
    return float((one - two).abs().max() / two.abs().max().clamp(min=1.0))


def _mutated_target(teacher, z_t, t, t_mid, t_end):
    """The target with sigma' in place of sigma'' (a plausible slip): must miss the teacher's two steps."""
    z_end = teacher_two_ddim_steps(teacher, z_t, t, t_mid, t_end)
    now, mid, end = (teacher.coefficients(s, z_t) for s in (t, t_mid, t_end))
    return ddim_prediction_between(z_t, z_end, now.alpha, now.sigma, end.alpha, mid.sigma)


@pytest.mark.parametrize("name", list(PATHS))
def test_one_student_step_lands_on_the_teachers_two_steps(name):
    """(a) One DDIM step t -> t'' predicting x~ reproduces the exact teacher's two DDIM steps t -> t' -> t''
    (float64), on DDPM's steps, continuous VP and rectified flow, from the pure-noise end (alpha_t = 0 on
    rectified flow), in the middle, near the data, and into the data (t'' = 0, where x~ is the two-step sample)."""
    teacher, triples = _teacher(name)
    for t, t_mid, t_end in triples:
        assert _one_step_miss(teacher, progressive_distillation_target, t, t_mid, t_end) < 1e-12, (t, t_mid, t_end)


@pytest.mark.parametrize("name", list(PATHS))
def test_a_mutated_target_misses_the_teachers_two_steps(name):
    """(b) The same check fails for the target written with sigma' instead of sigma''."""
    teacher, triples = _teacher(name)
    misses = [_one_step_miss(teacher, _mutated_target, *times) for times in triples if times[-1] > 0]
    assert min(misses) > 1e-3, misses


def test_the_loss_is_zero_for_the_exact_student_and_weighted_by_truncated_snr():
    """The loss builds z_t as the path does and compares x0 predictions: a student that predicts x~ itself has loss 0;
    one that predicts the teacher's own x0 has the truncated-SNR-weighted squared miss, computed here by hand."""
    teacher, _ = _teacher("vp-cosine")
    path, n = teacher.path, 256
    g = torch.Generator().manual_seed(3)
    x, noise = BIMODAL.sample((n, 2), generator=g), torch.randn(n, 2, generator=g, dtype=F64)
    t, t_mid, t_end = (torch.full((n,), v, dtype=F64) for v in (0.2, 0.1, 0.05))
    z = path.alpha(t)[:, None] * x + path.sigma(t)[:, None] * noise
    x_tilde = progressive_distillation_target(teacher, z, t, t_mid, t_end)
    exact = Denoiser(lambda x_in, t_in: x_tilde, path, "x0")
    assert float(progressive_distillation_loss(exact, teacher, x, t, t_mid, t_end, noise).abs().max()) < 1e-20
    lazy = Denoiser(BIMODAL.network(path, "x0"), path, "x0")  # the teacher itself: one step of its size
    loss = progressive_distillation_loss(lazy, teacher, x, t, t_mid, t_end, noise)
    snr = (path.alpha(t) / path.sigma(t)) ** 2
    assert float(snr.min()) > 1  # the x error's own weight here
    by_hand = snr * ((teacher(z, t).x0 - x_tilde) ** 2).mean(1)
    torch.testing.assert_close(loss, by_hand.to(loss.dtype), rtol=1e-6, atol=0)
    assert float(loss.min()) > 0
    assert torch.equal(truncated_snr_weight(path, torch.tensor([path.t_max], dtype=F64)), torch.ones(1, dtype=F64))


def test_grids_and_times():
    """A student's grid is every other teacher time; the drawn steps are consecutive teacher times, every student
    step drawn; odd grids and unordered times are refused."""
    ts = time_grid(DiscreteVP(NoiseSchedule.make("cosine", 1000)), 8)
    student = halve_grid(ts)
    assert student.tolist() == ts[::2].tolist() and student.numel() == 5
    t, t_mid, t_end = draw_step_times(ts, 400, generator=torch.Generator().manual_seed(0))
    k = (ts[None, :] == t[:, None]).nonzero()[:, 1]
    assert sorted(set(k.tolist())) == [0, 2, 4, 6]
    assert torch.equal(t_mid, ts[k + 1]) and torch.equal(t_end, ts[k + 2])
    with pytest.raises(InvalidInput, match="even number of steps"):
        halve_grid(ts[:4])
    teacher, _ = _teacher("vp-cosine")
    z = _z(teacher.path, 0.5, n=4)
    with pytest.raises(InvalidInput, match="t > t_mid > t_end"):
        progressive_distillation_target(teacher, z, *(torch.full((4,), v, dtype=F64) for v in (0.5, 0.6, 0.1)))


# ----------------------------------------------------------------------------- (c) a student trained from the exact teacher
DATA = Mixture([0.4, 0.6], [-1.0, 1.0], [0.3, 0.3])  # each coordinate; 4 modes in 2-D


def _distill(path, grid: torch.Tensor, iters: int, g: torch.Generator) -> dict[int, tuple[Denoiser, torch.Tensor]]:
    """Progressive distillation from the exact teacher on ``grid``, halving to one step (oracles.progressive_rounds)."""
    return progressive_rounds(CorrectedNetwork(DATA, path, "x0"), Denoiser(DATA.network(path, "x0"), path, "x0"), path,
                              "x0", grid, iters, lambda n, g: (DATA.sample((n, 2), generator=g).float(), None), g)


def test_a_student_distilled_from_the_exact_teacher_samples_in_one_and_two_steps():
    """(c) Progressive distillation from the exact teacher (continuous VP cosine, DDIM on the uniform grid), 32 -> 16
    -> 8 -> 4 -> 2 -> 1 steps, 300 Adam steps a round. Sliced Wasserstein to exact samples, n = 4000 each
    (measured when written: the teacher's DDIM at 1, 2, 50 steps 0.891, 0.384, 0.021; the students at 1 and 2 steps
    0.034, 0.034; two independent exact sample sets 0.034, the measurement's resolution at this n).

    Asserted: each student is 10x (1 step) and 5x (2 steps) better than the teacher's DDIM at its step count, and
    within one resolution (the two-exact-sets distance) of the teacher's DDIM-50. Starting from 8 steps instead, the
    1-step student measured 0.074, the teacher's DDIM-8 (0.071): a student learns its first teacher's grid, not the
    ODE, so the chain starts where the teacher's DDIM is already near its limit."""
    path = ContinuousVP.cosine()
    g = torch.Generator().manual_seed(1)
    students = _distill(path, time_grid(path, 32), iters=300, g=g)
    n = 4000
    ref, ref2 = DATA.sample((n, 2), generator=g), DATA.sample((n, 2), generator=g)
    noise = torch.randn(n, 2, generator=g, dtype=F64)
    resolution = sliced_wasserstein(ref, ref2)

    def sw(denoiser, grid, dtype):
        x = (noise * path.sigma(grid[:1])).to(dtype)
        return sliced_wasserstein(sample_ddim(denoiser, x, grid, progress=False).sample.double(), ref)

    exact = Denoiser(DATA.network(path, "x0"), path, "x0")
    teacher = {s: sw(exact, time_grid(path, s), F64) for s in (1, 2, 50)}
    student = {s: sw(*students[s], torch.float32) for s in (1, 2)}
    assert student[1] < teacher[1] / 10 and student[2] < teacher[2] / 5, (student, teacher)
    assert max(student.values()) < teacher[50] + resolution, (student, teacher, resolution)


# ----------------------------------------------------------------------------- the command
def test_distill_command_writes_a_student_that_sample_uses_on_its_grid(capsys, caplog, tmp_path, monkeypatch):
    """``distill`` on a toy vp model: two rounds (8 -> 4 -> 2 steps) of a normal run (metrics.jsonl, config.json,
    a checkpoint of every step recorded as distilled for 2 steps on every fourth time of the teacher's 8-step grid),
    starting from the teacher's EMA weights; ``sample`` then takes DDIM on that grid by default and warns when
    asked for another step count."""
    import json

    import numpy as np

    from diffusion_core.cli import main
    from diffusion_core.train import TrainConfig, load_checkpoint, load_model, trainer
    from diffusion_core.train.path_sampling import sample_on_grid

    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    assert main(["train", "--dataset", "swiss-roll", "--num-timesteps", "100", "--batch-size", "16", "--steps", "3",
                 "--out-dir", str(teacher_dir), "--no-progress", "--precision", "fp32"]) == 0
    teacher_ckpt = teacher_dir / "checkpoint.safetensors"
    common = ["distill", "--checkpoint", str(teacher_ckpt), "--steps-from", "8", "--steps-to", "2", "--batch-size",
              "16", "--log-every", "1", "--no-progress"]
    # lr so small that the student stays where it started: the teacher's EMA weights, not its raw ones
    assert main([*common, "--iters-per-round", "3", "--lr", "1e-12", "--out-dir", str(student_dir)]) == 0
    student, teacher = load_checkpoint(student_dir / "checkpoint.safetensors"), load_checkpoint(teacher_ckpt)
    assert student.step == 6 and len((student_dir / "metrics.jsonl").read_text().splitlines()) == 6
    for name, value in student.model.items():
        torch.testing.assert_close(value, teacher.ema[name], rtol=0, atol=1e-9)
    assert any(not torch.equal(teacher.model[k], teacher.ema[k]) for k in teacher.model)
    config = TrainConfig.from_dict(student.train_config)
    record = student.extra["distillation"]
    assert record["steps"] == 2 and record["round"] == record["rounds"] == 2 and record["method"] == "progressive"
    assert record["grid"] == time_grid(config.gaussian_path(), 8)[::4].tolist()
    assert json.loads((student_dir / "config.json").read_text())["distillation"]["steps_from"] == 8
    capsys.readouterr()
    caplog.clear()

    out = tmp_path / "s.png"
    assert main(["sample", "--checkpoint", str(student_dir / "checkpoint.safetensors"), "--out", str(out), "--num",
                 "8", "--no-progress"]) == 0
    noise = torch.randn((8, 2), generator=torch.Generator().manual_seed(0))
    expected = sample_on_grid(config, load_model(student), noise, torch.tensor(record["grid"]))
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected.numpy(), rtol=1e-6, atol=1e-6)
    assert "distilled" not in caplog.text
    assert main(["sample", "--checkpoint", str(student_dir / "checkpoint.safetensors"), "--out",
                 str(tmp_path / "s5.png"), "--num", "8", "--steps", "5", "--no-progress"]) == 0
    assert "distilled for 2 DDIM steps on its own grid; sampling with --steps 5" in caplog.text
    capsys.readouterr()

    # distilling on from the student: its grid is the teacher's (every other time of it), its steps are steps-from
    on = [*common[:2], str(student_dir / "checkpoint.safetensors"), *common[3:], "--iters-per-round", "2"]
    assert main([*on, "--steps-from", "2", "--steps-to", "1", "--out-dir", str(tmp_path / "one")]) == 0
    assert load_checkpoint(tmp_path / "one" / "checkpoint.safetensors").extra["distillation"]["grid"] == \
        [record["grid"][0], 0.0]
    capsys.readouterr()
    assert main([*on, "--steps-from", "4", "--steps-to", "2", "--out-dir", str(tmp_path / "bad")]) == 2
    assert "--steps-from must be the 2 steps the teacher" in capsys.readouterr().err
    assert main([*common, "--steps-from", "6", "--steps-to", "4", "--out-dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--steps-from must be --steps-to times a power of two" in err
    assert not (tmp_path / "bad").exists()
