"""The DDPM and DDIM samplers against the papers' formulas, and ``compile=True``, which compiles the whole step
(network and update) into one graph: on CUDA, one CUDA graph replay per step.

* The eager samplers compute Ho et al.'s ancestral step (eq. 11 / eq. 7 with the fixed variances, and Nichol &
  Dhariwal's learned range, eq. 15) and Song et al.'s DDIM step (eq. 12, with eq. 16's sigma), here written
  again in plain torch from those formulas on the schedule's ``alphas_cumprod``, independently of the library
  (no ``p_mean_variance``, no denoiser, no schedule tables but alpha-bar): in float64, also through the Denoiser
  (the network read in one place), with the clip rules (``clip=`` or the diffusion's), and with ``labels=``.
* ``compile=True`` gives the eager samples up to float32 rounding, compiles one graph per step function for the
  whole loop (no recompile, no graph break), and that graph holds the network AND the update.
* The loop keeps nothing a compiled graph returned, as CUDA graphs require (checked on the CPU with a fake
  "graph" that writes its outputs into the same buffers at every call).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import diffusion_core.sampling as sampling
from diffusion_core import Diffusion, NoiseSchedule, ddim_sample, ddpm_sample
from diffusion_core.denoiser import Denoiser
from diffusion_core.errors import InvalidInputType
from diffusion_core.guidance import ClassifierFreeGuidance
from diffusion_core.nn import MLPDenoiser
from support import fake_cuda_graphs

pytestmark = pytest.mark.usefixtures("one_thread")  # 2 busy cores: a thread pool only adds synchronization here

F64 = torch.float64


class TinyNet(nn.Module):
    """A deterministic network ``(x, t) -> tanh(W x + sin(f t + b))`` over channels; works for (B, C) and
    (B, C, H, W). Outputs in (-1, 1), so it is also a valid learned-range variance output. With
    ``require_compiled``, running it anywhere but inside torch.compile's tracing is an error."""

    def __init__(self, c_in: int, c_out: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(c_out, c_in, generator=g) / c_in**0.5)
        self.f = nn.Parameter(torch.rand(c_out, generator=g) * 0.05)
        self.b = nn.Parameter(torch.randn(c_out, generator=g))
        self.require_compiled = False

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.require_compiled and not torch.compiler.is_compiling():
            raise AssertionError("the network ran eagerly, outside the compiled step")
        h = torch.einsum("oc,bc...->bo...", self.w.to(x.dtype), x)
        emb = torch.sin(t.to(x.dtype)[:, None] * self.f.to(x.dtype) + self.b.to(x.dtype))
        return torch.tanh(h + emb.reshape(*emb.shape, *([1] * (x.ndim - 2))))


def _setup(parameterization="eps", variance="fixed_large", clip="none", image=True, T=100, dtype=F64):
    d = Diffusion(NoiseSchedule.linear(T, dtype=dtype), parameterization, variance, clip)
    C = 3
    model = TinyNet(C, d.output_channels(C)).to(dtype).eval()
    shape = (4, C, 5, 5) if image else (16, C)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    return model, d, x_T


# ----------------------------------------------------------------------------- the papers' formulas, as reference
# Written from the papers, in plain torch, on the schedule's alpha-bar alone. A sampler of `steps` steps visits
# the indices tau_1 < ... < tau_S (improved DDPM's respacing, sec. 4) and steps from tau_i to tau_{i-1}, with
# alpha-bar_{tau_0} = 1 (the data) after the last one. The network gets the visited index as its time input.
# Noise: one N(0, I) draw per noisy step, in step order, none at the last step (the samplers' documented order),
# drawn in `noise_dtype` (default: the state's) and cast to the state's dtype.

def _visited(T: int, steps: int | None, spacing: str) -> list[int]:
    """tau_1 < ... < tau_S: every index, or "linspace" round(linspace(0, T - 1, S)), or "trailing"
    round(T - 1 - i T / S) (Lin et al. 2024, table 2)."""
    if steps is None or steps == T:
        return list(range(T))
    if spacing == "linspace":
        idx = torch.linspace(0, T - 1, steps, dtype=F64).round()
    else:
        assert spacing == "trailing"
        idx = (T - 1 - torch.arange(steps, dtype=F64) * (T / steps)).round().flip(0)
    return [int(i) for i in idx]


