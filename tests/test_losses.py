"""KL divergences, the discretized decoder likelihood, the training losses, min-SNR weights and bits/dim."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from diffusion_core import Denoiser, Diffusion, NoiseSchedule, bits_per_dim, training_losses
from diffusion_core.forward import q_sample
from diffusion_core.losses import min_snr_weight
from diffusion_core.vlb import discretized_gaussian_log_likelihood, normal_kl, vlb_term
from oracles import Mixture

LN2 = math.log(2)
F64 = dict(dtype=torch.float64)


def _prediction(d: Diffusion, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
    """What a network that outputs ``out`` predicts on ``d`` at schedule indices ``t`` (the path's steps t + 1)."""
    return Denoiser(lambda x, t_in: out).bind(d)(x_t, t + 1)


# ----------------------------------------------------------------------------- KL
@pytest.mark.parametrize(
    "m1,v1,m2,v2", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -0.2, 2.0), (1.0, 0.01, 0.0, 1.0), (-2.0, 3.0, 1.0, 0.2)]
)
def test_normal_kl_matches_numerical_integration(m1, v1, m2, v2):
    """KL(q || p) = integral of q log(q/p), by adaptive quadrature over q's +-40 sd (mass outside ~1e-350)."""
    q, p = stats.norm(m1, math.sqrt(v1)), stats.norm(m2, math.sqrt(v2))
    w = 40 * math.sqrt(v1)
    ref = integrate.quad(lambda x: q.pdf(x) * (q.logpdf(x) - p.logpdf(x)), m1 - w, m1 + w,
                         points=[m1], epsabs=1e-14, epsrel=1e-11, limit=200)[0]
    got = normal_kl(torch.tensor(m1, **F64), torch.tensor(math.log(v1), **F64),
                    torch.tensor(m2, **F64), torch.tensor(math.log(v2), **F64)).item()
    assert got == pytest.approx(ref, rel=1e-8, abs=1e-12)
    assert got >= 0


# ----------------------------------------------------------------------------- decoder likelihood
LEVELS = np.linspace(-1, 1, 256)
HALF = 1 / 255


def _bin_probability(x: float, mean: float, sd: float) -> float:
    """Integral of N(y; mean, sd^2) over x's bin [x - 1/255, x + 1/255], the edge bins extending to +-inf
    (replaced by +-40 sd around the mean: the Gaussian mass beyond is < 1e-300)."""
    lo = -np.inf if x == -1 else x - HALF
    hi = np.inf if x == 1 else x + HALF
    lo, hi = max(lo, mean - 40 * sd), min(hi, mean + 40 * sd)
    if lo >= hi:
        return 0.0
    pts = [mean] if lo < mean < hi else None
    c = 1 / (sd * math.sqrt(2 * math.pi))
    pdf = lambda y: c * math.exp(-0.5 * ((y - mean) / sd) ** 2)  # noqa: E731 (scipy's pdf: same, ~30x slower)
    return integrate.quad(pdf, lo, hi, points=pts, epsabs=0, epsrel=1e-11, limit=200)[0]


@pytest.mark.parametrize("mean,sd", [(0.0, 0.5), (0.3, 0.01), (-0.93, 0.2), (1.2, 0.3), (0.0, 3.0), (0.999, 0.002)])
def test_discretized_likelihood_matches_integrated_density(mean, sd):
    x = torch.tensor(LEVELS, **F64)
    got = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.tensor(math.log(sd), **F64))
    got = got.double().numpy()
    assert np.isfinite(got).all() and (got <= 0).all()
    ref = np.array([_bin_probability(v, mean, sd) for v in LEVELS])
    ok = ref > 1e-300
    # the result is float32: a log-probability L carries a rounding error of ~|L| * 6e-8
    np.testing.assert_allclose(got[ok], np.log(ref[ok]), rtol=1e-6, atol=1e-6)
    assert (got[~ok] < math.log(1e-300)).all()  # too small for float64 quadrature, still finite
    # the 256 bins partition the real line, so the probabilities sum to 1
    assert np.exp(got).sum() == pytest.approx(1.0, abs=2e-6)


