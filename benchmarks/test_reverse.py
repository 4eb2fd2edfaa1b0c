"""Reverse process: one DDIM step, whole DDPM-1000 and DDIM-50 samples (img/s, MFU), ours against
diffusers' schedulers on our network and against their UNet2DModel. Rows: benchmarks/matrix.py."""
import pytest


@pytest.mark.workloads("step")
def test_sampling_step(case, run):
    run(case)


@pytest.mark.workloads("ddpm", "ddim")
def test_whole_sample(case, run):
    run(case)