def _read(parameterization: str, out: torch.Tensor, x: torch.Tensor, a, s) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, eps_hat) from the network's mean output, with x_t = a x0 + s eps (a = sqrt(ab), s = sqrt(1 - ab)):
    eps (Ho et al.), x0, or v = a eps - s x0 (Salimans & Ho 2022, sec. 4), which gives x0 = a x_t - s v and
    eps = s x_t + a v."""
    if parameterization == "eps":
        return (x - s * out) / a, out
    if parameterization == "x0":
        return out, (x - a * out) / s
    return a * x - s * out, s * x + a * out


def _clipped(rule: str, x0: torch.Tensor, x: torch.Tensor, a, s, percentile: float = 0.995):
    """x0_hat clipped to the data range, and the eps_hat that keeps x_t = a x0 + s eps: "static" clamps to [-1, 1];
    "dynamic" is Imagen's dynamic thresholding (Saharia et al. 2022, sec. 2.3): per sample, c = the percentile of
    |x0|, at least 1, x0 <- clamp(x0, -c, c) / c. (c is taken in float32, as the library takes it.)"""
    if rule == "static":
        x0 = x0.clamp(-1, 1)
    else:
        c = torch.quantile(x0.abs().reshape(len(x0), -1).float(), percentile, dim=1).clamp(min=1).to(x0.dtype)
        c = c.reshape(-1, *([1] * (x0.ndim - 1)))
        x0 = torch.maximum(torch.minimum(x0, c), -c) / c
    return x0, (x - a * x0) / s


def _walk(model, diffusion, x_T, steps, spacing, update, noisy, generator, noise_dtype, labels, clip):
    """Run ``update(x, x0, eps, var_out, ab_t, ab_s, z)`` from x_T over the visited indices; returns
    (sample, trajectory, pred_x0)."""
    ab_all = diffusion.schedule.alphas_cumprod.to(F64)
    tau = _visited(diffusion.num_timesteps, steps, spacing)
    param, rule = diffusion.parameterization.value, diffusion.clip.value if clip is None else clip
    x, states, preds = x_T, [x_T], []
    for i in range(len(tau) - 1, -1, -1):
        t = torch.full((len(x),), tau[i], dtype=torch.long)
        out = model(x, t) if labels is None else model(x, t, labels)
        mean_out, var_out = out.chunk(2, dim=1) if diffusion.learned_variance else (out, None)
        ab_t, ab_s = ab_all[tau[i]].to(x.dtype), (ab_all[tau[i - 1]] if i > 0 else torch.ones((), dtype=F64)).to(x.dtype)
        a, s = ab_t.sqrt(), (1 - ab_t).sqrt()
        x0, eps = _read(param, mean_out, x, a, s)
        if rule != "none":
            x0, eps = _clipped(rule, x0, x, a, s)
        z = None
        if noisy and i > 0:
            z = torch.randn(x.shape, generator=generator, dtype=noise_dtype or x.dtype).to(x.dtype)
        x = update(x, x0, eps, var_out, ab_t, ab_s, z)
        states.append(x)
        preds.append(x0)
    return x, torch.stack(states), torch.stack(preds)


def ref_ddpm_sample(model, diffusion, x_T, *, steps=None, spacing="linspace", generator=None, noise_dtype=None,
                    labels=None, clip=None):
    """Ho et al. 2020, algorithm 2 on the visited indices, with beta_t = 1 - ab_t / ab_s the respaced step's beta
    and alpha_t = 1 - beta_t: the mean is eq. 11 for eps, 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - ab_t) eps_hat),
    and eq. 7's posterior mean with x0_hat otherwise, sqrt(ab_s) beta_t / (1 - ab_t) x0_hat
    + sqrt(alpha_t) (1 - ab_s) / (1 - ab_t) x_t; the variance is beta_t ("fixed_large"),
    beta~_t = (1 - ab_s) / (1 - ab_t) beta_t ("fixed_small"), or Nichol & Dhariwal's eq. 15,
    exp(u log beta_t + (1 - u) log beta~_t) with u = (v + 1) / 2 of the network's variance output
    ("learned_range"). No noise at the last step."""
    param, variance = diffusion.parameterization.value, diffusion.variance.value

    def update(x, x0, eps, var_out, ab_t, ab_s, z):
        beta = 1 - ab_t / ab_s
        alpha = 1 - beta
        if param == "eps":
            mean = (x - beta / (1 - ab_t).sqrt() * eps) / alpha.sqrt()
        else:
            mean = ab_s.sqrt() * beta / (1 - ab_t) * x0 + alpha.sqrt() * (1 - ab_s) / (1 - ab_t) * x
        if z is None:
            return mean
        beta_tilde = (1 - ab_s) / (1 - ab_t) * beta
        if variance == "fixed_large":
            log_var = torch.log(beta)
        elif variance == "fixed_small":
            log_var = torch.log(beta_tilde)
        else:
            u = (var_out + 1) / 2
            log_var = u * torch.log(beta) + (1 - u) * torch.log(beta_tilde)
        return mean + torch.exp(0.5 * log_var) * z

    return _walk(model, diffusion, x_T, steps, spacing, update, True, generator, noise_dtype, labels, clip)


def ref_ddim_sample(model, diffusion, x_T, *, steps=50, eta=0.0, spacing="linspace", generator=None,
                    noise_dtype=None, labels=None, clip=None):
    """Song et al. 2021, eq. 12 on the visited indices: x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps_hat
    + sigma z, with eq. 16's sigma = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s); noise only for
    eta > 0, never at the last step (where sigma = 0)."""

    def update(x, x0, eps, var_out, ab_t, ab_s, z):
        sigma = eta * ((1 - ab_s) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_s).sqrt()
        x_s = ab_s.sqrt() * x0 + (1 - ab_s - sigma**2).clamp(min=0).sqrt() * eps
        return x_s if z is None else x_s + sigma * z

    return _walk(model, diffusion, x_T, steps, spacing, update, eta > 0, generator, noise_dtype, labels, clip)


# float64 sampler against the float64 formulas: only the order of the operations differs, ~30 roundings of
# 1.1e-16 per step, amplified at most by 1/sqrt(ab) (221 at this schedule's last index) in x0_hat; measured
# agreement (every case below): <= 2.5e-15 of the largest value. A wrong table entry, sign or variance moves
# samples by 1e-3 or more.
REL = 1e-12


def _assert_matches(new, ref, rel=REL):
    sample, traj, pred = ref
    assert new.trajectory.shape == traj.shape and new.pred_x0.shape == pred.shape
    for name, got, want in (("sample", new.sample, sample), ("trajectory", new.trajectory, traj),
                            ("pred_x0", new.pred_x0, pred)):
        err, scale = (got - want).abs().max().item(), max(1.0, want.abs().max().item())
        assert err <= rel * scale, (name, err, scale)


def _assert_same(a, b):
    assert torch.equal(a.sample, b.sample)
    assert torch.equal(a.trajectory, b.trajectory)
    assert torch.equal(a.pred_x0, b.pred_x0)


# ----------------------------------------------------------------------------- the samplers are the formulas
# The sampler reads the network through a Denoiser (time lookup, cast, split, parameterization), then applies the
# clip rule itself. A plain network is wrapped; a Denoiser is used as is: both must be the papers' step.
WRAPS = {"network": lambda m: m, "denoiser": Denoiser}


@pytest.mark.parametrize("wrap", list(WRAPS))
@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large", "learned_range"])
@pytest.mark.parametrize("steps", [None, 10])
def test_ddpm_is_ho_et_al_algorithm_2(parameterization, variance, steps, wrap):
    model, d, x_T = _setup(parameterization, variance, T=30 if steps is None else 100)
    g_ref, g_new = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    ref = ref_ddpm_sample(model, d, x_T, steps=steps, generator=g_ref)
    new = ddpm_sample(WRAPS[wrap](model), d, x_T, steps=steps, generator=g_new, progress=False, return_trajectory=True)
    _assert_matches(new, ref)
    assert torch.equal(g_new.get_state(), g_ref.get_state())  # the same draws: one per step but the last


@pytest.mark.parametrize("wrap", list(WRAPS))
@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("image", [True, False], ids=["image", "flat"])
def test_ddim_is_song_et_al_eq_12(parameterization, eta, image, wrap):
    model, d, x_T = _setup(parameterization, image=image)
    g_ref, g_new = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    ref = ref_ddim_sample(model, d, x_T, steps=10, eta=eta, spacing="trailing", generator=g_ref)
    new = ddim_sample(WRAPS[wrap](model), d, x_T, steps=10, eta=eta, spacing="trailing", generator=g_new,
                      progress=False, return_trajectory=True)
    _assert_matches(new, ref)
    assert torch.equal(g_new.get_state(), g_ref.get_state())  # eta = 0 draws nothing at all


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", ["static", "dynamic"])
@pytest.mark.parametrize("how", ["diffusion", "sampler"])
def test_clipping_is_applied_to_every_x0_prediction(parameterization, clip, how):
    """The clip rule is applied by the samplers to every x0_hat (eps_hat recomputed from it): ``diffusion.clip`` by
    default, or the sampler's ``clip=`` (here given on an unclipped diffusion). Both are the formulas with the
    clipped x0_hat, in DDPM (learned variance) and DDIM (eta = 0.3), and both give the same samples bit for bit."""
    net, d_clip, x_T = _setup(parameterization, "learned_range", clip)
    _, d_none, _ = _setup(parameterization, "learned_range", "none")

    def model(x, t):  # mean channels x3, so that even an x0 network's x0_hat (tanh) leaves [-1, 1]
        out = net(x, t)
        return torch.cat([3 * out[:, :3], out[:, 3:]], dim=1)

    d, kw = (d_clip, {}) if how == "diffusion" else (d_none, {"clip": clip})
    ref = ref_ddpm_sample(model, d_clip, x_T, steps=10, generator=torch.Generator().manual_seed(3))
    assert ref[2].abs().max() <= 1 + 1e-6 and not torch.allclose(ref[0], ref_ddpm_sample(
        model, d_none, x_T, steps=10, generator=torch.Generator().manual_seed(3))[0])  # the clip does something
    new = ddpm_sample(model, d, x_T, steps=10, generator=torch.Generator().manual_seed(3), progress=False,
                      return_trajectory=True, **kw)
    _assert_matches(new, ref)
    _assert_same(new, ddpm_sample(model, d_clip, x_T, steps=10, generator=torch.Generator().manual_seed(3),
                                  progress=False, return_trajectory=True))
    ref = ref_ddim_sample(model, d_clip, x_T, steps=10, eta=0.3, generator=torch.Generator().manual_seed(3))
    new = ddim_sample(model, d, x_T, steps=10, eta=0.3, generator=torch.Generator().manual_seed(3), progress=False,
                      return_trajectory=True, **kw)
    _assert_matches(new, ref)
    _assert_same(new, ddim_sample(model, d_clip, x_T, steps=10, eta=0.3, generator=torch.Generator().manual_seed(3),
                                  progress=False, return_trajectory=True))


@pytest.mark.parametrize("clip", ["none", "static"])
def test_sampler_clip_overrides_the_diffusions_rule(clip):
    model, d_static, x_T = _setup("v", "fixed_small", "static")
    new = ddim_sample(model, d_static, x_T, steps=10, eta=0.5, clip=clip, generator=torch.Generator().manual_seed(4),
                      progress=False, return_trajectory=True)
    ref = ref_ddim_sample(model, d_static, x_T, steps=10, eta=0.5, clip=clip, generator=torch.Generator().manual_seed(4))
    _assert_matches(new, ref)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_class_conditional_sampling_passes_the_labels_at_every_step(sampler):
    """``labels=`` reaches the network as its third argument at every step: the formulas over the network with
    those labels, and the same samples, bit for bit, as the sampler over ``lambda x, t: net(x, t, labels)``;
    classifier-free guidance at scale 1 (no guidance) is that same conditional model."""
    torch.manual_seed(0)
    net = MLPDenoiser(dim=3, hidden=16, depth=1, num_classes=3).double().eval()
    _, d, x_T = _setup("v", "fixed_small", "static", image=False)
    labels = torch.arange(16) % 4  # 3 is the null label: unconditional rows in the same batch
    ref_fn, fn = (ref_ddpm_sample, ddpm_sample) if sampler == "ddpm" else (ref_ddim_sample, ddim_sample)
    kw = {"steps": 10} if sampler == "ddpm" else {"steps": 10, "eta": 0.5}
    ref = ref_fn(net, d, x_T, labels=labels, generator=torch.Generator().manual_seed(5), **kw)
    new = fn(net, d, x_T, labels=labels, generator=torch.Generator().manual_seed(5), progress=False,
             return_trajectory=True, **kw)
    _assert_matches(new, ref)
    _assert_same(new, fn(lambda x, t: net(x, t, labels), d, x_T, generator=torch.Generator().manual_seed(5),
                         progress=False, return_trajectory=True, **kw))
    cond = labels % 3
    bound = fn(lambda x, t: net(x, t, cond), d, x_T, generator=torch.Generator().manual_seed(5), progress=False,
               return_trajectory=True, **kw)
    guided = fn(ClassifierFreeGuidance(net, 1.0), d, x_T, labels=cond, generator=torch.Generator().manual_seed(5),
                progress=False, return_trajectory=True, **kw)
    _assert_same(guided, bound)


def test_last_step_ignores_its_noise_input_even_when_sigma_is_not_finite():
    # "No noise at the last step" must not be a multiplication by 0: the noise term at the last step cannot leak
    # in, even as NaN (inf * 0). A learned-variance output of 1e30 at the network's time 0 makes sigma_0 overflow
    # to inf; the formulas never look at sigma_0, and neither may the sampler.
    class HugeVarAtZero(nn.Module):
        def forward(self, x, t):
            v = torch.where(t == 0, 1e30, 0.0).reshape(-1, 1).expand_as(x)
            return torch.cat([0.1 * x, v], dim=1)

    d = Diffusion(NoiseSchedule.linear(10, dtype=F64), variance="learned_range")
    x_T = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    x1, t0 = torch.ones_like(x_T), torch.zeros(2, dtype=torch.long)
    # log sigma_0^2 = 5e29 (log beta_1 - log beta~_2) + log beta~_2 = +inf (beta_1 > beta~_2)
    pred = Denoiser(HugeVarAtZero()).bind(d)(x1, t0 + 1)  # schedule index 0 is the path's step 1
    assert torch.isinf(torch.exp(0.5 * d.p_mean_variance(pred, x1, t0).log_variance)).all()
    res = ddpm_sample(HugeVarAtZero(), d, x_T, generator=torch.Generator().manual_seed(0), progress=False,
                      return_trajectory=True)
    ref = ref_ddpm_sample(HugeVarAtZero(), d, x_T, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.sample).all()
    _assert_matches(res, ref)


def test_compile_must_be_a_bool():
    model, d, x_T = _setup()
    for fn in (ddpm_sample, ddim_sample):
        with pytest.raises(InvalidInputType, match="compile must be a bool"):
            fn(model, d, x_T, steps=2, progress=False, compile="yes")


# ----------------------------------------------------------------------------- compile=True on the CPU
def _reference64(fn, model, d, x_T, generator_seed, **kw):
    """The formulas above in float64 (schedule, network, state), with the same float32 noise draws: the
    exact result up to float64 rounding, to measure float32 rounding against."""
    model64 = copy.deepcopy(model).double().eval()
    return fn(model64, d.to(dtype=torch.float64), x_T.double(), generator=torch.Generator().manual_seed(generator_seed),
              noise_dtype=torch.float32, **kw)


@pytest.mark.parametrize("case", ["ddpm-v-learned_range-channels_last", "ddim-eps-eta0", "ddim-x0-eta0.5"])
def test_compiled_step_matches_eager_and_compiles_once(case):
    """``compile=True`` against the eager sampler, same seed, ``return_trajectory=True`` (every state compared).

    Tolerance: the compiled graph is the same float32 computation with another rounding (inductor fuses the
    step into a few loops, may contract a*b + c into FMAs, reorder sums, and use its own vectorized exp / sqrt /
    sin / tanh, each within a few ulp). So the compiled run must be as close to the exact result as the eager
    run is: we measure eager float32's own rounding error, E = max |eager32 - exact| (for the states and for the
    x0 predictions separately), against the papers' formulas run in float64 with the same noise, and require
    max |compiled - eager| <= 4 E (by the triangle inequality this holds whenever the compiled run's error is
    at most 3 E; measured: |compiled - eager| <= 0.9 E). E itself is checked to be float32-sized: at most 1e-5
    of the largest value (measured 1.2e-7 to 9e-7 of it; a wrong table entry or a dropped noise term would
    move samples by 1e-2 or more). The eps case's x0 predictions reach ~940 (this toy network is no denoiser,
    and 1/sqrt(alpha_bar_T) = 221 amplifies it), hence the relative bound.

    Compile count: after ``torch._dynamo.reset()``, with ``error_on_recompile`` (a recompile raises), the whole
    loop of 10 steps produces exactly one graph per step function (``fullgraph=True`` already makes any graph
    break an error): DDIM's one step, DDPM's step and its last step (to the data, without noise); a second run
    with the same arguments reuses them."""
    sampler, parameterization, rest = case.split("-", 2)
    variance = "learned_range" if "learned_range" in rest else "fixed_small"
    model, d, x_T = _setup(parameterization, variance, dtype=torch.float32)
    if "channels_last" in rest:
        x_T = x_T.contiguous(memory_format=torch.channels_last)  # the copies fed back must keep its strides
    if sampler == "ddpm":
        fn, ref_fn, kw, graphs = ddpm_sample, ref_ddpm_sample, dict(steps=10), 2
    else:
        fn, ref_fn, kw, graphs = ddim_sample, ref_ddim_sample, dict(steps=10, eta=float(rest[3:])), 1

    eager = fn(model, d, x_T, generator=torch.Generator().manual_seed(5), progress=False, return_trajectory=True, **kw)
    torch._dynamo.reset()
    counters.clear()
    model.require_compiled = True
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled = fn(model, d, x_T, generator=torch.Generator().manual_seed(5), progress=False,
                      return_trajectory=True, compile=True, **kw)
        assert counters["stats"]["unique_graphs"] == graphs, dict(counters["stats"])
        again = fn(model, d, x_T, generator=torch.Generator().manual_seed(5), progress=False, compile=True, **kw)
    assert counters["stats"]["unique_graphs"] == graphs, dict(counters["stats"])
    model.require_compiled = False
    assert torch.equal(again.sample, compiled.sample)

    _, exact_traj, exact_pred = _reference64(ref_fn, model, d, x_T, 5, **kw)
    for name, exact in (("trajectory", exact_traj), ("pred_x0", exact_pred)):
        E = (getattr(eager, name).double() - exact).abs().max().item()
        scale = max(1.0, exact.abs().max().item())
        assert 0 < E <= 1e-5 * scale, (name, E, scale)  # float32-sized: eps32 = 1.2e-7, times ~30 ops x 10 steps
        diff = (getattr(compiled, name) - getattr(eager, name)).abs().max().item()
        assert diff <= 4 * E, (name, diff, E)
    assert torch.equal(compiled.trajectory[-1], compiled.sample) and torch.equal(compiled.trajectory[0], x_T)
    if "channels_last" in rest:
        assert compiled.sample.is_contiguous(memory_format=torch.channels_last)


def test_the_compiled_graph_holds_the_network_and_the_update(monkeypatch):
    """``compile=True`` compiles the step, not the model: torch.compile is called on the step functions only (DDPM's
    step and its last step, to the data), with fullgraph=True, dynamic=False and (on the CPU) no mode; dynamo
    captures one graph each. In the step's graph the returned x_{t-1} depends on the network's output AND on the
    noise input, i.e. the update is inside the graph too; the last step's graph returns x0_hat itself, so no noise
    can reach the sample. The first 9 of the 10 steps ran the step's graph, the 10th the last step's, and the
    network never ran eagerly (only while being traced)."""
    compile_calls, graphs, replays = [], [], []
    real_compile = torch.compile

    def capture(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm)
        index = len(graphs) - 1

        def run(*args):
            replays.append(index)
            return gm.forward(*args)

        return run

    def spy(fn, **kw):
        compile_calls.append((fn, kw))
        return real_compile(fn, backend=capture, fullgraph=kw["fullgraph"], dynamic=kw["dynamic"])

    monkeypatch.setattr(torch, "compile", spy)
    model, d, x_T = _setup("v", "fixed_large", dtype=torch.float32)
    torch._dynamo.reset()
    counters.clear()
    model.require_compiled = True
    res = ddpm_sample(model, d, x_T, steps=10, generator=torch.Generator().manual_seed(6), progress=False,
                      return_trajectory=True, compile=True)
    model.require_compiled = False
    eager = ddpm_sample(model, d, x_T, steps=10, generator=torch.Generator().manual_seed(6), progress=False,
                        return_trajectory=True)
    torch._dynamo.reset()

    assert [fn.__name__ for fn, _ in compile_calls] == ["step", "last"]
    assert all(fn is not model and kw == {"fullgraph": True, "dynamic": False, "mode": None} for fn, kw in compile_calls)
    assert len(graphs) == 2 and counters["stats"]["unique_graphs"] == 2 and replays == [0] * 9 + [1]

    def ancestors(node):  # the node and every node it is computed from
        seen, todo = {node}, [node]
        while todo:
            n = todo.pop()
            for a in n.all_input_nodes:
                if a not in seen:
                    seen.add(a)
                    todo.append(a)
        return seen

    def network_nodes(gm):
        return [n for n in gm.graph.nodes if n.op == "call_function" and n.target is torch.tanh]

    step_graph, last_graph = graphs
    # dynamo names the step's noise argument `z` l_z_ (and the closure's tensors l_..._)
    (noise,) = [n for n in step_graph.graph.nodes
                if n.op == "placeholder" and n.name.strip("_").removeprefix("l_") == "z"]
    (out,) = [n for n in step_graph.graph.nodes if n.op == "output"]
    x_prev, x0 = out.args[0]
    assert len(network_nodes(step_graph)) == 1  # TinyNet's last op
    assert noise in ancestors(x_prev) and network_nodes(step_graph)[0] in ancestors(x_prev)
    (out,) = [n for n in last_graph.graph.nodes if n.op == "output"]
    (x0,) = set(out.args[0])  # x_{t-1} and x0_hat are one tensor (dynamo returns it once)
    assert network_nodes(last_graph)[0] in ancestors(x0)
    assert not any(n.op == "placeholder" and n.name.strip("_").removeprefix("l_") == "z" for n in ancestors(x0))
    # the captured graphs (run eagerly by this backend) compute exactly the eager steps
    _assert_same(res, eager)


# ----------------------------------------------------------------------------- CUDA-graph output semantics
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_loop_keeps_nothing_a_cuda_graph_returns(monkeypatch, sampler):
    fakes, marks = fake_cuda_graphs(monkeypatch, sampling)
    model, d, x_T = _setup("x0", "fixed_small", dtype=torch.float32)  # x0: the network output is also pred_x0
    fn = ddpm_sample if sampler == "ddpm" else ddim_sample
    kw = dict(steps=8, progress=False, return_trajectory=True)
    if sampler == "ddim":
        kw["eta"] = 0.5
    eager = fn(model, d, x_T, generator=torch.Generator().manual_seed(7), **kw)
    graphed = fn(model, d, x_T, generator=torch.Generator().manual_seed(7), compile=True, **kw)
    # one mark_step_begin per step, before the replay; DDPM's last step (no noise) is a graph of its own
    assert [f.calls for f in fakes] == ([7, 1] if sampler == "ddpm" else [8]) and len(marks) == 8
    _assert_same(graphed, eager)
    # Other "replays" (another sampling run on the same graphs) must not touch what the first run returned.
    kept = graphed.sample.clone()
    for fake in fakes:
        fake(x_T, torch.zeros(1, dtype=torch.long), torch.zeros_like(x_T), torch.zeros_like(x_T))
    assert torch.equal(graphed.sample, kept)
    assert all(graphed.sample.data_ptr() != o.data_ptr() for fake in fakes for o in fake.out)
    # and the caller's x_T is never written
    assert torch.equal(x_T, _setup("x0", "fixed_small", dtype=torch.float32)[2])


# ----------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("flag", ["--compile", "--no-compile", None])
def test_cli_sample_compile_flag_compiles_the_whole_step(monkeypatch, tmp_path, capsys, flag):
    """``diffusion-core sample --compile`` compiles the samplers' step (network and update), once, and nothing
    else, never the network alone; without the flag on the CPU nothing is compiled. torch.compile is spied on and given the
    eager backend (the CLI's numerics against eager are checked in test_cli.py)."""
    from pathlib import Path

    from diffusion_core.cli import main

    compiled_fns = []
    real_compile = torch.compile

    def spy(fn, **kw):
        compiled_fns.append((fn, kw))
        return real_compile(fn, backend="eager", fullgraph=kw["fullgraph"], dynamic=kw["dynamic"])

    monkeypatch.setattr(torch, "compile", spy)  # every compile shows up here: the network alone would too
    ckpt = Path(__file__).resolve().parents[1] / "docs/examples/checkpoints/swiss-roll/checkpoint.safetensors"
    out = tmp_path / "s.png"
    argv = ["sample", "--checkpoint", str(ckpt), "--out", str(out), "--num", "4", "--steps", "3", "--device", "cpu",
            "--no-progress"] + ([flag] if flag else [])
    torch._dynamo.reset()
    assert main(argv) == 0, capsys.readouterr().err
    assert out.is_file()
    if flag == "--compile":
        assert [(fn.__name__, kw) for fn, kw in compiled_fns] == [("step", {"fullgraph": True, "dynamic": False,
                                                                              "mode": None})]
    else:
        assert compiled_fns == []
