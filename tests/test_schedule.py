"""Noise schedules: closed-form betas, the derived tables, rescaling, respacing and timestep spacings.

Every expected value is recomputed here in float64 numpy, independently of ``schedule.py``.
"""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from diffusion_core import NoiseSchedule, spaced_timesteps

TABLES = [
    "betas",
    "alphas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "snr",
]
KINDS = ["linear", "cosine", "quadratic", "sigmoid"]
F64 = dict(dtype=torch.float64)


def np_tables(betas: np.ndarray) -> dict:
    """Ho et al. eq. 4 and 7, written out in float64 numpy."""
    b = np.asarray(betas, dtype=np.float64)
    a = 1 - b
    ac = np.cumprod(a)
    ac_prev = np.concatenate([[1.0], ac[:-1]])
    pv = b * (1 - ac_prev) / (1 - ac)
    return {
        "betas": b,
        "alphas": a,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - ac),
        "posterior_variance": pv,
        # beta~_1 = 0, so the first log is replaced by log(beta~_2) (improved DDPM)
        "posterior_log_variance_clipped": np.log(np.concatenate([pv[1:2], pv[1:]])),
        "posterior_mean_coef1": np.sqrt(ac_prev) * b / (1 - ac),
        "posterior_mean_coef2": np.sqrt(a) * (1 - ac_prev) / (1 - ac),
        "snr": ac / (1 - ac),
    }


# ----------------------------------------------------------------------------- the betas themselves
def test_linear_reproduces_ho_et_al():
    s = NoiseSchedule.linear(1000, **F64)
    np.testing.assert_allclose(s.betas.numpy(), np.linspace(1e-4, 0.02, 1000), rtol=1e-13, atol=0)
    assert s.betas[0].item() == pytest.approx(1e-4, rel=1e-15)
    assert s.betas[-1].item() == pytest.approx(0.02, rel=1e-15)
    # alpha_bar_T ~ 4e-5, which is what makes L_T ~ 1e-5 bits/dim in Ho et al. (sec. 4)
    assert 3e-5 < s.alphas_cumprod[-1].item() < 5e-5


def test_linear_end_points_scale_with_T():
    # improved-diffusion's get_named_beta_schedule: both ends scaled by 1000/T.
    s = NoiseSchedule.linear(250, **F64)
    np.testing.assert_allclose(s.betas.numpy(), np.linspace(4e-4, 0.08, 250), rtol=1e-13)
    # explicit end points override the default
    s = NoiseSchedule.linear(10, beta_start=0.1, beta_end=0.2, **F64)
    np.testing.assert_allclose(s.betas.numpy(), np.linspace(0.1, 0.2, 10), rtol=1e-14)


@pytest.mark.parametrize("T", [1000, 50])
def test_cosine_matches_nichol_dhariwal(T):
    s_ = 0.008
    s = NoiseSchedule.cosine(T, **F64)
    f = lambda t: np.cos((t / T + s_) / (1 + s_) * np.pi / 2) ** 2  # noqa: E731
    ab = f(np.arange(1, T + 1)) / f(0.0)  # alpha_bar(t) = f(t)/f(0) at the paper's steps 1..T
    ref_betas = np.minimum(1 - ab / np.concatenate([[1.0], ab[:-1]]), 0.999)
    np.testing.assert_allclose(s.betas.numpy(), ref_betas, rtol=1e-10, atol=1e-15)
    assert s.betas.max().item() <= 0.999
    # The clip at 0.999 only bites at the very end (where f(T) -> 0): before it the cumulative
    # product is exactly the paper's f(t)/f(0).
    clipped = np.nonzero(1 - ab / np.concatenate([[1.0], ab[:-1]]) > 0.999)[0]
    assert list(clipped) == [T - 1]
    np.testing.assert_allclose(s.alphas_cumprod.numpy()[: T - 1], ab[: T - 1], rtol=1e-10)
    assert s.alphas_cumprod[-1].item() == pytest.approx(ab[-2] * 0.001, rel=1e-10)


