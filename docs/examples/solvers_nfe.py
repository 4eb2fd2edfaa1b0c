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
# # Solvers: error against the number of network evaluations
#
# The [Solvers](../score/solvers.md) page derives why deterministic DDIM is first order and DPM-Solver++(2M) and
# Heun's method are second order. Here we measure it. The data are a one-dimensional Gaussian mixture, whose
# optimal noise predictor is known in closed form, so the only error left is the solver's: we run each solver from
# the same starting noise at several numbers of network evaluations (NFE), compare with an accurate solution of the
# same ODE, and fit the slope of the error on a log-log plot. At the end, the same solvers sample digits from the
# trained network at 5, 10 and 20 evaluations.

# %%
import math
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import integrate
from scipy.stats import norm

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets; no bars here

from diffusion_core import Diffusion, NoiseSchedule, ddim_sample, dpmpp_2m_sample, heun_sample
from diffusion_core.mixture import GaussianMixture
from diffusion_core.train.images import image_grid

start_time = time.perf_counter()
# One thread: the tensors here and the 8x8 network below are small, and on a busy 2-core machine two threads
# contending for the cores made the digits part below 20 to 100 times slower (measured).
torch.set_num_threads(1)

# The data: 0.3 N(-1, 0.3^2) + 0.7 N(0.8, 0.4^2), whose optimal predictions the library computes in closed form
data = GaussianMixture(weights=[0.3, 0.7], means=[-1.0, 0.8], sds=[0.3, 0.4])
schedule = NoiseSchedule.linear(1000, dtype=torch.float64)
diffusion = Diffusion(schedule)
ab = schedule.alphas_cumprod.numpy()


def denoiser(xb, sigmabar):
    """E[x0 | xbar] for xbar = x0 + sigmabar * eps (a path with alpha = 1, sigma = sigmabar), as numpy."""
    return data.x0(np.asarray(xb, dtype=np.float64), 1.0, sigmabar).numpy()


def eps_model(x, t):
    """The exact noise predictor the solvers call, E[eps | x_t], at the original step t."""
    a = schedule.alphas_cumprod[t].view(-1, 1)
    return data.eps(x, a.sqrt(), (1 - a).sqrt())


# %% [markdown]
# **The reference.** Every solver here visits the schedule's top index first and index 0 last, then takes the step
# from index 0 to clean data, which is $\hat x_0$ there. So they all converge to the probability-flow ODE solved
# exactly from $\bar\sigma$ at the top index down to $\bar\sigma$ at index 0, followed by $\hat x_0$ at index 0. We
# solve that ODE, $d\bar x/d\bar\sigma = (\bar x - D(\bar x; \bar\sigma))/\bar\sigma$, in $u = \log\bar\sigma$ with
# scipy's DOP853 at a tolerance of $10^{-12}$. The starting points are 64 quantiles of $\mathcal{N}(0, 1)$.

# %%
sigmabar = np.sqrt((1 - ab) / ab)
x_T = torch.from_numpy(norm.ppf((np.arange(64) + 0.5) / 64)).reshape(-1, 1)
solution = integrate.solve_ivp(lambda u, y: y - denoiser(y, math.exp(u)),
                               (math.log(sigmabar[-1]), math.log(sigmabar[0])),
                               x_T[:, 0].numpy() / math.sqrt(ab[-1]), method="DOP853", rtol=1e-12, atol=1e-12)
reference = denoiser(solution.y[:, -1], sigmabar[0])


def rms_error(sample):
    return float(np.sqrt(np.mean((sample[:, 0].numpy() - reference) ** 2)))


# %%
nfes = [5, 10, 20, 40, 80, 160]
kw = dict(spacing="log-snr", progress=False)
errors = {"DDIM": [], "DPM-Solver++(2M)": [], "Heun": []}
for nfe in nfes:
    errors["DDIM"].append((nfe, rms_error(ddim_sample(eps_model, diffusion, x_T, steps=nfe, **kw).sample)))
    errors["DPM-Solver++(2M)"].append((nfe, rms_error(dpmpp_2m_sample(eps_model, diffusion, x_T, steps=nfe,
                                                                      **kw).sample)))
    n = nfe // 2 + 1  # Heun: n steps cost 2n - 1 evaluations; from the top index too (its default starts at 80)
    errors["Heun"].append((2 * n - 1, rms_error(heun_sample(eps_model, diffusion, x_T, steps=n, sigma_max=None,
                                                            **kw).sample)))

