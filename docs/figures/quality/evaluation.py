"""Figures for docs/quality/evaluation.md."""
from figures import figure


@figure(alt="A log-log plot of the Fréchet distance between two samples of the same one-dimensional normal data "
            "against the sample size N from 5 to 1,000. Dots, the average over many pairs, lie on a falling line, "
            "the closed form; its slope is minus one.",
        caption="Two samples of the same data never score zero. Dots: the mean of "
                "`diffusion_core.evaluation.frechet_distance` over 2,000 pairs of independent samples of $N$ "
                "standard normal values; line: the expected value derived on this page, "
                "$2v/N + 2v(1 - c_4(N)^2)$ with $v = 1$, which falls like $1/N$ (about $2.5/N$ for large $N$). This "
                "is why `eval` reports the real-against-real floor at the same $N$ beside every FD.")
def floor_against_n():
    import math

    import numpy as np

    from diffusion_core.evaluation import frechet_distance
    from figures._style import INDIGO, ORANGE, axes

    def c4(n):
        return math.sqrt(2 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))

    rng = np.random.default_rng(0)
    sizes = [5, 10, 20, 50, 100, 200, 500, 1000]
    measured = [np.mean([frechet_distance(*rng.standard_normal((2, n, 1))) for _ in range(2000)]) for n in sizes]
    grid = np.geomspace(5, 1000, 100)
    fig, ax = axes(size=(6.0, 3.0))
    ax.loglog(grid, [2 / n + 2 * (1 - c4(n) ** 2) for n in grid], color=ORANGE, lw=1.6,
              label="$2v/N + 2v(1 - c_4^2)$")
    ax.loglog(sizes, measured, "o", color=INDIGO, ms=5, label="mean FD, 2,000 pairs")
    ax.set_xlabel("sample size $N$"), ax.set_ylabel("FD of the same data")
    ax.legend(fontsize=8, frameon=False)
    return fig