def test_quadratic_end_points():
    s = NoiseSchedule.quadratic(1000, **F64)
    b = s.betas.numpy()
    assert b[0] == pytest.approx(1e-4, rel=1e-12) and b[-1] == pytest.approx(0.02, rel=1e-12)
    # sqrt(beta) is linear in t: its second difference vanishes
    np.testing.assert_allclose(np.diff(np.sqrt(b), 2), 0, atol=1e-15)
    assert (np.diff(b) > 0).all()


def test_sigmoid_end_points():
    lo, hi = 1e-4, 0.02
    s = NoiseSchedule.sigmoid(1000, **F64)
    b = s.betas.numpy()
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert b[0] == pytest.approx(lo + (hi - lo) * sig(-6), rel=1e-12)
    assert b[-1] == pytest.approx(lo + (hi - lo) * sig(6), rel=1e-12)
    # sigma(-x) = 1 - sigma(x): the ramp is point-symmetric about its middle
    np.testing.assert_allclose(b + b[::-1], lo + hi, rtol=1e-12)
    assert (np.diff(b) > 0).all()


def test_make_by_name():
    for kind in KINDS:
        a, b = NoiseSchedule.make(kind, 64, **F64), getattr(NoiseSchedule, kind)(64, **F64)
        assert torch.equal(a.betas, b.betas)
    from_b = NoiseSchedule.from_betas([0.1, 0.2, 0.3], **F64)
    np.testing.assert_allclose(from_b.alphas_cumprod.numpy(), [0.9, 0.72, 0.504], rtol=1e-15)


# ----------------------------------------------------------------------------- derived tables
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1000, 7])
def test_tables_match_float64_recomputation(kind, T):
    s = NoiseSchedule.make(kind, T, **F64)
    ref = np_tables(s.betas.numpy())
    for name in TABLES:
        np.testing.assert_allclose(getattr(s, name).numpy(), ref[name], rtol=1e-12, atol=0, err_msg=name)
    assert torch.equal(s.timesteps, torch.arange(T))
    assert s.num_timesteps == len(s) == T


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_tables_satisfy_gaussian_identities(kind):
    """Facts about q(x_{t-1}|x_t,x0) that do not repeat the table formulas:

    * precision adds up (Bayes for Gaussians): 1/beta~_t = alpha_t/beta_t + 1/(1 - alpha_bar_{t-1});
    * the posterior mean is unbiased: E[mu~] = c1 + c2 sqrt(alpha_bar_t) = sqrt(alpha_bar_{t-1}) (times x0);
    * total variance: Var[x_{t-1}|x0] = c2^2 (1 - alpha_bar_t) + beta~_t = 1 - alpha_bar_{t-1}.
    """
    s = NoiseSchedule.make(kind, 1000, **F64)
    a, b, ac, acp = (getattr(s, n).numpy() for n in ("alphas", "betas", "alphas_cumprod", "alphas_cumprod_prev"))
    pv, c1, c2 = s.posterior_variance.numpy(), s.posterior_mean_coef1.numpy(), s.posterior_mean_coef2.numpy()
    np.testing.assert_allclose(1 / pv[1:], a[1:] / b[1:] + 1 / (1 - acp[1:]), rtol=1e-9)
    np.testing.assert_allclose(c1 + c2 * np.sqrt(ac), np.sqrt(acp), rtol=1e-12)
    np.testing.assert_allclose(c2**2 * (1 - ac) + pv, 1 - acp, rtol=1e-9, atol=1e-15)
    # index 0 is the step next to the data: the posterior is the point mass at x0
    # (1 - (1 - beta_1) rounds, so coef1 is 1 to within a few ulps of 1/beta_1)
    assert pv[0] == 0 and c2[0] == 0 and c1[0] == pytest.approx(1, rel=1e-11)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_tables_are_correctly_rounded_float64(kind):
    s64 = NoiseSchedule.make(kind, 1000, **F64)
    s32 = NoiseSchedule.make(kind, 1000)
    assert s32.dtype == torch.float32
    for name in TABLES:
        t32, t64 = getattr(s32, name), getattr(s64, name)
        assert t32.dtype == torch.float32
        # the cast float64 -> float32 rounds to nearest, so equality with it *is* correct rounding;
        # numpy's cast is an independent implementation of the same rounding.
        assert np.array_equal(t32.numpy(), t64.numpy().astype(np.float32)), name
    # and .to() recomputes from float64 rather than casting the float32 tables back
    back = s32.to(dtype=torch.float64)
    for name in TABLES:
        assert torch.equal(getattr(back, name), getattr(s64, name)), name


