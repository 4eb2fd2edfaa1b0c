"""Reflow (diffusion_core.reflow, Liu, Gong & Liu 2022) against exact teachers: the closed-form rectified-flow
velocity of Gaussian mixtures (tests/oracles.py), whose ODE the coupling solves, and a student trained on it; then
``diffusion-core distill --method reflow``."""
from __future__ import annotations

import pytest
import torch

from diffusion_core.denoiser import Denoiser
from diffusion_core.errors import InvalidInput
from diffusion_core.grids import time_grid
from diffusion_core.metrics import sliced_wasserstein
from diffusion_core.paths import ContinuousVP, RectifiedFlow
from diffusion_core.reflow import reflow_coupling, reflow_loss, straight_line_point, teacher_ode_solution
from diffusion_core.samplers import sample_dpmpp_2m, sample_euler
from oracles import BIMODAL, GAUSS, CorrectedNetwork, Mixture

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64
PATH = RectifiedFlow()


def _teacher(data: Mixture = BIMODAL) -> Denoiser:
    return Denoiser(data.network(PATH, "velocity"), PATH, "velocity")


def _euler_by_hand(data: Mixture, z_1: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Euler on dx/dt = u(x, t) = E[eps | x_t] - E[x0 | x_t] (the mixture's formulas at alpha = 1 - t, sigma = t),
    from t = grid[0] down the grid: x <- x + (s - t) u(x, t). Written here, not with the library's sampler."""
    x = z_1.clone()
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist()):
        u = data.eps(x, 1 - t, t) - data.x0(x, 1 - t, t)
        x = x + (s - t) * u
    return x


# ----------------------------------------------------------------------------- (a) the coupling
@pytest.mark.parametrize("grid", [time_grid(PATH, 50), torch.tensor([1.0, 0.9, 0.7, 0.4, 0.2, 0.05, 0.0], dtype=F64)],
                         ids=["uniform-50", "uneven-6"])
def test_the_couplings_z0_is_the_teachers_ode_solution(grid):
    """(a) reflow_coupling's z_1 is the generator's standard normal draw and its z_0 is Euler's solution of the exact
    teacher's ODE from it, computed here independently (float64, to 1e-12 relative), whatever the batch size."""
    g = torch.Generator().manual_seed(5)
    pairs = reflow_coupling(_teacher(), 300, (2,), grid, generator=g, dtype=F64, batch_size=64)
    z_1 = torch.randn((300, 2), generator=torch.Generator().manual_seed(5), dtype=F64)
    assert torch.equal(pairs.z_1, z_1)
    by_hand = _euler_by_hand(BIMODAL, z_1, grid)
    assert float((pairs.z_0 - by_hand).abs().max() / by_hand.abs().max()) < 1e-12
    assert float((pairs.z_0 - z_1).norm(dim=1).mean()) > 0.5  # it moved: not the identity


def test_the_dpm_solver_coupling_is_the_samplers_and_both_converge_to_the_exact_map():
    """(a) With DPM-Solver++(2M) the coupling is that sampler's solution (batched or not). On one Gaussian N(0.5,
    0.3^2) per coordinate the exact ODE map is z_0 = 0.5 + 0.3 z_1: Euler's coupling approaches it at first order
    (error / 4 for 4x the steps; measured 0.0500 at 40 steps, 0.0127 at 160), DPM-Solver++'s faster (0.0012 at 160)."""
    grid = time_grid(PATH, 30)
    z_1 = torch.randn((200, 2), generator=torch.Generator().manual_seed(2), dtype=F64)
    batched = teacher_ode_solution(_teacher(), z_1, grid, sampler="dpmpp-2m", batch_size=37)
    whole = sample_dpmpp_2m(_teacher(), z_1, grid, progress=False).sample
    assert float((batched - whole).abs().max()) < 1e-12
    exact = 0.5 + 0.3 * z_1
    gauss = _teacher(GAUSS)
    miss = {(s, n): float((teacher_ode_solution(gauss, z_1, time_grid(PATH, n), sampler=s) - exact).abs().max())
            for s in ("euler", "dpmpp-2m") for n in (40, 160)}
    assert 3 < miss["euler", 40] / miss["euler", 160] < 5, miss
    assert miss["dpmpp-2m", 160] < miss["euler", 160] / 5, miss


def test_the_coupling_refuses_what_it_cannot_do():
    """A teacher on another path, a grid that does not start at pure noise and an unknown sampler: one error each,
    naming the argument."""
    vp = ContinuousVP.cosine()
    z_1 = torch.randn(4, 2, dtype=F64)
    with pytest.raises(InvalidInput, match="teacher must be on RectifiedFlow"):
        teacher_ode_solution(Denoiser(BIMODAL.network(vp, "v"), vp, "v"), z_1, time_grid(vp, 4))
    with pytest.raises(InvalidInput, match="grid must start at t = 1"):
        teacher_ode_solution(_teacher(), z_1, torch.tensor([0.9, 0.5, 0.0], dtype=F64))
    with pytest.raises(InvalidInput, match="sampler must be one of euler, dpmpp-2m"):
        teacher_ode_solution(_teacher(), z_1, time_grid(PATH, 4), sampler="heun")


# ----------------------------------------------------------------------------- (b) the target and the loss
def _pair(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z_0, z_1 = BIMODAL.sample((n, 2), generator=g), torch.randn(n, 2, generator=g, dtype=F64)
    return z_0, z_1, torch.rand(n, generator=g, dtype=F64)


def test_the_target_is_the_straight_lines_velocity_in_the_librarys_convention():
    """(b) The point is x_t = (1 - t) z_0 + t z_1 (data at t = 0, noise at t = 1) and the target there is
    z_1 - z_0, which is dx_t/dt along the line (a central difference of the path's own x_t): the library's velocity
    convention, eps - x_0 (the negative of Liu et al.'s and Meta's X_1 - X_0, whose time runs the other way)."""
    z_0, z_1, t = _pair()
    x_t, u = straight_line_point(PATH, z_0, z_1, t)
    torch.testing.assert_close(x_t, (1 - t)[:, None] * z_0 + t[:, None] * z_1, rtol=0, atol=1e-15)
    torch.testing.assert_close(u, z_1 - z_0, rtol=0, atol=1e-15)
    h = 1e-6
    slope = (PATH.sample(z_0, t + h, z_1) - PATH.sample(z_0, t - h, z_1)) / (2 * h)
    torch.testing.assert_close(u, slope, rtol=0, atol=1e-8)


def _replying(values: torch.Tensor):
    """A "network" that answers ``values`` (row by row) whatever it is asked."""
    return lambda x_in, t_in: values


def test_the_loss_is_zero_on_the_straight_line_velocity_and_not_with_its_sign_flipped():
    """(b) A student answering z_1 - z_0 has loss 0 (also read as x0 answering z_0, or eps answering z_1: the same
    pair in another target's space); answering z_0 - z_1 costs exactly 4 |z_1 - z_0|^2 (mean over coordinates).
    Another path is refused."""
    z_0, z_1, t = _pair()
    zero = [reflow_loss(Denoiser(_replying(y), PATH, target), z_0, z_1, t)
            for y, target in ((z_1 - z_0, "velocity"), (z_0, "x0"), (z_1, "eps"))]
    assert max(float(loss.abs().max()) for loss in zero) < 1e-12
    flipped = reflow_loss(Denoiser(_replying(z_0 - z_1), PATH, "velocity"), z_0, z_1, t)
    torch.testing.assert_close(flipped, (4 * (z_1 - z_0) ** 2).mean(1).to(flipped.dtype), rtol=1e-6, atol=0)
    assert float(flipped.min()) > 0
    vp = ContinuousVP.cosine()
    with pytest.raises(InvalidInput, match="student must be on RectifiedFlow"):
        reflow_loss(Denoiser(_replying(z_1), vp, "eps"), z_0, z_1, t)


# ----------------------------------------------------------------------------- (c) a student trained by reflow
DATA = Mixture([0.4, 0.6], [-1.0, 1.0], [0.3, 0.3])  # each coordinate; 4 modes in 2-D


def _reflowed(pairs, iters: int, g: torch.Generator) -> Denoiser:
    """A student trained by reflow on ``pairs``: batches of 256 pairs at uniform times, Adam at 2e-3."""
    torch.manual_seed(0)  # the MLP's initial weights
    net = CorrectedNetwork(DATA, PATH, "velocity")
    student, optimizer = Denoiser(net, PATH, "velocity"), torch.optim.Adam(net.parameters(), lr=2e-3)
    z_0, z_1 = pairs.z_0.float(), pairs.z_1.float()
    for _ in range(iters):
        rows = torch.randint(0, z_0.shape[0], (256,), generator=g)
        loss = reflow_loss(student, z_0[rows], z_1[rows], 1 - torch.rand(256, generator=g, dtype=F64))
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
    net.requires_grad_(False)
    return student


def test_a_student_reflowed_from_the_exact_teacher_samples_in_one_euler_step():
    """(c) 4000 pairs from the exact teacher's Euler-50, 1500 Adam steps. Sliced Wasserstein to exact samples,
    n = 4000 each (measured when written: the teacher's Euler at 1, 2, 50 steps 0.889, 0.380, 0.023; the student's
    at 1, 2 steps 0.026, 0.020; two independent exact sample sets 0.025; over 20 such pairs of sets the
    resolution measured 0.022 +- 0.006, at most 0.034). From the same noise the student's 1-step sample lies 0.064
    (RMS) from the teacher's Euler-50 sample, the teacher's own 1-step one 1.42.

    Asserted: the 1-step student 10x better than the teacher's 1-step Euler and within one resolution (the
    two-exact-sets distance) of the teacher's Euler-50; its 1-step map 10x nearer the teacher's Euler-50 map than
    the teacher's 1-step Euler is. A 1-step Euler of the teacher lands on the data's mean (the best velocity at pure
    noise); reflow's velocity at t = 1 is z_1 - z_0 itself, a function of z_1, which one step follows."""
    g = torch.Generator().manual_seed(1)
    pairs = reflow_coupling(_teacher(DATA), 4000, (2,), time_grid(PATH, 50), generator=g, dtype=F64)
    student = _reflowed(pairs, 1500, g)
    n = 4000
    ref, ref2 = DATA.sample((n, 2), generator=g), DATA.sample((n, 2), generator=g)
    noise = torch.randn(n, 2, generator=g, dtype=F64)
    resolution = sliced_wasserstein(ref, ref2)

    def euler(denoiser, steps, dtype=F64):
        return sample_euler(denoiser, noise.to(dtype), time_grid(PATH, steps), progress=False).sample.double()

    teacher = {s: euler(_teacher(DATA), s) for s in (1, 50)}
    one_step = euler(student, 1, torch.float32)
    sw_teacher = {s: sliced_wasserstein(x, ref) for s, x in teacher.items()}
    sw_student = sliced_wasserstein(one_step, ref)
    assert sw_student < sw_teacher[1] / 10, (sw_student, sw_teacher)
    assert sw_student < sw_teacher[50] + resolution, (sw_student, sw_teacher, resolution)
    rms = {k: float(((x - teacher[50]) ** 2).sum(1).mean().sqrt()) for k, x in (("student", one_step),
                                                                                   ("teacher", teacher[1]))}
    assert rms["student"] < rms["teacher"] / 10, rms


# ----------------------------------------------------------------------------- the command
def test_distill_reflow_writes_a_student_that_samples_by_euler_with_its_steps(capsys, caplog, tmp_path, monkeypatch):
    """``distill --method reflow`` on a toy rectified-flow model: a normal run (metrics.jsonl, a checkpoint recorded
    as reflowed for 2 Euler steps on the uniform grid) starting from the teacher's EMA weights; its pairs are the
    generator's noise and the teacher's Euler solution from it (what ``sample --steps 4`` gives); ``sample`` then
    takes 2 Euler steps by default and any other count without a warning. A vp checkpoint and reflow's options with
    progressive are refused in one line, before anything is written."""
    import numpy as np

    from diffusion_core.cli import main
    from diffusion_core.train import TrainConfig, load_checkpoint, load_model, trainer
    from diffusion_core.train.distill import DistillConfig, Reflow
    from diffusion_core.train.path_sampling import sample_on_path

    monkeypatch.setattr(trainer, "preview", lambda *a, **k: None)
    train = ["train", "--dataset", "swiss-roll", "--batch-size", "16", "--steps", "3", "--no-progress", "--precision",
             "fp32"]
    assert main([*train, "--path", "rectified-flow", "--out-dir", str(tmp_path / "teacher")]) == 0
    teacher_ckpt = tmp_path / "teacher" / "checkpoint.safetensors"
    options = ["--method", "reflow", "--pairs", "40", "--steps-from", "4", "--steps-to", "2", "--batch-size", "16"]
    assert main(["distill", "--checkpoint", str(teacher_ckpt), *options, "--iters-per-round", "3", "--lr", "1e-12",
                 "--log-every", "1", "--no-progress", "--out-dir", str(tmp_path / "student")]) == 0
    student, teacher = load_checkpoint(tmp_path / "student" / "checkpoint.safetensors"), load_checkpoint(teacher_ckpt)
    assert student.step == 3 and len((tmp_path / "student" / "metrics.jsonl").read_text().splitlines()) == 3
    for name, value in student.model.items():  # lr 1e-12: still the teacher's EMA weights, not its raw ones
        torch.testing.assert_close(value, teacher.ema[name], rtol=0, atol=1e-9)
    assert any(not torch.equal(teacher.model[k], teacher.ema[k]) for k in teacher.model)
    record = student.extra["distillation"]
    assert {k: record[k] for k in ("method", "steps", "grid", "pairs", "steps_from", "teacher_sampler")} == {
        "method": "reflow", "steps": 2, "grid": [1.0, 0.5, 0.0], "pairs": 40, "steps_from": 4,
        "teacher_sampler": "euler"}

    config = TrainConfig.from_dict(teacher.train_config)
    objective = Reflow(DistillConfig(checkpoint=str(teacher_ckpt), method="reflow", pairs=40, steps_from=4),
                       config, load_model(teacher), torch.device("cpu"), (2,))
    objective.begin_step(0, None)
    z_1 = torch.randn((40, 2), generator=torch.Generator().manual_seed(0))
    assert torch.equal(objective.pairs.z_1, z_1)
    torch.testing.assert_close(objective.pairs.z_0, sample_on_path(config, load_model(teacher), z_1, steps=4))
    capsys.readouterr()
    caplog.clear()

    for steps in ([], ["--steps", "5"]):
        out = tmp_path / f"s{len(steps)}.png"
        assert main(["sample", "--checkpoint", str(tmp_path / "student" / "checkpoint.safetensors"), "--out", str(out),
                     "--num", "8", "--no-progress", *steps]) == 0
        noise = torch.randn((8, 2), generator=torch.Generator().manual_seed(0))
        expected = sample_on_path(config, load_model(student), noise, steps=int(steps[1]) if steps else 2)
        np.testing.assert_allclose(np.load(out.with_suffix(".npy")), expected.numpy(), rtol=1e-6, atol=1e-6)
    assert "distilled" not in caplog.text
    capsys.readouterr()

    assert main([*train, "--path", "vp", "--num-timesteps", "100", "--out-dir", str(tmp_path / "vp")]) == 0
    capsys.readouterr()
    refused = [(["--checkpoint", str(tmp_path / "vp" / "checkpoint.safetensors"), *options], "reflow needs a "
                "rectified-flow checkpoint"),
               (["--checkpoint", str(teacher_ckpt), "--pairs", "40"], "pairs is an option of method reflow")]
    for argv, message in refused:
        assert main(["distill", *argv, "--no-progress", "--out-dir", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "bad").exists()
