"""Figures for docs/diffusion/introduction.md."""
from figures import figure


@figure(alt="A chain of states x0, x1, ..., xT. Arrows to the right, labelled q, noise the data; arrows "
            "to the left, labelled p-theta, remove noise. Above the chain, scatter plots of a 2-D swiss "
            "roll at t = 0, 10, 50 and 1000 show the roll dissolving into a round cloud of noise.",
        caption="The two processes. Above: 2,000 points of a swiss roll noised with the linear schedule "
                "by `diffusion_core.forward.q_sample`, at $t = 0$, 10, 50 and 1000. Below: the forward process $q$ "
                "(right-pointing arrows) is fixed; the reverse process $p_\\theta$ (left-pointing arrows) is "
                "what the network learns. Sampling follows the left-pointing arrows only.")
def chains():
    import torch

    from diffusion_core import NoiseSchedule
    from diffusion_core.forward import q_sample
    from diffusion_core.train.data import toy_data

    from figures._style import GREY, INDIGO, ORANGE, arrow, node, plt

    schedule = NoiseSchedule.linear(1000, dtype=torch.float64)
    x0 = toy_data("swiss-roll", 2000, generator=torch.Generator().manual_seed(0)).double()
    fig = plt.figure(figsize=(7.2, 4.0))
    steps = [0, 10, 50, 1000]
    for k, t in enumerate(steps):
        ax = fig.add_axes([0.04 + 0.245 * k, 0.5, 0.2, 0.45])
        x = x0 if t == 0 else q_sample(schedule, x0, torch.full((2000,), t - 1),
                                        generator=torch.Generator().manual_seed(1))
        ax.scatter(x[:, 0], x[:, 1], s=1, color=INDIGO, alpha=0.5)
        ax.set_xlim(-3.5, 3.5), ax.set_ylim(-3.5, 3.5), ax.set_xticks([]), ax.set_yticks([])
        ax.set_aspect("equal")
        ax.set_title(f"$x_{{{t}}}$" if t else "$x_0$ (data)", fontsize=10)
    ax = fig.add_axes([0.0, 0.0, 1.0, 0.45])
    ax.set_xlim(-0.6, 9.6), ax.set_ylim(-1.3, 1.3), ax.axis("off")
    xs = [0, 2, 4, 6.5, 9]
    names = ["$x_0$", "$x_1$", "$x_{t-1}$", "$x_t$", "$x_T$"]
    for x, name in zip(xs, names):
        node(ax, x, 0, name, shaded=name == "$x_0$")
    ax.text(3.0, 0, "...", ha="center", va="center", fontsize=14)
    ax.text(7.75, 0, "...", ha="center", va="center", fontsize=14)
    arrow(ax, (4, 0.25), (6.5, 0.25), colour=ORANGE, rad=-0.35, label="$q(x_t \\mid x_{t-1})$",
          label_at=(5.25, 0.95))
    arrow(ax, (6.5, -0.25), (4, -0.25), colour=INDIGO, rad=-0.35, label="$p_\\theta(x_{t-1} \\mid x_t)$",
          label_at=(5.25, -0.95))
    arrow(ax, (0, 0.25), (2, 0.25), colour=ORANGE, rad=-0.35)
    arrow(ax, (2, -0.25), (0, -0.25), colour=INDIGO, rad=-0.35)
    ax.text(9.0, -0.75, "$\\mathcal{N}(0, I)$", ha="center", fontsize=9, color=GREY)
    return fig
