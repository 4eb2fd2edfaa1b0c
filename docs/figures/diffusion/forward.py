"""Figures for docs/diffusion/forward-process.md."""
from figures import figure


@figure(alt="Densities of x_t for a two-bump data distribution at several steps t of the linear "
            "schedule: the two bumps shrink towards zero, widen and merge, and by t = 1000 the density "
            "is the standard normal bell curve.",
        caption="The forward marginals $q(x_t) = \\int p(x_0)\\,\\mathcal{N}(x_t; \\sqrt{\\bar\\alpha_t}\\,x_0, "
                "1-\\bar\\alpha_t)\\,dx_0$ of a 1-D two-bump data density, with $\\bar\\alpha_t$ of "
                "`NoiseSchedule.linear(1000)`. Each step shrinks the data towards 0 and adds variance; "
                "the bumps merge between $t = 200$ and $400$, and the last curve (dashed: $\\mathcal{N}(0, 1)$) is "
                "indistinguishable from the standard normal.")
def marginals():
    import numpy as np
    import torch

    from diffusion_core import NoiseSchedule

    from figures._style import axes, plt

    abar = NoiseSchedule.linear(1000, dtype=torch.float64).alphas_cumprod.numpy()
    x = np.linspace(-4, 4, 801)
    weights, means, stds = [0.6, 0.4], [-1.5, 1.8], [0.25, 0.35]

    def density(a2):
        a = np.sqrt(a2)
        return sum(w * np.exp(-(x - a * m) ** 2 / (2 * (a2 * s**2 + 1 - a2)))
                   / np.sqrt(2 * np.pi * (a2 * s**2 + 1 - a2)) for w, m, s in zip(weights, means, stds))

    fig, ax = axes()
    steps = [0, 10, 30, 60, 100, 200, 400, 1000]
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(steps)))
    for t, c in zip(steps, colours):
        ax.plot(x, density(1.0 if t == 0 else abar[t - 1]), color=c, lw=1.6,
                label="data" if t == 0 else f"$t = {t}$")
    ax.plot(x, np.exp(-x**2 / 2) / np.sqrt(2 * np.pi), "k--", lw=1, label="$\\mathcal{N}(0, 1)$")
    ax.set_xlabel("$x_t$"), ax.set_ylabel("density")
    ax.legend(fontsize=8, ncol=2, frameon=False)
    return fig
