"""The Denoiser: the one place that calls the network (time lookup, labels, dtype, split, parameterization), and
the samplers' and losses' use of it (plain callables still fit; clipping is the samplers' choice). A denoiser is
called at its path's times; on a diffusion (``den.bind(d)``) schedule index t is the path's step t + 1."""
from __future__ import annotations

import pytest
import torch

from diffusion_core import Diffusion, NoiseSchedule, ddim_sample, ddpm_sample, spaced_timesteps, training_losses
from diffusion_core.denoiser import Denoiser, as_denoiser
from diffusion_core.errors import InvalidInput, InvalidInputType
from diffusion_core.guidance import ClassifierFreeGuidance
from diffusion_core.nn import MLPDenoiser
from diffusion_core.targets import Prediction, Target, to_x0_eps

F64 = dict(dtype=torch.float64)

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder:
    """A network that records each call's positional arguments and keywords and returns a fixed function of x."""

    def __init__(self, channels_factor: int = 1, scale: float = 3.0):
        self.calls: list[tuple[tuple, dict]] = []
        self.factor, self.scale = channels_factor, scale

    def __call__(self, x, t, *args, **kwargs):
        self.calls.append(((x, t, *args), kwargs))
        out = self.scale * torch.sin(x + 0.01 * t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1))))
        return torch.cat([out] * self.factor, dim=1)


def _batch(B=6, C=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, generator=g, dtype=dtype), torch.randint(0, 10, (B,), generator=g)


# ----------------------------------------------------------------------------- what the network receives
@pytest.mark.parametrize("respaced", [False, True])
def test_network_gets_the_time_input_of_the_diffusion_it_is_called_with(respaced):
    full = Diffusion(NoiseSchedule.linear(1000))
    d = full.respaced(10, "trailing") if respaced else full.respaced(1000)
    net = Recorder()
    x, t = _batch()
    Denoiser(net).bind(d)(x.float(), t + 1)
    (args, kwargs), = net.calls
    expected = spaced_timesteps(1000, 10, "trailing")[t] if respaced else t
    assert len(args) == 2 and kwargs == {} and torch.equal(args[1], expected)


def test_labels_and_conditioning_are_passed_only_when_given():
    d = Diffusion(NoiseSchedule.linear(10))
    x, t = _batch()
    net = Recorder()
    Denoiser(net).bind(d)(x, t + 1)  # unconditional: the 2-argument call, exactly as before
    labels = torch.arange(6) % 3
    Denoiser(net).bind(d)(x, t + 1, labels=labels, context="c")
    Denoiser(net).bind(d)(x, t + 1, context="c")
    (a0, k0), (a1, k1), (a2, k2) = net.calls
    assert len(a0) == 2 and k0 == {}
    assert len(a1) == 3 and a1[2] is labels and k1 == {"context": "c"}
    assert len(a2) == 2 and k2 == {"context": "c"}
    with pytest.raises(TypeError):  # a plain 2-argument callable cannot take labels: Python says so
        Denoiser(lambda x, t: x).bind(d)(x, t + 1, labels=labels)


@pytest.mark.parametrize("bad,err,match", [
    (torch.zeros(6), InvalidInputType, "labels must have an integer dtype"),
    (torch.zeros(5, dtype=torch.long), InvalidInput, r"labels must have shape \(6,\)"),
    ([0] * 6, InvalidInputType, "labels must be a torch.Tensor"),
])
def test_bad_labels_are_named(bad, err, match):
    x, t = _batch()
    with pytest.raises(err, match=match):
        Denoiser(Recorder()).bind(Diffusion(NoiseSchedule.linear(10)))(x, t + 1, labels=bad)


# ----------------------------------------------------------------------------- reading the output
@pytest.mark.parametrize("param", ["eps", "x0", "v"])
@pytest.mark.parametrize("variance", ["fixed_large", "learned_range"])
def test_prediction_is_the_parameterization_read_of_the_mean_channels(param, variance):
    d = Diffusion(NoiseSchedule.cosine(10, **F64), param, variance)
    net = Recorder(2 if variance == "learned_range" else 1)
    x, t = _batch()
    den = Denoiser(net).bind(d)
    pred = den(x, t + 1)
    out = net(x, t)
    mean = out[:, :3]
    c = d.coefficients(t, x)
    x0, eps = to_x0_eps(d.parameterization, mean, x, c)
    assert isinstance(pred, Prediction)
    assert torch.equal(pred.eps, eps) and torch.equal(pred.x0, x0)
    assert (pred.var_output is None) == (variance != "learned_range")
    if pred.var_output is not None:
        assert torch.equal(pred.var_output, out[:, 3:])
    # the same reading of an output already at hand
    var = out[:, 3:] if variance == "learned_range" else None
    assert all(torch.equal(a, b) for a, b in zip(den.read(mean, x, c, var)[:2], pred[:2]))


