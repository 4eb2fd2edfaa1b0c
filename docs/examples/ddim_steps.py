# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # DDIM: fewer steps
#
# How much quality does a sampler lose when it visits only a few of the $T = 1000$ steps?
# To separate the sampler from the network, this notebook uses data whose **optimal**
# noise predictor is known in closed form: a one-dimensional mixture of three Gaussians,
# $x_0 \sim \sum_k \pi_k \mathcal{N}(\mu_k, s_k^2)$. Every error below is then the
# sampler's own: its discretization of the reverse process, not a network's mistakes.
# The derivations behind the samplers are on the [DDIM page](../../ddim/).
#
# This notebook is executed every time the site is built.

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets; no bars here

from diffusion_core import Diffusion, NoiseSchedule, ddim_sample, ddpm_sample
from diffusion_core.mixture import GaussianMixture

started = time.perf_counter()
torch.set_num_threads(1)  # tiny tensors: threads only add overhead
DTYPE = torch.float32  # plenty for a histogram, and faster than float64
data = GaussianMixture(weights=[0.3, 0.5, 0.2], means=[-0.9, 0.1, 0.8], sds=[0.06, 0.12, 0.05])
WEIGHTS, MEANS, SDS = (v.to(DTYPE) for v in (data.weights, data.means, data.sds))

schedule = NoiseSchedule.linear(1000, dtype=DTYPE)
diffusion = Diffusion(schedule)  # predicts epsilon; DDPM's variance is beta_t ("fixed_large")
print(schedule)

# %% [markdown]
# ## The optimal noise predictor
#
# With $a = \sqrt{\bar\alpha_t}$ and $s = \sqrt{1-\bar\alpha_t}$, the noisy sample is
# $x_t = a x_0 + s\epsilon$. Given the component $k$, $x_t$ and $\epsilon$ are jointly
# Gaussian with $\operatorname{Cov}[\epsilon, x_t] = s$ and
# $\operatorname{Var}[x_t] = a^2 s_k^2 + s^2$, so
# $\mathbb{E}[\epsilon \mid x_t, k] = s\,(x_t - a\mu_k)/(a^2 s_k^2 + s^2)$.
# Averaging over the component with its posterior probability (the responsibility
# $r_k(x_t) \propto \pi_k\,\mathcal{N}(x_t; a\mu_k, a^2 s_k^2 + s^2)$) gives the predictor
# that minimizes the training loss, exactly:
#
# $\hat\epsilon(x_t, t) = \mathbb{E}[\epsilon \mid x_t]
#   = \sum_k r_k(x_t)\,\frac{s\,(x_t - a\mu_k)}{a^2 s_k^2 + s^2}$.
#
# The library's `GaussianMixture` (in `diffusion_core.mixture`) computes exactly this sum (and
# $\mathbb{E}[x_0 \mid x_t]$, the score), in float64, from $x_t$, $a$ and $s$. A sampler calls the
# model with the **original** timestep index (a respaced schedule's `timesteps`), so the
# predictor looks $\bar\alpha_t$ up in the original 1000-step schedule.

# %%
def optimal_eps(x, t):
    """E[eps | x_t] for the mixture; x has shape (B, 1), t holds original indices in 0..999."""
    ab = schedule.alphas_cumprod[t].view(-1, 1)      # looked up by the original index
    return data.eps(x, ab.sqrt(), (1 - ab).sqrt()).to(DTYPE)  # the sum above, in float64


def true_cdf(x):
    """CDF of the data distribution, for the Wasserstein distance below."""
    z = torch.from_numpy((x[:, None] - MEANS.numpy()) / SDS.numpy())
    return (WEIGHTS * 0.5 * (1 + torch.erf(z / np.sqrt(2)))).sum(1).numpy()


def true_density(x):
    z = (x[:, None] - MEANS.numpy()) / SDS.numpy()
    return (WEIGHTS.numpy() * np.exp(-z**2 / 2) / (SDS.numpy() * np.sqrt(2 * np.pi))).sum(1)


def wasserstein(samples):
    """W1 between the samples' empirical distribution and the data: the integral of |F_n - F|."""
    x = np.sort(samples.ravel())
    grid = np.linspace(min(x[0], -2.0), max(x[-1], 2.0), 40_001)
    empirical = np.searchsorted(x, grid, side="right") / len(x)
    return np.abs(empirical - true_cdf(grid)).sum() * (grid[1] - grid[0])

