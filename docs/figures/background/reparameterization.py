"""Figures for docs/background/reparameterization.md."""
from figures import figure


@figure(alt="Two histograms of gradient estimates of d/d-mu of E[z squared] at mu = 0.5, sigma = 1.5, each "
            "from 16 samples: the reparameterized estimates form a narrow peak around the true value 1, the "
            "score-function estimates a much wider spread around the same value.",
        caption="Two unbiased estimators of $\\partial_\\mu \\mathbb{E}_{z \\sim \\mathcal{N}(\\mu, \\sigma^2)}[z^2] = 2\\mu$ "
                "at $\\mu = 0.5$, $\\sigma = 1.5$, each from a batch of 16 draws, repeated 4,000 times (PyTorch "
                "autograd for the reparameterized one). Both centre on the true value 1; the printed standard "
                "deviations show how much wider the score-function (REINFORCE) estimator is.")
def estimator_spread():
    import numpy as np
    import torch

    from figures._style import GREY, INDIGO, ORANGE, axes

    g = torch.Generator().manual_seed(0)
    mu = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    sigma = 1.5
    eps = torch.randn(4000, 16, generator=g, dtype=torch.float64)
    z = mu + sigma * eps
    (grad_reparam,) = torch.autograd.grad((z**2).mean(1).sum(), mu, retain_graph=True)
    reparam = (2 * z).mean(1).detach()                          # d/dmu of each batch's mean, row by row
    assert abs(float(grad_reparam) - float(reparam.sum())) < 1e-6 * 4000
    zd = z.detach()
    score = (zd**2 * (zd - 0.5) / sigma**2).mean(1)              # f(z) d/dmu log N(z; mu, sigma^2)
    fig, ax = axes()
    bins = np.linspace(-6, 8, 120)
    ax.hist(score.numpy(), bins=bins, color=ORANGE, alpha=0.6,
            label=f"score function: sd {score.std():.2f}")
    ax.hist(reparam.numpy(), bins=bins, color=INDIGO, alpha=0.7,
            label=f"reparameterized: sd {reparam.std():.2f}")
    ax.axvline(1.0, color=GREY, ls="--", lw=1.2, label="true value $2\\mu = 1$")
    ax.set_xlabel("gradient estimate"), ax.set_ylabel("count")
    ax.legend(fontsize=8, frameon=False)
    return fig
