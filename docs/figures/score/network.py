"""Figures for docs/score/network.md, drawn from diffusion_core.nn's modules themselves."""
from figures import figure


def _walk(config):
    """[(part, kind, channels, resolution, attention)] for every block of the U-Net built from ``config``
    (on the meta device: no memory, no weights), read off the modules, not the config."""
    import torch

    from diffusion_core.nn.unet import AttentionBlock, Downsample, ResBlock, UNet, Upsample

    with torch.device("meta"):
        net = UNet(config)
    res, blocks = config.image_size, []

    def visit(part, seq):
        nonlocal res
        for block in seq:
            mods = list(block)
            width = next((m.conv1.out_channels for m in mods if isinstance(m, ResBlock)), None)
            if width is not None:
                blocks.append((part, "res", width, res, any(isinstance(m, AttentionBlock) for m in mods)))
            if any(isinstance(m, Downsample) for m in mods):
                res //= 2
                blocks.append((part, "down", None, res, False))
            if any(isinstance(m, Upsample) for m in mods):
                res *= 2
                blocks.append((part, "up", None, res, False))

    visit("encoder", net.down)
    visit("middle", [net.middle])
    visit("decoder", net.up)
    return net, blocks


@figure(alt="The ddpm-cifar10 U-Net drawn as a U: residual blocks as boxes labelled with their channel "
            "count, placed lower the smaller their resolution (32, 16, 8, 4), attention blocks shaded, "
            "downsampling on the way down, upsampling on the way up.",
        caption="`ddpm-cifar10` (Ho et al. 2020's CIFAR-10 network) as `diffusion_core.nn.UNet` builds it, "
                "read off the module at build time: each box is a residual block with its output channels, "
                "its height the resolution it works at; shaded boxes also carry self-attention (at "
                "$16 \\times 16$ and in the middle). Every encoder output is concatenated into the decoder "
                "at the same resolution (the skip connections, not drawn). The time embedding enters every "
                "residual block.")
def architecture():
    from matplotlib.patches import FancyBboxPatch

    from diffusion_core.nn.presets import get_preset

    from figures._style import INDIGO, ORANGE, plt

    config = get_preset("ddpm-cifar10")
    _, blocks = _walk(config)
    levels = sorted({r for *_, r, _a in blocks}, reverse=True)
    fig, ax = plt.subplots(figsize=(7.4, 3.4))
    x = 0.0
    for part, kind, width, res, attention in blocks:
        y = -levels.index(res)
        if kind == "res":
            ax.add_patch(FancyBboxPatch((x - 0.36, y - 0.36), 0.72, 0.72, boxstyle="round,pad=0.02",
                                        facecolor="#ffe0b2" if attention else "#e8eaf6",
                                        edgecolor=ORANGE if attention else INDIGO, lw=1))
            ax.text(x, y, str(width), ha="center", va="center", fontsize=6.5, rotation=90)
        else:
            # from the previous level (one row up for a downsample, one row down for an upsample)
            ax.annotate("", xy=(x, y), xytext=(x, y + (0.9 if kind == "down" else -0.9)),
                        arrowprops=dict(arrowstyle="-|>", color="#757575", lw=1))
        x += 1.0
    for k, r in enumerate(levels):
        ax.text(-1.2, -k, f"{r}×{r}", ha="right", va="center", fontsize=8)
    ax.set_xlim(-2.6, x), ax.set_ylim(-len(levels) + 0.4, 0.7), ax.axis("off")
    ax.text(-1.2, 0.55, "resolution", ha="right", fontsize=8)
    return fig


@figure(alt="A heat map of the sinusoidal time embedding, 128 features against timestep 0 to 999: the "
            "first features oscillate quickly with t, later ones ever more slowly, the last ones barely "
            "change.",
        caption="The time embedding `timestep_embedding(t, 128)` for every $t$: the first 64 features are "
                "$\\sin(t f_i)$, the last 64 $\\cos(t f_i)$, with frequencies $f_i$ from 1 down to $10^{-4}$. "
                "Fast features tell neighbouring steps apart, slow ones say roughly where in the process "
                "$t$ is; together every step gets a distinct, smoothly varying code.")
def time_embedding():
    import torch

    from diffusion_core.nn.embedding import timestep_embedding

    from figures._style import plt

    emb = timestep_embedding(torch.arange(1000), 128).numpy()
    fig, ax = plt.subplots(figsize=(7.2, 2.8), constrained_layout=True)
    image = ax.imshow(emb.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xlabel("timestep $t$"), ax.set_ylabel("feature")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return fig


@figure(alt="A horizontal bar chart of parameter counts per preset on a log scale: ddpm-cifar10 about 35.7 "
            "million, tiny-32 and mnist-28 a few million or less, digits-8 and tiny far smaller.",
        caption="Parameters of each `diffusion_core.nn` preset, counted at build time with `count_parameters` "
                "on networks built on the meta device (no memory used). `ddpm-cifar10` matches the 35.7M of "
                "Ho et al. (2020), appendix B.")
def parameter_counts():
    import torch

    from diffusion_core.nn.presets import build_unet, count_parameters, list_presets

    from figures._style import INDIGO, axes

    names, counts = [], []
    for name in list_presets():
        with torch.device("meta"):
            counts.append(count_parameters(build_unet(name)))
        names.append(name)
    fig, ax = axes(size=(7.2, 2.6))
    ax.barh(names, counts, color=INDIGO)
    ax.set_xscale("log"), ax.set_xlabel("parameters")
    for y, c in enumerate(counts):
        ax.text(c * 1.08, y, f"{c / 1e6:.2f}M" if c >= 1e5 else f"{c:,}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(right=max(counts) * 6)
    return fig
