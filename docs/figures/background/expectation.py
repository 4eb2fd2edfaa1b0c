"""Figures for docs/background/expectation-variance.md."""
from figures import figure


@figure(alt="A skewed density with a long right tail. A vertical line marks its mean, to the right of the "
            "peak, and a shaded band one standard deviation either side of the mean; 2,000 samples are "
            "drawn as a rug below, and their average sits almost on the mean line.",
        caption="The mean is the balance point of the density, not its peak: for this gamma density "
                "(shape 2, scale 1) $\\mathbb{E}[X] = 2$ lies to the right of the mode at 1, pulled by the long "
                "tail. The band is $\\mathbb{E}[X] \\pm \\sqrt{\\operatorname{Var}[X]}$, "
                "$\\operatorname{Var}[X] = 2$. The rug shows 2,000 draws; their average (dotted) is close to "
                "the mean, as the next sections' linearity and variance rules predict.")
def mean_and_spread():
    import numpy as np

    from figures._style import GREY, INDIGO, ORANGE, axes

    x = np.linspace(0, 10, 600)
    density = x * np.exp(-x)                       # gamma(shape 2, scale 1)
    draws = np.random.default_rng(0).gamma(2.0, 1.0, 2000)
    mean, sd = 2.0, np.sqrt(2.0)
    fig, ax = axes()
    ax.plot(x, density, color=INDIGO, lw=1.8, label="density $p(x)$")
    ax.axvspan(mean - sd, mean + sd, color=ORANGE, alpha=0.12, label="mean $\\pm$ one standard deviation")
    ax.axvline(mean, color=ORANGE, lw=1.6, label="$\\mathbb{E}[X] = 2$")
    ax.axvline(draws.mean(), color=GREY, lw=1.2, ls=":", label=f"average of the draws: {draws.mean():.3f}")
    ax.plot(draws, np.full_like(draws, -0.015), "|", color=GREY, alpha=0.25, ms=6)
    ax.set_xlabel("$x$"), ax.set_ylabel("density"), ax.set_ylim(-0.03, 0.42)
    ax.legend(fontsize=8, frameon=False)
    return fig