def test_discretized_likelihood_edge_bins_are_tails():
    """At the two extreme levels the bin is (-inf, -1 + 1/255] and [1 - 1/255, inf)."""
    x = torch.tensor([-1.0, 1.0], **F64)
    m = torch.tensor([-1.0, 1.0], **F64)
    got = discretized_gaussian_log_likelihood(x, m, torch.tensor(math.log(0.05), **F64)).double().numpy()
    expected = np.log(stats.norm.cdf(HALF / 0.05))
    np.testing.assert_allclose(got, [expected, expected], rtol=1e-6)


# ----------------------------------------------------------------------------- training losses
def _data(shape=(16, 3, 4), seed=0, T=1000):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, **F64) * 2 - 1
    noise = torch.randn(shape, generator=g, **F64)
    t = torch.randint(0, T, (shape[0],), generator=g)
    t[:2] = torch.tensor([0, T - 1])
    return x0, noise, t


def test_perfect_noise_predictor_has_zero_loss():
    """A network that returns the true noise has simple loss exactly 0, for every loss type."""
    d = Diffusion(NoiseSchedule.linear(1000))
    x0, noise, t = _data()
    x0, noise = x0.float(), noise.float()
    for loss_type in ("mse", "l1", "huber"):
        out = training_losses(lambda x, tt: noise, d, x0, t, noise, loss_type=loss_type)
        assert torch.equal(out.simple, torch.zeros(16)) and torch.equal(out.loss, out.simple)
    # and a network that outputs 0 pays exactly the mean squared noise
    out = training_losses(lambda x, tt: torch.zeros_like(x), d, x0, t, noise)
    torch.testing.assert_close(out.simple, (noise**2).mean((1, 2)))


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
@pytest.mark.parametrize("respaced", [False, True])
def test_perfect_predictor_from_x_t_has_zero_loss(param, respaced):
    """An oracle that knows x0 but must read x_t and the network time: it recovers eps = (x_t - a x0)/s with a, s
    looked up by the time it receives in the ORIGINAL schedule. Zero loss means training_losses builds
    x_t = a x0 + s noise and passes the original time index of a respaced schedule."""
    full = NoiseSchedule.cosine(1000, **F64)
    d = Diffusion(full, parameterization=param)
    if respaced:
        d = d.respaced(40)
    x0, noise, t = _data(T=d.num_timesteps)
    ab = full.alphas_cumprod

    def oracle(x_t, time):
        a, s = ab[time].sqrt().reshape(-1, 1, 1), (1 - ab[time]).sqrt().reshape(-1, 1, 1)
        eps = (x_t - a * x0) / s
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0}[param]

    out = training_losses(oracle, d, x0, t, noise)
    # float32 distance of two float64 values that agree to ~1e-12: at most a few float32 ulps squared
    assert out.simple.abs().max().item() < 1e-10


def _pixels_noised_on_a_linear_schedule():
    """8-bit pixel levels noised at steps from 0 to 999 of a float64 linear schedule, fixed_small variance."""
    s = NoiseSchedule.linear(1000, **F64)
    d = Diffusion(s, variance="fixed_small")
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor(LEVELS[torch.randint(0, 256, (8, 1, 5), generator=g).numpy()], **F64)
    noise = torch.randn(x0.shape, generator=g, **F64)
    t = torch.tensor([0, 1, 2, 10, 100, 500, 998, 999])
    x_t = q_sample(s, x0, t, noise=noise)
    return s, d, x0, noise, t, x_t


