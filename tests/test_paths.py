"""Gaussian paths (diffusion_core.paths) and the conversions between prediction targets (diffusion_core.targets),
each against an independent closed form."""
from __future__ import annotations

import math

import pytest
import torch

import diffusion_core as dc
from diffusion_core.errors import InvalidInput
from diffusion_core.paths import ContinuousVP, DiscreteVP, RectifiedFlow, VarianceExploding
from diffusion_core.targets import Coefficients, Prediction, Target, edm_scaling, target_of, to_x0_eps

F64 = torch.float64
CONTINUOUS = [ContinuousVP.cosine(), ContinuousVP.linear(), VarianceExploding(), RectifiedFlow()]


@pytest.mark.parametrize("kind", ["linear", "cosine", "quadratic", "sigmoid"])
def test_discrete_path_holds_the_schedules_own_values(kind):
    schedule = dc.NoiseSchedule.make(kind, 50, dtype=F64)
    path = DiscreteVP(schedule)
    t = torch.arange(1, 51, dtype=F64)
    assert torch.equal(path.alpha(t), schedule.sqrt_alphas_cumprod)
    assert torch.equal(path.sigma(t), schedule.sqrt_one_minus_alphas_cumprod)
    assert path.alpha(torch.zeros(1)).item() == 1.0 and path.sigma(torch.zeros(1)).item() == 0.0
    assert torch.equal(path.network_time(t), torch.arange(50))
    torch.testing.assert_close(path.log_snr(t), torch.log(schedule.snr), rtol=1e-12, atol=0)


def test_discrete_path_of_a_respaced_schedule_feeds_the_original_steps():
    schedule = dc.NoiseSchedule.linear(1000).spaced(10, "trailing")
    path = DiscreteVP(schedule)
    assert torch.equal(path.network_time(torch.arange(1, 11)), schedule.timesteps)


def test_discrete_path_refuses_times_off_its_grid():
    path = DiscreteVP(dc.NoiseSchedule.cosine(20))
    for bad in ([2.5], [-1.0], [21.0]):
        with pytest.raises(InvalidInput, match=r"t must be an integer step in \[0, 20\]"):
            path.alpha(torch.tensor(bad, dtype=F64))


def test_discrete_log_snr_inverse_is_exact_on_the_grid_and_monotone_between():
    path = DiscreteVP(dc.NoiseSchedule.cosine(100))
    t = torch.arange(1, 101, dtype=F64)
    torch.testing.assert_close(path.t_of_log_snr(path.log_snr(t)), t, rtol=0, atol=1e-9)
    mid = path.t_of_log_snr(0.5 * (path.log_snr(t[:-1]) + path.log_snr(t[1:])))
    assert bool(((mid > t[:-1]) & (mid < t[1:])).all())


def test_continuous_cosine_is_the_limit_of_the_discrete_cosine_schedule():
    """Nichol & Dhariwal's discrete alpha-bar at step i is f(i/T)/f(0) exactly, until the beta clip at 0.999."""
    T = 1000
    discrete = DiscreteVP(dc.NoiseSchedule.cosine(T, dtype=F64))
    steps = torch.arange(1, 990, dtype=F64)
    torch.testing.assert_close(ContinuousVP.cosine().alpha(steps / T), discrete.alpha(steps), rtol=1e-10, atol=0)


def test_continuous_linear_is_the_limit_of_a_fine_discrete_chain():
    """prod_i (1 - beta(t_i)/N) -> exp(-int_0^t beta) as N grows (error O(1/N)), for Song et al.'s beta(t)."""
    N, b0, b1 = 200_000, 0.1, 20.0
    t_i = torch.arange(1, N + 1, dtype=F64) / N
    alpha2 = torch.cumprod(1 - (b0 + (b1 - b0) * t_i) / N, 0)
    at = torch.tensor([0.1, 0.5, 0.9, 1.0], dtype=F64)
    idx = (at * N).round().long() - 1
    torch.testing.assert_close(ContinuousVP.linear(b0, b1).alpha(at) ** 2, alpha2[idx], rtol=1e-3, atol=0)


