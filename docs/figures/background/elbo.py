"""Figures for docs/background/elbo.md."""
from figures import figure


@figure(alt="The log evidence drawn as a horizontal line and the ELBO as a curve below it, both against "
            "the mean m of the approximation q; the curve touches the line exactly at the posterior mean, "
            "and the vertical gap between them, shaded, is the KL divergence to the posterior.",
        caption="The gap is a KL divergence. For the Gaussian example below ($s = 0.7$, observation $x = 1.3$, "
                "$q = \\mathcal{N}(m, v)$ with $v$ the posterior variance), the ELBO as a function of $m$ stays "
                "under $\\log p(x)$ and touches it only at the posterior mean $x/(1+s^2)$, where "
                "$q$ is the posterior. The ELBO is a Monte Carlo estimate from 20,000 draws of $q$ at each $m$ "
                "(dots); the curve is $\\log p(x) - D_{\\mathrm{KL}}(q \\,\\|\\, p(z \\mid x))$ in closed form.")
def gap():
    import numpy as np
    import torch
    from torch.distributions import Normal, kl_divergence

    from figures._style import GREY, INDIGO, ORANGE, axes

    s, x = 0.7, 1.3
    evidence = float(Normal(0.0, (1 + s**2) ** 0.5).log_prob(torch.tensor(x)))
    post_mean, post_var = x / (1 + s**2), s**2 / (1 + s**2)
    posterior = Normal(post_mean, post_var**0.5)
    ms = np.linspace(-1.0, 2.4, 200)
    curve = [evidence - float(kl_divergence(Normal(m, post_var**0.5), posterior)) for m in ms]
    g = torch.Generator().manual_seed(0)
    dots_m = np.linspace(-1.0, 2.4, 12)
    dots = []
    for m in dots_m:
        z = m + post_var**0.5 * torch.randn(20000, generator=g, dtype=torch.float64)
        log_joint = Normal(0.0, 1.0).log_prob(z) + Normal(z, s).log_prob(torch.tensor(x, dtype=torch.float64))
        dots.append(float((log_joint - Normal(m, post_var**0.5).log_prob(z)).mean()))
    fig, ax = axes()
    ax.axhline(evidence, color=ORANGE, lw=1.6, label="$\\log p(x)$")
    ax.plot(ms, curve, color=INDIGO, lw=1.8, label="$\\operatorname{ELBO}(q)$")
    ax.fill_between(ms, curve, evidence, color=GREY, alpha=0.15, label="gap $= D_{\\mathrm{KL}}(q \\,\\|\\, p(z \\mid x))$")
    ax.plot(dots_m, dots, "o", color=INDIGO, ms=4, label="Monte Carlo ELBO")
    ax.axvline(post_mean, color=GREY, ls=":", lw=1)
    ax.set_xlabel("mean $m$ of $q$"), ax.set_ylabel("nats")
    ax.legend(fontsize=8, frameon=False, loc="lower center")
    return fig