def test_prediction_is_never_clipped():
    """The clip rule is the samplers' matter: a denoiser over a static-clip diffusion still predicts x0 far outside
    [-1, 1] (this network's x0 reaches ~3 at small t)."""
    d = Diffusion(NoiseSchedule.linear(10, **F64), "x0", clip="static")
    x, t = _batch()
    pred = Denoiser(Recorder(scale=3.0)).bind(d)(x, t + 1)
    assert pred.x0.abs().max() > 2
    assert d.p_mean_variance(pred, x, t).pred_x0.abs().max() <= 1  # the reverse step applies d.clip ...
    assert torch.equal(d.p_mean_variance(pred, x, t, clip="none").pred_x0, pred.x0)  # ... unless told otherwise


@pytest.mark.parametrize("out_dtype", [torch.float64, torch.bfloat16])
def test_output_is_cast_to_the_dtype_of_x(out_dtype):
    d = Diffusion(NoiseSchedule.linear(10), "x0")
    x, t = _batch(dtype=torch.float32)
    net_out = torch.randn(6, 3, dtype=out_dtype)
    pred = Denoiser(lambda x, t: net_out).bind(d)(x, t + 1)
    assert pred.x0.dtype == pred.eps.dtype == torch.float32
    assert torch.equal(pred.x0, net_out.float())


def test_p_mean_variance_takes_a_prediction_not_the_raw_output():
    """The network is read in one place, the denoiser: p_mean_variance takes its Prediction and refuses a raw
    output with a clear error."""
    d = Diffusion(NoiseSchedule.linear(10, **F64), "v", "learned_range", clip="dynamic")
    net = Recorder(2, scale=0.9)
    x, t = _batch()
    step = d.p_mean_variance(Denoiser(net).bind(d)(x, t + 1), x, t)
    assert all(torch.isfinite(v).all() for v in step)
    with pytest.raises(InvalidInputType, match="pred must be a Prediction"):
        d.p_mean_variance(net(x, t), x, t)


def test_denoiser_arguments_are_checked():
    d = Diffusion(NoiseSchedule.linear(10))
    x, t = _batch(dtype=torch.float32)
    with pytest.raises(InvalidInputType, match="network must be a callable"):
        Denoiser(3)
    with pytest.raises(InvalidInputType, match="already is a denoiser"):
        Denoiser(Denoiser(Recorder()))
    with pytest.raises(InvalidInputType, match="path must be a GaussianPath"):
        Denoiser(Recorder(), d.schedule)
    with pytest.raises(InvalidInput, match="the denoiser has no path"):
        Denoiser(Recorder())(x, t + 1)
    with pytest.raises(InvalidInput, match=r"t must be an integer step in \[0, 10\] on a discrete path"):
        Denoiser(Recorder()).bind(d)(x, t + 11)
    with pytest.raises(InvalidInputType, match="model must return a torch.Tensor"):
        Denoiser(lambda x, t: x.numpy()).bind(d)(x, t + 1)
    with pytest.raises(InvalidInput, match=r"model output must have shape \(6, 3\)"):
        Denoiser(lambda x, t: x[:, :2]).bind(d)(x, t + 1)
    den = Denoiser(Recorder())
    assert as_denoiser(den) is den and isinstance(as_denoiser(Recorder()), Denoiser)


def test_bind_needs_a_diffusion():
    with pytest.raises(InvalidInputType, match="diffusion must be a Diffusion"):
        Denoiser(Recorder()).bind(NoiseSchedule.linear(10))
    with pytest.raises(InvalidInputType, match="diffusion must be a Diffusion"):
        as_denoiser(Recorder(), NoiseSchedule.linear(10))


def test_a_network_on_a_diffusion_is_bound_in_one_step():
    """``as_denoiser(network, diffusion)`` (what every DDPM entry point does) is ``Denoiser(network).bind(diffusion)``:
    the diffusion's path, target and variance channels, the default sigma_data; a denoiser keeps its own sigma_data."""
    d = Diffusion(NoiseSchedule.linear(10), "v", "learned_range")
    net = Recorder()
    one, two = as_denoiser(net, d), Denoiser(net).bind(d)
    for den in (one, two):
        assert type(den) is Denoiser and den.network is net and den.path is d.path
        assert (den.target, den.learned_variance, den.sigma_data) == (Target.V, True, 0.5)
    assert Denoiser(net, sigma_data=2.0).bind(d).sigma_data == 2.0


class CountingMLP(MLPDenoiser):
    """Counts the walks over its weights (what the denoiser does to learn their dtype)."""

    walks = 0

    def parameters(self, recurse: bool = True):
        CountingMLP.walks += 1
        return super().parameters(recurse)


