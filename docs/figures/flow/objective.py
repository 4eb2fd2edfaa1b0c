"""Figures for docs/flow/objective.md."""
from figures import figure


@figure(alt="Three bell-shaped curves against the log-SNR lambda from -12 to 12, each normalized to area one, "
            "with histogram steps on top of each. The DDPM noise loss with uniform times on the cosine path peaks "
            "at lambda 0; EDM's recipe and rectified flow with logit-normal times nearly coincide, both peaking "
            "near lambda -3.",
        caption="Where each recipe spends its training: the effective weight $w(\\lambda)\\,p(\\lambda)$ on the noise "
                "error, normalized to area 1. Steps: histograms of 400,000 training log-SNRs drawn by the library's "
                "samplers (`UniformTime`, `LogNormalSigma`, `LogitNormalTime`), each weighted by the library's "
                "`target_error_scale` or `weighting.edm`; lines: the closed forms of this page. Kingma and Gao "
                "(2023) draw the same comparison for more recipes.")
def effective_weights():
    import math

    import numpy as np
    import torch

    from diffusion_core import ContinuousVP, RectifiedFlow, Target, VarianceExploding
    from diffusion_core.targets import Coefficients
    from diffusion_core.time_sampling import LogitNormalTime, LogNormalSigma, UniformTime
    from diffusion_core.weighting import edm, target_error_scale
    from figures._style import GREY, INDIGO, ORANGE, axes

    n, edges = 400_000, np.linspace(-12, 12, 97)
    grid = np.linspace(-12, 12, 481)
    sech = 1 / np.cosh(grid / 2) / (2 * math.pi)
    normal = lambda mean, var: np.exp(-(grid - mean) ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var)  # noqa: E731

    def weighted(path, draw, weight):
        g = torch.Generator().manual_seed(0)
        t = draw(path, n, generator=g)
        lam = path.log_snr(t)
        w = weight(path, t, lam).reshape(-1).numpy()
        keep = np.isfinite(lam.numpy()) & np.isfinite(w)
        hist, _ = np.histogram(lam.numpy()[keep], bins=edges, weights=w[keep])
        return hist / (hist.sum() * (edges[1] - edges[0]))

    def scale(target):
        def w(path, t, lam):
            return target_error_scale(target, Coefficients(path.alpha(t), path.sigma(t), *path.derivatives(t)))
        return w

    cosine = ContinuousVP.cosine(s=1e-4, t_max=0.9999)
    rows = [
        ("DDPM: $\\epsilon$ loss, uniform $t$, cosine", INDIGO, weighted(cosine, UniformTime(), scale(Target.EPS)),
         sech),
        ("EDM: log-normal $\\sigma$, its weight", ORANGE,
         weighted(VarianceExploding(1e4), LogNormalSigma(), lambda p, t, lam: edm(0.5)(lam)),
         normal(2.4, 5.76) * (1 + np.exp(-grid) / 0.25)),
        ("rectified flow: velocity loss, logit-normal $t$", GREY,
         weighted(RectifiedFlow(), LogitNormalTime(), scale(Target.VELOCITY)),
         normal(0.0, 4.0) * (1 + np.exp(-grid / 2)) ** 2),
    ]
    fig, ax = axes(size=(7.2, 3.4))
    step = grid[1] - grid[0]
    for label, colour, hist, closed in rows:
        closed = np.where(np.isfinite(closed), closed, 0.0)
        ax.plot(grid, closed / (closed.sum() * step), color=colour, lw=1.6, label=label)
        ax.stairs(hist, edges, color=colour, lw=0.8, alpha=0.7)
    ax.set_xlabel("log-SNR $\\lambda$"), ax.set_ylabel("$w(\\lambda)\\,p(\\lambda)$, area 1")
    ax.legend(fontsize=7.5, frameon=False, loc="upper left")
    return fig
