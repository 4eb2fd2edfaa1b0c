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
# # A DDPM on a 2-D swiss roll
#
# Points in the plane are the smallest data a diffusion model can learn, and the whole reverse process
# can be watched at once. The model here is a small MLP trained with the project's command line for
# 3,000 steps (`diffusion-core train`, with the settings `diffusion_core.examples.RECIPES["swiss-roll"]`). Like
# every model the command line trains by default, it predicts
# $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0$ (Salimans and Ho, 2022) rather than the
# noise $\epsilon$; the last section shows why. This page loads that checkpoint from `checkpoints/swiss-roll/`
# beside it and only samples from it; run on its own, without that folder, it first trains the checkpoint there
# (71 s on the idle 2-core AMD EPYC development VM of 2026-12-06, a CPU without native bf16).

# %%
import base64
import io
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML, display
from PIL import Image

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets; no bars here

from diffusion_core import ddim_sample, ddpm_sample
from diffusion_core.examples import example_checkpoint
from diffusion_core.metrics import sliced_wasserstein
from diffusion_core.train import TrainConfig, load_checkpoint, load_model, toy_data

ckpt = load_checkpoint(example_checkpoint("swiss-roll"))  # trained first when checkpoints/swiss-roll/ is missing
config = TrainConfig.from_dict(ckpt.train_config)
model = load_model(ckpt)  # in eval mode, with the exponential moving average of the weights
diffusion = config.diffusion()
print(f"trained {ckpt.step} steps on {config.dataset.value}; "
      f"{sum(p.numel() for p in model.parameters()):,} parameters")
print(diffusion)

# %% [markdown]
# ## Sampling
#
# Ancestral sampling (Ho et al., algorithm 2) starts from $x_T \sim \mathcal N(0, I)$ and repeats
# $x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z$ down to $t = 0$. To keep this page quick to build we take
# 100 of the $T = 1000$ steps: the schedule is respaced as in improved DDPM, keeping $\bar\alpha_t$ at the
# kept steps and recomputing the $\beta$ between them. With `return_trajectory=True` the sampler also
# returns every intermediate state.

# %%
torch.set_num_threads(1)  # a small network: one thread is as fast, and behaves on a busy machine

N, STEPS = 2000, 100
g = torch.Generator().manual_seed(0)
x_T = torch.randn(N, 2, generator=g)
start = time.perf_counter()
result = ddpm_sample(model, diffusion, x_T, steps=STEPS, generator=g, progress=False, return_trajectory=True)
print(f"{STEPS} DDPM steps for {N} points: {time.perf_counter() - start:.1f} s")
trajectory = result.trajectory  # (STEPS + 1, N, 2): trajectory[k] is the state after k steps
samples = result.sample
print("trajectory:", tuple(trajectory.shape))

# %% [markdown]
# ## The reverse process, animated
#
# 40 of the 101 states, closer together near the end, where the roll takes shape.

# %%
kept = diffusion.respaced(STEPS).schedule.timesteps  # the original step of each respaced index
frame_steps = sorted({round(STEPS * (i / 39) ** 0.5) for i in range(40)})
fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
frames = []
for k in frame_steps:
    ax.clear()
    pts = trajectory[k].numpy()
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color="tab:blue")
    ax.set_xlim(-2.5, 2.5)
    ax.set_ylim(-2.5, 2.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    t_now = "t = 0" if k == STEPS else f"t = {kept[STEPS - 1 - k].item() + 1}"
    ax.set_title(f"step {k} of {STEPS} ({t_now})", fontsize=10)
    fig.canvas.draw()
    frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()).quantize(colors=64))
plt.close(fig)
durations = [120] * (len(frames) - 1) + [1500]
buf = io.BytesIO()
frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
gif = base64.b64encode(buf.getvalue()).decode("ascii")
display(HTML(f'<img src="data:image/gif;base64,{gif}" alt="DDPM reverse process on the swiss roll">'))
print(f"GIF: {len(frames)} frames, {len(buf.getvalue()) / 1024:.0f} KiB")

# %% [markdown]
# ## Data against samples
#
# To put a number on "looks right" we use the sliced Wasserstein distance: project both point sets onto
# many random directions and average the 1-D Wasserstein distances. Two independent draws of the same
# size from the true distribution are not at distance zero, so their distance is the floor to compare with.

# %%
data_a = toy_data(config.dataset, N, torch.Generator().manual_seed(1))
data_b = toy_data(config.dataset, N, torch.Generator().manual_seed(2))

fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), sharex=True, sharey=True)
for ax, pts, title in ((axes[0], data_a, "data"), (axes[1], samples, f"DDPM samples ({STEPS} steps)")):
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
    ax.set_title(f"{title}, {N} points")
    ax.set_aspect("equal")
plt.tight_layout()
plt.show()

sw_model = sliced_wasserstein(samples, data_a)
sw_floor = sliced_wasserstein(data_b, data_a)
print(f"sliced Wasserstein, samples vs data:      {sw_model:.4f}")
print(f"sliced Wasserstein, data vs another draw: {sw_floor:.4f}")
print(f"ratio: {sw_model / sw_floor:.2f}")

# %% [markdown]
# ## DDIM with few steps, and why the network predicts the velocity
#
# Deterministic DDIM ($\eta = 0$) needs far fewer steps. Its first step jumps from $t = T$, where the cosine
# schedule leaves $\bar\alpha_T \approx 2 \times 10^{-9}$ of the signal. A network that predicts $\epsilon$
# gives $\hat x_0 = (x_T - \sqrt{1-\bar\alpha_T}\,\hat\epsilon)/\sqrt{\bar\alpha_T}$, which multiplies its error by
# $1/\sqrt{\bar\alpha_T} \approx 2 \times 10^4$; from $v$, $\hat x_0 = \sqrt{\bar\alpha_T}\,x_T - \sqrt{1-\bar\alpha_T}\,\hat v$
# passes the error through unchanged. (Clipping $\hat x_0$ to the data's range is the other cure; the
# digits models use it, but 2-D data has no natural range.) The distances of this checkpoint's DDIM samples,
# against the same floor as above:

# %%
for steps in (50, 10):
    start = time.perf_counter()
    ddim = ddim_sample(model, diffusion, x_T, steps=steps, progress=False).sample
    sw = sliced_wasserstein(ddim, data_a)
    print(f"DDIM-{steps}: sliced Wasserstein {sw:.4f} = {sw / sw_floor:.2f} x the floor "
          f"({time.perf_counter() - start:.1f} s)")
