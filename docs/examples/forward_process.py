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
# # The forward process on a photo
#
# The forward process needs no network: it only mixes the image with Gaussian noise. In closed form,
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ with $\epsilon \sim \mathcal N(0, I)$.
# Here we apply it to a photo that ships with matplotlib (Grace Hopper), using the linear schedule of
# Ho et al. with $T = 1000$ steps and one fixed draw of $\epsilon$, so the frames differ only in $t$.

# %%
import base64
import io
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML, display
from IPython.display import Image as IPImage
from matplotlib import cbook
from PIL import Image

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets; no bars here

from diffusion_core import NoiseSchedule
from diffusion_core.forward import q_sample

SIZE = 128
path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
with Image.open(path) as im:
    im = im.convert("RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BICUBIC)
    pixels = np.asarray(im, dtype=np.float32)

# (1, 3, H, W) in [-1, 1], the range the models are trained on
x0 = torch.from_numpy(pixels / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0)
print("x0:", tuple(x0.shape), f"min {x0.min():.2f}, max {x0.max():.2f}")

schedule = NoiseSchedule.linear(1000)
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))


def noised(t: int) -> torch.Tensor:
    """x_t for the photo at index t (0-based, as in the library), always with the same noise."""
    return q_sample(schedule, x0, torch.tensor([t]), noise=noise)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8; values outside [-1, 1] are clipped for display."""
    return ((x[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()


def show_jpeg(fig) -> None:
    """Embed a figure as a JPEG: noisy photos take several times more bytes as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", dpi=100, bbox_inches="tight", pil_kwargs={"quality": 85})
    plt.close(fig)
    display(IPImage(data=buf.getvalue(), format="jpeg"))


# %% [markdown]
# ## A strip of frames
#
# The title of each frame gives $t$ and $\sqrt{\bar\alpha_t}$, the weight left on the photo.
# With the linear schedule the image is still recognisable at $t = 200$ and is close to pure noise by
# $t \approx 600$; the remaining steps add almost nothing visible.

# %%
ts = [0, 50, 100, 200, 300, 400, 600, 999]
fig, axes = plt.subplots(2, 4, figsize=(8, 4.8))
for ax, t in zip(axes.flat, ts):
    ax.imshow(to_uint8(noised(t)))
    ax.set_title(f"t = {t},  $\\sqrt{{\\bar\\alpha_t}}$ = {schedule.sqrt_alphas_cumprod[t]:.3f}", fontsize=10)
    ax.axis("off")
plt.tight_layout()
show_jpeg(fig)

# %% [markdown]
# ## The same, animated
#
# Frames every 20 steps up to $t = 400$, where most of the visible change happens, then every 100 steps
# up to $t = 999$; the last frame is held for a moment.

# %%
from PIL import ImageDraw

gif_ts = list(range(0, 400, 20)) + list(range(400, 1000, 100)) + [999]
frames = []
for t in gif_ts:
    frame = Image.new("RGB", (SIZE, SIZE + 14), "white")
    frame.paste(Image.fromarray(to_uint8(noised(t))), (0, 0))
    ImageDraw.Draw(frame).text((4, SIZE + 1), f"t = {t}", fill="black")
    frames.append(frame)
durations = [150] * (len(frames) - 1) + [1500]
buf = io.BytesIO()
frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
gif = base64.b64encode(buf.getvalue()).decode("ascii")
display(HTML(f'<img src="data:image/gif;base64,{gif}" alt="The photo noised for t = 0 to 999" '
             f'width="{2 * SIZE}" style="image-rendering: pixelated">'))
print(f"GIF: {len(frames)} frames, {len(buf.getvalue()) / 1024:.0f} KiB")

# %% [markdown]
# ## Checking the noise level
#
# Since $x_t - \sqrt{\bar\alpha_t}\,x_0 = \sqrt{1-\bar\alpha_t}\,\epsilon$, the pixels of that difference
# should have standard deviation $\sqrt{1-\bar\alpha_t}$. We measure it over the
# $3 \times 128 \times 128 = 49{,}152$ pixels of the one image; its relative standard error is about
# $1/\sqrt{2 \cdot 49152} \approx 0.3\%$. The ratio is the same at every $t$ because every frame uses
# the same draw of $\epsilon$; what the check confirms is that the noise is scaled by $\sqrt{1-\bar\alpha_t}$.

# %%
for t in (100, 400, 999):
    x_t = noised(t)
    residual = x_t - schedule.sqrt_alphas_cumprod[t] * x0
    measured = residual.std().item()
    expected = schedule.sqrt_one_minus_alphas_cumprod[t].item()
    print(f"t = {t:3d}: measured std {measured:.4f}, sqrt(1 - alpha_bar_t) = {expected:.4f}, "
          f"ratio {measured / expected:.4f}")
    assert abs(measured / expected - 1) < 0.02