# ----------------------------------------------------------------------------- zero terminal SNR
@pytest.mark.parametrize("kind", ["linear", "cosine", "sigmoid"])
def test_rescale_zero_terminal_snr(kind):
    s = NoiseSchedule.make(kind, 1000, **F64)
    z = s.rescale_zero_terminal_snr()
    assert z.alphas_cumprod[-1].item() == 0.0
    assert z.snr[-1].item() == 0.0 and z.betas[-1].item() == 1.0
    assert z.alphas_cumprod[0].item() == pytest.approx(s.alphas_cumprod[0].item(), rel=1e-13)
    # Lin et al. algorithm 1: sqrt(alpha_bar) is shifted and scaled, i.e. affine in the old one
    old, new = s.sqrt_alphas_cumprod.numpy(), z.sqrt_alphas_cumprod.numpy()
    first, last = old[0], old[-1]
    np.testing.assert_allclose(new, (old - last) * first / (first - last), rtol=1e-9, atol=1e-15)
    b = z.betas.numpy()
    assert ((b[:-1] > 0) & (b[:-1] < 1)).all()
    # float32 version: still exactly zero at the end
    assert NoiseSchedule.make(kind, 1000).rescale_zero_terminal_snr().alphas_cumprod[-1].item() == 0.0


# ----------------------------------------------------------------------------- respacing
@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing", "log-snr", "karras"])
@pytest.mark.parametrize("steps", [1, 10, 50, 1000])
def test_respaced_reproduces_alphas_cumprod(kind, spacing, steps):
    full = NoiseSchedule.make(kind, 1000, **F64)
    keep = spaced_timesteps(1000, steps, spacing, alphas_cumprod=full.alphas_cumprod)
    r = full.spaced(steps, spacing)
    assert r.num_timesteps == steps
    assert torch.equal(r.timesteps, keep)  # new index -> the network's original time input
    # Up to float64 rounding: the schedule is stored as betas, and alpha = 1 - beta loses digits when
    # beta ~ 1 (the last respaced step of the cosine schedule has alpha_bar ~ 2.4e-9), so the agreement
    # is ~1e-16 absolute rather than relative there (as it is for the original schedule's own last step).
    np.testing.assert_allclose(r.alphas_cumprod.numpy(), full.alphas_cumprod.numpy()[keep], rtol=1e-12, atol=1e-15)
    # the respaced tables are self-consistent (alphas_cumprod = cumprod(1 - betas) etc.)
    ref = np_tables(r.betas.numpy())
    for name in ("alphas_cumprod", "posterior_variance", "posterior_mean_coef1", "posterior_mean_coef2"):
        np.testing.assert_allclose(getattr(r, name).numpy(), ref[name], rtol=1e-10, err_msg=name)
    # float32: both sides are correctly rounded versions of float64 values that agree to ~1e-15,
    # so they agree to within one float32 ulp.
    r32 = NoiseSchedule.make(kind, 1000).spaced(steps, spacing).alphas_cumprod
    f32 = NoiseSchedule.make(kind, 1000).alphas_cumprod[keep]
    ulp = np.spacing(np.abs(f32.numpy()))
    assert (np.abs(r32.numpy() - f32.numpy()) <= ulp).all()


