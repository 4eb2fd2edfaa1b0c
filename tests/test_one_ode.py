"""Every path is one probability-flow ODE (Kingma & Gao 2023; Karras et al. 2022, eq. 4): the exact denoiser of a
Gaussian mixture gives the same samples through every path and target on the same log-SNR grid, and each solver
has its order on every path, against an independent high-accuracy solution (scipy's RK45)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import diffusion_core as dc
from diffusion_core.mixture import GaussianMixture
from diffusion_core.paths import ContinuousVP, DiscreteVP, RectifiedFlow, VarianceExploding
from diffusion_core.targets import Coefficients, Target, edm_scaling, target_of

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
DATA = GaussianMixture([0.3, 0.7], [-1.0, 0.8], [0.3, 0.4])  # an elementwise two-component mixture
exact_x0 = DATA.x0  # E[x0 | x_t = x], x_t = a x0 + s eps (a, s broadcast against x); tests/test_mixture.py checks it


def _time_from_network_input(path, t_in: torch.Tensor) -> torch.Tensor:
    """Invert each path's network time input (what the test's network gets) back to the path's time."""
    if isinstance(path, DiscreteVP):
        return t_in.to(F64) + 1  # network time = schedule index = step - 1
    if isinstance(path, VarianceExploding):
        return torch.exp(4 * t_in.to(F64))  # c_noise = ln(sigma) / 4
    return t_in.to(F64) / 1000


def mixture_network(path, target: Target, sigma_data: float = 0.5):
    """A 'network' that outputs ``target`` of the exact denoiser, reading only what a network reads."""

    def net(x_in: torch.Tensor, t_in: torch.Tensor) -> torch.Tensor:
        shape = (-1, *([1] * (x_in.ndim - 1)))
        if target is Target.EDM:
            edm_sigma = torch.exp(4 * t_in.to(F64)).reshape(shape)  # c_noise = ln(sigma / alpha) / 4
            k = edm_scaling(edm_sigma, sigma_data)
            scaled = x_in / k.c_in
            x0 = exact_x0(scaled, torch.ones_like(edm_sigma), edm_sigma)
            return (x0 - k.c_skip * scaled) / k.c_out
        t = _time_from_network_input(path, t_in)
        d = path.derivatives(t) if target is Target.VELOCITY else (None, None)
        c = Coefficients(path.alpha(t).reshape(shape), path.sigma(t).reshape(shape),
                         *(None if v is None else v.reshape(shape) for v in d))
        x0 = exact_x0(x_in, c.alpha, c.sigma)
        return target_of(target, x0, (x_in - c.alpha * x0) / c.sigma, c)

    return net


DISCRETE = DiscreteVP(dc.NoiseSchedule.cosine(1000, dtype=F64))
PATHS = [  # (path, target, sampler) rows that must agree
    (DISCRETE, Target.EPS, dc.sample_ddim),
    (DISCRETE, Target.V, dc.sample_euler),
    (ContinuousVP.cosine(), Target.V, dc.sample_euler),
    (ContinuousVP.linear(), Target.X0, dc.sample_euler),
    (RectifiedFlow(), Target.VELOCITY, dc.sample_euler),
    (VarianceExploding(), Target.EDM, dc.sample_euler),
    (VarianceExploding(), Target.EPS, dc.sample_euler),
]


def _same_log_snr_grid(path, reference_grid: torch.Tensor) -> torch.Tensor:
    if path is DISCRETE:
        return reference_grid
    lam = DISCRETE.log_snr(reference_grid[:-1])
    return torch.cat([path.t_of_log_snr(lam), torch.zeros(1, dtype=F64)])


@pytest.mark.parametrize("steps", [1, 7, 25])
def test_every_path_and_target_gives_the_same_samples_on_one_log_snr_grid(steps):
    grid = dc.time_grid(DISCRETE, steps, "trailing")
    x_T = torch.randn(256, 1, generator=torch.Generator().manual_seed(0), dtype=F64)
    scaled = x_T / DISCRETE.alpha(grid[:1])  # x / alpha: the state every path shares at the same log-SNR
    samples = []
    for path, target, sampler in PATHS:
        ts = _same_log_snr_grid(path, grid)
        x = path.alpha(ts[:1]) * scaled
        den = dc.Denoiser(mixture_network(path, target), path, target)
        samples.append(sampler(den, x, ts, progress=False).sample)
    for (path, target, _), got in zip(PATHS[1:], samples[1:]):
        torch.testing.assert_close(got, samples[0], rtol=1e-6, atol=1e-6, msg=lambda m: f"{path!r} {target}: {m}")
    # one step gives the mean E[x0 | x_T] ~ 0.26 for every x_T; more give real samples of the mixture (sd ~0.85)
    assert samples[0].std() < 1e-3 if steps == 1 else samples[0].std() > 0.5


