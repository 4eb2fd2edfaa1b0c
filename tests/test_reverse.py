"""The reverse process: the posterior q(x_{t-1}|x_t,x_0) against Bayes' rule, the eps/x0/v
parameterizations, clipping, and the model's mean and variance."""
import numpy as np
import pytest
import torch

from diffusion_core import Denoiser, Diffusion, NoiseSchedule
from diffusion_core.forward import q_sample
from diffusion_core.reverse import Clip, VarianceType, clip_prediction, model_log_variance, q_posterior, threshold_x0
from diffusion_core.targets import Target, target_of, to_x0_eps

F64 = dict(dtype=torch.float64)


def _prediction(d: Diffusion, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
    """What a network that outputs ``out`` predicts on ``d`` at schedule indices ``t`` (the path's steps t + 1)."""
    return Denoiser(lambda x, t_in: out).bind(d)(x_t, t + 1)


# ----------------------------------------------------------------------------- posterior vs Bayes
def log_normal(x, mean, var):
    return -0.5 * np.log(2 * np.pi * var) - 0.5 * (x - mean) ** 2 / var


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("t", [1, 2, 10, 100, 500, 998, 999])
@pytest.mark.parametrize("x0,z", [(0.7, 0.3), (-1.0, -1.5), (2.0, 2.5)])
def test_posterior_matches_bayes_rule_on_a_grid(kind, t, x0, z):
    """p(x_{t-1}|x_t,x0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x0), normalized numerically on a fine 1-D grid.

    Both factors are Gaussians in x_{t-1}: q(x_t|x_{t-1}) with centre x_t/sqrt(alpha_t) and width
    sqrt(beta_t/alpha_t), q(x_{t-1}|x0) with centre sqrt(alpha_bar_{t-1}) x0 and width sqrt(1-alpha_bar_{t-1}).
    The grid covers both centres +- 12 of the wider width with >= 400 points per narrower width, so the
    Riemann sums of a Gaussian are exact to ~1e-12 relative (far below the tolerances).
    """
    s = NoiseSchedule.make(kind, 1000, **F64)
    a_t, b_t = s.alphas[t].item(), s.betas[t].item()
    ab_prev = s.alphas_cumprod_prev[t].item()
    ab = s.alphas_cumprod[t].item()
    xt = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * z  # a typical x_t (z standard deviations from its mean)

    c1, w1 = xt / np.sqrt(a_t), np.sqrt(b_t / a_t)
    c2, w2 = np.sqrt(ab_prev) * x0, np.sqrt(1 - ab_prev)
    lo, hi = min(c1, c2) - 12 * max(w1, w2), max(c1, c2) + 12 * max(w1, w2)
    n = int(min(4e6, max(2e4, 400 * (hi - lo) / min(w1, w2))))
    grid = np.linspace(lo, hi, n)
    logp = log_normal(xt, np.sqrt(a_t) * grid, b_t) + log_normal(grid, c2, 1 - ab_prev)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = (p * grid).sum()
    var = (p * (grid - mean) ** 2).sum()

    post = q_posterior(s, torch.tensor([[x0]], **F64), torch.tensor([[xt]], **F64), torch.tensor([t]))
    assert post.mean.item() == pytest.approx(mean, rel=1e-8, abs=1e-10)
    assert post.variance.item() == pytest.approx(var, rel=1e-6)
    assert post.log_variance.item() == pytest.approx(np.log(var), abs=1e-6)


def test_posterior_at_index_0_is_the_data():
    """At index 0 (the paper's t = 1) the posterior is the point mass at x0; its log variance is clipped
    to log(beta~_2) (improved DDPM) because log 0 would be -inf."""
    s = NoiseSchedule.linear(1000, **F64)
    x0, xt = torch.tensor([[0.3, -0.2]], **F64), torch.tensor([[1.0, 4.0]], **F64)
    post = q_posterior(s, x0, xt, torch.tensor([0]))
    torch.testing.assert_close(post.mean, x0, rtol=1e-12, atol=1e-14)
    assert post.variance.item() == 0.0
    assert post.log_variance.item() == pytest.approx(np.log(s.posterior_variance[1].item()), rel=1e-14)


# ----------------------------------------------------------------------------- parameterizations
def _batch(s, seed=0, shape=(64, 3, 5)):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, **F64)
    eps = torch.randn(shape, generator=g, **F64)
    t = torch.randint(0, s.num_timesteps, (shape[0],), generator=g)
    t[:2] = torch.tensor([0, s.num_timesteps - 1])  # always include both ends
    return x0, eps, t, q_sample(s, x0, t, noise=eps)