def test_respace_identity_and_composition():
    full = NoiseSchedule.cosine(200, **F64)
    same = full.respace(torch.arange(200))
    for name in TABLES:
        np.testing.assert_allclose(getattr(same, name).numpy(), getattr(full, name).numpy(), rtol=1e-12)
    # respacing a respaced schedule maps back to the original time inputs
    r = full.spaced(20).respace([0, 5, 19])
    keep = spaced_timesteps(200, 20)[[0, 5, 19]]
    assert torch.equal(r.timesteps, keep)
    np.testing.assert_allclose(r.alphas_cumprod.numpy(), full.alphas_cumprod.numpy()[keep], rtol=1e-12, atol=1e-15)
    # respacing a zero-terminal-SNR schedule keeps alpha_bar_T = 0 when the last step is kept
    z = NoiseSchedule.linear(1000).rescale_zero_terminal_snr().spaced(10, "trailing")
    assert z.alphas_cumprod[-1].item() == 0.0


# ----------------------------------------------------------------------------- spaced_timesteps
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing", "log-snr", "karras"])
@pytest.mark.parametrize("T,steps", [(1000, 1), (1000, 2), (1000, 7), (1000, 50), (1000, 999), (1000, 1000),
                                     (37, 36), (37, 10), (10, 10), (1, 1), (2, 1)])
