"""diffusion_core.mixture: the exact posterior predictions of a Gaussian mixture against quadrature of Bayes' rule,
the score against a finite difference of the noised density, draws against the mixture's moments."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from diffusion_core.errors import InvalidInput
from diffusion_core.mixture import GaussianMixture

MIX = GaussianMixture([0.3, 0.7], [-1.0, 0.8], [0.3, 0.4])
POINTS = [-2.5, -1.0, 0.0, 0.37, 1.2, 3.0]
LEVELS = [(0.999, 0.045), (0.8, 0.6), (0.3, 0.954), (1.0, 2.0), (0.05, 0.9987)]  # (alpha, sigma)


def _prior(x0: float) -> float:
    return float(sum(w * stats.norm.pdf(x0, m, s) for w, m, s in zip([0.3, 0.7], [-1.0, 0.8], [0.3, 0.4])))


def _posterior_mean(f, x_t: float, alpha: float, sigma: float) -> float:
    """E[f(x0) | x_t] by quadrature of p(x0) N(x_t; alpha x0, sigma^2) over x0: Bayes' rule, no closed form."""
    lik = lambda x0: _prior(x0) * stats.norm.pdf(x_t, alpha * x0, sigma)  # noqa: E731
    kw = dict(points=[-1.0, 0.8, x_t / alpha], limit=400, epsabs=1e-14, epsrel=1e-11)
    num = integrate.quad(lambda x0: f(x0) * lik(x0), -8, 8, **kw)[0]
    return num / integrate.quad(lik, -8, 8, **kw)[0]


@pytest.mark.parametrize("alpha, sigma", LEVELS)
def test_x0_and_eps_are_the_posterior_means_by_quadrature(alpha, sigma):
    for x_t in POINTS:
        x0 = _posterior_mean(lambda v: v, x_t, alpha, sigma)
        eps = _posterior_mean(lambda v: (x_t - alpha * v) / sigma, x_t, alpha, sigma)
        assert MIX.x0(x_t, alpha, sigma).item() == pytest.approx(x0, rel=1e-8, abs=1e-10)
        assert MIX.eps(x_t, alpha, sigma).item() == pytest.approx(eps, rel=1e-8, abs=1e-10)


@pytest.mark.parametrize("alpha, sigma", LEVELS)
def test_score_is_the_gradient_of_the_noised_log_density(alpha, sigma):
    """p_t(x) = sum_k w_k N(x; alpha mu_k, alpha^2 s_k^2 + sigma^2); central difference with h = 1e-5 (error
    O(h^2) ~ 1e-10 against values of order 1)."""
    def log_p(x):
        sd = np.sqrt(alpha**2 * np.array([0.3, 0.4]) ** 2 + sigma**2)
        return math.log(float(np.sum([0.3, 0.7] * stats.norm.pdf(x, alpha * np.array([-1.0, 0.8]), sd))))
    h = 1e-5
    for x in POINTS:
        fd = (log_p(x + h) - log_p(x - h)) / (2 * h)
        assert MIX.score(x, alpha, sigma).item() == pytest.approx(fd, rel=1e-6, abs=1e-7)
        assert MIX.score(x, alpha, sigma).item() == pytest.approx(-MIX.eps(x, alpha, sigma).item() / sigma, rel=1e-12)


def test_tensor_shapes_broadcast_and_responsibilities_sum_to_one():
    x = torch.linspace(-3, 3, 12).reshape(3, 4)
    alpha = torch.tensor([0.9, 0.5, 0.1]).reshape(3, 1)
    sigma = (1 - alpha**2).sqrt()
    r = MIX.responsibilities(x, alpha, sigma)
    assert r.shape == (3, 4, 2) and r.dtype == torch.float64
    torch.testing.assert_close(r.sum(-1), torch.ones(3, 4, dtype=torch.float64), rtol=0, atol=1e-15)
    row = MIX.x0(x[1], 0.5, float(sigma[1]))
    torch.testing.assert_close(MIX.x0(x, alpha, sigma)[1], row, rtol=0, atol=1e-15)


def test_draws_have_the_mixtures_mean_and_variance():
    """N = 200,000 draws: SE(mean) = sd/sqrt(N) ~ 2.1e-3; SE(var) = sqrt((m4 - var^2)/N) ~ 3.0e-3 (m4 by
    quadrature); five standard errors each."""
    x = MIX.sample((400, 500), generator=torch.Generator().manual_seed(0))
    assert x.shape == (400, 500) and x.dtype == torch.float64
    m4 = integrate.quad(lambda v: (v - MIX.mean) ** 4 * _prior(v), -8, 8, limit=200)[0]
    N = x.numel()
    assert MIX.mean == pytest.approx(0.3 * -1.0 + 0.7 * 0.8, rel=1e-14)
    assert abs(x.mean().item() - MIX.mean) < 5 * math.sqrt(MIX.var / N)
    assert abs(x.var().item() - MIX.var) < 5 * math.sqrt((m4 - MIX.var**2) / N)


@pytest.mark.parametrize("args, message", [
    (([0.5, 0.6], [0, 1], [1, 1]), "weights must be positive and sum to 1"),
    (([1.0], [0.0], [0.0]), "sds must be positive"),
    (([0.5, 0.5], [0.0], [1.0, 1.0]), "must be equally long"),
    (([1.0], ["a"], [1.0]), "sequences of numbers"),
    (([1.0], [float("nan")], [1.0]), "must be finite"),
])
def test_bad_mixtures_are_refused_in_words(args, message):
    with pytest.raises(InvalidInput, match=message):
        GaussianMixture(*args)


@pytest.mark.parametrize("t", [0.2, 0.5, 0.9])
def test_marginal_velocity_is_the_conditional_velocitys_posterior_mean(t):
    """Flow matching's identity on rectified flow: the marginal velocity at x_t is E[u | x_t] with the conditional
    velocity u = eps - x_0. The closed form (eps_hat - x0_hat from the mixture) against self-normalized importance
    sampling: x_0 drawn from the data, weighted by N(x; (1 - t) x_0, t^2), u = (x - (1 - t) x_0)/t - x_0.
    N = 400,000 draws (SE 0.002 to 0.008 here); the tolerance is 5 standard errors, the SE estimated from the weighted variance and the
    effective sample size (delta method for a ratio estimator)."""
    x = torch.tensor([-1.5, -0.2, 0.4, 1.3], dtype=torch.float64)
    alpha, sigma = 1 - t, t
    closed = MIX.eps(x, alpha, sigma) - MIX.x0(x, alpha, sigma)
    x0 = MIX.sample((400_000,), generator=torch.Generator().manual_seed(3))[:, None]
    log_w = -0.5 * ((x - alpha * x0) / sigma) ** 2
    w = torch.softmax(log_w, dim=0)  # normalized weights per column (per x)
    u = (x - alpha * x0) / sigma - x0
    estimate = (w * u).sum(0)
    se = ((w**2 * (u - estimate) ** 2).sum(0)).sqrt()
    assert bool((se < 0.05).all()), se  # enough effective draws at every x
    assert bool(((estimate - closed).abs() < 5 * se).all()), (estimate, closed, se)
    assert not torch.allclose(closed, MIX.eps(x, alpha, sigma))  # the x0 term matters: not a vacuous check