def test_vlb_terms_vanish_for_the_true_posterior():
    """With fixed_small variance (sigma^2 = beta~_t) a network that outputs the true noise gives
    p(x_{t-1}|x_t) = q(x_{t-1}|x_t,x0), so L_{t-1} = KL = 0 for t > 0; at t = 0 the term is the decoder NLL
    -log P(bin of x0 | N(x0, beta~_2)) (the clipped log variance); shifting x0_hat by delta gives the Gaussian
    KL delta^2 c1^2 / (2 beta~_t) nats exactly."""
    s, d, x0, noise, t, x_t = _pixels_noised_on_a_linear_schedule()
    terms = vlb_term(d, _prediction(d, noise, x_t, t), x0, x_t, t)
    assert terms[1:].abs().max().item() < 1e-9
    sd = math.sqrt(s.posterior_variance[1].item())
    p = np.where(np.abs(x0[0].numpy()) == 1, stats.norm.cdf(HALF / sd), 2 * stats.norm.cdf(HALF / sd) - 1)
    assert terms[0].item() == pytest.approx(-np.log(p).mean() / LN2, rel=1e-6)

    dx = Diffusion(s, parameterization="x0", variance="fixed_small")
    delta = 0.01
    shifted = vlb_term(dx, _prediction(dx, x0 + delta, x_t, t), x0, x_t, t)[1:]
    c1, pv = s.posterior_mean_coef1[t[1:]], s.posterior_variance[t[1:]]
    # (atol: normal_kl's -1 + exp(0) cancels to ~1e-16, visible where c1 ~ 1e-4 makes the KL ~ 1e-10)
    torch.testing.assert_close(shifted, (delta * c1) ** 2 / (2 * pv) / LN2, rtol=1e-6, atol=1e-14)



def test_hybrid_vlb_through_training_losses_vanishes_for_the_true_posterior():
    """The same through training_losses (float32 path): vlb = vlb_weight * T * L_t, with the fixed_small variance
    (a hybrid loss needs no learned variance)."""
    s, d, x0, noise, t, x_t = _pixels_noised_on_a_linear_schedule()
    terms = vlb_term(d, _prediction(d, noise, x_t, t), x0, x_t, t)
    out = training_losses(lambda x, tt: noise.float(), d, x0.float(), t, noise.float(), vlb_weight=1e-3)
    assert out.vlb[1:].abs().max().item() < 1e-4
    assert out.vlb[0].item() == pytest.approx(1e-3 * 1000 * terms[0].item(), rel=1e-4)


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_min_snr_weight_is_min_snr_times_x0_error(param):
    """Hang et al.: weighting the simple loss on each target by min(SNR, gamma)/SNR (eps), min(SNR, gamma) (x0),
    min(SNR, gamma)/(SNR+1) (v) makes all three equal min(SNR, gamma) * ||x0_hat - x0||^2, because
    eps - eps_hat = -sqrt(SNR) (x0 - x0_hat) and v - v_hat = -sqrt(SNR + 1) (x0 - x0_hat) at fixed x_t."""
    s = NoiseSchedule.linear(1000, **F64)
    d = Diffusion(s, parameterization=param)
    x0, noise, t = _data(seed=1)
    g = torch.Generator().manual_seed(2)
    out = torch.randn(x0.shape, generator=g, **F64)  # an arbitrary (bad) network output
    gamma = 5.0
    snr = s.snr[t]
    assert (snr > gamma).any() and (snr < gamma).any()  # both branches of the min are exercised
    loss = training_losses(lambda x, tt: out, d, x0, t, noise, min_snr_gamma=gamma).simple
    x_t = q_sample(s, x0, t, noise=noise)
    x0_hat = _prediction(d, out, x_t, t).x0
    expected = snr.clamp(max=gamma) * ((x0_hat - x0) ** 2).mean((1, 2))
    torch.testing.assert_close(loss.double(), expected, rtol=2e-5, atol=1e-6)


