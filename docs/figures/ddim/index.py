"""Figures for docs/ddim/index.md."""
from figures import figure


@figure(alt="Two graphs of the same states x0, x_{t-1}, x_t, x_T. Top, DDPM: the forward process is a "
            "chain, each state depending only on the one before. Bottom, DDIM: every forward step also has "
            "an arrow from x0, so the process is not Markov, while each state's marginal given x0 is the "
            "same as DDPM's.",
        caption="DDPM's forward process is a Markov chain (top). DDIM's (bottom) lets each forward step "
                "$q_\\sigma(x_t \\mid x_{t-1}, x_0)$ also look at $x_0$ (grey arrows), which is what allows "
                "$q_\\sigma(x_{t-1} \\mid x_t, x_0)$ to be chosen freely while every marginal "
                "$q(x_t \\mid x_0)$ stays DDPM's; the loss only sees those marginals.")
def graphs():
    from figures._style import GREY, ORANGE, arrow, node, plt

    fig, axs = plt.subplots(2, 1, figsize=(7.2, 4.4))
    for ax, title, markov in ((axs[0], "DDPM: Markov", True), (axs[1], "DDIM: not Markov", False)):
        ax.set_xlim(-0.8, 9.6), ax.set_ylim(-0.7, 2.3), ax.set_aspect("equal"), ax.axis("off")
        xs, names = [0, 3, 5.5, 9], ["$x_0$", "$x_{t-1}$", "$x_t$", "$x_T$"]
        for x, name in zip(xs, names):
            node(ax, x, 0, name, shaded=name == "$x_0$")
        ax.text(1.5, 0, "...", ha="center", va="center", fontsize=14)
        ax.text(7.25, 0, "...", ha="center", va="center", fontsize=14)
        arrow(ax, (3, 0), (5.5, 0), colour=ORANGE)
        arrow(ax, (0, 0), (1.2, 0), colour=ORANGE)
        arrow(ax, (5.5, 0), (6.9, 0), colour=ORANGE)
        if not markov:
            arrow(ax, (0, 0.3), (5.5, 0.3), colour=GREY, rad=-0.25)
            arrow(ax, (0, 0.3), (9, 0.3), colour=GREY, rad=-0.2)
        ax.text(-0.7, 2.0, title, fontsize=10, ha="left")
    fig.tight_layout()
    return fig
