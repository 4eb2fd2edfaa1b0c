"""Figures for docs/score/scores.md."""
from __future__ import annotations

import numpy as np

from figures import figure
from figures._style import GREEN, INDIGO, ORANGE, axes

WEIGHTS, MEANS, STDS = (0.3, 0.7), (-1.0, 1.5), (0.3, 0.5)   # the page's mixture q(x_0)


def noisy_mixture(x, abar):
    """q(x_t) and its score for the mixture at alphabar, from the closed form on the page."""
    comps, scores = [], []
    for w, m, s in zip(WEIGHTS, MEANS, STDS):
        v = abar * s**2 + 1 - abar
        comps.append(w * np.exp(-(x - np.sqrt(abar) * m) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v))
        scores.append((np.sqrt(abar) * m - x) / v)
    comps = np.array(comps)
    density = comps.sum(0)
    return density, (comps * np.array(scores)).sum(0) / density


@figure(alt="Two panels. Left: the density of a two-component mixture after noising at three "
            "noise levels; at alphabar 0.99 two sharp bumps, at 0.5 two blurred bumps, at 0.05 "
            "nearly a standard normal. Right: the score of each density; at low noise it jumps "
            "between large positive and negative values around each bump, at high noise it is "
            "close to the line minus x.",
        caption="The noisy mixture $q(x_t)$ (left) and its score $\\partial_{x_t}\\log q(x_t)$ "
                "(right) at three noise levels, from the closed form above. Where the score is "
                "positive, probability lies to the right. The dotted line is $-x_t$, the score "
                "of pure noise.")
def mixture_score_field():
    x = np.linspace(-3.5, 3.5, 1401)
    fig, (left, right) = axes(2)
    for abar, colour in ((0.99, INDIGO), (0.5, GREEN), (0.05, ORANGE)):
        density, score = noisy_mixture(x, abar)
        label = f"$\\bar\\alpha_t = {abar}$"
        left.plot(x, density, color=colour, lw=1.6, label=label)
        right.plot(x, score, color=colour, lw=1.6, label=label)
    right.plot(x, -x, ":", color="black", lw=1)
    right.axhline(0, color="#bdbdbd", lw=0.8)
    right.set_ylim(-12, 12)
    left.set_xlabel("$x_t$")
    right.set_xlabel("$x_t$")
    left.set_ylabel("$q(x_t)$")
    right.set_ylabel("score")
    left.legend(frameon=False, fontsize=8)
    return fig
