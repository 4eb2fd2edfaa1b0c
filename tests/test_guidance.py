"""Classifier-free guidance: eq. 6 of Ho & Salimans in one batched network call, the guidance rescale of Lin et al.
(on v), its errors, and label dropout for training."""
from __future__ import annotations

import math

import pytest
import torch

from diffusion_core import Diffusion, NoiseSchedule, ddim_sample, ddpm_sample
from diffusion_core.denoiser import Denoiser
from diffusion_core.errors import InvalidInput, InvalidInputType
from diffusion_core.guidance import ClassifierFreeGuidance, drop_labels
from diffusion_core.nn import MLPDenoiser, UNet, get_preset

K = 4
F64 = dict(dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_thread")


def _net(learn_sigma=False, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return MLPDenoiser(dim=3, hidden=32, depth=2, num_classes=K, learn_sigma=learn_sigma).to(dtype).eval()


class Counting:
    """Wraps a network and records the batch size and labels of every call."""

    def __init__(self, net):
        self.net, self.calls = net, []
        self.config = net.config

    def __call__(self, x, t, labels=None):
        self.calls.append((x.shape[0], None if labels is None else labels.clone()))
        return self.net(x, t, labels)


# Denoisers are called at path times: a diffusion's schedule index t is its path's step t + 1 (``den.bind(d)``
# puts a denoiser on the diffusion's path and parameterization).
def _inputs(B=6, seed=1, T=50):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, generator=g, **F64)
    t = torch.randint(0, T, (B,), generator=g)
    labels = torch.randint(0, K, (B,), generator=g)
    return x, t, labels


def _diffusion(param="eps", variance="fixed_large", T=50):
    return Diffusion(NoiseSchedule.cosine(T, **F64), param, variance)


# ----------------------------------------------------------------------------- the formula
@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_scale_one_is_exactly_the_conditional_denoiser_and_zero_the_unconditional(param):
    d, net = _diffusion(param), _net()
    x, t, labels = _inputs()
    den = Denoiser(net)
    cond, uncond = den.bind(d)(x, t + 1, labels=labels), den.bind(d)(x, t + 1, labels=torch.full_like(labels, K))
    for scale, ref in ((1.0, cond), (0.0, uncond)):
        got = ClassifierFreeGuidance(den, scale, rescale=0.7).bind(d)(x, t + 1, labels=labels)
        assert torch.equal(got.eps, ref.eps) and torch.equal(got.x0, ref.x0)


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
@pytest.mark.parametrize("scale", [0.5, 3.0, 7.5])
def test_guided_prediction_is_eq6_in_eps_space(param, scale):
    """Against a hand computation from two separate calls: eps = eps_u + s (eps_c - eps_u), which is Ho & Salimans'
    (1 + w) eps_c - w eps_u with w = s - 1; x0 is the consistent one, x_t = a x0 + s_t eps, i.e. the x0 of the
    guided eps (equal to combining the two x0 with the same weights)."""
    d, net = _diffusion(param), _net()
    x, t, labels = _inputs()
    den = Denoiser(net)
    c, u = den.bind(d)(x, t + 1, labels=labels), den.bind(d)(x, t + 1, labels=torch.full_like(labels, K))
    got = ClassifierFreeGuidance(net, scale).bind(d)(x, t + 1, labels=labels)
    w = scale - 1
    tol = dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got.eps, u.eps + scale * (c.eps - u.eps), **tol)
    torch.testing.assert_close(got.eps, (1 + w) * c.eps - w * u.eps, **tol)
    a = d.schedule.sqrt_alphas_cumprod[t].reshape(-1, 1)
    s = d.schedule.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1)
    torch.testing.assert_close(got.x0, (x - s * got.eps) / a, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(a * got.x0 + s * got.eps, x, **tol)
    assert not torch.allclose(got.eps, c.eps)  # guidance did something


def test_learned_variance_is_the_conditional_branchs():
    d, net = _diffusion(variance="learned_range"), _net(learn_sigma=True)
    x, t, labels = _inputs()
    got = ClassifierFreeGuidance(net, 4.0).bind(d)(x, t + 1, labels=labels)
    # (equal up to the rounding of a batch of 2B against one of B in the network's matmuls)
    torch.testing.assert_close(got.var_output, Denoiser(net).bind(d)(x, t + 1, labels=labels).var_output,
                               rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- one batched call
def test_each_guided_evaluation_is_one_network_call_on_the_doubled_batch():
    d = _diffusion()
    net = Counting(_net())
    x, t, labels = _inputs()
    ClassifierFreeGuidance(net, 3.0).bind(d)(x, t + 1, labels=labels)
    (batch, got_labels), = net.calls
    assert batch == 12 and torch.equal(got_labels, torch.cat([labels, torch.full_like(labels, K)]))
    net.calls.clear()
    ClassifierFreeGuidance(net, 1.0).bind(d)(x, t + 1, labels=labels)  # no guidance: one call at batch B
    assert [b for b, _ in net.calls] == [6]


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_guided_sampling_calls_the_network_once_per_step(sampler):
    d = _diffusion("v")
    net = Counting(_net(dtype=torch.float32))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    x_T = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    fn = ddim_sample if sampler == "ddim" else ddpm_sample
    res = fn(ClassifierFreeGuidance(net, 2.0, rescale=0.7), d, x_T, steps=8, labels=labels,
             generator=torch.Generator().manual_seed(1), progress=False)
    assert torch.isfinite(res.sample).all()
    assert [b for b, _ in net.calls] == [12] * 8


def test_guided_step_compiles_whole(monkeypatch):
    """compile=True traces the guided step (concatenation, network, eq. 6, rescale) as one graph: fullgraph=True
    would make any break an error. The eager backend keeps the check cheap; it must give the eager samples."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="eager", fullgraph=kw["fullgraph"],
                                                                dynamic=kw["dynamic"]))
    d = _diffusion("v", "learned_range")
    cfg = ClassifierFreeGuidance(_net(learn_sigma=True, dtype=torch.float32), 3.0, rescale=0.5)
    labels = torch.tensor([0, 1, 2, 3])
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    kw = dict(steps=5, eta=0.5, labels=labels, progress=False)
    torch._dynamo.reset()
    eager = ddim_sample(cfg, d, x_T, generator=torch.Generator().manual_seed(2), **kw)
    compiled = ddim_sample(cfg, d, x_T, generator=torch.Generator().manual_seed(2), compile=True, **kw)
    torch._dynamo.reset()
    assert torch.equal(eager.sample, compiled.sample)


# ----------------------------------------------------------------------------- rescale (Lin et al. 2023)
def _v(d, t, pred):
    """v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022) at schedule indices t."""
    a = d.schedule.sqrt_alphas_cumprod[t].reshape(-1, 1)
    s = d.schedule.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1)
    return a * pred.eps - s * pred.x0


def _std(v):
    return v.reshape(v.shape[0], -1).std(1)


@pytest.mark.parametrize("param", ["eps", "v"])
def test_rescale_zero_is_a_no_op_and_one_matches_the_conditional_std(param):
    d, net = _diffusion(param), _net()
    x, t, labels = _inputs(B=8)
    plain = ClassifierFreeGuidance(net, 5.0).bind(d)(x, t + 1, labels=labels)
    off = ClassifierFreeGuidance(net, 5.0, rescale=0.0).bind(d)(x, t + 1, labels=labels)
    assert torch.equal(off.eps, plain.eps) and torch.equal(off.x0, plain.x0)

    cond = Denoiser(net).bind(d)(x, t + 1, labels=labels)
    full = ClassifierFreeGuidance(net, 5.0, rescale=1.0).bind(d)(x, t + 1, labels=labels)
    torch.testing.assert_close(_std(_v(d, t, full)), _std(_v(d, t, cond)), rtol=1e-10, atol=0)
    assert not torch.allclose(_std(_v(d, t, plain)), _std(_v(d, t, cond)))  # there was a std to correct
    # phi in between: v_final = phi * v_cfg * std_c / std_cfg + (1 - phi) v_cfg (the paper's mix), in v space
    phi = 0.7
    mid = ClassifierFreeGuidance(net, 5.0, rescale=phi).bind(d)(x, t + 1, labels=labels)
    v_cfg = _v(d, t, plain)
    ratio = (_std(_v(d, t, cond)) / _std(v_cfg)).reshape(-1, 1)
    torch.testing.assert_close(_v(d, t, mid), phi * v_cfg * ratio + (1 - phi) * v_cfg, rtol=1e-9, atol=1e-10)
    # and the pair stays consistent: x_t = a x0 + s eps
    a = d.schedule.sqrt_alphas_cumprod[t].reshape(-1, 1)
    s = d.schedule.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1)
    torch.testing.assert_close(a * mid.x0 + s * mid.eps, x, rtol=1e-10, atol=1e-10)


def test_rescale_stays_finite_at_zero_terminal_snr():
    """At the last index of a zero-terminal-SNR schedule sqrt(alpha_bar) = 0: the guided x0 is combined directly
    and the rescale rebuilds eps and x0 from v without dividing, so a v network's guided prediction is finite."""
    d = Diffusion(NoiseSchedule.cosine(50, **F64).rescale_zero_terminal_snr(), "v")
    x, _, labels = _inputs()
    t = torch.full((6,), 49)
    assert d.schedule.alphas_cumprod[49] == 0
    got = ClassifierFreeGuidance(_net(), 4.0, rescale=0.7).bind(d)(x, t + 1, labels=labels)
    assert torch.isfinite(got.x0).all() and torch.equal(got.eps, x)  # at SNR 0, eps_hat = x_t exactly


# ----------------------------------------------------------------------------- errors
def test_guidance_on_an_unconditional_network_is_an_error():
    with pytest.raises(InvalidInput, match=r"denoiser: classifier-free guidance needs a class-conditional .*"
                                           r"num_classes=0"):
        ClassifierFreeGuidance(MLPDenoiser(dim=3), 2.0)
    with torch.device("meta"):
        unet = UNet(get_preset("tiny"))
    with pytest.raises(InvalidInput, match="num_classes=0"):
        ClassifierFreeGuidance(Denoiser(unet), 2.0)


def test_labels_outside_the_classes_are_an_error():
    d, net = _diffusion(), _net()
    x, t, labels = _inputs()
    cfg = ClassifierFreeGuidance(net, 2.0)
    for bad in (K, -1, 17):  # the null label is not a class to guide towards
        with pytest.raises(InvalidInput, match=rf"labels must lie in \[0, {K - 1}\].*got values in"):
            cfg.bind(d)(x, t + 1, labels=torch.full_like(labels, bad))
    with pytest.raises(InvalidInput, match="labels is required"):
        cfg.bind(d)(x, t + 1)
    with pytest.raises(InvalidInputType, match="labels must have an integer dtype"):
        cfg.bind(d)(x, t + 1, labels=labels.float())


@pytest.mark.parametrize("kwargs,match", [
    (dict(scale=-1.0), "scale must be a finite number >= 0"),
    (dict(scale=math.nan), "scale must be a finite number >= 0"),
    (dict(scale=2.0, rescale=1.5), r"rescale must lie in \[0, 1\]"),
    (dict(scale=2.0, null_label=3), f"null_label must be the network's null label num_classes={K}"),
])
def test_bad_guidance_options_are_named(kwargs, match):
    with pytest.raises(InvalidInput, match=match):
        ClassifierFreeGuidance(_net(), **kwargs)


def test_bad_option_types_are_type_errors():
    with pytest.raises(InvalidInputType, match="scale must be a number"):
        ClassifierFreeGuidance(_net(), "7.5")
    with pytest.raises(InvalidInputType, match="rescale must be a number"):
        ClassifierFreeGuidance(_net(), 2.0, rescale=None)
    with pytest.raises(InvalidInputType, match="null_label must be an int"):
        ClassifierFreeGuidance(_net(), 2.0, null_label=4.0)


def test_null_label_is_required_for_a_network_without_config():
    with pytest.raises(InvalidInput, match="null_label is required"):
        ClassifierFreeGuidance(lambda x, t, labels: x, 2.0)
    assert ClassifierFreeGuidance(lambda x, t, labels: x, 2.0, null_label=10).null_label == 10


# ----------------------------------------------------------------------------- training: label dropout
def test_drop_labels():
    labels = torch.arange(10_000) % K
    dropped = drop_labels(labels, 0.2, K, generator=torch.Generator().manual_seed(0))
    kept = dropped == labels
    assert torch.equal(dropped[~kept], torch.full_like(dropped[~kept], K))
    frac = (~kept).float().mean().item()
    assert abs(frac - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 10_000)
    again = drop_labels(labels, 0.2, K, generator=torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)
    assert torch.equal(drop_labels(labels, 0.0, K), labels)
    with pytest.raises(InvalidInput, match=r"p_uncond must lie in \[0, 1\)"):
        drop_labels(labels, 1.0, K)
    with pytest.raises(InvalidInput, match=r"labels must lie in \[0, 4\]"):  # K itself (already dropped) is fine
        drop_labels(labels + 2, 0.1, K)
