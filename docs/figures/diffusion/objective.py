"""Figures for docs/diffusion/training-objective.md."""
from figures import figure


@figure(alt="The weight of each bound term on the noise error, against t, on a log scale: large at the "
            "first steps, falling by about two orders of magnitude within the first hundred steps, then "
            "nearly flat; a dashed horizontal line marks the constant weight of the simple loss.",
        caption="Why $L_\\mathrm{simple}$ is a re-weighting. The bound weighs the noise error of step $t$ by "
                "$\\frac{\\beta_t^2}{2\\sigma_t^2\\alpha_t(1-\\bar\\alpha_t)}$ (here $\\sigma_t^2 = \\tilde\\beta_t$, "
                "linear schedule, from the `NoiseSchedule` tables); $L_\\mathrm{simple}$ weighs every step by 1 "
                "(up to a constant factor, dashed at the bound's mean weight). Relative to the bound, the simple "
                "loss spends far less effort on the first, nearly clean steps.")
def bound_weights():
    import numpy as np
    import torch

    from diffusion_core import NoiseSchedule

    from figures._style import GREY, INDIGO, axes

    s = NoiseSchedule.linear(1000, dtype=torch.float64)
    beta, alpha = s.betas.numpy(), s.alphas.numpy()
    abar, post = s.alphas_cumprod.numpy(), s.posterior_variance.numpy()
    t = np.arange(2, 1001)                           # t = 1 is the decoder term L_0
    weight = beta[1:] ** 2 / (2 * post[1:] * alpha[1:] * (1 - abar[1:]))
    fig, ax = axes()
    ax.semilogy(t, weight, color=INDIGO, lw=1.6, label="the bound's weight on $\\|\\epsilon - \\epsilon_\\theta\\|^2$")
    ax.axhline(weight.mean(), color=GREY, ls="--", lw=1.2, label="$L_\\mathrm{simple}$: the same weight at every $t$")
    ax.set_xlabel("$t$"), ax.set_ylabel("weight")
    ax.legend(fontsize=8, frameon=False)
    return fig
