"""Figures for docs/diffusion/noise-schedules.md."""
from figures import figure


@figure(alt="Two panels. Left: alpha-bar against t for the linear, cosine, quadratic and sigmoid "
            "schedules, all falling from 1 to near 0; the linear one falls first. Right: the log-SNR "
            "against t for the same schedules, falling steadily; the cosine one is nearly straight in the "
            "middle.",
        caption="The four schedules of `NoiseSchedule`, $T = 1000$. Left: the signal fraction "
                "$\\bar\\alpha_t$. Right: $\\log \\mathrm{SNR}_t = \\log(\\bar\\alpha_t/(1-\\bar\\alpha_t))$. "
                "The linear schedule reaches low SNR early and spends its last few hundred steps near pure "
                "noise; the cosine schedule's log-SNR falls almost linearly through the middle.")
def alpha_bar_and_snr():
    import numpy as np
    import torch

    from diffusion_core import NoiseSchedule

    from figures._style import GREEN, GREY, INDIGO, ORANGE, axes

    fig, (left, right) = axes(2)
    t = np.arange(1, 1001)
    for kind, colour in (("linear", INDIGO), ("cosine", ORANGE), ("quadratic", GREEN), ("sigmoid", GREY)):
        abar = NoiseSchedule.make(kind, 1000, dtype=torch.float64).alphas_cumprod.numpy()
        left.plot(t, abar, color=colour, lw=1.6, label=kind)
        right.plot(t, np.log(abar / (1 - abar)), color=colour, lw=1.6, label=kind)
    left.set_xlabel("$t$"), left.set_ylabel("$\\bar\\alpha_t$")
    right.set_xlabel("$t$"), right.set_ylabel("$\\log \\mathrm{SNR}_t$")
    right.axhline(0, color="k", lw=0.6, ls=":")
    left.legend(fontsize=8, frameon=False)
    return fig