def test_min_snr_weight_at_zero_terminal_snr():
    """At SNR = 0 (zero-terminal-SNR schedule) the eps weight is its limit 1; the x0 and v weights are 0."""
    s = NoiseSchedule.linear(1000).rescale_zero_terminal_snr()
    t = torch.tensor([999, 0])
    assert min_snr_weight(Diffusion(s, "eps"), t, 5.0)[0].item() == 1.0
    assert min_snr_weight(Diffusion(s, "x0"), t, 5.0)[0].item() == 0.0
    assert min_snr_weight(Diffusion(s, "v"), t, 5.0)[0].item() == 0.0
    snr0 = s.snr[0].item()  # large: the weights are gamma/snr, gamma, gamma/(snr+1)
    assert min_snr_weight(Diffusion(s, "eps"), t, 5.0)[1].item() == pytest.approx(5.0 / snr0, rel=1e-6)


def test_hybrid_loss_trains_only_the_variance_through_the_vlb():
    """Improved DDPM's L_simple + lambda L_vlb: learned variance needs vlb_weight > 0; the VLB part sees the
    mean detached, so its gradient reaches only the variance channels, and the simple loss only the mean."""
    s = NoiseSchedule.cosine(100)
    d = Diffusion(s, variance="learned_range")
    x0, noise, t = (v.float() if v.is_floating_point() else v for v in _data(shape=(8, 2, 3), T=100))
    with pytest.raises(ValueError, match="vlb_weight"):
        training_losses(lambda x, tt: torch.zeros(8, 4, 3), d, x0, t, noise)
    w = torch.randn(8, 4, 3, generator=torch.Generator().manual_seed(0)).mul(0.3).requires_grad_()
    out = training_losses(lambda x, tt: w, d, x0, t, noise, vlb_weight=0.001)
    torch.testing.assert_close(out.loss, out.simple + out.vlb)
    (gv,) = torch.autograd.grad(out.vlb.sum(), w, retain_graph=True)
    (gs,) = torch.autograd.grad(out.simple.sum(), w)
    assert torch.equal(gv[:, :2], torch.zeros_like(gv[:, :2])) and gv[:, 2:].abs().sum() > 0
    assert torch.equal(gs[:, 2:], torch.zeros_like(gs[:, 2:])) and gs[:, :2].abs().sum() > 0


