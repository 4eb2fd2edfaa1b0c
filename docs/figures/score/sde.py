"""Figures for docs/score/sde.md."""
from figures import figure


@figure(alt="Two panels over time t from 0 to 1 (data on the left, noise on the right), each with the "
            "density of x_t shaded in grey: two bands that merge into one wide band. Left: jagged sample "
            "paths of the stochastic differential equation run backwards from noise. Right: smooth paths of "
            "the probability-flow ODE. Both sets of paths end in the two data bands.",
        caption="One 1-D data set (two Gaussian bumps), the continuous linear schedule, and its exact score. "
                "Shaded: the marginal density $p_t(x)$. Left: 30 paths of the reverse-time SDE from "
                "$t = 1$ to $0$ (Euler–Maruyama, 500 steps). Right: 30 paths of the probability-flow ODE "
                "(Euler, 500 steps) from the same starting points. The SDE's paths wander and cross; the "
                "ODE's are smooth and never cross (a deterministic map from noise to data), yet both end "
                "with the data's two bumps, because both processes have the same marginals.")
def paths():
    import numpy as np

    from figures._style import INDIGO, ORANGE, plt

    w, mu, sd = np.array([0.6, 0.4]), np.array([-1.5, 1.6]), np.array([0.3, 0.35])
    bmin, bmax = 0.1, 20.0

    def abar(t):
        return np.exp(-bmin * t - 0.5 * (bmax - bmin) * t**2)

    def beta(t):
        return bmin + (bmax - bmin) * t

    def density_and_score(x, t):
        a2 = abar(t)
        var = a2 * sd**2 + 1 - a2                                  # (K,)
        z = x[..., None] - np.sqrt(a2) * mu
        comp = w * np.exp(-z**2 / (2 * var)) / np.sqrt(2 * np.pi * var)
        dens = comp.sum(-1)
        return dens, (comp * (-z / var)).sum(-1) / dens

    n_steps, n_paths = 500, 30
    ts = np.linspace(1, 1e-3, n_steps + 1)
    rng = np.random.default_rng(0)
    start = rng.standard_normal(n_paths)
    sde, ode = [start.copy()], [start.copy()]
    for k in range(n_steps):
        t, h = ts[k], ts[k] - ts[k + 1]
        x = sde[-1]
        _, sc = density_and_score(x, t)
        drift = -0.5 * beta(t) * x - beta(t) * sc               # Anderson: f - g^2 score
        sde.append(x - drift * h + np.sqrt(beta(t) * h) * rng.standard_normal(n_paths))
        x = ode[-1]
        _, sc = density_and_score(x, t)
        ode.append(x + 0.5 * beta(t) * (x + sc) * h)             # dx/dt = -beta/2 (x + score), backwards
    grid_t, grid_x = np.linspace(1e-3, 1, 200), np.linspace(-3.5, 3.5, 200)
    dens = np.array([density_and_score(grid_x, t)[0] for t in grid_t]).T
    fig, axs = plt.subplots(1, 2, figsize=(7.4, 3.0), sharey=True, constrained_layout=True)
    for ax, paths_, colour, title in ((axs[0], sde, ORANGE, "reverse-time SDE"),
                                      (axs[1], ode, INDIGO, "probability-flow ODE")):
        ax.imshow(dens, origin="lower", aspect="auto", cmap="Greys", extent=(1e-3, 1, -3.5, 3.5),
                  vmax=np.quantile(dens, 0.99))
        ax.plot(ts, np.array(paths_), color=colour, lw=0.7, alpha=0.8)
        ax.set_xlim(0, 1), ax.set_ylim(-3.5, 3.5), ax.set_xlabel("$t$"), ax.set_title(title, fontsize=10)
    axs[0].set_ylabel("$x_t$")
    return fig