# %% [markdown]
# ## Sampling at several step counts
#
# Every run starts from the same noise $x_T$, 4 000 samples. DDIM runs with
# $\eta = 0$ (deterministic); DDPM is ancestral sampling on the respaced schedule, with the
# library's default variance $\sigma_t^2 = \beta_t$ (of the respaced schedule) and, as a
# third sampler, DDIM with $\eta = 1$, which is DDPM with $\sigma_t^2 = \tilde\beta_t$.
# Steps are spaced with `linspace` (first and last step included).
#
# The floor is the distance of exact samples of the same size (the band: 20 of them, from
# the smallest to the largest): no sampler can beat it on average, because it is the error
# of describing a distribution by 4 000 points. The deterministic runs all map the same
# $x_T$, so a lucky or unlucky $x_T$ moves their whole curve a little.

# %%
N = 4_000
STEPS = [5, 10, 20, 50, 100, 1000]
x_T = torch.randn(N, 1, generator=torch.Generator().manual_seed(0), dtype=DTYPE)


def exact_samples(n, seed):
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    return (MEANS[k] + SDS[k] * torch.randn(n, generator=g, dtype=DTYPE)).numpy()


floor = np.array([wasserstein(exact_samples(N, seed)) for seed in range(20)])


def seeded():
    return torch.Generator().manual_seed(1)


samplers = {
    "DDIM, $\\eta = 0$": lambda steps: ddim_sample(
        optimal_eps, diffusion, x_T, steps=steps, eta=0.0, progress=False),
    "DDIM, $\\eta = 1$": lambda steps: ddim_sample(
        optimal_eps, diffusion, x_T, steps=steps, eta=1.0, generator=seeded(), progress=False),
    "DDPM, $\\sigma_t^2 = \\beta_t$": lambda steps: ddpm_sample(
        optimal_eps, diffusion, x_T, steps=steps, generator=seeded(), progress=False),
}
samples, distance = {}, {}
for name, run in samplers.items():
    for steps in STEPS:
        samples[name, steps] = run(steps).sample.numpy()
        distance[name, steps] = wasserstein(samples[name, steps])

plain = {name: name.replace("$", "").replace("\\", "") for name in samplers}
print(f"{'steps':>6}" + "".join(f"{plain[name]:>26}" for name in samplers))
for steps in STEPS:
    print(f"{steps:>6}" + "".join(f"{distance[name, steps]:>26.4f}" for name in samplers))
print(f"floor (exact samples of the same size): {floor.mean():.4f} "
      f"(from {floor.min():.4f} to {floor.max():.4f})")

# %% [markdown]
# Deterministic DDIM has a limit of its own. With $\eta = 0$ it solves an ODE that carries
# the noise distribution to the data, and in one dimension such a flow keeps the order of
# its points, so its exact solution is the monotone map $F^{-1}(\Phi(x_T))$ ($\Phi$ the
# standard normal CDF, $F$ the data's; exact up to the tiny difference between
# $\mathcal{N}(0, 1)$ and $q(x_T)$). Applied to this $x_T$ it gives the sample that DDIM
# converges to, and its distance to the data is DDIM's floor for this $x_T$.

# %%
GRID = np.linspace(-3.0, 3.0, 200_001)
uniform = 0.5 * (1 + torch.erf(x_T.double().ravel() / np.sqrt(2))).numpy()   # Phi(x_T)
ode_limit = np.interp(uniform, true_cdf(GRID), GRID)                          # F^-1(Phi(x_T))
DDIM0 = "DDIM, $\\eta = 0$"
print(f"distance of the exact ODE map of this x_T: {wasserstein(ode_limit):.4f}")
print(f"\n{'steps':>6}{'mean |DDIM - exact map|':>26}{'x steps':>10}")
path_error = {}
for steps in STEPS:
    path_error[steps] = np.abs(samples[DDIM0, steps].ravel() - ode_limit).mean()
    print(f"{steps:>6}{path_error[steps]:>26.4f}{path_error[steps] * steps:>10.2f}")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
for name, marker in zip(samplers, "osD"):
    ax.plot(STEPS, [distance[name, s] for s in STEPS], marker=marker, label=name)
ax.axhspan(floor.min(), floor.max(), color="gray", alpha=0.25, label="exact samples (floor)")
ax.axhline(wasserstein(ode_limit), color="C0", linestyle=":", label="exact ODE map of this $x_T$")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("sampling steps (of T = 1000)")
ax.set_ylabel("Wasserstein-1 distance to the data")
ax.set_title("Fewer steps against quality, with the optimal noise predictor")
ax.legend(fontsize=9)
plt.show()

