"""The ODE log-likelihood (diffusion_core.likelihood) against densities known in closed form: a Gaussian mixture's
noisy marginal at t_min, on rectified flow and the continuous VP path, with the exact divergence; Hutchinson's
estimate is unbiased where the Jacobian is not diagonal (a rotated mixture); the refusals."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusion_core import ContinuousVP, Denoiser, DiscreteVP, NoiseSchedule, RectifiedFlow
from diffusion_core.errors import InvalidInput
from diffusion_core.likelihood import ode_log_likelihood
from diffusion_core.mixture import GaussianMixture

MIX = GaussianMixture([0.3, 0.7], [-1.0, 0.8], [0.3, 0.5])
ANGLE = 0.6
R = torch.tensor([[math.cos(ANGLE), -math.sin(ANGLE)], [math.sin(ANGLE), math.cos(ANGLE)]], dtype=torch.float64)
X = torch.tensor([[-1.0, 0.5], [0.8, 0.9], [2.0, -2.0], [0.0, 0.0]], dtype=torch.float64)


def exact_network(path, rotation=None):
    """The mixture's exact noise prediction (rotated by ``rotation``: data R y, y the elementwise mixture), as a
    network of (x, 1000 t); differentiable in x, unlike the tests' oracle, which detaches its input."""
    def net(x_in, t_in):
        t = t_in / 1000
        a, s = path.alpha(t).reshape(-1, 1), path.sigma(t).reshape(-1, 1)
        if rotation is None:
            return MIX.eps(x_in, a, s)
        return MIX.eps(x_in @ rotation, a, s) @ rotation.T
    return net


def exact_log_p(x: torch.Tensor, path, t: float, rotation=None) -> np.ndarray:
    """log of the data's density convolved to time t (each coordinate of R^T x an independent mixture
    sum_k w_k N(alpha mu_k, alpha^2 s_k^2 + sigma^2); a rotation has determinant 1), written in NumPy."""
    tt = torch.tensor(t, dtype=torch.float64)
    a, s = float(path.alpha(tt)), float(path.sigma(tt))
    y = (x @ rotation if rotation is not None else x).numpy()[..., None]
    w, mu, sd = MIX.weights.numpy(), MIX.means.numpy(), MIX.sds.numpy()
    var = a**2 * sd**2 + s**2
    return np.logaddexp.reduce(np.log(w) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (y - a * mu) ** 2 / var,
                               axis=-1).sum(-1)


@pytest.mark.parametrize("path", [RectifiedFlow(), ContinuousVP.cosine(), ContinuousVP.linear()],
                         ids=["rectified-flow", "vp-cosine", "vp-linear"])
def test_the_exact_divergence_recovers_the_known_density(path):
    """With the marginal at t_max as the prior, only the ODE's integration error is left: below 1e-3 nats at 50
    RK4 steps (measured 2.4e-5 to 1.3e-4; 1.4e-6 to 7.8e-6 at 100 steps), shrinking with more steps; the data plain and
    rotated."""
    torch.set_num_threads(1)
    for rotation in (None, R):
        den = Denoiser(exact_network(path, rotation), path, "eps")
        top = path.t_max * (1 - 1e-4) if isinstance(path, RectifiedFlow) else path.t_max
        errs = []
        for steps in (10, 50):
            result = ode_log_likelihood(den, X, steps=steps,
                                        prior=lambda x_T: torch.from_numpy(exact_log_p(x_T, path, top, rotation)))
            errs.append(np.abs(result.log_p.numpy() - exact_log_p(X, path, 1e-3, rotation)).max())
        assert errs[1] < 1e-3 and errs[1] < errs[0], (path, errs)
        assert torch.allclose(result.bits_per_dim, -result.log_p / (2 * math.log(2)))
        assert torch.allclose(result.log_p, result.prior + result.delta)


def test_the_default_prior_is_close_where_alpha_vanishes_at_the_end():
    """Rectified flow at t = 1 - 1e-4: the normal prior is nearly the marginal (measured error 1.6e-4 nats)."""
    torch.set_num_threads(1)
    path = RectifiedFlow()
    result = ode_log_likelihood(Denoiser(exact_network(path, R), path, "eps"), X, steps=50)
    assert np.abs(result.log_p.numpy() - exact_log_p(X, path, 1e-3, R)).max() < 1e-3


def test_hutchinson_is_unbiased_where_the_jacobian_is_not_diagonal():
    """One Rademacher probe per copy of each point, 400 copies: the mean is within 5 standard errors of the
    exact log-density, and the single estimates do vary (with a diagonal Jacobian Rademacher probes are exact,
    which is why the data are rotated)."""
    torch.set_num_threads(1)
    path, copies = RectifiedFlow(), 400
    den = Denoiser(exact_network(path, R), path, "eps")
    x = X[:3]  # not the origin: by symmetry the off-diagonal terms vanish along its path
    est = ode_log_likelihood(den, x.repeat(copies, 1), steps=25, hutchinson=1,
                             generator=torch.Generator().manual_seed(0)).log_p.reshape(copies, len(x))
    se = est.std(0) / math.sqrt(copies)
    assert bool((se > 1e-3).all())  # a real estimate, not the exact trace in disguise
    gap = (est.mean(0).numpy() - exact_log_p(x, path, 1e-3, R))
    assert np.all(np.abs(gap) < 5 * se.numpy() + 1e-3), (gap, se)


def test_refusals():
    den = Denoiser(exact_network(RectifiedFlow()), RectifiedFlow(), "eps")
    with pytest.raises(InvalidInput, match="t_min and t_max must satisfy"):
        ode_log_likelihood(den, X, t_min=0.0)
    with pytest.raises(InvalidInput, match="steps must be"):
        ode_log_likelihood(den, X, steps=0)
    discrete = Denoiser(lambda x, t: x, DiscreteVP(NoiseSchedule.linear(100)), "eps")
    with pytest.raises(InvalidInput, match="needs a path in continuous time"):
        ode_log_likelihood(discrete, X)
