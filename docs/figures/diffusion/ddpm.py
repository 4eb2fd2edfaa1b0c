"""Figures for docs/diffusion/ddpm-in-practice.md."""
from figures import figure


@figure(alt="The ratio of the posterior variance to beta against t, for the linear and cosine schedules "
            "and for the linear schedule respaced to 50 steps: the ratio starts at 0, rises to nearly 1 "
            "within a few steps with all 1000 steps, but stays well below 1 for many of the 50 steps.",
        caption="The two fixed variances, $\\tilde\\beta_t$ and $\\beta_t$, as the ratio $\\tilde\\beta_t/\\beta_t "
                "= (1-\\bar\\alpha_{t-1})/(1-\\bar\\alpha_t)$. With all $T = 1000$ steps they differ only at "
                "the first few steps, so the choice hardly matters; on a schedule respaced to 50 steps "
                "(`NoiseSchedule.spaced(50)`, dots) they differ over a large part of the range, which is "
                "why the variance matters for few-step sampling.")
def variance_ratio():
    import numpy as np
    import torch

    from diffusion_core import NoiseSchedule

    from figures._style import INDIGO, ORANGE, axes

    fig, ax = axes()
    for kind, colour in (("linear", INDIGO), ("cosine", ORANGE)):
        s = NoiseSchedule.make(kind, 1000, dtype=torch.float64)
        ax.plot(np.arange(1, 1001), (s.posterior_variance / s.betas).numpy(), color=colour, lw=1.6,
                label=f"{kind}, 1000 steps")
    short = NoiseSchedule.linear(1000, dtype=torch.float64).spaced(50)
    ax.plot(short.timesteps.numpy() + 1, (short.posterior_variance / short.betas).numpy(), "o",
            color=INDIGO, ms=3.5, label="linear, respaced to 50 steps")
    ax.set_xscale("log"), ax.set_xlabel("$t$ (log scale)"), ax.set_ylabel("$\\tilde\\beta_t / \\beta_t$")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return fig
