"""The samplers' step as one pure tensor function, and ``compile=True``, which compiles that whole step
(network and update) into one graph: on CUDA, one CUDA graph replay per step.

* The restructured eager samplers give bit-identical results to the old eager step, re-implemented here
  from diffusion_core/samplers.py as of commit 2a6c2e2 (before the restructuring) as an independent reference,
  also through the Denoiser (the network read in one place, the clip rule applied by the sampler, ``clip=``,
  ``labels=``).
* ``compile=True`` gives the eager samples up to float32 rounding, compiles one graph for the whole loop
  (no recompile, no graph break), and that graph holds the network AND the update.
* The loop keeps nothing a compiled graph returned, as CUDA graphs require (checked on the CPU with a fake
  "graph" that writes its outputs into the same buffers at every call).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import diffusion_core.samplers as samplers
from diffusion_core import Diffusion, NoiseSchedule, ddim_sample, ddpm_sample
from diffusion_core.denoiser import Denoiser
from diffusion_core.errors import InvalidInputType
from diffusion_core.guidance import ClassifierFreeGuidance
from diffusion_core.nn import MLPDenoiser
from support import fake_cuda_graphs


@pytest.fixture(autouse=True)
def _one_thread():
    # The test machine has 2 busy cores; torch's thread pool only adds synchronization to these small ops.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


def _setup(parameterization="eps", variance="fixed_large", clip="none", image=True, T=100, dtype=torch.float32):
    d = Diffusion(NoiseSchedule.linear(T, dtype=dtype), parameterization, variance, clip)
    C = 3
    model = TinyNet(C, d.output_channels(C)).to(dtype).eval()
    shape = (4, C, 5, 5) if image else (16, C)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    return model, d, x_T


# ----------------------------------------------------------------------------- the old eager step, as reference
# Copied from diffusion_core/samplers.py before the restructuring (the per-step functions and _run): schedule
# values for DDIM read with a Python int, the noise drawn inside the step, no noise at i == 0 by an `if`.
# `noise_dtype` (only for the float64 accuracy reference below) draws the noise in that dtype and casts it.

def _old_schedule_for(diffusion, steps, spacing):
    return diffusion if steps is None or steps == diffusion.num_timesteps else diffusion.respaced(steps, spacing)


def _old_run(step, d, x):
    B, n = x.shape[0], d.num_timesteps
    states, preds = [x], []
    for i in range(n - 1, -1, -1):
        t = torch.full((B,), i, dtype=torch.long, device=x.device)
        x, x0 = step(i, t, x)
        states.append(x)
        preds.append(x0.clone())
    return x, torch.stack(states), torch.stack(preds)


def old_ddpm_sample(model, diffusion, x_T, *, steps=None, spacing="linspace", generator=None, noise_dtype=None):
    d = _old_schedule_for(diffusion, steps, spacing)
    ts = d.schedule.timesteps

    def step(i, t, x):
        output = model(x, ts.index_select(0, t)).to(x.dtype)
        p = d.p_mean_variance(output, x, t)
        if i == 0:
            return p.mean, p.pred_x0
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=noise_dtype or x.dtype).to(x.dtype)
        return p.mean + torch.exp(0.5 * p.log_variance).to(x.dtype) * z, p.pred_x0

    return _old_run(step, d, x_T)


def old_ddim_sample(model, diffusion, x_T, *, steps=50, eta=0.0, spacing="linspace", generator=None, noise_dtype=None):
    d = _old_schedule_for(diffusion, steps, spacing)
    s = d.schedule
    ts = s.timesteps

    def step(i, t, x):
        output = model(x, ts.index_select(0, t)).to(x.dtype)
        eps, x0 = d.predict(d.split_output(output, x)[0], x, t)
        ab, ab_prev = s.alphas_cumprod[i].to(x.dtype), s.alphas_cumprod_prev[i].to(x.dtype)
        sigma = eta * s.posterior_variance[i].to(x.dtype).sqrt()
        x_prev = ab_prev.sqrt() * x0 + torch.sqrt((1 - ab_prev - sigma**2).clamp(min=0)) * eps
        if eta > 0 and i > 0:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=noise_dtype or x.dtype).to(x.dtype)
            x_prev = x_prev + sigma * z
        return x_prev, x0

    return _old_run(step, d, x_T)


def _assert_same(new, old):
    sample, traj, pred = old
    assert torch.equal(new.sample, sample)
    assert torch.equal(new.trajectory, traj)
    assert torch.equal(new.pred_x0, pred)


# ----------------------------------------------------------------------------- bit-identical to the old step
# The new path: the sampler reads the network through a Denoiser (time lookup, cast, split, parameterization),
# then applies the clip rule itself. A plain network is wrapped; a Denoiser is used as is: both must reproduce the
# old step bit for bit.
WRAPS = {"network": lambda m: m, "denoiser": Denoiser}


@pytest.mark.parametrize("wrap", list(WRAPS))
@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large", "learned_range"])
@pytest.mark.parametrize("steps", [None, 10])
def test_ddpm_is_bit_identical_to_the_old_eager_step(parameterization, variance, steps, wrap):
    model, d, x_T = _setup(parameterization, variance, T=30 if steps is None else 100)
    g_old, g_new = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    old = old_ddpm_sample(model, d, x_T, steps=steps, generator=g_old)
    new = ddpm_sample(WRAPS[wrap](model), d, x_T, steps=steps, generator=g_new, progress=False, return_trajectory=True)
    _assert_same(new, old)
    assert torch.equal(g_new.get_state(), g_old.get_state())  # the same draws: one per step but the last


@pytest.mark.parametrize("wrap", list(WRAPS))
@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("image", [True, False], ids=["image", "flat"])
def test_ddim_is_bit_identical_to_the_old_eager_step(parameterization, eta, image, wrap):
    # 0-dim schedule scalars (old) against per-example (B, 1, ...) gathers (new): each element goes through
    # the same IEEE operations, so the results must agree bit for bit.
    model, d, x_T = _setup(parameterization, image=image)
    g_old, g_new = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    old = old_ddim_sample(model, d, x_T, steps=10, eta=eta, spacing="trailing", generator=g_old)
    new = ddim_sample(WRAPS[wrap](model), d, x_T, steps=10, eta=eta, spacing="trailing", generator=g_new,
                      progress=False, return_trajectory=True)
    _assert_same(new, old)
    assert torch.equal(g_new.get_state(), g_old.get_state())  # eta = 0 draws nothing at all


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", ["static", "dynamic"])
@pytest.mark.parametrize("how", ["diffusion", "sampler"])
def test_bit_identical_with_clipping(parameterization, clip, how):
    """Clipping moved from the prediction into the samplers: the old step clipped inside ``Diffusion.predict`` by
    ``diffusion.clip``; the new one gets the unclipped prediction and applies the rule, ``diffusion.clip`` by
    default or the sampler's ``clip=`` (here given on an unclipped diffusion). Both equal the old step with the
    clipping diffusion, bit for bit, in DDPM (learned variance) and DDIM (eta = 0.3)."""
    net, d_clip, x_T = _setup(parameterization, "learned_range", clip)
    _, d_none, _ = _setup(parameterization, "learned_range", "none")

    def model(x, t):  # mean channels x3, so that even an x0 network's x0_hat (tanh) leaves [-1, 1]
        out = net(x, t)
        return torch.cat([3 * out[:, :3], out[:, 3:]], dim=1)

    d, kw = (d_clip, {}) if how == "diffusion" else (d_none, {"clip": clip})
    old = old_ddpm_sample(model, d_clip, x_T, steps=10, generator=torch.Generator().manual_seed(3))
    assert old[2].abs().max() <= 1 + 1e-6 and not torch.equal(old[0], old_ddpm_sample(
        model, d_none, x_T, steps=10, generator=torch.Generator().manual_seed(3))[0])  # the clip does something
    new = ddpm_sample(model, d, x_T, steps=10, generator=torch.Generator().manual_seed(3), progress=False,
                      return_trajectory=True, **kw)
    _assert_same(new, old)
    old = old_ddim_sample(model, d_clip, x_T, steps=10, eta=0.3, generator=torch.Generator().manual_seed(3))
    new = ddim_sample(model, d, x_T, steps=10, eta=0.3, generator=torch.Generator().manual_seed(3), progress=False,
                      return_trajectory=True, **kw)
    _assert_same(new, old)


@pytest.mark.parametrize("clip", ["none", "static"])
def test_sampler_clip_none_on_a_clipping_diffusion_is_the_old_unclipped_step(clip):
    model, d_static, x_T = _setup("v", "fixed_small", "static")
    _, d_none, _ = _setup("v", "fixed_small", "none")
    ref = d_none if clip == "none" else d_static
    old = old_ddim_sample(model, ref, x_T, steps=10, eta=0.5, generator=torch.Generator().manual_seed(4))
    new = ddim_sample(model, d_static, x_T, steps=10, eta=0.5, clip=clip, generator=torch.Generator().manual_seed(4),
                      progress=False, return_trajectory=True)
    _assert_same(new, old)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_class_conditional_sampling_is_the_old_step_with_the_labels_bound(sampler):
    """``labels=`` reaches the network as its third argument at every step: the same samples as the old step
    over the network with those labels bound, ``lambda x, t: net(x, t, labels)``; classifier-free guidance at
    scale 1 (no guidance) is that same conditional model."""
    torch.manual_seed(0)
    net = MLPDenoiser(dim=3, hidden=16, depth=1, num_classes=3).eval()
    _, d, x_T = _setup("v", "fixed_small", "static", image=False)
    labels = torch.arange(16) % 4  # 3 is the null label: unconditional rows in the same batch
    bound = lambda x, t: net(x, t, labels)  # noqa: E731
    old_fn, fn = (old_ddpm_sample, ddpm_sample) if sampler == "ddpm" else (old_ddim_sample, ddim_sample)
    kw = {"steps": 10} if sampler == "ddpm" else {"steps": 10, "eta": 0.5}
    old = old_fn(bound, d, x_T, generator=torch.Generator().manual_seed(5), **kw)
    new = fn(net, d, x_T, labels=labels, generator=torch.Generator().manual_seed(5), progress=False,
             return_trajectory=True, **kw)
    _assert_same(new, old)
    cond = labels % 3
    old = old_fn(lambda x, t: net(x, t, cond), d, x_T, generator=torch.Generator().manual_seed(5), **kw)
    new = fn(ClassifierFreeGuidance(net, 1.0), d, x_T, labels=cond, generator=torch.Generator().manual_seed(5),
             progress=False, return_trajectory=True, **kw)
    _assert_same(new, old)


def test_last_step_ignores_its_noise_input_even_when_sigma_is_not_finite():
    # The "no noise at the last step" rule is a select on t > 0, not a multiplication by 0: the noise term at
    # t = 0 cannot leak in, even as NaN (inf * 0). A learned-variance output of 1e30 at the network's time 0
    # makes sigma_0 overflow to inf; the old sampler never looked at sigma_0, and neither may the new one.
    class HugeVarAtZero(nn.Module):
        def forward(self, x, t):
            v = torch.where(t == 0, 1e30, 0.0).reshape(-1, 1).expand_as(x)
            return torch.cat([0.1 * x, v], dim=1)

    d = Diffusion(NoiseSchedule.linear(10), variance="learned_range")
    x_T = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    x1, t0 = torch.ones_like(x_T), torch.zeros(2, dtype=torch.long)
    # log sigma_0^2 = 5e29 (log beta_1 - log beta~_2) + log beta~_2 = +inf (beta_1 > beta~_2)
    assert torch.isinf(torch.exp(0.5 * d.p_mean_variance(HugeVarAtZero()(x1, t0), x1, t0).log_variance)).all()
    res = ddpm_sample(HugeVarAtZero(), d, x_T, generator=torch.Generator().manual_seed(0), progress=False,
                      return_trajectory=True)
    old = old_ddpm_sample(HugeVarAtZero(), d, x_T, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.sample).all()
    _assert_same(res, old)


def test_compile_must_be_a_bool():
    model, d, x_T = _setup()
    for fn in (ddpm_sample, ddim_sample):
        with pytest.raises(InvalidInputType, match="compile must be a bool"):
            fn(model, d, x_T, steps=2, progress=False, compile="yes")


# ----------------------------------------------------------------------------- compile=True on the CPU
def _reference64(fn, model, d, x_T, generator_seed, **kw):
    """The old eager step in float64 (schedule, network, state), with the same float32 noise draws: the
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
    x0 predictions separately), against the old step run in float64 with the same noise, and require
    max |compiled - eager| <= 4 E (by the triangle inequality this holds whenever the compiled run's error is
    at most 3 E; measured: |compiled - eager| <= 0.9 E). E itself is checked to be float32-sized: at most 1e-5
    of the largest value (measured 1.2e-7 to 9e-7 of it; a wrong table entry or a dropped noise term would
    move samples by 1e-2 or more). The eps case's x0 predictions reach ~940 (this toy network is no denoiser,
    and 1/sqrt(alpha_bar_T) = 221 amplifies it), hence the relative bound.

    Compile count: after ``torch._dynamo.reset()``, with ``error_on_recompile`` (a recompile raises), the whole
    loop of 10 steps produces exactly one graph (``fullgraph=True`` already makes any graph break an error);
    a second run with the same arguments reuses it."""
    sampler, parameterization, rest = case.split("-", 2)
    variance = "learned_range" if "learned_range" in rest else "fixed_small"
    model, d, x_T = _setup(parameterization, variance)
    if "channels_last" in rest:
        x_T = x_T.contiguous(memory_format=torch.channels_last)  # the copies fed back must keep its strides
    if sampler == "ddpm":
        fn, old_fn, kw = ddpm_sample, old_ddpm_sample, dict(steps=10)
    else:
        fn, old_fn, kw = ddim_sample, old_ddim_sample, dict(steps=10, eta=float(rest[3:]))

    eager = fn(model, d, x_T, generator=torch.Generator().manual_seed(5), progress=False, return_trajectory=True, **kw)
    torch._dynamo.reset()
    counters.clear()
    model.require_compiled = True
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled = fn(model, d, x_T, generator=torch.Generator().manual_seed(5), progress=False,
                      return_trajectory=True, compile=True, **kw)
        assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
        again = fn(model, d, x_T, generator=torch.Generator().manual_seed(5), progress=False, compile=True, **kw)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    model.require_compiled = False
    assert torch.equal(again.sample, compiled.sample)

    _, exact_traj, exact_pred = _reference64(old_fn, model, d, x_T, 5, **kw)
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
    """``compile=True`` compiles the step, not the model: torch.compile is called once, on the step function,
    with fullgraph=True, dynamic=False and (on the CPU) no mode; dynamo captures one graph in which the returned
    x_{t-1} depends on the network's output AND on the noise input, i.e. the update is inside the graph too.
    Every one of the 10 steps ran that graph, and the network never ran eagerly (only while being traced)."""
    compile_calls, graphs, replays = [], [], []
    real_compile = torch.compile

    def capture(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm)

        def run(*args):
            replays.append(1)
            return gm.forward(*args)

        return run

    def spy(fn, **kw):
        compile_calls.append((fn, kw))
        return real_compile(fn, backend=capture, fullgraph=kw["fullgraph"], dynamic=kw["dynamic"])

    monkeypatch.setattr(torch, "compile", spy)
    model, d, x_T = _setup("v", "fixed_large")
    torch._dynamo.reset()
    counters.clear()
    model.require_compiled = True
    res = ddpm_sample(model, d, x_T, steps=10, generator=torch.Generator().manual_seed(6), progress=False,
                      return_trajectory=True, compile=True)
    model.require_compiled = False
    eager = ddpm_sample(model, d, x_T, steps=10, generator=torch.Generator().manual_seed(6), progress=False,
                        return_trajectory=True)
    torch._dynamo.reset()

    assert len(compile_calls) == 1
    fn, kw = compile_calls[0]
    assert fn is not model and fn.__name__ == "step"
    assert kw == {"fullgraph": True, "dynamic": False, "mode": None}
    assert len(graphs) == 1 and counters["stats"]["unique_graphs"] == 1 and len(replays) == 10

    gm = graphs[0]
    nodes = {n.name: n for n in gm.graph.nodes}
    # dynamo names the step's `noise` argument l_noise_ (and the closure's `denoiser` l_denoiser_...)
    (noise,) = [n for n in gm.graph.nodes if n.op == "placeholder" and n.name.strip("_").removeprefix("l_") == "noise"]
    (out,) = [n for n in gm.graph.nodes if n.op == "output"]
    x_prev, x0 = out.args[0]

    def ancestors(node):  # the node and every node it is computed from
        seen, todo = {node}, [node]
        while todo:
            n = todo.pop()
            for a in n.all_input_nodes:
                if a not in seen:
                    seen.add(a)
                    todo.append(a)
        return seen

    network = [n for n in nodes.values() if n.op == "call_function" and n.target is torch.tanh]
    assert len(network) == 1  # TinyNet's last op
    assert noise in ancestors(x_prev) and network[0] in ancestors(x_prev)
    assert any(n.target is torch.where for n in ancestors(x_prev) if n.op == "call_function")
    # the captured graph (run eagerly by this backend) computes exactly the eager step
    assert torch.equal(res.trajectory, eager.trajectory) and torch.equal(res.pred_x0, eager.pred_x0)


# ----------------------------------------------------------------------------- CUDA-graph output semantics
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_loop_keeps_nothing_a_cuda_graph_returns(monkeypatch, sampler):
    fakes, marks = fake_cuda_graphs(monkeypatch, samplers)
    model, d, x_T = _setup("x0", "fixed_small")  # x0: the network output is also returned as pred_x0
    fn = ddpm_sample if sampler == "ddpm" else ddim_sample
    kw = dict(steps=8, progress=False, return_trajectory=True)
    if sampler == "ddim":
        kw["eta"] = 0.5
    eager = fn(model, d, x_T, generator=torch.Generator().manual_seed(7), **kw)
    graphed = fn(model, d, x_T, generator=torch.Generator().manual_seed(7), compile=True, **kw)
    assert fakes[0].calls == 8 and len(marks) == 8  # one mark_step_begin per step, before the replay
    _assert_same(graphed, (eager.sample, eager.trajectory, eager.pred_x0))
    # Another "replay" (another sampling run on the same graph) must not touch what the first run returned.
    kept = graphed.sample.clone()
    fakes[0](x_T, torch.zeros(len(x_T), dtype=torch.long), torch.zeros_like(x_T))
    assert torch.equal(graphed.sample, kept)
    assert all(graphed.sample.data_ptr() != o.data_ptr() for o in fakes[0].out)
    # and the caller's x_T is never written
    assert torch.equal(x_T, _setup("x0", "fixed_small")[2])


# ----------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("flag", ["--compile", "--no-compile", None])
def test_cli_sample_compile_flag_compiles_the_whole_step(monkeypatch, tmp_path, capsys, flag):
    """``diffusion-core sample --compile`` compiles the samplers' step (network and update), once, and never the
    network alone; without the flag on the CPU nothing is compiled. torch.compile is spied on and given the
    eager backend (the CLI's numerics against eager are checked in test_cli.py)."""
    from pathlib import Path

    from diffusion_core.cli import main

    compiled_fns = []
    real_compile = torch.compile

    def spy(fn, **kw):
        compiled_fns.append((fn, kw))
        return real_compile(fn, backend="eager", fullgraph=kw["fullgraph"], dynamic=kw["dynamic"])

    monkeypatch.setattr(torch, "compile", spy)
    monkeypatch.setattr(samplers, "compile_for_sampling", lambda *a: pytest.fail("the model alone was compiled"))
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