def test_a_denoiser_for_a_run_looks_the_network_up_once_and_predicts_the_same():
    """``for_run`` (samplers call it before their loop) reads the weight dtype and class count once; its predictions
    equal the denoiser's own, float64 states cast to the float32 weights in both; the denoiser itself still looks
    them up at every call, so a network converted between runs is seen; a guided denoiser's run fixes its inner one."""
    d = Diffusion(NoiseSchedule.linear(10, **F64))
    net = CountingMLP(dim=3, hidden=16, depth=2, num_classes=4).eval()
    den = Denoiser(net).bind(d)
    x, t = _batch()
    labels = torch.arange(6) % 4
    CountingMLP.walks = 0
    run = den.for_run()
    assert CountingMLP.walks == 1 and run.network is net and run.num_classes == 4
    for _ in range(3):
        assert torch.equal(run(x, t + 1, labels=labels).x0, den(x, t + 1, labels=labels).x0)
    assert CountingMLP.walks == 4  # one for the run, one per call of the denoiser itself
    net.double()
    assert den(x, t + 1, labels=labels).x0.dtype == torch.float64 and den.for_run()._fixed == (torch.float64, 4)
    guided = ClassifierFreeGuidance(den, 2.0)
    guided_run = guided.for_run()
    assert guided_run.denoiser._fixed == (torch.float64, 4) and guided.denoiser._fixed is None
    assert (guided_run.scale, guided_run.null_label) == (guided.scale, guided.null_label)
    assert torch.equal(guided_run(x, t + 1, labels=labels).x0, guided(x, t + 1, labels=labels).x0)


def test_num_classes_is_read_from_the_network_config():
    assert Denoiser(MLPDenoiser(num_classes=4)).num_classes == 4
    assert Denoiser(MLPDenoiser()).num_classes == 0
    assert Denoiser(Recorder()).num_classes is None


# ----------------------------------------------------------------------------- samplers and losses over it
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_give_the_same_samples_for_a_network_and_its_denoiser(sampler):
    torch.manual_seed(0)
    net = MLPDenoiser(hidden=32, depth=2).eval()
    d = Diffusion(NoiseSchedule.cosine(50), "v", clip="static")
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    fn = ddpm_sample if sampler == "ddpm" else ddim_sample
    kw = dict(steps=10, progress=False, return_trajectory=True)
    a = fn(net, d, x_T, generator=torch.Generator().manual_seed(2), **kw)
    b = fn(Denoiser(net), d, x_T, generator=torch.Generator().manual_seed(2), **kw)
    assert torch.equal(a.trajectory, b.trajectory) and torch.equal(a.pred_x0, b.pred_x0)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampler_clip_overrides_the_diffusions_rule(sampler):
    net = Recorder(scale=3.0)
    x_T = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    fn = ddpm_sample if sampler == "ddpm" else ddim_sample
    kw = dict(steps=10, progress=False, return_trajectory=True)

    def run(clip_rule, **extra):
        d = Diffusion(NoiseSchedule.linear(100), "x0", clip=clip_rule)
        return fn(net, d, x_T, generator=torch.Generator().manual_seed(1), **kw, **extra)

    none, static = run("none"), run("static")
    assert none.pred_x0.abs().max() > 2 and static.pred_x0.abs().max() <= 1
    for a, b in ((run("static", clip="none"), none), (run("none", clip="static"), static),
                 (run("none", clip="dynamic"), run("dynamic"))):
        assert torch.equal(a.trajectory, b.trajectory) and torch.equal(a.pred_x0, b.pred_x0)
    with pytest.raises(InvalidInput, match="clip must be one of 'none', 'static', 'dynamic'"):
        run("none", clip="hard")


def test_training_losses_takes_a_denoiser_and_labels_but_not_a_guided_one():
    torch.manual_seed(0)
    net = MLPDenoiser(hidden=32, depth=2, num_classes=3)
    d = Diffusion(NoiseSchedule.cosine(50))
    x0, t = torch.randn(8, 2), torch.randint(0, 50, (8,))
    noise = torch.randn(8, 2)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # 3: the null label, a dropped class
    a = training_losses(net, d, x0, t, noise, labels=labels)
    b = training_losses(Denoiser(net), d, x0, t, noise, labels=labels)
    assert torch.equal(a.loss, b.loss)
    a.loss.mean().backward()
    assert net.label_embed.weight.grad[:4].abs().sum(1).gt(0).all()  # every used row, the null row too
    with pytest.raises(InvalidInputType, match="model must be a network or a Denoiser to train"):
        training_losses(ClassifierFreeGuidance(net, 2.0), d, x0, t, noise)


def test_sampler_checks_labels_before_the_loop():
    net = Recorder()
    d = Diffusion(NoiseSchedule.linear(10))
    with pytest.raises(InvalidInput, match=r"labels must have shape \(4,\)"):
        ddim_sample(net, d, torch.zeros(4, 3), steps=5, labels=torch.zeros(3, dtype=torch.long), progress=False)
    assert net.calls == []
