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
# # To and from diffusers
#
# A model trained here can leave as a diffusers `DDPMPipeline` folder, and a diffusers `UNet2DModel` folder can come
# in and be sampled with any of our samplers, guided, or fine-tuned. This page does both with the digits models of
# the other examples, and checks on the way that the two libraries compute the same samples. It needs diffusers
# besides our package (`pip install diffusion-core-torch diffusers`); nothing is downloaded.
#
# From the shell, each direction is one command:
#
# ```bash
# diffusion-core export --checkpoint runs/digits/checkpoint.safetensors --to diffusers digits-pipe
# diffusion-core sample --checkpoint digits-pipe --sampler dpmpp-2m --steps 20 --out from-diffusers.png
# diffusion-core train --init-from digits-pipe --steps 200 --out-dir runs/fine-tuned   # fine-tune it
# ```
#
# Where the conventions could differ, they do not: both feed the network the integer timestep $0 .. T-1$ (our index
# $t$ is the paper's step $t + 1$) through the same sinusoids (`flip_sin_to_cos=False`, `freq_shift=1`), and the
# spacings `linspace`, `leading`, `trailing` give diffusers' timesteps index for index. Two things to know: export
# writes the **EMA weights** by default, and a class-conditional network's **null label** (the row classifier-free
# guidance uses) is the last of diffusers' `num_class_embeds` rows.

# %%
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets; no bars here

from diffusers import DDIMScheduler, DDPMPipeline
from diffusers.utils.logging import disable_progress_bar

from diffusion_core import ClassifierFreeGuidance, ddim_sample, ddpm_sample, dpmpp_2m_sample
from diffusion_core.examples import example_checkpoint
from diffusion_core.train import TrainConfig, export_diffusers, load_checkpoint, load_diffusers, load_model
from diffusion_core.train.images import image_grid

start_time = time.perf_counter()
disable_progress_bar()  # diffusers' loading bars
torch.set_num_threads(1)  # the 8x8 network is small: one thread is as fast, and kind to a busy machine
work = Path(tempfile.mkdtemp())
checkpoint = example_checkpoint("digits")  # trained first when checkpoints/digits/ is missing
exported = export_diffusers(checkpoint, work / "digits-pipe")
print("wrote", sorted(str(p.relative_to(exported.path)) for p in exported.path.rglob("*") if p.is_file()))
print("EMA weights" if exported.ema else "raw weights")


def rel_err(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs|"""
    return float((ours - theirs).abs().max() / theirs.abs().max())


# %% [markdown]
# ## Ours to diffusers
#
# The folder loads in `DDPMPipeline.from_pretrained` like any pipeline. Its own DDPM sampler, 50 steps placed by the
# scheduler's `timestep_spacing` (export writes our default, `linspace`), and ours draw the same noise from the same
# seed: the starting $x_T$, then one draw per step. The pipeline returns images in $[0, 1]$; ours are in the data's
# $[-1, 1]$.

# %%
pipe = DDPMPipeline.from_pretrained(exported.path, low_cpu_mem_usage=False)  # False: no `accelerate` needed
pipe.set_progress_bar_config(disable=True)
theirs = pipe(batch_size=16, generator=torch.Generator().manual_seed(0), num_inference_steps=50,
              output_type="np").images  # (16, 8, 8, 1) in [0, 1]
theirs = torch.from_numpy(theirs).permute(0, 3, 1, 2) * 2 - 1

ckpt = load_checkpoint(example_checkpoint("digits"))  # the same file as `checkpoint` above
model, diffusion = load_model(ckpt), TrainConfig.from_dict(ckpt.train_config).diffusion()
g = torch.Generator().manual_seed(0)
x_T = torch.randn(16, 1, 8, 8, generator=g)
ours = ddpm_sample(model, diffusion, x_T, steps=50, generator=g, progress=False).sample.clamp(-1, 1)
print(f"DDPM, 50 steps: relative difference {rel_err(ours, theirs):.1e}")
assert rel_err(ours, theirs) < 1e-4

# %% [markdown]
# DDIM goes through diffusers' scheduler loop, the way their pipelines run it. `use_clipped_model_output=True`
# recomputes $\hat\epsilon$ from the clipped $\hat x_0$, which is what our clip does.
#
# One convention differs, and it is diffusers': `DDIMScheduler.step` moves from timestep $t$ to $t - \lfloor T/n
# \rfloor$ whatever the spacing, which is the next timestep of the grid for `leading`, and for `trailing` when $n$
# divides $T$, but not for `linspace` (at $n = 20$: $999 \to 949$, while the next network call is at $946$). So their
# `linspace` DDIM is not DDIM on the `linspace` grid; ours is. We compare on `trailing`, and print the other too.

# %%
def diffusers_ddim(x_T: torch.Tensor, steps: int, spacing: str) -> torch.Tensor:
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    x = x_T.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(pipe.unet(x, t).sample, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    return x


for spacing in ("trailing", "linspace"):
    ours_ddim = ddim_sample(model, diffusion, x_T, steps=20, spacing=spacing, progress=False).sample
    print(f"DDIM, 20 steps, {spacing}: relative difference {rel_err(ours_ddim, diffusers_ddim(x_T, 20, spacing)):.1e}")
    if spacing == "trailing":
        assert rel_err(ours_ddim, diffusers_ddim(x_T, 20, spacing)) < 1e-4

fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
for ax, images, title in zip(axes, (theirs, ours), ("DDPMPipeline (diffusers)", "ddpm_sample (ours)")):
    ax.imshow(image_grid(images, nrow=4), cmap="gray")
    ax.set_title(title)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Diffusers to ours
#
# `load_diffusers` reads a pipeline folder (or a bare `UNet2DModel` folder with its scheduler config): the network,
# renamed weight by weight through one explicit table, and the DDPM its scheduler describes. A field our U-Net has
# no equivalent for is refused, naming it. Here the folder is the class-conditional digits model, exported the same
# way; a folder written by diffusers' `save_pretrained` reads alike. From there every sampler applies, and so does
# classifier-free guidance: DPM-Solver++(2M), 20 steps, scale 2, one row per class.

# %%
folder = export_diffusers(example_checkpoint("digits-cond"), work / "digits-cond-pipe").path
imported = load_diffusers(folder)
network = imported.network()
print(f"{len(imported.class_names)} classes, null label {network.config.num_classes}; "
      f"{imported.diffusion.num_timesteps} steps, predicts {imported.diffusion.parameterization.value}")

labels = torch.arange(len(imported.class_names)).repeat_interleave(8)
x_T = torch.randn(len(labels), 1, 8, 8, generator=torch.Generator().manual_seed(1))
guided = dpmpp_2m_sample(ClassifierFreeGuidance(network, 2.0), imported.diffusion, x_T, steps=20, labels=labels,
                         progress=False).sample.clamp(-1, 1)
assert torch.isfinite(guided).all()

plt.figure(figsize=(4, 5))
plt.imshow(image_grid(guided, nrow=8), cmap="gray")
plt.title("imported, guided (s = 2), a row per class")
plt.axis("off")
plt.show()
print(f"this page ran in {time.perf_counter() - start_time:.0f} s")
