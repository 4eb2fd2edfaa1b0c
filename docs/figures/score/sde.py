"""Figures for docs/score/sde.md."""
from __future__ import annotations

import numpy as np

from figures import figure
from figures._style import INDIGO, ORANGE, axes
from figures.score.scores import noisy_mixture

BETA_MIN, BETA_MAX = 0.1, 20.0                     # Song et al.'s VP-SDE, t in [0, 1]


def beta(t):
    return BETA_MIN + t * (BETA_MAX - BETA_MIN)


def alphabar(t):
    return np.exp(-(BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t**2))


def reverse_paths(n_paths=24, steps=400, stochastic=True, seed=0):
    """Integrate the reverse SDE (Euler-Maruyama) or the probability-flow ODE (Euler) from
    t = 1 to t = 0 with the exact score of the page's mixture."""
    rng = np.random.default_rng(seed)
    ts = np.linspace(1.0, 1e-3, steps + 1)
    x = rng.standard_normal(n_paths)
    path = [x.copy()]
    for t, t_next in zip(ts[:-1], ts[1:]):
        h = t - t_next
        score = noisy_mixture(x, alphabar(t))[1]
        if stochastic:
            x = x + (0.5 * beta(t) * x + beta(t) * score) * h \
                + np.sqrt(beta(t) * h) * rng.standard_normal(n_paths)
        else:
            x = x + 0.5 * beta(t) * (x + score) * h
        path.append(x.copy())
    return ts, np.array(path)


@figure(alt="Two panels with time on the horizontal axis from 1 on the left to 0 on the right "
            "and x on the vertical axis, over a grey shading of the density of x at each time. "
            "The shading is one broad band at time 1 and splits into two bands, near -1 and 1.5, "
            "as time goes to 0. Left: jagged sample paths of the reverse SDE that start spread "
            "out and end in the two bands. Right: smooth paths of the probability-flow ODE from "
            "the same starting points, also ending in the two bands.",
        caption="Sampling the page's two-component mixture backwards in time with the exact "
                "score: the reverse SDE (left, Euler-Maruyama) and the probability-flow ODE "
                "(right, Euler), 400 steps of the VP-SDE with $\\beta(t)$ from 0.1 to 20. The "
                "shading is the exact marginal $p_t(x)$; both sets of paths follow it, the "
                "ODE's without noise.")
def reverse_sde_and_ode():
    fig, panels = axes(2, sharey=True)
    grid_t = np.linspace(1e-3, 1.0, 200)
    grid_x = np.linspace(-3.5, 3.5, 281)
    density = np.array([noisy_mixture(grid_x, alphabar(t))[0] for t in grid_t]).T
    for ax, stochastic, colour, title in ((panels[0], True, INDIGO, "reverse SDE"),
                                          (panels[1], False, ORANGE, "probability-flow ODE")):
        ax.pcolormesh(grid_t, grid_x, np.sqrt(density), cmap="Greys", shading="auto",
                      vmax=1.2 * np.sqrt(density).max(), rasterized=True)
        ts, path = reverse_paths(stochastic=stochastic)
        ax.plot(ts, path, color=colour, lw=0.8, alpha=0.8)
        ax.set_xlim(1.0, 0.0)
        ax.set_xlabel("$t$")
        ax.set_title(title, fontsize=10)
    panels[0].set_ylabel("$x$")
    return fig
