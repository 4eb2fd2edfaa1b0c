"""The forward process: the closed form q(x_t|x_0) agrees with t+1 applications of q(x_t|x_{t-1}).

Index t is the paper's step t+1, so x_t at index t is reached from x_0 by the steps 0, 1, ..., t.
"""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from diffusion_core import NoiseSchedule
from diffusion_core.forward import q_mean_variance, q_sample, q_step_mean_variance, q_step_sample

# These loops run ~1000 small elementwise steps; intra-op threads only add synchronization.
pytestmark = pytest.mark.usefixtures("one_thread")


X0 = torch.tensor([-1.0, 0.0, 0.5, 2.0])  # a fixed data vector; each coordinate is its own 1-D chain
CHECK_AT = (0, 9, 99, 999)


def full_t(B: int, i: int) -> torch.Tensor:
    return torch.full((B,), i, dtype=torch.long)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_closed_form_moments_equal_iterated_step_moments(kind):
    """Deterministic: pushing (mean, var) through x_t = sqrt(1-beta) x_{t-1} + sqrt(beta) eps one step at a
    time, using q_step_mean_variance's moments, gives q_mean_variance's sqrt(alpha_bar_t) x0 and 1-alpha_bar_t."""
    s = NoiseSchedule.make(kind, 1000, dtype=torch.float64)
    x0 = X0.double()[None]
    mean, var = x0.clone(), torch.zeros_like(x0)
    for i in range(1000):
        step = q_step_mean_variance(s, mean, full_t(1, i))  # mean of the step is linear in x_{t-1}
        mean, var = step.mean, (1 - step.variance) * var + step.variance
        if i in CHECK_AT or i % 97 == 0:
            closed = q_mean_variance(s, x0, full_t(1, i))
            torch.testing.assert_close(mean, closed.mean, rtol=1e-10, atol=1e-13)
            torch.testing.assert_close(var, closed.variance.expand_as(var), rtol=1e-10, atol=1e-13)
            torch.testing.assert_close(closed.log_variance, closed.variance.log())


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_closed_form_sample_matches_iterated_chain(kind):
    """Monte Carlo: N chains of q_step_sample vs N direct draws of q_sample, at several t.

    N = 5000 per coordinate. The sample mean has standard error sqrt((1-alpha_bar)/N) <= 0.0142 and the sample
    variance sigma^2 sqrt(2/(N-1)) <= 0.02 sigma^2 (Gaussian); we allow 5 standard errors. With 4 coordinates x
    4 times x 2 statistics x 2 samplers = 64 such checks per schedule, a false alarm at 5 SE (two-sided p = 5.7e-7
    each) has probability < 4e-5. The two-sample KS test per coordinate and time uses alpha = 1e-4 (Bonferroni over
    16 tests: family-wise alpha 1.6e-3). The seeds are fixed, so the outcome is deterministic anyway.
    """
    N = 5000
    s = NoiseSchedule.make(kind, 1000)
    x0 = X0.expand(N, -1).contiguous()
    g_chain, g_direct = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    x = x0.clone()
    for i in range(max(CHECK_AT) + 1):
        x = q_step_sample(s, x, full_t(N, i), generator=g_chain)
        if i not in CHECK_AT:
            continue
        direct = q_sample(s, x0, full_t(N, i), generator=g_direct)
        ab = s.alphas_cumprod[i].double().item()
        true_mean, true_var = math.sqrt(ab) * X0.double(), 1 - ab
        for draws in (x, direct):
            d = draws.double()
            se_mean = math.sqrt(true_var / N)
            se_var = true_var * math.sqrt(2 / (N - 1))
            assert (d.mean(0) - true_mean).abs().max().item() < 5 * se_mean, (i, d.mean(0), true_mean)
            assert (d.var(0) - true_var).abs().max().item() < 5 * se_var, (i, d.var(0), true_var)
        for c in range(X0.numel()):
            p = stats.ks_2samp(x[:, c].numpy(), direct[:, c].numpy()).pvalue
            assert p > 1e-4, (kind, i, c, p)


def test_q_sample_with_explicit_noise_is_the_reparameterization():
    s = NoiseSchedule.cosine(100, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 17, 50, 98, 99])
    xt = q_sample(s, x0, t, noise=eps)
    ab = s.alphas_cumprod[t].reshape(-1, 1, 1)
    torch.testing.assert_close(xt, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, rtol=1e-14, atol=1e-14)
    prev = torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
    b = s.betas[t].reshape(-1, 1, 1)
    torch.testing.assert_close(q_step_sample(s, prev, t, noise=eps), (1 - b).sqrt() * prev + b.sqrt() * eps)
    # same generator seed -> same draw; float32 data gets float32 noise
    a = q_sample(s, x0.float(), t, generator=torch.Generator().manual_seed(5))
    b2 = q_sample(s, x0.float(), t, generator=torch.Generator().manual_seed(5))
    assert a.dtype == torch.float32 and torch.equal(a, b2)


def test_per_example_timesteps():
    """Each example in the batch uses its own t (the tables are gathered per example, not broadcast)."""
    s = NoiseSchedule.linear(1000, dtype=torch.float64)
    x0 = torch.ones(3, 2)
    t = torch.tensor([0, 500, 999])
    m = q_mean_variance(s, x0, t)
    assert m.mean.shape == (3, 2) and m.variance.shape == (3, 1)
    np.testing.assert_allclose(m.mean[:, 0].numpy(), s.sqrt_alphas_cumprod[t].numpy())
    np.testing.assert_allclose(m.variance[:, 0].numpy(), 1 - s.alphas_cumprod[t].numpy())