def test_conversions_round_trip():
    """x_t = a x0 + s eps and v = a eps - s x0 (a^2 + s^2 = 1): every conversion recovers the truth.
    Float64 linear schedule: a >= sqrt(4e-5) ~ 6e-3, so dividing by a loses at most ~2.5 digits."""
    s = NoiseSchedule.linear(1000, **F64)
    x0, eps, t, xt = _batch(s)
    c = Diffusion(s).coefficients(t, xt)  # sqrt(alpha_bar), sqrt(1 - alpha_bar) at the indices
    x0_from = lambda target, y: to_x0_eps(target, y, xt, c)[0]  # noqa: E731
    eps_from = lambda target, y: to_x0_eps(target, y, xt, c)[1]  # noqa: E731
    v = target_of(Target.V, x0, eps, c)
    tol = dict(rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(x0_from(Target.EPS, eps), x0, **tol)
    torch.testing.assert_close(eps_from(Target.X0, x0), eps, **tol)
    torch.testing.assert_close(x0_from(Target.V, v), x0, **tol)
    torch.testing.assert_close(eps_from(Target.V, v), eps, **tol)
    # chains of conversions are the identity too
    torch.testing.assert_close(eps_from(Target.X0, x0_from(Target.EPS, eps)), eps, **tol)
    torch.testing.assert_close(x0_from(Target.V, target_of(Target.V, x0, eps_from(Target.V, v), c)), x0, **tol)


def test_v_target_definition():
    """Salimans & Ho: v = sqrt(alpha_bar) eps - sqrt(1-alpha_bar) x0. (x_t, v) is (x0, eps) rotated by the
    angle phi with cos(phi) = sqrt(alpha_bar), so the pair keeps its norm: x_t^2 + v^2 = x0^2 + eps^2."""
    s = NoiseSchedule.cosine(1000, **F64)
    x0, eps, t, xt = _batch(s, seed=1)
    d = Diffusion(s, parameterization="v")
    v = d.target(x0, eps, t)
    a = s.sqrt_alphas_cumprod[t].reshape(-1, 1, 1)
    b = s.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1, 1)
    torch.testing.assert_close(v, a * eps - b * x0, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(xt**2 + v**2, x0**2 + eps**2, rtol=1e-12, atol=1e-12)
    assert torch.equal(Diffusion(s, parameterization="eps").target(x0, eps, t), eps)
    assert torch.equal(Diffusion(s, parameterization="x0").target(x0, eps, t), x0)


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_prediction_reads_each_parameterization(param):
    """A network that outputs the exact target yields the exact (eps, x0) pair."""
    s = NoiseSchedule.linear(1000, **F64)
    x0, eps, t, xt = _batch(s, seed=2)
    d = Diffusion(s, parameterization=param)
    x, e = _prediction(d, d.target(x0, eps, t), xt, t)[:2]
    torch.testing.assert_close(e, eps, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x, x0, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", ["static", "dynamic"])
def test_clipped_prediction_keeps_the_forward_identity(param, clip):
    """After clipping x0_hat (by the diffusion's rule, as the samplers do), eps_hat is recomputed so that
    x_t = a x0_hat + s eps_hat still holds."""
    s = NoiseSchedule.linear(1000, **F64)
    g = torch.Generator().manual_seed(3)
    x0, eps, t, xt = _batch(s, seed=3)
    out = 3 * torch.randn(x0.shape, generator=g, **F64)  # a poor network: x0_hat far outside [-1, 1]
    d = Diffusion(s, parameterization=param, clip=clip, dynamic_percentile=0.9)
    pred = _prediction(d, out, xt, t)
    x, e = clip_prediction(pred, xt, d.resolve_clip(None), d.dynamic_percentile)[:2]
    unclipped = pred.x0
    assert unclipped.abs().max() > 1.5  # so the clip rule had something to do
    assert x.abs().max().item() <= 1 + 1e-12
    a = s.sqrt_alphas_cumprod[t].reshape(-1, 1, 1)
    b = s.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1, 1)
    torch.testing.assert_close(a * x + b * e, xt, rtol=1e-9, atol=1e-9)
    if clip == "static":
        torch.testing.assert_close(x, unclipped.clamp(-1, 1))


def test_dynamic_threshold():
    """Imagen: s = max(1, the p-quantile of |x0| per sample); clamp to [-s, s], divide by s."""
    x = torch.tensor([[0.5, -0.2, 0.9, 0.1], [4.0, -2.0, 1.0, 0.0]], **F64)
    out = threshold_x0(x, Clip.DYNAMIC, percentile=1.0)
    torch.testing.assert_close(out[0], x[0])  # all |x| <= 1: s = 1, unchanged
    torch.testing.assert_close(out[1], x[1] / 4.0)  # s = max |x| = 4
    q = np.quantile(np.abs(x[1].numpy()), 0.5)  # = 1.5 (linear interpolation, like torch.quantile)
    out = threshold_x0(x, Clip.DYNAMIC, percentile=0.5)
    np.testing.assert_allclose(out[1].numpy(), np.clip(x[1].numpy(), -q, q) / q)


# ----------------------------------------------------------------------------- p(x_{t-1}|x_t)
def test_eps_model_mean_is_ho_eq_11():
    """For the eps parameterization the posterior mean with x0_hat plugged in is Ho et al. eq. 11:
    mu = (x_t - beta_t / sqrt(1-alpha_bar_t) eps_hat) / sqrt(alpha_t)."""
    s = NoiseSchedule.cosine(1000, **F64)
    x0, eps, t, xt = _batch(s, seed=4)
    g = torch.Generator().manual_seed(4)
    out = torch.randn(x0.shape, generator=g, **F64)
    d = Diffusion(s, "eps", "fixed_small")
    p = d.p_mean_variance(_prediction(d, out, xt, t), xt, t)
    b = s.betas[t].reshape(-1, 1, 1)
    ab = s.alphas_cumprod[t].reshape(-1, 1, 1)
    torch.testing.assert_close(p.mean, (xt - b / (1 - ab).sqrt() * out) / (1 - b).sqrt(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(p.pred_eps, out)


def test_model_variances():
    """fixed_small = beta~_t, fixed_large = beta_t (for t > 0; both use beta~_2 at t = 0)."""
    s = NoiseSchedule.linear(1000, **F64)
    t = torch.tensor([0, 1, 500, 999])
    small = model_log_variance(VarianceType.FIXED_SMALL, s, t, 2).flatten()
    large = model_log_variance(VarianceType.FIXED_LARGE, s, t, 2).flatten()
    np.testing.assert_allclose(small[1:].exp().numpy(), s.posterior_variance[t[1:]].numpy(), rtol=1e-12)
    np.testing.assert_allclose(large[1:].exp().numpy(), s.betas[t[1:]].numpy(), rtol=1e-12)
    assert small[0].item() == large[0].item() == pytest.approx(np.log(s.posterior_variance[1].item()), rel=1e-14)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_learned_range_is_eq15_at_every_t(kind):
    """Nichol & Dhariwal eq. 15, Sigma = exp(v' log beta_t + (1 - v') log beta~_t) with v' = (v + 1) / 2, at every t
    including t = 0. Both ends are computed here from the betas alone (not from the schedule's tables): beta~_t =
    beta_t (1 - abar_{t-1}) / (1 - abar_t) by its definition (Ho et al. eq. 7), where beta~ at t = 0 is 0 and
    improved-diffusion clips its log to log beta~ of the next step; the upper end is log beta_t itself, also at t = 0."""
    T = 50
    s = NoiseSchedule.make(kind, T, **F64)
    betas = s.betas.numpy()
    abar = np.cumprod(1 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    tilde = betas * (1 - abar_prev) / (1 - abar)
    log_tilde = np.log(np.concatenate([[tilde[1]], tilde[1:]]))
    t = torch.arange(T)
    for v in (-1.0, -0.3, 0.0, 0.5, 1.0):
        got = model_log_variance(VarianceType.LEARNED_RANGE, s, t, 2, torch.full((T, 1), v, **F64)).flatten().numpy()
        frac = (v + 1) / 2
        np.testing.assert_allclose(got, frac * np.log(betas) + (1 - frac) * log_tilde, rtol=1e-6)
    # the range at t = 0 is not empty: v moves the variance there, and the output gets a gradient
    v = torch.zeros(1, 1, **F64, requires_grad=True)
    model_log_variance(VarianceType.LEARNED_RANGE, s, torch.tensor([0]), 2, v).sum().backward()
    assert v.grad.abs().item() == pytest.approx(0.5 * abs(np.log(betas[0]) - log_tilde[0]), rel=1e-5) and v.grad.abs() > 0.05  # exactly 0 before the fix
    # the learned-range model splits its output into mean and variance channels: v = 1 everywhere gives log beta_t
    d = Diffusion(s, variance="learned_range")
    x = torch.zeros(T, 3, **F64)
    out = torch.cat([torch.zeros(T, 3, **F64), torch.ones(T, 3, **F64)], dim=1)
    p = d.p_mean_variance(_prediction(d, out, x, t), x, t)
    np.testing.assert_allclose(p.log_variance[:, 0].numpy(), np.log(betas), rtol=1e-6)