# ----------------------------------------------------------------------------- bits per dim
def test_bits_per_dim_of_the_optimal_gaussian_predictor():
    """T = 50 linear schedule, data N(0.2, 0.3^2) quantized to the 256 levels of [-1, 1], and the exact
    optimal eps-predictor of the (continuous) Gaussian (tests/oracles.py), with Ho et al.'s sigma_t^2 = beta_t.

    * every term is finite; total = prior + sum of terms; the KL terms are >= 0;
    * prior = KL(N(sqrt(ab_T) x0, 1 - ab_T) || N(0, 1)) in closed form;
    * the predictor is linear, x0_hat = A x_t + B, so the expected KL terms are known in closed form per x0:
      E_eps[L_{t-1}] = (log(sigma^2/beta~) + beta~/sigma^2 - 1 + c1^2 E[(x0 - x0_hat)^2]/sigma^2) / (2 ln 2) with
      E[(x0 - x0_hat)^2] = ((1 - A a) x0 - B)^2 + A^2 s^2. The Monte Carlo sum over t (one eps per term, B = 4000
      examples) must match within 5 standard errors (SE from the sample std of the per-example differences);
    * cross-entropy >= entropy and the VLB bounds the NLL, so the mean total >= the data's entropy (7.28 bits)
      minus 5 SE (measured: 7.38 +- 0.03).
    """
    mu, sd, B = 0.2, 0.3, 4000
    full = NoiseSchedule.linear(50)
    d = Diffusion(full)  # fixed_large
    model = Mixture([1.0], [mu], [sd]).eps_model(full)

    edges = np.concatenate([[-np.inf], LEVELS[:-1] + HALF, [np.inf]])
    raw = np.random.default_rng(0).normal(mu, sd, B)
    x0_np = LEVELS[np.searchsorted(edges, raw) - 1]
    x0 = torch.tensor(x0_np, dtype=torch.float32).reshape(B, 1)
    with torch.random.fork_rng():  # bits_per_dim draws its noise from the global generator
        torch.manual_seed(0)
        r = bits_per_dim(model, d, x0, progress=False)
    assert torch.isfinite(r.total).all() and torch.isfinite(r.terms).all()
    torch.testing.assert_close(r.total, r.prior + r.terms.sum(1))
    assert r.terms[:, 1:].min().item() > -1e-6

    abT = full.alphas_cumprod[-1].double().item()
    prior = 0.5 * (-1 - math.log(1 - abT) + (1 - abT) + abT * x0_np**2) / LN2
    np.testing.assert_allclose(r.prior.double().numpy(), prior, rtol=1e-5, atol=1e-9)

    s64 = NoiseSchedule.linear(50, **F64)
    expected = np.zeros(B)
    for i in range(1, 50):
        a2 = s64.alphas_cumprod[i].item()
        a, s = math.sqrt(a2), math.sqrt(1 - a2)
        k = s / (a2 * sd**2 + 1 - a2)
        A, Bc = (1 - s * k) / a, s * k * mu
        var_p, pv, c1 = s64.betas[i].item(), s64.posterior_variance[i].item(), s64.posterior_mean_coef1[i].item()
        err2 = ((1 - A * a) * x0_np - Bc) ** 2 + A**2 * s**2
        expected += 0.5 * (math.log(var_p / pv) + pv / var_p - 1 + c1**2 * err2 / var_p) / LN2
    diff = r.terms[:, 1:].sum(1).double().numpy() - expected
    assert abs(diff.mean()) < 5 * diff.std() / math.sqrt(B), (diff.mean(), diff.std() / math.sqrt(B))

    levels_p = np.diff(stats.norm.cdf(edges, mu, sd))
    entropy = -(levels_p * np.log2(levels_p)).sum()
    tot = r.total.double().numpy()
    assert tot.mean() >= entropy - 5 * tot.std() / math.sqrt(B)


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_hybrid_loss_vlb_never_clips_x0(param):
    """Training never clips: the hybrid loss's L_t with a clipping Diffusion (clip='static', as the trainer uses for
    images) equals the one with clip='none', bit for bit (improved-diffusion trains with clip_denoised=False).
    This is the one intended change: before, L_t went through p_mean_variance with the sampling clip, which is
    measurably different here (the network's x0_hat reaches far outside [-1, 1])."""
    s = NoiseSchedule.cosine(100)
    x0, noise, t = (v.float() if v.is_floating_point() else v for v in _data(shape=(8, 2, 3), T=100))
    w = 3 * torch.randn(8, 4, 3, generator=torch.Generator().manual_seed(0))
    out = {clip: training_losses(lambda x, tt: w, Diffusion(s, param, "learned_range", clip), x0, t, noise,
                                 vlb_weight=0.001)
           for clip in ("none", "static", "dynamic")}
    assert torch.equal(out["static"].vlb, out["none"].vlb) and torch.equal(out["dynamic"].vlb, out["none"].vlb)
    assert torch.equal(out["static"].simple, out["none"].simple)
    # the old (clipped) value differs: vlb_term with the diffusion's own sampling clip
    d_static = Diffusion(s, param, "learned_range", "static")
    x_t = q_sample(s, x0, t, noise=noise)
    pred = _prediction(d_static, w, x_t, t)
    clipped = 0.001 * 100 * vlb_term(d_static, pred, x0, x_t, t)
    torch.testing.assert_close(0.001 * 100 * vlb_term(d_static, pred, x0, x_t, t, clip="none"), out["none"].vlb)
    assert (clipped - out["none"].vlb).abs().max() > 1e-3
