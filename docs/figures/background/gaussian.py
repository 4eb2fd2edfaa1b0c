"""Figures for docs/background/gaussian-conditioning.md."""
from figures import figure


@figure(alt="Two panels. Each shows a wide prior density centred at 0, the closed-form posterior density after "
            "observing y = 2, and a histogram of prior draws whose simulated observation landed near 2. On the "
            "left the observation is precise and the posterior sits close to 2 and is narrow; on the right it "
            "is noisy and the posterior stays near 0 and is wide. The histograms follow the posterior curves.",
        caption="Conditioning by simulation. Draw $x \\sim \\mathcal{N}(0, 1)$ and $y = x + \\sigma n$ a million "
                "times, keep the draws whose $y$ lies within 0.02 of the observed $y = 2$: the kept $x$ "
                "(histogram) follow the posterior of this page (curve), mean $y/(1+\\sigma^2)$, variance "
                "$\\sigma^2/(1+\\sigma^2)$. A precise observation ($\\sigma = 0.5$, left) moves the mean most of "
                "the way to $y$; a noisy one ($\\sigma = 1.5$, right) leaves it near the prior's.")
def posterior_by_simulation():
    import numpy as np

    from figures._style import GREY, INDIGO, ORANGE, axes

    rng = np.random.default_rng(0)
    y_obs, grid = 2.0, np.linspace(-3, 4, 400)
    normal = lambda z, m, v: np.exp(-(z - m) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v)  # noqa: E731
    fig, panels = axes(2, sharey=True)
    for ax, sigma in zip(panels, (0.5, 1.5)):
        x = rng.standard_normal(1_000_000)
        y = x + sigma * rng.standard_normal(x.size)
        kept = x[np.abs(y - y_obs) < 0.02]
        mean, var = y_obs / (1 + sigma**2), sigma**2 / (1 + sigma**2)
        ax.plot(grid, normal(grid, 0.0, 1.0), color=GREY, lw=1.4, label="prior $\\mathcal{N}(0, 1)$")
        ax.hist(kept, bins=40, density=True, color=ORANGE, alpha=0.35, label=f"kept draws ({kept.size:,})")
        ax.plot(grid, normal(grid, mean, var), color=INDIGO, lw=1.8, label="posterior, closed form")
        ax.axvline(y_obs, color=GREY, ls=":", lw=1)
        ax.set_title(f"$\\sigma = {sigma}$", fontsize=10)
        ax.set_xlabel("$x$")
    panels[0].legend(fontsize=8, frameon=False, loc="upper left")
    return fig