def _exact_endpoint(x_edm: np.ndarray, sigma_max: float, sigma_min: float) -> np.ndarray:
    """The ODE dx/dsigma = (x - D(x, sigma)) / sigma (x = x_t / alpha) from sigma_max to sigma_min by RK45 at
    tight tolerances, then D at sigma_min: what a sampler's last step (to the data) returns."""
    def f(sigma, x):
        xt = torch.from_numpy(x)
        d = exact_x0(xt, torch.ones_like(xt), torch.full_like(xt, sigma))
        return ((xt - d) / sigma).numpy()

    sol = solve_ivp(f, (sigma_max, sigma_min), x_edm, method="RK45", rtol=1e-11, atol=1e-11)
    end = torch.from_numpy(sol.y[:, -1])
    return exact_x0(end, torch.ones_like(end), torch.full_like(end, sigma_min)).numpy()


SOLVERS = {"euler": (dc.sample_euler, 1), "heun": (dc.sample_heun, 2), "dpmpp2m": (dc.sample_dpmpp_2m, 2)}


@pytest.mark.parametrize("path", [ContinuousVP.cosine(), ContinuousVP.linear(), RectifiedFlow(), VarianceExploding()],
                         ids=repr)
def test_solver_orders_hold_on_every_path(path):
    """Error at the data against the exact ODE solution, for N = 16..128 log-SNR-even steps from sigma/alpha = 20 to
    0.05; the fitted slope is the order (Euler 1; Heun and DPM-Solver++(2M) 2)."""
    sigma_max, sigma_min = 20.0, 0.05
    t_hi, t_lo = (float(path.t_of_log_snr(torch.tensor(-2 * math.log(v), dtype=F64))) for v in (sigma_max, sigma_min))
    x_edm = torch.linspace(-3, 3, 41, dtype=F64).reshape(-1, 1) * sigma_max
    exact = torch.from_numpy(_exact_endpoint(x_edm[:, 0].numpy(), sigma_max, sigma_min)).reshape(-1, 1)
    for name, (sampler, order) in SOLVERS.items():
        errors = []
        for n in (16, 32, 64, 128):
            ts = dc.time_grid(path, n, "log-snr", t_max=t_hi, t_min=t_lo)
            den = dc.Denoiser(mixture_network(path, Target.EPS), path, Target.EPS)
            out = sampler(den, path.alpha(ts[:1]) * x_edm, ts, progress=False, lower_order_final=False) \
                if name == "dpmpp2m" else sampler(den, path.alpha(ts[:1]) * x_edm, ts, progress=False)
            errors.append((out.sample - exact).pow(2).mean().sqrt().item())
        slope = np.polyfit(np.log([16, 32, 64, 128]), np.log(errors), 1)[0]
        assert abs(-slope - order) < 0.25, f"{name} on {path!r}: errors {errors}, order {-slope:.2f}"


def test_edm_sampler_without_churn_is_heun_and_with_churn_keeps_the_marginals():
    path = VarianceExploding()
    ts = dc.time_grid(path, 18, "karras")
    den = dc.Denoiser(mixture_network(path, Target.EDM), path, Target.EDM)
    x = 80.0 * torch.randn(20_000, 1, generator=torch.Generator().manual_seed(1), dtype=F64)
    heun = dc.sample_heun(den, x, ts, progress=False).sample
    torch.testing.assert_close(dc.sample_edm(den, x, ts, progress=False).sample, heun, rtol=0, atol=0)
    churned = dc.sample_edm(den, x, ts, s_churn=40, s_tmin=0.05, s_tmax=50, s_noise=1.003,
                            generator=torch.Generator().manual_seed(2), progress=False).sample
    assert not torch.equal(churned, heun)
    # Both sample the mixture: mean 0.3 * -1 + 0.7 * 0.8 = 0.26; with 20,000 samples of sd ~0.85 the standard
    # error of the mean is 0.006, so 0.03 is 5 of them (the discretization error of 18 Heun steps is far smaller).
    mean = 0.3 * -1.0 + 0.7 * 0.8
    for s in (heun, churned):
        assert abs(s.mean().item() - mean) < 0.03