def test_spaced_timesteps_properties(spacing, T, steps):
    ac = NoiseSchedule.cosine(T, **F64).alphas_cumprod  # only the noise-level spacings read it
    idx = spaced_timesteps(T, steps, spacing, alphas_cumprod=ac)
    assert idx.dtype == torch.long and idx.shape == (steps,)
    assert bool((idx[1:] > idx[:-1]).all()), "strictly increasing"
    assert idx.min().item() >= 0 and idx.max().item() <= T - 1
    if spacing == "trailing":
        assert idx[-1].item() == T - 1
    if spacing == "linspace":
        assert idx[0].item() == 0
        if steps >= 2:
            assert idx[-1].item() == T - 1
    if spacing == "leading":
        assert idx[0].item() == 0
        assert set(torch.diff(idx).tolist()) <= {T // steps}
    if spacing in ("log-snr", "karras"):  # both ends for steps >= 2; one step starts at the noisiest index
        assert idx[-1].item() == T - 1 and (steps == 1 or idx[0].item() == 0)
    if steps == T:
        assert torch.equal(idx, torch.arange(T))


def test_spaced_timesteps_known_values():
    assert spaced_timesteps(1000, 4).tolist() == [0, 333, 666, 999]
    assert spaced_timesteps(1000, 10, "leading").tolist() == list(range(0, 1000, 100))
    assert spaced_timesteps(1000, 10, "trailing").tolist() == list(range(99, 1000, 100))


# ----------------------------------------------------------------------------- noise-level spacings
def _old_spaced_timesteps(T: int, steps: int, spacing: str) -> torch.Tensor:
    """spaced_timesteps as it was before the noise-level spacings were added (copied from commit 49a4728)."""
    if spacing == "linspace":
        return torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long()
    if spacing == "leading":
        return torch.arange(steps, dtype=torch.long) * (T // steps)
    return (T - 1 - torch.arange(steps, dtype=torch.long) * (T / steps)).round().long().flip(0)


def _numpy_grid(T: int, steps: int, spacing: str) -> np.ndarray:
    """The grid as diffusers' schedulers build it, in numpy (their expressions, increasing order; trailing's
    occasional extra -1 from the float arange's overshoot dropped)."""
    if spacing == "linspace":
        return np.linspace(0, T - 1, steps).round().astype(np.int64)
    if spacing == "leading":
        return (np.arange(0, steps) * (T // steps)).round().astype(np.int64)
    return (np.round(np.arange(T, 0, -T / steps)).astype(np.int64) - 1)[:steps][::-1]


def _half_way(T: int, steps: int, spacing: str) -> set[int]:
    """Positions whose exact (rational) value is half-way between two integers."""
    if spacing == "linspace":
        values = [Fraction(i * (T - 1), steps - 1) for i in range(steps)] if steps > 1 else [Fraction(0)]
    else:
        values = [Fraction(T) - Fraction(i * T, steps) - 1 for i in range(steps)][::-1]
    return {i for i, v in enumerate(values) if v.denominator == 2}


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_integer_spacings_are_numpys_grids(spacing):
    """Index for index numpy's float64 linspace / arange with half-to-even rounding (what diffusers computes), with
    or without alphas_cumprod (NoiseSchedule.spaced passes it); against the grids before 2026-12-07 (torch's
    linspace; trailing as round(T - 1 - i T/n)) only exact half-way values moved, by one step."""
    moved = 0
    for T in (1, 2, 10, 37, 100, 1000):
        sched = NoiseSchedule.linear(T, **F64)
        for steps in range(1, T + 1) if T <= 100 else range(1, T + 1, 7):
            expected = torch.from_numpy(_numpy_grid(T, steps, spacing).copy())
            assert torch.equal(spaced_timesteps(T, steps, spacing), expected), (T, steps)
            assert torch.equal(spaced_timesteps(T, steps, spacing, alphas_cumprod=sched.alphas_cumprod), expected)
            assert torch.equal(sched.spaced(steps, spacing).timesteps, expected)
            old = _old_spaced_timesteps(T, steps, spacing)
            differ = set(torch.nonzero(old != expected).flatten().tolist())
            assert differ <= _half_way(T, steps, spacing) and (old - expected).abs().max() <= 1, (T, steps)
            moved += bool(differ)
    assert (moved == 0) == (spacing == "leading")


def _formula_timesteps(ab: np.ndarray, steps: int, spacing: str) -> tuple[np.ndarray, np.ndarray]:
    """The spacing's noise levels as lambda = log(alpha/sigma), increasing-index order, and their fractional
    timesteps (the index interpolated linearly against lambda), in numpy, from the definitions."""
    lam = 0.5 * np.log(ab / (1 - ab))  # decreasing in the index
    i = np.arange(steps)
    if spacing == "log-snr":  # evenly spaced from lambda at index T-1 to lambda at index 0
        target = np.linspace(lam[-1], lam[0], steps)[::-1]
    else:  # Karras et al. eq. 5 in EDM's sigma = e^-lambda, rho = 7, from sigma_max (index T-1) to sigma_min (index 0)
        smin, smax, rho = np.exp(-lam[0]), np.exp(-lam[-1]), 7.0
        sigma = (smax ** (1 / rho) + i / (steps - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
        target = -np.log(sigma)[::-1]
    t_cont = np.interp(-target, -lam, np.arange(len(ab)))  # np.interp wants increasing x: use -lambda
    return target, t_cont


def _keep_count(rounded: np.ndarray, T: int) -> np.ndarray:
    """The documented rule, as two plain passes: raise an index to one above its predecessor when it is not above
    it; then, from the end, lower an index to one below its successor when it is not below it (the last <= T-1)."""
    e = rounded.astype(np.int64).copy()
    for i in range(1, len(e)):
        e[i] = max(e[i], e[i - 1] + 1)
    e[-1] = min(e[-1], T - 1)
    for i in range(len(e) - 2, -1, -1):
        e[i] = min(e[i], e[i + 1] - 1)
    return e


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("spacing", ["log-snr", "karras"])
def test_noise_level_spacings_follow_their_formulas(kind, spacing):
    """Each index is the formula's noise level mapped to the nearest timestep: where rounding kept neighbours apart,
    the index is the rounded fractional timestep (so within half a timestep of it, and the formula's lambda lies
    between the lambdas of the index's two neighbours: within one timestep); where rounding merged neighbours,
    the count is kept by the documented nudging rule. Always ``steps`` strictly increasing indices from 0 to T-1."""
    full = NoiseSchedule.make(kind, 1000, **F64)
    ab = full.alphas_cumprod.numpy()
    lam = 0.5 * np.log(ab / (1 - ab))
    clean = 0
    for steps in (2, 3, 5, 10, 20, 40, 50, 100, 200, 500, 999, 1000):
        idx = spaced_timesteps(1000, steps, spacing, alphas_cumprod=full.alphas_cumprod).numpy()
        target, t_cont = _formula_timesteps(ab, steps, spacing)
        rounded = np.rint(t_cont)
        assert len(idx) == steps and (np.diff(idx) > 0).all() and idx[0] == 0 and idx[-1] == 999
        np.testing.assert_array_equal(idx, _keep_count(rounded, 1000))
        kept = idx == rounded
        assert (np.abs(idx - t_cont)[kept] <= 0.5 + 1e-9).all()
        lo, hi = np.clip(idx - 1, 0, 999), np.clip(idx + 1, 0, 999)
        assert ((lam[hi] - 1e-9 <= target) & (target <= lam[lo] + 1e-9))[kept].all()
        if (np.diff(rounded) > 0).all():
            assert kept.all()
            clean += 1
    assert clean >= 3  # the small step counts needed no nudging at all (linear: up to 20 / 50 steps)
    assert torch.equal(spaced_timesteps(1000, 1000, spacing, alphas_cumprod=full.alphas_cumprod), torch.arange(1000))
    assert spaced_timesteps(1000, 1, spacing, alphas_cumprod=full.alphas_cumprod).tolist() == [999]


def test_noise_level_spacings_known_values():
    """Linear schedule, T = 1000: log-SNR steps crowd the low-noise end, Karras's rho = 7 even more so."""
    ac = NoiseSchedule.linear(1000, **F64).alphas_cumprod
    assert spaced_timesteps(1000, 5, "log-snr", alphas_cumprod=ac).tolist() == [0, 30, 302, 722, 999]
    assert spaced_timesteps(1000, 5, "karras", alphas_cumprod=ac).tolist() == [0, 142, 593, 843, 999]
    # the cosine schedule's last steps are far apart in noise level (alpha_bar ~ 1e-5 .. 2e-9): the indices
    # rounded to 999 are nudged down to 998, 997, ... rather than dropped
    cos = NoiseSchedule.cosine(1000, **F64).alphas_cumprod
    assert spaced_timesteps(1000, 10, "karras", alphas_cumprod=cos).tolist()[-4:] == [996, 997, 998, 999]


def test_noise_level_spacing_errors():
    ac = NoiseSchedule.linear(10, **F64).alphas_cumprod
    cases = [
        (dict(), "spacing 'karras' places the steps by noise level: pass alphas_cumprod="),
        (dict(alphas_cumprod=ac[:5]), r"alphas_cumprod must be 1-D of length T=10, got shape \(5,\)"),
        (dict(alphas_cumprod=ac.flip(0)), "needs strictly decreasing alphas_cumprod"),
        (dict(alphas_cumprod=torch.cat([ac[:9], torch.zeros(1, **F64)])), "needs alphas_cumprod > 0 at every index"),
        (dict(alphas_cumprod=ac + 1), r"alphas_cumprod must lie in \[0, 1\)"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            spaced_timesteps(10, 4, "karras", **kw)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="spacing must be one of 'linspace', 'leading', 'trailing', 'log-snr', 'karras'"):
        spaced_timesteps(10, 4, "uniform", alphas_cumprod=ac)
    # a zero-terminal-SNR schedule: sigma/alpha is infinite at its last index
    with pytest.raises(ValueError, match="zero-terminal-SNR"):
        NoiseSchedule.linear(10).rescale_zero_terminal_snr().spaced(4, "log-snr")
    with pytest.raises(ValueError, match="steps must be at most T=10"):
        NoiseSchedule.linear(10).spaced(11, "karras")
