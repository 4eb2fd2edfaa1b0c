"""Training-time densities (diffusion_core.time_sampling): moments against their closed forms, with tolerances
from the sample size (n = 200,000: a standard error of 1 / sqrt(n) = 0.0022 per unit of standard deviation;
the bounds below are 5 standard errors)."""
from __future__ import annotations

import math

import pytest
import torch

import diffusion_core as dc
from diffusion_core.paths import ContinuousVP, DiscreteVP, RectifiedFlow, VarianceExploding
from diffusion_core.time_sampling import LogitNormalTime, LogNormalSigma, UniformTime

N = 200_000
TOL = 5 / math.sqrt(N)


def test_uniform_on_a_ddpm_path_is_the_trainers_draw():
    path = DiscreteVP(dc.NoiseSchedule.cosine(50))
    t = UniformTime()(path, 1000, torch.Generator().manual_seed(0))
    want = torch.randint(0, 50, (1000,), generator=torch.Generator().manual_seed(0)) + 1
    assert torch.equal(t, want.double())


def test_uniform_continuous_has_the_uniform_moments():
    t = UniformTime()(RectifiedFlow(), N, torch.Generator().manual_seed(1))
    assert 0 < t.min() and t.max() <= 1
    assert abs(t.mean().item() - 0.5) < TOL * math.sqrt(1 / 12) and abs(t.var().item() - 1 / 12) < 0.01 / 12


@pytest.mark.parametrize("path", [VarianceExploding(1e6), RectifiedFlow(), ContinuousVP.linear()], ids=repr)
def test_log_normal_sigma_has_edms_moments(path):
    t = LogNormalSigma()(path, N, torch.Generator().manual_seed(2))
    log_sigma = torch.log(path.edm_sigma(t))
    keep = t < path.t_max  # the cap at t_max clips the top of the distribution on bounded paths
    if bool(keep.all()):
        assert abs(log_sigma.mean().item() + 1.2) < TOL * 1.2 and abs(log_sigma.std().item() - 1.2) < 0.01
    else:  # the median, which the cap does not move; its standard error is sqrt(pi / 2) sd / sqrt(n)
        assert abs(log_sigma.median().item() + 1.2) < TOL * 1.2 * math.sqrt(math.pi / 2)


def test_logit_normal_has_sd3s_median_and_spread():
    t = LogitNormalTime()(RectifiedFlow(), N, torch.Generator().manual_seed(3))
    u = torch.logit(t)
    assert abs(u.mean().item()) < TOL and abs(u.std().item() - 1) < 0.01


def test_discrete_paths_get_integer_steps():
    path = DiscreteVP(dc.NoiseSchedule.cosine(100))
    for sampler in (LogNormalSigma(), LogitNormalTime()):
        t = sampler(path, 1000, torch.Generator().manual_seed(4))
        assert torch.equal(t, t.round()) and t.min() >= 1 and t.max() <= 100