# %% [markdown]
# With five steps every sampler is far from the data: the three modes are smeared into
# each other (see the histograms below). From ten to fifty steps, deterministic DDIM is
# the closest: its update is an Euler step of an ODE (on the DDIM page, a step in the
# noise-to-signal ratio), and with the optimal $\hat\epsilon$ its error is essentially
# that discretization. The stochastic samplers add fresh noise at every step and rely on
# the later steps to correct it, which coarse steps do poorly, so they need more steps for
# the same distance. At 1000 steps all three are at the level of exact samples of the same
# size, and deterministic DDIM sits on its own limit, the exact ODE map of its $x_T$. Its
# distance to that limit, sample by sample, falls roughly in proportion to 1/steps up to
# 100 steps (the "x steps" column above stays near one), as for a first-order method like
# Euler's.
# The cell below checks these statements on the numbers above (the 1000-step one as "less
# than two and a half times the floor's mean", which leaves room for sampling luck), so
# the text cannot silently go stale.

# %%
assert all(distance[name, 5] > 10 * floor.mean() for name in samplers)
for steps in (10, 20, 50):
    others = [distance[name, steps] for name in samplers if name != DDIM0]
    assert distance[DDIM0, steps] < min(others), steps
assert all(distance[name, 1000] < 2.5 * floor.mean() for name in samplers)
assert abs(distance[DDIM0, 1000] - wasserstein(ode_limit)) < 0.2 * wasserstein(ode_limit)
assert all(path_error[a] > path_error[b] for a, b in zip(STEPS, STEPS[1:]))
assert all(0.5 < path_error[s] * s / (path_error[10] * 10) < 2 for s in (20, 50, 100))
print("the statements above hold")

# %%
SHOW = [5, 20, 1000]
fig, axes = plt.subplots(2, len(SHOW), figsize=(10, 5), sharex=True, sharey=True,
                         layout="constrained")
bins = np.linspace(-1.4, 1.3, 121)
for row, name in enumerate(["DDIM, $\\eta = 0$", "DDPM, $\\sigma_t^2 = \\beta_t$"]):
    for col, steps in enumerate(SHOW):
        ax = axes[row, col]
        ax.hist(samples[name, steps].ravel(), bins=bins, density=True, histtype="stepfilled",
                color=f"C{3 * row}", alpha=0.6)
        ax.plot(bins, true_density(bins), color="black", linewidth=1)
        ax.set_title(f"{name}, {steps} steps", fontsize=9)
for ax in axes[-1]:
    ax.set_xlabel("$x_0$")
fig.suptitle("Samples (histogram) against the data density (line)")
plt.show()

# %% [markdown]
# ## Which steps to visit
#
# With few steps it also matters which ones. `linspace` includes the first and the last
# step; `leading` (the DDIM reference code's steps) starts at 0 and stops short of step $T$;
# `trailing` always starts from the last step but may skip the first (Lin et al. 2024).
# Starting below $T$ is a mismatch: the sampler still draws $x_T$ from
# $\mathcal{N}(0, I)$, while the noisy data at its first step keep a fraction
# $\sqrt{\bar\alpha}$ of the signal. For this linear schedule that fraction is tiny at
# every spacing's first step, so the spacings differ mainly in how they spread the few
# steps; for schedules with more signal left near $T$ the mismatch matters more.

# %%
from diffusion_core import spaced_timesteps

SPACINGS = ("linspace", "leading", "trailing")
for spacing in SPACINGS:
    visit = spaced_timesteps(1000, 10, spacing)
    signal = schedule.sqrt_alphas_cumprod[visit[-1]].item()
    print(f"{spacing:>9}: {visit.tolist()}  signal left at the first step: {signal:.4f}")

print(f"\n{'steps':>6}" + "".join(f"{s:>12}" for s in SPACINGS) + "   (W1 of DDIM, eta = 0)")
for steps in (5, 10, 20):
    row = [wasserstein(ddim_sample(optimal_eps, diffusion, x_T, steps=steps, spacing=spacing,
                                   progress=False).sample.numpy())
           for spacing in SPACINGS]
    print(f"{steps:>6}" + "".join(f"{w:>12.4f}" for w in row))

print(f"\nthis notebook ran in {time.perf_counter() - started:.1f} s "
      f"({time.process_time():.1f} s of CPU time)")
