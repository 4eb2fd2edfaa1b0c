"""Figures for docs/diffusion/reverse-process.md."""
from figures import figure


@figure(alt="Two bell curves over x_{t-1}: a wide one, the distribution of x_{t-1} given only x_0, and a "
            "narrow one, the posterior given x_t as well, centred between x_0's image and x_t.",
        caption="What knowing $x_t$ adds. At step $t = 50$ of the linear schedule, with $x_0 = 1$ and one draw "
                "of $x_t$: the prior $q(x_{t-1} \\mid x_0)$ (from `q_mean_variance`) against the posterior "
                "$q(x_{t-1} \\mid x_t, x_0)$ (from `q_posterior`). The posterior is narrow, variance "
                "$\\tilde\\beta_t$, and sits between $\\sqrt{\\bar\\alpha_{t-1}}\\,x_0$ and $x_t$: a reverse "
                "step only has to undo a little noise.")
def posterior():
    import numpy as np
    import torch

    from diffusion_core import NoiseSchedule
    from diffusion_core.forward import q_mean_variance
    from diffusion_core.reverse import q_posterior

    from figures._style import INDIGO, ORANGE, axes

    s = NoiseSchedule.linear(1000, dtype=torch.float64)
    t = torch.tensor([49])                           # the paper's t = 50
    x0 = torch.ones(1, 1, dtype=torch.float64)
    x_t = torch.tensor([[0.62]], dtype=torch.float64)
    prior = q_mean_variance(s, x0, t - 1)             # q(x_{t-1} | x_0)
    post = q_posterior(s, x0, x_t, t)
    x = np.linspace(-0.2, 1.6, 700)

    def bell(mean, var):
        m, v = float(mean), float(var)
        return np.exp(-(x - m) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v)

    fig, ax = axes()
    ax.plot(x, bell(prior.mean, prior.variance), color=ORANGE, lw=1.8,
            label="$q(x_{t-1} \\mid x_0)$, the prior")
    ax.plot(x, bell(post.mean, post.variance), color=INDIGO, lw=1.8,
            label="$q(x_{t-1} \\mid x_t, x_0)$, the posterior")
    ax.axvline(float(x_t), color="k", lw=1, ls=":")
    ax.text(float(x_t), ax.get_ylim()[1] * 0.95, " $x_t$", va="top")
    ax.axvline(float(prior.mean), color=ORANGE, lw=1, ls=":")
    ax.set_xlabel("$x_{t-1}$"), ax.set_ylabel("density")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return fig