print(f"{'solver':18s}" + "".join(f"{n:>10d}" for n in nfes) + "   fitted order (NFE >= 20)")
orders = {}
for name, pts in errors.items():
    nfe, err = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    fit = np.array([p[0] for p in pts]) >= 20
    orders[name] = -np.polyfit(nfe[fit], err[fit], 1)[0]
    print(f"{name:18s}" + "".join(f"{p[1]:10.1e}" for p in pts) + f"   {orders[name]:.2f}")

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.8))
for (name, pts), marker in zip(errors.items(), "osD"):
    ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=f"{name} (order {orders[name]:.2f})")
n = np.array([20, 160])
ax.loglog(n, 0.5 * errors["DDIM"][2][1] * (n / 20) ** -1.0, "k:", lw=1, label="slopes -1 and -2")
ax.loglog(n, 0.5 * errors["DPM-Solver++(2M)"][2][1] * (n / 20) ** -2.0, "k:", lw=1)
ax.set_xlabel("network evaluations (NFE)")
ax.set_ylabel("RMS error against the exact ODE")
ax.set_title("Bimodal mixture, linear schedule, log-SNR steps")
ax.legend(frameon=False, fontsize=8)
plt.show()

# %% [markdown]
# DDIM's error halves when the evaluations double (order 1); the two second-order solvers' errors quarter. At very
# few evaluations the second-order methods are not yet in that regime: 2M's first and last steps are first order
# (and below 15 steps the one before the last as well), and Heun's few steps are long. Per evaluation,
# DPM-Solver++(2M) is ahead of both DDIM and Heun at every NFE here: it gets its slope estimate from the previous
# step for free, while Heun pays a second evaluation per step.
#
# ## Digits at 5, 10 and 20 evaluations
#
# The same three solvers on the trained digits network (the unconditional `digits-8` checkpoint of
# [Digits: DDPM against DDIM](digits.py), from `checkpoints/digits/` beside this page, which is trained first when
# it is missing: 207 s on the idle 2-core AMD EPYC VM of 2026-12-06), from one fixed batch of starting noise. Each solver uses its
# default time grid: DDIM and 2M the linspace spacing over all the timesteps, Heun EDM's own grid, Karras et al.'s
# $\rho = 7$ spacing from the last timestep whose $\bar\sigma$ is at most EDM's 80 (the curves above started
# Heun at the top index instead, `sigma_max=None`, to solve the same ODE as the others). Heun's NFE are odd,
# $2N - 1$ for $N$ steps: 5, 9 and 19.

# %%
from diffusion_core.examples import example_checkpoint  # noqa: E402
from diffusion_core.train import TrainConfig, load_checkpoint, load_model  # noqa: E402

ckpt = load_checkpoint(example_checkpoint("digits"))  # trained first when checkpoints/digits/ is missing
model = load_model(ckpt)
digits_diffusion = TrainConfig.from_dict(ckpt.train_config).diffusion()
noise = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))



samplers = {"DDIM": lambda n: ddim_sample(model, digits_diffusion, noise, steps=n, progress=False),
            "DPM-Solver++(2M)": lambda n: dpmpp_2m_sample(model, digits_diffusion, noise, steps=n, progress=False),
            "Heun": lambda n: heun_sample(model, digits_diffusion, noise, steps=(n + 1) // 2, progress=False)}
fig, axes = plt.subplots(3, 3, figsize=(10, 4.6))
with torch.no_grad():
    for row, (name, run) in enumerate(samplers.items()):
        for col, nfe in enumerate((5, 10, 20)):
            ax = axes[row, col]
            ax.imshow(image_grid(run(nfe).sample, nrow=8)[..., 0], cmap="gray_r", vmin=0, vmax=255,
                      interpolation="nearest")
            used = 2 * ((nfe + 1) // 2) - 1 if name == "Heun" else nfe
            ax.set_title(f"{name}, NFE {used}", fontsize=9)
            ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# With the trained network the solver's error is one error among several: the network's own, and the clipping of
# $\hat x_0$ to the data range, which keeps the first, long steps in check. DDIM and 2M give nearly the same digits
# from 5 evaluations on, so here the network, not the solver, sets the quality. Heun is the odd one out at 5
# evaluations: its 3 steps, the last an Euler step to the data, are too long, and its samples are still noisy; from
# 9 evaluations on its digits are those of DDIM and 2M. Before it defaulted to EDM's grid, Heun started at the
# cosine schedule's top timestep, $\bar\sigma \approx 2 \times 10^4$, with log-SNR spacing
# (`heun_sample(..., spacing="log-snr", sigma_max=None)`): its steps then spent themselves where the sample is pure
# noise, and its digits caught up only at 19 evaluations. The sample quality per sampler and NFE, measured on the
# class-conditional model, is on the [Benchmarks](../benchmarks.md) page.

# %%
print(f"notebook run time: {time.perf_counter() - start_time:.1f} s")
