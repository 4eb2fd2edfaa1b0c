"""Forward process: q(x_t | x_0) with noise generation (GB/s, % of copy bandwidth) and the whole
training step (img/s, MFU). Rows: benchmarks/matrix.py."""
import pytest


@pytest.mark.workloads("qsample", "qsample_given")
def test_q_sample(case, run):
    run(case)


@pytest.mark.workloads("train")
def test_training_step(case, run):
    run(case)
