"""Reverse process: one DDIM step, whole DDPM-1000, DDIM-50, DPM-Solver++(2M)-20 and Heun-10 samples (img/s, MFU),
ours against diffusers' schedulers on our network and against their UNet2DModel; guided DDIM-50 against unguided
DDIM-50 on the same class-conditional network. Rows: benchmarks/matrix.py."""
import pytest


@pytest.mark.workloads("step")
def test_sampling_step(case, run):
    run(case)


@pytest.mark.workloads("ddpm", "ddim")
def test_whole_sample(case, run):
    run(case)


@pytest.mark.workloads("dpmpp2m", "heun")
def test_ode_solver_sample(case, run):
    run(case)


@pytest.mark.workloads("ddim_cfg", "ddim_cond")
def test_guided_sample(case, run):
    run(case)