@pytest.mark.parametrize("path", CONTINUOUS, ids=repr)
def test_ends_inverse_and_derivatives(path):
    assert path.alpha(torch.zeros(1)).item() == 1.0 and path.sigma(torch.zeros(1)).item() == 0.0
    t = torch.linspace(0.01, path.t_max * 0.99, 40, dtype=F64)
    torch.testing.assert_close(path.t_of_log_snr(path.log_snr(t)), t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(path.edm_sigma(t), torch.exp(-0.5 * path.log_snr(t)), rtol=1e-12, atol=0)
    h = 1e-6
    d_alpha, d_sigma = path.derivatives(t)
    torch.testing.assert_close(d_alpha, (path.alpha(t + h) - path.alpha(t - h)) / (2 * h), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(d_sigma, (path.sigma(t + h) - path.sigma(t - h)) / (2 * h), rtol=1e-6, atol=1e-8)


def test_variance_preserving_paths_keep_unit_total_variance():
    t = torch.linspace(0, 0.999, 50, dtype=F64)
    for path in (ContinuousVP.cosine(), ContinuousVP.linear()):
        torch.testing.assert_close(path.alpha(t) ** 2 + path.sigma(t) ** 2, torch.ones_like(t), rtol=1e-14, atol=0)


def test_each_path_has_its_papers_form():
    t = torch.tensor([0.25, 0.5], dtype=F64)
    rf, ve = RectifiedFlow(), VarianceExploding()
    assert torch.equal(rf.alpha(t), 1 - t) and torch.equal(rf.sigma(t), t)
    assert torch.equal(ve.alpha(t), torch.ones(2, dtype=F64)) and torch.equal(ve.sigma(t), t)
    torch.testing.assert_close(ve.network_time(torch.tensor([math.e**4], dtype=F64)), torch.ones(1, dtype=F64))
    assert ve.t_max == 80.0 and rf.t_max == 1.0


def _coefficients(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    alpha, sigma = torch.rand(n, generator=g, dtype=F64) + 0.1, torch.rand(n, generator=g, dtype=F64) + 0.1
    d_alpha, d_sigma = -torch.rand(n, generator=g, dtype=F64), torch.rand(n, generator=g, dtype=F64) + 0.1
    return Coefficients(alpha, sigma, d_alpha, d_sigma), g


@pytest.mark.parametrize("target", list(Target))
def test_every_target_converts_back_to_x0_and_eps(target):
    c, g = _coefficients()
    x0, eps = torch.randn(64, generator=g, dtype=F64), torch.randn(64, generator=g, dtype=F64)
    x_t = c.alpha * x0 + c.sigma * eps
    y = target_of(target, x0, eps, c, sigma_data=0.5)
    got_x0, got_eps = to_x0_eps(target, y, x_t, c, sigma_data=0.5)
    torch.testing.assert_close(got_x0, x0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_eps, eps, rtol=1e-10, atol=1e-10)


def test_targets_match_the_papers_formulas():
    t = torch.tensor([0.3], dtype=F64)
    x0, eps = torch.tensor([0.7], dtype=F64), torch.tensor([-1.1], dtype=F64)
    # Salimans & Ho 2022 (VP): x0 = alpha x_t - sigma v.
    vp = ContinuousVP.cosine()
    c = Coefficients(vp.alpha(t), vp.sigma(t), *vp.derivatives(t))
    x_t = c.alpha * x0 + c.sigma * eps
    v = target_of(Target.V, x0, eps, c)
    torch.testing.assert_close(c.alpha * x_t - c.sigma * v, x0, rtol=1e-12, atol=0)
    # Rectified flow: u = eps - x0, and x0 = x_t - t u (Liu et al. 2022).
    rf = RectifiedFlow()
    c = Coefficients(rf.alpha(t), rf.sigma(t), *rf.derivatives(t))
    u = target_of(Target.VELOCITY, x0, eps, c)
    torch.testing.assert_close(u, eps - x0, rtol=1e-12, atol=0)
    torch.testing.assert_close(to_x0_eps(Target.VELOCITY, u, c.alpha * x0 + c.sigma * eps, c)[0], x0)
    # Karras et al. table 1 at sigma = 1, sigma_data = 0.5: c_skip = 0.2, c_out = c_in / 2 = 0.5 / sqrt(1.25).
    k = edm_scaling(torch.tensor([1.0], dtype=F64), 0.5)
    torch.testing.assert_close(torch.cat(k), torch.tensor([0.2, 0.5 / 1.25**0.5, 1 / 1.25**0.5, 0.0], dtype=F64))


def test_score_of_the_exact_denoiser_is_the_marginal_score():
    """Data N(m, v): x_t ~ N(alpha m, alpha^2 v + sigma^2), whose score is -(x - alpha m) / (alpha^2 v + sigma^2);
    the exact E[eps | x_t] is sigma (x - alpha m) / (alpha^2 v + sigma^2)."""
    m, var = 0.4, 0.09
    path, t = RectifiedFlow(), torch.full((5,), 0.6, dtype=F64)
    x = torch.linspace(-2, 2, 5, dtype=F64)
    a, s = path.alpha(t), path.sigma(t)
    total = a * a * var + s * s
    eps = s * (x - a * m) / total
    pred = Prediction((x - s * eps) / a, eps, Coefficients(a, s))
    torch.testing.assert_close(pred.score(), -(x - a * m) / total, rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------------------------------- time grids
from diffusion_core.grids import time_grid  # noqa: E402


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing", "log-snr", "karras"])
def test_discrete_grids_are_the_schedules_spaced_steps(spacing):
    schedule = dc.NoiseSchedule.cosine(100)
    grid = time_grid(DiscreteVP(schedule), 8, spacing)
    idx = dc.spaced_timesteps(100, 8, spacing, alphas_cumprod=schedule.alphas_cumprod.double())
    assert torch.equal(grid, torch.cat([(idx + 1).flip(0).double(), torch.zeros(1, dtype=F64)]))


def test_karras_grid_is_eq5_in_edm_sigma():
    n, lo, hi, rho = 6, 0.002, 80.0, 7.0
    want = [(hi ** (1 / rho) + i / (n - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho for i in range(n)] + [0.0]
    torch.testing.assert_close(time_grid(VarianceExploding(), n, "karras"), torch.tensor(want, dtype=F64),
                               rtol=1e-12, atol=0)
    rf = time_grid(RectifiedFlow(), n, "karras", sigma_max=80.0)  # the same noise levels as sigma/alpha = t/(1-t)
    torch.testing.assert_close(rf / (1 - rf), torch.tensor(want, dtype=F64), rtol=1e-10, atol=0)


def test_log_snr_grid_is_even_in_lambda_and_uniform_is_flow_match_eulers():
    grid = time_grid(ContinuousVP.cosine(), 9, "log-snr")
    lam = ContinuousVP.cosine().log_snr(grid[:-1])
    torch.testing.assert_close(lam.diff(), torch.full((8,), (lam[-1] - lam[0]).item() / 8, dtype=F64), rtol=1e-9,
                               atol=0)
    # diffusers' FlowMatchEulerDiscreteScheduler without shift: sigmas = linspace(1, 1/N, N), then 0.
    assert torch.allclose(time_grid(RectifiedFlow(), 4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=F64))


def test_sigma_max_starts_where_the_noise_level_is_reached():
    path = DiscreteVP(dc.NoiseSchedule.cosine(1000))
    grid = time_grid(path, 10, "karras", sigma_max=80.0)
    start = int(grid[0])
    assert path.edm_sigma(torch.tensor([start])).item() <= 80.0 < path.edm_sigma(torch.tensor([start + 1])).item()
    assert time_grid(VarianceExploding(1000.0), 3, sigma_max=80.0)[0].item() == pytest.approx(80.0, rel=1e-12)


def test_grid_arguments_are_checked():
    with pytest.raises(InvalidInput, match="spacing must be one of 'uniform', 'log-snr', 'karras'"):
        time_grid(RectifiedFlow(), 4, "trailing")
    with pytest.raises(InvalidInput, match="spacing must be one of"):
        time_grid(DiscreteVP(dc.NoiseSchedule.cosine(10)), 4, "uniform")
    with pytest.raises(InvalidInput, match="steps must be at most 10"):
        time_grid(DiscreteVP(dc.NoiseSchedule.cosine(10)), 11)
    with pytest.raises(InvalidInput, match="t_max or sigma_max"):
        time_grid(RectifiedFlow(), 4, t_max=0.5, sigma_max=3.0)


@pytest.mark.parametrize("spacing", ["log-snr", "karras"])
def test_noise_level_spacings_refuse_an_infinite_start_and_take_sigma_max(spacing):
    """Rectified flow at t = 1 is pure noise: log-SNR -inf, sigma/alpha infinite. A grid even in the noise level
    cannot start there (the grid would be NaN); with sigma_max = 80 it starts where sigma/alpha = 80."""
    with pytest.raises(InvalidInput, match=f"spacing '{spacing}' is even in the noise level, which is infinite"):
        time_grid(RectifiedFlow(), 8, spacing)
    ts = time_grid(RectifiedFlow(), 8, spacing, sigma_max=80.0)
    assert bool(torch.isfinite(ts).all()) and ts[-1] == 0
    assert ts[0].item() == pytest.approx(80 / 81, rel=1e-12)  # t/(1 - t) = 80
