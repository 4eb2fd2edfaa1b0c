"""Fast ODE solvers (DPM-Solver++(2M), EDM's Heun sampler) against closed-form facts, on the CPU.

The data are the 1-D Gaussian mixtures of tests/oracles.py, whose exact noise predictor ``Mixture.eps_model`` is
what the solvers call (at integer timesteps). For the references the same data's denoiser is used in EDM's
variables, at any noise level (``Mixture.denoise``, written in those variables): with xb = x0 + sig * eps
(xb = x_t / alpha, sig = sigma_t / alpha_t),

    D(xb; sig) = E[x0 | xb] = sum_k r_k (mu_k + sd_k^2 / (sd_k^2 + sig^2) (xb - mu_k)),
    r_k ∝ w_k N(xb; mu_k, sd_k^2 + sig^2),

the responsibility-weighted per-component Gaussian posterior means. The probability-flow ODE is then
d xb / d sig = (xb - D(xb; sig)) / sig (EDM eq. 1 and 3), i.e. d xb / du = xb - D(xb; e^u) with u = log sig.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy import integrate

import diffusion_core.samplers as samplers
import diffusion_core.sampling as sampling
from diffusion_core import (Diffusion, NoiseSchedule, ddim_sample, ddpm_sample, dpmpp_2m_sample, heun_sample,
                            spaced_timesteps)
from diffusion_core.errors import InvalidInput, InvalidInputType
from oracles import BIMODAL, GAUSS, stratified_normal
from support import fake_cuda_graphs

pytestmark = pytest.mark.usefixtures("one_thread")  # small elementwise ops

# Heun from the schedule's own top index, as DPM-Solver++ and DDIM start: the grids the tests below describe.
# (heun_sample's default starts lower, at EDM's sigma_max = 80; test_heun_default_grid checks that one.)
heun_from_top = functools.partial(heun_sample, sigma_max=None)


def edm_sigmas(schedule: NoiseSchedule) -> np.ndarray:
    """sigma_t / alpha_t = sqrt((1 - alpha_bar) / alpha_bar) of every index, float64."""
    ab = torch.cumprod(1 - schedule._betas64, 0).numpy()
    return np.sqrt((1 - ab) / ab)


def spy(model, calls: list):
    def wrapped(x, t):
        calls.append(t.clone())
        return model(x, t)
    return wrapped


# ----------------------------------------------------------------------------- the closed forms agree
def test_reference_denoiser_matches_the_mixtures_noise_predictor():
    """The references below use ``Mixture.denoise`` at any noise level; the solvers call ``Mixture.eps_model`` at
    integer timesteps. At those they are the same function: x0_hat = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab) = D(x_t /
    sqrt(ab); sqrt((1 - ab) / ab))."""
    full = NoiseSchedule.linear(1000, dtype=torch.float64)
    model, sig = BIMODAL.eps_model(full), edm_sigmas(full)
    x = torch.linspace(-3, 3, 41, dtype=torch.float64).reshape(-1, 1)
    for t in (0, 1, 10, 250, 999):
        ab = full.alphas_cumprod[t].item()
        x0 = (x - math.sqrt(1 - ab) * model(x, torch.full((41,), t))) / math.sqrt(ab)
        np.testing.assert_allclose(x0[:, 0].numpy(), BIMODAL.denoise(x[:, 0].numpy() / math.sqrt(ab), sig[t]),
                                   rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- orders of convergence
NFES = [5, 10, 20, 40, 80, 160]
FIT_FROM = 20  # the slope is fitted over NFE >= 20: the asymptotic range (see the test's docstring)


def test_orders_of_convergence(capsys):
    """DDIM is first order, DPM-Solver++(2M) and Heun second order, in the number of network calls (NFE).

    Setup: the bimodal mixture 0.3 N(-1, 0.3^2) + 0.7 N(0.8, 0.4^2), the linear schedule with T = 1000, float64,
    x_T the 32 quantiles of N(0, 1), every solver on the ``"log-snr"`` spacing (uniform steps in lambda, rounded to
    integer timesteps), NFE = 5, 10, ..., 160 (Heun: N = NFE/2 + 1 steps, NFE = 2N - 1 = 5, 11, ..., 161).
    Error: RMS over the batch of (sample - reference).

    Reference: every spacing here visits index T-1 first and index 0 last, and every solver ends with the step
    from index 0 to clean data, x0_hat(x at index 0). So the quantity they all converge to is the probability-flow
    ODE solved exactly from sigma(T-1) down to sigma(0), then D at sigma(0). That is what the reference computes:
    scipy's DOP853 (rtol = atol = 1e-13) on d xb / du = xb - D(xb; e^u) between those two noise levels, then the
    same final D. It uses D between integer timesteps, which the solvers never do; that is still the right limit,
    because the solvers' steps are a discretization of that same continuous ODE (they only choose to evaluate it
    at the schedule's points). Solving the ODE on to sigma = 0 instead would move the target by 1.3e-4 (RMS,
    measured), an error no number of steps removes, as large as 2M's error at NFE 160; and a discrete reference
    (DDIM over all 1000 timesteps) is itself only first-order accurate: its error here, 1.6e-3, exceeds the
    second-order solvers' errors from NFE 80 on. Checked: DPM-Solver++(2M) over all 1000 timesteps is within
    1e-4 of the reference (measured 6.7e-5), and the errors keep falling at the expected rates down to ~2e-4,
    so the reference is the solvers' limit.

    Tolerance: at NFE 5-10 the second-order methods are not yet in their asymptotic range (2M's first step and,
    with fewer than 15 steps, its last two are first order; Heun's 3 steps have sigma ratios of ~125 between
    neighbours, its 6 steps ~7, and its error falls faster than second order there: local slopes 4.0 and 2.9).
    From NFE 20 on, the local slopes (between neighbouring NFEs) are DDIM 0.90-0.99, 2M 1.95-2.15, Heun
    2.03-2.27 (measured); so the slope fitted over
    NFE >= 20 must lie within 0.2 of the order and every local slope there within 0.35. A first-order and a
    second-order method differ by 1, so these bounds cannot confuse them (2M without its second-order term is
    DDIM; Heun without its corrector is DDIM).
    """
    full = NoiseSchedule.linear(1000, dtype=torch.float64)
    d, model = Diffusion(full), BIMODAL.eps_model(full)
    x_T = stratified_normal(32).double()
    sig = edm_sigmas(full)
    ab_first = full.alphas_cumprod[-1].item()
    sol = integrate.solve_ivp(lambda u, y: y - BIMODAL.denoise(y, math.exp(u)), (math.log(sig[-1]), math.log(sig[0])),
                              x_T[:, 0].numpy() / math.sqrt(ab_first), method="DOP853", rtol=1e-13, atol=1e-13)
    assert sol.success
    reference = BIMODAL.denoise(sol.y[:, -1], sig[0])

    def error(result) -> float:
        return float(np.sqrt(np.mean((result.sample[:, 0].numpy() - reference) ** 2)))

    kw = dict(spacing="log-snr", progress=False)
    runs = {"DDIM": [], "DPM-Solver++(2M)": [], "Heun": []}
    for nfe in NFES:
        runs["DDIM"].append((nfe, error(ddim_sample(model, d, x_T, steps=nfe, **kw))))
        runs["DPM-Solver++(2M)"].append((nfe, error(dpmpp_2m_sample(model, d, x_T, steps=nfe, **kw))))
        n = nfe // 2 + 1
        runs["Heun"].append((2 * n - 1, error(heun_from_top(model, d, x_T, steps=n, **kw))))
    assert error(dpmpp_2m_sample(model, d, x_T, steps=1000, progress=False)) < 1e-4

    expected = {"DDIM": 1.0, "DPM-Solver++(2M)": 2.0, "Heun": 2.0}
    lines, fits = [], {}
    for name, pts in runs.items():
        nfe, err = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
        local = -np.diff(err) / np.diff(nfe)
        fit_range = np.array([p[0] for p in pts]) >= FIT_FROM
        fits[name] = -np.polyfit(nfe[fit_range], err[fit_range], 1)[0]
        lines.append(f"{name:17s} " + "  ".join(f"{n:3d}: {e:.2e}" for n, e in pts)
                     + f"   order {fits[name]:.2f} (local slopes {', '.join(f'{s:.2f}' for s in local)})")
    with capsys.disabled():
        print("\nRMS error vs NFE (bimodal mixture, linear T=1000, log-snr spacing); order fitted over NFE >= 20:")
        print("\n".join(lines))
    for name, pts in runs.items():
        p = expected[name]
        assert abs(fits[name] - p) <= 0.2, (name, fits[name])
        nfe, err = np.log([q[0] for q in pts]), np.log([q[1] for q in pts])
        local = (-np.diff(err) / np.diff(nfe))[np.array([q[0] for q in pts])[:-1] >= FIT_FROM]
        assert np.all(np.abs(local - p) <= 0.35), (name, local)
    # and per network call, DPM-Solver++(2M) beats DDIM at every NFE, Heun from NFE 40 on (not before, here)
    assert all(b[1] < a[1] for a, b in zip(runs["DDIM"], runs["DPM-Solver++(2M)"]))
    assert all(h[1] < a[1] for a, h in zip(runs["DDIM"], runs["Heun"]) if a[0] >= 40)


# ----------------------------------------------------------------------------- the algorithms, re-implemented
def _visited(full: NoiseSchedule, steps: int, spacing: str) -> list[int]:
    ab = torch.cumprod(1 - full._betas64, 0)
    return spaced_timesteps(full.num_timesteps, steps, spacing, alphas_cumprod=ab).flip(0).tolist()


@pytest.mark.parametrize("lower_order_final", [True, False])
@pytest.mark.parametrize("spacing", ["linspace", "karras"])
def test_dpmpp_2m_is_algorithm_2_of_the_paper(spacing, lower_order_final):
    """DPM-Solver++(2M) as Algorithm 2 of Lu et al. 2022 states it, written here in numpy with the closed-form
    x_theta = D, on the visited timesteps t_0 > ... > t_{N-1} and then clean data (lambda = +inf), first order at
    the first and the last step, and (lower_order_final, N < 15) at the step into t_{N-1}. Non-uniform steps in
    lambda (linspace) exercise r_i = h_{i-1} / h_i."""
    full = NoiseSchedule.linear(1000, dtype=torch.float64)
    model, ab_all = GAUSS.eps_model(full), torch.cumprod(1 - full._betas64, 0).numpy()
    x_T = stratified_normal(16).double()
    N = 12
    ts = _visited(full, N, spacing)
    alpha = [math.sqrt(ab_all[t]) for t in ts] + [1.0]
    sigma = [math.sqrt(1 - ab_all[t]) for t in ts] + [0.0]
    lam = [math.log(a / s) for a, s in zip(alpha[:-1], sigma[:-1])] + [math.inf]
    x = x_T[:, 0].numpy().copy()
    x0_prev = None
    for i in range(N):  # from t_i to t_{i+1} (clean data after t_{N-1})
        x0 = GAUSS.denoise(x / alpha[i], sigma[i] / alpha[i])
        h = lam[i + 1] - lam[i]
        if x0_prev is None or i == N - 1 or (lower_order_final and i == N - 2):
            D = x0
        else:
            r = (lam[i] - lam[i - 1]) / h
            D = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
        x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * (math.exp(-h) - 1) * D
        x0_prev = x0
    ours = dpmpp_2m_sample(model, Diffusion(full), x_T, steps=N, spacing=spacing, progress=False,
                           lower_order_final=lower_order_final).sample
    np.testing.assert_allclose(ours[:, 0].numpy(), x, rtol=1e-10, atol=1e-10)
    if lower_order_final:  # from 15 steps on, lower_order_final changes nothing
        a, b = (dpmpp_2m_sample(model, Diffusion(full), x_T, steps=15, spacing=spacing, progress=False,
                                lower_order_final=lof).sample for lof in (True, False))
        assert torch.equal(a, b)


@pytest.mark.parametrize("spacing", ["karras", "linspace"])
def test_heun_is_edm_algorithm_1(spacing):
    """EDM's Algorithm 1 (S_churn = 0) written here in numpy on xb = x / alpha with the closed-form D and the
    visited timesteps' sigmas, then sigma_N = 0 (Euler only); the sample is xb at sigma = 0 (alpha = 1 there)."""
    full = NoiseSchedule.linear(1000, dtype=torch.float64)
    model, sig_all = BIMODAL.eps_model(full), edm_sigmas(full)
    x_T = stratified_normal(16).double()
    N = 8
    sig = [sig_all[t] for t in _visited(full, N, spacing)] + [0.0]
    xb = x_T[:, 0].numpy() * math.sqrt(1 + sig[0] ** 2)  # x_T / alpha, alpha = 1 / sqrt(1 + sigma^2)
    for i in range(N):
        d_i = (xb - BIMODAL.denoise(xb, sig[i])) / sig[i]
        x_next = xb + (sig[i + 1] - sig[i]) * d_i
        if sig[i + 1] != 0:
            d_next = (x_next - BIMODAL.denoise(x_next, sig[i + 1])) / sig[i + 1]
            x_next = xb + (sig[i + 1] - sig[i]) * (0.5 * d_i + 0.5 * d_next)
        xb = x_next
    ours = heun_from_top(model, Diffusion(full), x_T, steps=N, spacing=spacing, progress=False).sample
    np.testing.assert_allclose(ours[:, 0].numpy(), xb, rtol=1e-10, atol=1e-10)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dpmpp_2m_matches_diffusers():
    """Against diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, final_sigmas_type="zero": the last step
    to sigma = 0, first order, as here), on the same visited timesteps (diffusers' own linspace, which never
    visits index 0), the same predictor, float64 state; ours with lower_order_final=False (diffusers' own flag
    only acts on its final step, which goes to sigma = 0 and is first order anyway). diffusers keeps its sigmas
    in float32: agreement ~1e-7."""
    diffusers = pytest.importorskip("diffusers")
    full = NoiseSchedule.linear(1000, dtype=torch.float64)
    model = BIMODAL.eps_model(full)
    x_T = stratified_normal(16).double()
    for N in (5, 10, 20):
        sched = diffusers.DPMSolverMultistepScheduler(
            num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
            algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", lower_order_final=True)
        sched.set_timesteps(N)
        x = x_T.clone()
        for t in sched.timesteps:
            x = sched.step(model(x, torch.full((16,), int(t))), t, x).prev_sample
        keep = torch.tensor(sorted(int(t) for t in sched.timesteps))
        ours = dpmpp_2m_sample(model, Diffusion(full.respace(keep)), x_T, steps=N, progress=False,
                               lower_order_final=False).sample
        torch.testing.assert_close(ours, x.double(), rtol=0, atol=5e-6)


# ----------------------------------------------------------------------------- first order = DDIM
@pytest.mark.parametrize("spacing", ["linspace", "log-snr"])
def test_one_step_is_ddims_one_step(spacing):
    """With one step, both solvers take only the step to clean data: x0_hat(x_T) at the one visited index,
    which is DDIM's one step, bit for bit."""
    full = NoiseSchedule.cosine(1000, dtype=torch.float64)
    d, model = Diffusion(full), BIMODAL.eps_model(full)
    x_T = torch.randn(64, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ddim = ddim_sample(model, d, x_T, steps=1, spacing=spacing, progress=False).sample
    calls: list = []
    for fn in (dpmpp_2m_sample, heun_from_top):
        calls.clear()
        out = fn(spy(model, calls), d, x_T, steps=1, spacing=spacing, progress=False).sample
        assert torch.equal(out, ddim) and len(calls) == 1


def test_first_steps_are_ddim_steps():
    """DPM-Solver++'s first step is first order, which is DDIM: sigma_s/sigma_t x - alpha_s (e^-h - 1) x0_hat
    = sqrt(ab_s) x0_hat + sqrt(1 - ab_s) eps_hat (Lu et al. 2022, sec. 4.1). Heun's Euler predictor is DDIM's
    step too: its second network call of the first step gets exactly DDIM's x at the next timestep (in float64,
    equal up to rounding of the two algebraically equal formulas)."""
    full = NoiseSchedule.linear(1000, dtype=torch.float64)
    d, model = Diffusion(full), BIMODAL.eps_model(full)
    x_T = torch.randn(64, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for spacing in ("linspace", "karras"):
        ddim = ddim_sample(model, d, x_T, steps=10, spacing=spacing, progress=False, return_trajectory=True)
        dpm = dpmpp_2m_sample(model, d, x_T, steps=10, spacing=spacing, progress=False, return_trajectory=True)
        torch.testing.assert_close(dpm.trajectory[1], ddim.trajectory[1], rtol=1e-12, atol=1e-12)
        assert torch.equal(dpm.pred_x0[0], ddim.pred_x0[0])
        assert not torch.allclose(dpm.trajectory[2], ddim.trajectory[2], rtol=1e-6, atol=0)  # then second order

        inputs: list = []

        def recording(x, t):
            inputs.append(x.clone())
            return model(x, t)

        heun = heun_from_top(recording, d, x_T, steps=10, spacing=spacing, progress=False, return_trajectory=True)
        torch.testing.assert_close(inputs[1], ddim.trajectory[1], rtol=1e-12, atol=1e-12)  # the Euler predictor
        assert torch.equal(heun.pred_x0[0], ddim.pred_x0[0])
        assert not torch.allclose(heun.trajectory[1], ddim.trajectory[1], rtol=1e-6, atol=0)  # then corrected


# ----------------------------------------------------------------------------- where the network is evaluated
@pytest.mark.parametrize("spacing", ["linspace", "trailing", "log-snr", "karras"])
def test_network_is_called_only_at_the_schedules_timesteps(spacing):
    """The solvers evaluate the network at the visited indices' time inputs and nowhere else: DPM-Solver++(2M)
    once per visited timestep, in decreasing order; Heun at t_0, then (t_1 [corrector], t_1 [next step]), ...,
    t_{N-1}: 2N - 1 calls. Also through an already respaced diffusion (100 of 1000 steps, trailing), where the
    time inputs are the ORIGINAL timesteps of the kept indices; every call has one long timestep for the batch."""
    full = NoiseSchedule.linear(1000, dtype=torch.float64)
    model = GAUSS.eps_model(full)
    x_T = torch.randn(8, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for base in (full, full.spaced(100, "trailing")):
        allowed = set(base.timesteps.tolist())
        for N in (1, 2, 7):
            visited = base.timesteps[_visited(base, N, spacing)].tolist()
            calls: list = []
            res = dpmpp_2m_sample(spy(model, calls), Diffusion(base), x_T, steps=N, spacing=spacing, progress=False,
                                  return_trajectory=True)
            assert [c[0].item() for c in calls] == visited
            assert res.trajectory.shape == (N + 1, 8, 1) and res.pred_x0.shape == (N, 8, 1)
            seen = list(calls)
            calls.clear()
            res = heun_from_top(spy(model, calls), Diffusion(base), x_T, steps=N, spacing=spacing, progress=False,
                              return_trajectory=True)
            assert [c[0].item() for c in calls] == [visited[0]] + [v for v in visited[1:] for _ in (0, 1)]
            assert len(calls) == 2 * N - 1 and res.trajectory.shape == (N + 1, 8, 1)
            for c in seen + calls:
                assert c.dtype == torch.long and c.shape == (8,) and torch.equal(c, c[:1].expand(8))
                assert c[0].item() in allowed


def test_heun_default_grid_starts_at_edm_sigma_max():
    """heun_sample's default grid is EDM's (Karras et al. 2022, table 1): eq. 5's spacing (rho = 7) rounded to the
    schedule's indices, from the last index whose sigma/alpha is at most sigma_max = 80 down to index 0; the
    network is first called there, 2N - 1 calls in all."""
    full = NoiseSchedule.linear(1000, dtype=torch.float64)
    top = int(np.nonzero(edm_sigmas(full) <= 80)[0].max())
    assert top < 999  # this schedule's last index has sigma/alpha ~ 157: the default starts below it
    x_T = torch.randn(8, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls: list = []
    heun_sample(spy(GAUSS.eps_model(full), calls), Diffusion(full), x_T, steps=6, progress=False)
    ab = torch.cumprod(1 - full._betas64, 0)
    visited = spaced_timesteps(top + 1, 6, "karras", alphas_cumprod=ab[:top + 1]).flip(0).tolist()
    assert [c[0].item() for c in calls] == [visited[0]] + [v for v in visited[1:] for _ in (0, 1)]
    assert visited[0] == top and visited[-1] == 0


@pytest.mark.parametrize("spacing", ["log-snr", "karras"])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_noise_level_spacings_work_for_ddim_and_ddpm(sampler, spacing):
    full = NoiseSchedule.linear(1000)
    calls: list = []
    x_T = torch.randn(8, 1, generator=torch.Generator().manual_seed(0))
    fn = ddim_sample if sampler == "ddim" else ddpm_sample
    res = fn(spy(GAUSS.eps_model(full), calls), Diffusion(full), x_T, steps=10, spacing=spacing, progress=False,
             generator=torch.Generator().manual_seed(1))
    assert [c[0].item() for c in calls] == _visited(full, 10, spacing) and torch.isfinite(res.sample).all()


# ----------------------------------------------------------------------------- determinism, dtypes, options
@pytest.mark.parametrize("fn", [dpmpp_2m_sample, heun_sample])
def test_deterministic_and_generator_free(fn):
    full = NoiseSchedule.cosine(1000)
    d, model = Diffusion(full), BIMODAL.eps_model(full)
    x_T = torch.randn(64, 1, generator=torch.Generator().manual_seed(0))
    a = fn(model, d, x_T, steps=8, progress=False, return_trajectory=True)
    b = fn(model, d, x_T.clone(), steps=8, progress=False, generator=torch.Generator().manual_seed(5),
           return_trajectory=True)
    assert torch.equal(a.sample, b.sample) and torch.equal(a.trajectory, b.trajectory)
    assert torch.equal(a.pred_x0, b.pred_x0) and a.sample.dtype == torch.float32
    assert torch.equal(a.trajectory[0], x_T) and torch.equal(a.trajectory[-1], a.sample)
    assert torch.equal(a.pred_x0[-1], a.sample)  # the last step is the last x0 prediction
    assert fn(model, d, x_T, steps=8, progress=False).trajectory is None


@pytest.mark.parametrize("fn", [dpmpp_2m_sample, heun_sample])
def test_image_batches_clipping_and_v_parameterization(fn):
    """Any batch-first shape; ``diffusion``'s clip rule applies to every x0 prediction (static: within [-1, 1]);
    the v parameterization reads the same predictor (converted) to the same samples as eps."""
    full = NoiseSchedule.linear(100, dtype=torch.float64)
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = fn(lambda x, t: 3 * torch.ones_like(x), Diffusion(full, clip="static"), x_T, steps=5, progress=False,
             return_trajectory=True)
    assert res.sample.shape == x_T.shape and res.pred_x0.abs().max().item() <= 1
    eps_model = GAUSS.eps_model(full)
    ab = full.alphas_cumprod

    def v_model(x, t):  # v = sqrt(ab) eps - sqrt(1 - ab) x0 = (eps - sqrt(1 - ab) x) / sqrt(ab)
        a = ab[t].reshape(-1, 1)
        return (eps_model(x, t) - (1 - a).sqrt() * x) / a.sqrt()

    x1 = torch.randn(16, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out_eps = fn(eps_model, Diffusion(full), x1, steps=6, progress=False).sample
    out_v = fn(v_model, Diffusion(full, "v"), x1, steps=6, progress=False).sample
    torch.testing.assert_close(out_v, out_eps, rtol=1e-9, atol=1e-9)


def test_zero_terminal_snr():
    """With zero terminal SNR (alpha_bar = 0 at the last index, lambda = -inf), DPM-Solver++'s first step
    h = +inf is still finite (x_next = alpha_next x0_hat, the x0 prediction re-noised by nothing) and the second
    step's second-order term vanishes; Heun's x / alpha is undefined there, a clear error that says so."""
    full = NoiseSchedule.linear(1000, dtype=torch.float64).rescale_zero_terminal_snr()
    d = Diffusion(full, "v")
    x_T = torch.randn(8, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = lambda x, t: -0.5 * x  # noqa: E731  (a fixed v-prediction: any finite output)
    res = dpmpp_2m_sample(model, d, x_T, steps=6, progress=False, return_trajectory=True)
    assert torch.isfinite(res.trajectory).all()
    with pytest.raises(InvalidInput, match=r"sample_heun works in EDM's x/alpha, undefined where alpha = 0"):
        heun_from_top(model, d, x_T, steps=6, spacing="linspace", progress=False)
    # and the noise-level spacings over the whole schedule need alpha_bar > 0 everywhere
    for spacing in ("karras", "log-snr"):
        with pytest.raises(InvalidInput, match=f"spacing '{spacing}' needs alphas_cumprod > 0 at every index"):
            heun_from_top(model, d, x_T, steps=6, spacing=spacing, progress=False)
    # heun's default grid (Karras spacing from sigma/alpha = 80, EDM's) starts below the zero-SNR index: it works
    assert torch.isfinite(heun_sample(model, d, x_T, steps=6, progress=False).sample).all()


def test_zero_terminal_snr_one_heun_step_is_the_x0_prediction():
    """One Heun step (from the last index of a zero-terminal-SNR schedule) is the final x0 prediction alone: no
    x / alpha is needed, so it works there."""
    full = NoiseSchedule.linear(1000, dtype=torch.float64).rescale_zero_terminal_snr()
    x_T = torch.randn(8, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = lambda x, t: -0.5 * x  # noqa: E731  (a fixed v-prediction: any finite output)
    out = heun_from_top(model, Diffusion(full, "v"), x_T, steps=1, spacing="trailing", progress=False).sample
    assert torch.isfinite(out).all()


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("fn", [dpmpp_2m_sample, heun_sample])
def test_errors_are_one_clear_line(fn):
    full = NoiseSchedule.linear(10)
    d, x_T = Diffusion(full), torch.zeros(4, 2)
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    cases = [
        (dict(steps=0), InvalidInput, r"steps must be an int in \[1, 10\], got 0"),
        (dict(steps=11), InvalidInput, r"steps must be an int in \[1, 10\], got 11"),
        (dict(steps=2.5), InvalidInputType, "steps must be a positive int, got 2.5"),
        (dict(steps=None), InvalidInputType, "steps must be a positive int, got None"),
        (dict(steps=5, spacing="uniform"), InvalidInput,
         "spacing must be one of 'linspace', 'leading', 'trailing', 'log-snr', 'karras', got 'uniform'"),
        (dict(steps=10, spacing="uniform"), InvalidInput, "spacing must be one of"),  # checked even for all steps
        (dict(steps=3, compile="yes"), InvalidInputType, "compile must be a bool"),
    ]
    for kw, err, match in cases:
        with pytest.raises(err, match=match) as info:
            fn(model, d, x_T, progress=False, **kw)
        assert "\n" not in str(info.value)
    with pytest.raises(InvalidInputType, match="x_T must be a floating-point torch.Tensor"):
        fn(model, d, torch.zeros(4, 2, dtype=torch.long), steps=3, progress=False)
    with pytest.raises(InvalidInputType, match="diffusion must be a Diffusion"):
        fn(model, full, x_T, steps=3, progress=False)
    if fn is dpmpp_2m_sample:
        with pytest.raises(InvalidInputType, match="lower_order_final must be a bool, got str"):
            fn(model, d, x_T, steps=3, progress=False, lower_order_final="yes")


# ----------------------------------------------------------------------------- compile and the GPU rules
@pytest.mark.parametrize("fn", [dpmpp_2m_sample, heun_sample])
def test_compile_captures_each_step_as_one_graph(monkeypatch, fn):
    """``compile=True`` goes through sampling.py's ``_compiled``: torch.compile(step, fullgraph=True, dynamic=False)
    on the step function (network and update) and on the final step, here with dynamo's eager backend (no
    inductor: the capture is what can fail, with a graph break, a host read or a recompile). With
    ``error_on_recompile``: exactly two graphs for the whole loop, reused by a second run, and the samples
    are the eager samples bit for bit."""
    from torch._dynamo.utils import counters

    real_compile, compiled = torch.compile, []

    def eager_backend(f, **kw):
        compiled.append((f.__name__, kw))
        return real_compile(f, backend="eager", fullgraph=kw["fullgraph"], dynamic=kw["dynamic"])

    monkeypatch.setattr(torch, "compile", eager_backend)
    full = NoiseSchedule.linear(100)
    model = GAUSS.eps_model(full)
    x_T = torch.randn(16, 1, generator=torch.Generator().manual_seed(0))
    eager = fn(model, Diffusion(full), x_T, steps=6, progress=False, return_trajectory=True)
    torch._dynamo.reset()
    counters.clear()
    with torch._dynamo.config.patch(error_on_recompile=True):
        res = fn(model, Diffusion(full), x_T, steps=6, progress=False, return_trajectory=True, compile=True)
        assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])
    torch._dynamo.reset()
    assert [name for name, _ in compiled] == ["step", "last"]
    assert all(kw == {"fullgraph": True, "dynamic": False, "mode": None} for _, kw in compiled)
    assert torch.equal(res.trajectory, eager.trajectory) and torch.equal(res.pred_x0, eager.pred_x0)


@pytest.mark.parametrize("fn", [dpmpp_2m_sample, heun_sample])
def test_loop_keeps_nothing_a_cuda_graph_returns(monkeypatch, fn):
    """DPM-Solver++ feeds each step's x0 prediction to the next step: under CUDA graphs that output buffer is
    overwritten by the next replay, so the loop must copy it (and the state) first. With fake graphs that
    overwrite and poison their outputs, the samples must equal the eager ones exactly."""
    fakes, marks = fake_cuda_graphs(monkeypatch, sampling)
    full = NoiseSchedule.linear(100, dtype=torch.float64)
    model, d = BIMODAL.eps_model(full), Diffusion(full, "x0")
    x0_model = lambda x, t: torch.tanh(x)  # noqa: E731  (x0 output: the network's tensor is the prediction)
    x_T = torch.randn(16, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for m, dd in ((model, Diffusion(full)), (x0_model, d)):
        eager = fn(m, dd, x_T, steps=8, progress=False, return_trajectory=True)
        fakes.clear()
        marks.clear()
        graphed = fn(m, dd, x_T, steps=8, progress=False, return_trajectory=True, compile=True)
        assert [f.calls for f in fakes] == [7, 1] and len(marks) == 8
        assert torch.equal(graphed.trajectory, eager.trajectory) and torch.equal(graphed.pred_x0, eager.pred_x0)
        kept = graphed.sample.clone()
        fakes[1](x_T, torch.zeros(1, dtype=torch.long), torch.zeros_like(x_T), None)  # another replay
        assert torch.equal(graphed.sample, kept)


@pytest.mark.parametrize("fn", [dpmpp_2m_sample, heun_sample])
def test_network_with_static_output_buffers(fn):
    """A network compiled alone with CUDA graphs (torch.compile(mode="reduce-overhead")) returns the same output
    buffer at every call, overwritten. With the x0 parameterization that buffer IS x0_hat, which the solvers keep across calls
    (2M's previous prediction; Heun's first prediction after the corrector's call; the sample itself). Here a
    network that writes into one buffer must give the same results as the plain one, and the returned sample
    must not be that buffer."""
    full = NoiseSchedule.linear(100, dtype=torch.float64)
    d = Diffusion(full, "x0")
    plain = lambda x, t: torch.tanh(x) * (1 + t.reshape(-1, 1) / 100)  # noqa: E731

    class StaticBuffer:
        def __init__(self):
            self.buf = None

        def __call__(self, x, t):
            if self.buf is None:
                self.buf = torch.empty_like(x)
            return self.buf.copy_(plain(x, t))

    x_T = torch.randn(16, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = fn(plain, d, x_T, steps=6, progress=False, return_trajectory=True)
    net = StaticBuffer()
    out = fn(net, d, x_T, steps=6, progress=False, return_trajectory=True)
    assert torch.equal(out.trajectory, ref.trajectory) and torch.equal(out.pred_x0, ref.pred_x0)
    kept = out.sample.clone()
    net(x_T, torch.zeros(16, dtype=torch.long))
    assert torch.equal(out.sample, kept)


@pytest.mark.parametrize("fn", [dpmpp_2m_sample, heun_sample])
def test_solver_loops_never_sync(monkeypatch, fn):
    """No op in the loop forces a device-to-host read (test_sync_free.py's TorchDispatchMode, which sees every
    aten call on any device), but the documented check of the result after it. The coefficient tables are built
    before the loop."""
    from test_sync_free import NoHostSync

    from diffusion_core.nn import MLPConfig, build_mlp

    mode = NoHostSync()
    real_run = samplers.run  # the one sampling loop (diffusion_core.sampling.run), as the samplers call it

    def run_under_mode(*args, **kwargs):
        with mode:
            return real_run(*args, **kwargs)

    monkeypatch.setattr(samplers, "run", run_under_mode)
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(dim=2, hidden=32, depth=2)).eval()
    d = Diffusion(NoiseSchedule.cosine(100), "v", clip="static")
    out = fn(model, d, torch.randn(16, 2), steps=10, progress=False, return_trajectory=True)
    assert out.trajectory.shape == (11, 16, 2) and mode.checked_ops > 10 * 10
    # the one read-back: the result checked for NaN after the loop (the one loop, sampling.run, owns that check)
    assert mode.allowed == {"non-finite check": 1}
