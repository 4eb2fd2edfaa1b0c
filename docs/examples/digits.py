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
# # Sampling 8x8 digits: DDPM against DDIM
#
# This page samples from a small U-Net trained on scikit-learn's 1,797 handwritten 8x8 digits with
# `diffusion-core train` at its default settings (`diffusion_core.examples.RECIPES["digits"]`). It loads the
# checkpoint from `checkpoints/digits/` beside it; run on its own, without that folder, it first trains the
# checkpoint there: 207 s on the idle 2-core AMD EPYC development VM of 2026-12-06 (75 s on a faster one).
# We compare ancestral DDPM sampling with deterministic DDIM ($\eta = 0$) at several numbers of steps,
# always from the same starting noise, and measure how digit-like the results are.

# %%
import time
import warnings

import matplotlib.pyplot as plt
import torch

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets; no bars here

from diffusion_core import ddim_sample, ddpm_sample
from diffusion_core.examples import example_checkpoint
from diffusion_core.metrics import DigitsClassifier, frechet_distance
from diffusion_core.train import TrainConfig, digits, load_checkpoint, load_model
from diffusion_core.train.images import image_grid

ckpt = load_checkpoint(example_checkpoint("digits"))  # trained first when checkpoints/digits/ is missing
config = TrainConfig.from_dict(ckpt.train_config)
model = load_model(ckpt)  # in eval mode, with the exponential moving average of the weights
# The schedule and parameterization the network was trained with; for image data the config also
# clips the predicted x0 to the data range [-1, 1] while sampling (see the note below).
diffusion = config.diffusion()
T = diffusion.num_timesteps
size, channels = ckpt.model_config["image_size"], ckpt.model_config["in_channels"]
print(f"trained {ckpt.step} steps, {sum(p.numel() for p in model.parameters()):,} parameters")
print(diffusion)


def show_grid(ax, images, ncols, title):
    """(N, 1, H, W) images in [-1, 1] in rows of ``ncols``, one-pixel gaps (the library's ``image_grid``)."""
    ax.imshow(image_grid(images, nrow=ncols)[..., 0], cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")


# %% [markdown]
# **Why clip.** The samplers turn the network's output into a prediction $\hat x_0$ of the clean image. At the
# first step, $t = T$, the default cosine schedule has $\bar\alpha_T \approx 2 \times 10^{-9}$. A network that
# predicts the noise gives $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}$, so an error
# $\delta$ in $\hat\epsilon$ becomes about $\delta/\sqrt{\bar\alpha_T} \approx 2 \times 10^4\,\delta$ in $\hat x_0$, and a
# DDIM step to $t'$, which weights $\hat x_0$ by $\sqrt{\bar\alpha_{t'}}$, leaves about
# $\sqrt{\bar\alpha_{t'}/\bar\alpha_T}\,\delta$ in $x_{t'}$: hundreds to thousands of times $\delta$ (printed below),
# more than the remaining steps can undo. The command line's default network predicts
# $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0$ instead, and
# $\hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,\hat v$ involves no such division. Clipping $\hat x_0$
# to $[-1, 1]$, the range of the data, as improved DDPM does for images, guards against the rest;
# we clip for both samplers, whatever the network predicts.

# %%
for steps in (10, 50):
    kept = diffusion.respaced(steps).schedule
    ab_T, ab_next = kept.alphas_cumprod[-1].item(), kept.alphas_cumprod[-2].item()
    print(f"DDIM-{steps}: alpha_bar_T = {ab_T:.2e}, at the next step {ab_next:.2e}; "
          f"error growth sqrt(ratio) = {(ab_next / ab_T) ** 0.5:.0f}")

# %% [markdown]
# ## Drawing the samples
#
# Every sampler setting starts from the same noise images $x_T$. DDPM with fewer than $T$ steps uses the
# respaced schedule of improved DDPM (the $\bar\alpha_t$ of the kept steps are unchanged); DDIM with
# $\eta = 0$ is deterministic given $x_T$. Each sample costs one network call per step, so the full
# 1000-step DDPM is by far the most expensive setting; to keep this page quick to build it gets only the
# first `N_FULL` of the noise images, the other settings get `N`.

# %%
torch.set_num_threads(1)  # a small network: one thread is about as fast, and behaves on a busy machine

N, N_FULL = 100, 10  # about 40 s of one CPU core in all; raise them for steadier numbers
STEP_COUNTS = (10, 25, 50)
x_T = torch.randn(N, channels, size, size, generator=torch.Generator().manual_seed(0))

settings = [("DDIM", s) for s in STEP_COUNTS] + [("DDPM", s) for s in STEP_COUNTS] + [("DDPM", T)]
samples, seconds = {}, {}
for kind, steps in settings:
    start_noise = x_T[:N_FULL] if steps == T else x_T
    start = time.perf_counter()
    if kind == "DDIM":
        out = ddim_sample(model, diffusion, start_noise, steps=steps, progress=False)
    else:
        out = ddpm_sample(model, diffusion, start_noise, steps=steps, progress=False,
                          generator=torch.Generator().manual_seed(1))
    seconds[kind, steps] = time.perf_counter() - start
    samples[kind, steps] = out.sample.clamp(-1, 1)
    print(f"{kind}-{steps:<5d} {len(start_noise):4d} samples in {seconds[kind, steps]:5.1f} s")

# %% [markdown]
# ## Samples next to real digits
#
# 64 DDIM samples with 50 steps, and 64 digits from the training set.

# %%
real = digits()
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4.8))
show_grid(ax1, samples["DDIM", 50][:64], 8, "DDIM, 50 steps")
show_grid(ax2, real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:64]], 8, "real digits")
plt.tight_layout(w_pad=3)
plt.show()

