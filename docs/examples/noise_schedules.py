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
# # Four noise schedules side by side
#
# A schedule is the list of $\beta_t$; everything the forward process does follows from
# $\bar\alpha_t = \prod_{s \le t}(1-\beta_s)$. The library has four: **linear** (Ho et al. 2020),
# **cosine** (Nichol & Dhariwal 2021), **quadratic** ($\sqrt{\beta_t}$ linear) and **sigmoid**
# ($\beta_t$ following a logistic ramp). All four here use $T = 1000$ and the library's default end points.

# %%
import io
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image as IPImage
from IPython.display import display
from matplotlib import cbook
from PIL import Image

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets; no bars here

from diffusion_core import NoiseSchedule
from diffusion_core.forward import q_sample

T = 1000
KINDS = ["linear", "cosine", "quadratic", "sigmoid"]
schedules = {kind: NoiseSchedule.make(kind, T).to(dtype=torch.float64) for kind in KINDS}
for kind, s in schedules.items():
    print(f"{kind:9s} beta from {s.betas[0]:.3g} to {s.betas[-1]:.3g}, alpha_bar_T = {s.alphas_cumprod[-1]:.3g}")

# %% [markdown]
# ## Signal left and signal-to-noise ratio
#
# The signal-to-noise ratio is $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$. The linear schedule
# brings $\bar\alpha_t$ down fastest and then spends its last few hundred steps at very low SNR, where
# little of the image is left. The cosine schedule falls more evenly and reaches SNR 1 ($\log \mathrm{SNR} = 0$)
# latest; its final plunge comes from the last few steps, where $\bar\alpha_t \to 0$ and $\beta_t$
# is clipped at 0.999.

# %%
frac = (np.arange(T) + 1) / T  # index t is the paper's step t + 1
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
for kind, s in schedules.items():
    ax1.plot(frac, s.alphas_cumprod.numpy(), label=kind)
    ax2.plot(frac, torch.log(s.snr).numpy(), label=kind)
ax1.set_xlabel("t / T")
ax1.set_ylabel(r"$\bar\alpha_t$")
ax1.set_title(r"$\bar\alpha_t$")
ax2.set_xlabel("t / T")
ax2.set_ylabel(r"$\log\,\mathrm{SNR}(t)$")
ax2.set_title("log SNR")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The same numbers as a table, read from the schedules (index $t$, 0-based as in the library):

# %%
table_ts = [0, 99, 249, 499, 749, 899, 999]
print("alpha_bar_t".ljust(12) + "".join(f"{f't={t}':<12s}" for t in table_ts))
for kind, s in schedules.items():
    print(kind.ljust(12) + "".join(f"{s.alphas_cumprod[t].item():<12.5g}" for t in table_ts))

# %% [markdown]
# ## What the schedules do to a photo
#
# Each row noises the same photo with the same $\epsilon$ at the same steps; only the schedule differs.
# Under the cosine schedule the photo survives longer (it is still visible around $t = 500$), and all
# four end close to pure noise.

# %%
SIZE = 96
path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
with Image.open(path) as im:
    im = im.convert("RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BICUBIC)
    x0 = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0)
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))

grid_ts = [0, 100, 250, 400, 550, 700, 850, 999]
fig, axes = plt.subplots(len(KINDS), len(grid_ts), figsize=(1.6 * len(grid_ts), 1.75 * len(KINDS)))
for row, (kind, s) in enumerate(schedules.items()):
    s32 = s.to(dtype=torch.float32)
    for col, t in enumerate(grid_ts):
        x_t = q_sample(s32, x0, torch.tensor([t]), noise=noise)
        ax = axes[row, col]
        ax.imshow(((x_t[0].permute(1, 2, 0).clamp(-1, 1) + 1) / 2).numpy())
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(f"t = {t}", fontsize=10)
        if col == 0:
            ax.set_ylabel(kind, fontsize=10)
plt.tight_layout()
buf = io.BytesIO()  # a JPEG: the noisy photos take several times more bytes as PNG
fig.savefig(buf, format="jpeg", dpi=100, bbox_inches="tight", pil_kwargs={"quality": 85})
plt.close(fig)
display(IPImage(data=buf.getvalue(), format="jpeg"))