# %% [markdown]
# ## The same noise through every sampler
#
# Each column starts from one $x_T$. DDIM with $\eta = 0$ is a deterministic map from $x_T$ to $x_0$, and
# as the number of steps grows it settles on one map (it discretizes an ODE), so down a column the DDIM
# rows tend to agree, more so at larger step counts. DDPM draws fresh noise at every step, so the same
# $x_T$ can end as a different digit under each setting.

# %%
ncol = N_FULL
fig, axes = plt.subplots(len(settings), 1, figsize=(ncol * 0.8, len(settings) * 0.95))
for ax, key in zip(axes, settings):
    show_grid(ax, samples[key][:ncol], ncol, "")
    ax.text(-1.0, 3.5, f"{key[0]}-{key[1]}", ha="right", va="center", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## How digit-like are they?
#
# Two measures from `diffusion_core.metrics`:
#
# * **confidence**: the mean top-class probability that a logistic regression fitted on the real digits
#   gives the samples, and the smallest fraction of samples given any one label (about 0.1 when all ten
#   digits appear equally often; a low value means some digit is missing);
# * **Fréchet distance** between Gaussians fitted to the 64 pixel values of the samples and of the real
#   digits (lower is better).
#
# Both depend on the number of images, so we hold out a set of real digits of the same size as the
# samples and score it the same way: that row is the best a sampler could hope for. For reference, the
# Fréchet distance between two random halves of the real digits is printed too.

# %%
classifier = DigitsClassifier()
perm = torch.randperm(len(real), generator=torch.Generator().manual_seed(1))
held_out, reference = real[perm[:N]], real[perm[N:]]
half = len(real) // 2
fd_halves = frechet_distance(real[perm[:half]], real[perm[half:]])

rows = [("real digits (held out)", held_out, None)]
rows += [(f"{kind}-{steps}", samples[kind, steps], seconds[kind, steps]) for kind, steps in settings if steps != T]
rows += [("real digits (held out)", held_out[:N_FULL], None), (f"DDPM-{T}", samples["DDPM", T], seconds["DDPM", T])]
print(f"{'images':<24s}{'n':>5s}{'confidence':>12s}{'min class':>11s}{'Fréchet':>9s}{'seconds':>9s}")
for name, imgs, secs in rows:
    score = classifier.score(imgs)
    # a 64-pixel covariance needs more than 64 images; with fewer the distance means little
    fd_text = f"{frechet_distance(imgs, reference):.2f}" if len(imgs) > 64 else "-"
    secs_text = "" if secs is None else f"{secs:.1f}"
    print(f"{name:<24s}{len(imgs):>5d}{score.mean_confidence:>12.3f}{score.class_fractions.min():>11.3f}"
          f"{fd_text:>9s}{secs_text:>9s}")
print(f"\nFréchet distance between two random halves of the real digits ({half} vs {len(real) - half}): {fd_halves:.2f}")

# %% [markdown]
# DDPM-1000 is scored on only `N_FULL` images: its confidence is a rough number, the smallest class
# fraction is 0 unless all ten digits appear among them, and no Fréchet distance is
# given (a covariance of 64 pixels needs more than 64 images). Compare it with the real-digit row of the
# same size just above it, not with the rows at the top.

# %% [markdown]
# ## The quality bar, on 1,000 samples
#
# The training issue set a bar for the default model (`diffusion-core train` with no arguments) and
# `tests/test_quality.py` checks it after training from scratch: for 1,000 DDIM-50 samples, mean
# confidence at least 0.85, every digit at least 3% of the samples, and a Fréchet distance to the real
# digits at most 4 times the distance between two random halves of the real set. Here is the same
# measurement for the checkpoint this page loaded, which that very command made.

# %%
x_big = torch.randn(1000, channels, size, size, generator=torch.Generator().manual_seed(1))
start = time.perf_counter()
big = ddim_sample(model, diffusion, x_big, steps=50, progress=False).sample.clamp(-1, 1)
elapsed = time.perf_counter() - start
score = classifier.score(big)
split = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
fd_split = frechet_distance(real[split[:half]], real[split[half:]])
fd_big = frechet_distance(big, real)
print(f"1,000 DDIM-50 samples in {elapsed:.0f} s")
print(f"mean confidence     {score.mean_confidence:.3f}  (bar: >= 0.85)")
print(f"smallest class      {score.class_fractions.min():.3f}  (bar: >= 0.03)")
print(f"Fréchet distance    {fd_big:.3f} = {fd_big / fd_split:.2f} x the split-half distance {fd_split:.3f}  (bar: <= 4x)")
