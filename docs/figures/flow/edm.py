"""Figures for docs/flow/edm.md."""
from figures import figure

SD = 0.5                              # sigma_data, EDM's default and the library's
P_MEAN, P_STD = -1.2, 1.2             # the log-normal training density (Karras et al. 2022, table 1)
S_MIN, S_MAX, RHO, N = 0.002, 80.0, 7.0, 18


@figure(alt="Two panels against sigma on a log axis from 0.002 to 80. Left: c_skip falls from 1 to 0 around "
            "sigma = 0.5, c_out rises towards 0.5 and then stays flat, c_in times sigma_data falls from 1 like "
            "1/sigma, and the loss weight lambda c_out squared is 1 everywhere. Right: the log-normal training "
            "density of ln sigma, centred near sigma = 0.3, with the 18 sigmas of the rho = 7 sampling grid "
            "drawn as ticks, farther apart at small sigma and closer at large sigma than the ticks of the grid "
            "even in log sigma drawn below them.",
        caption="EDM's preconditioning at $\\sigma_d = 0.5$ (left): below $\\sigma_d$ the skip connection "
                "passes the input through and the network adds a correction of size $\\sigma$; above it the "
                "network predicts the data, scaled by $c_\\mathrm{out} \\to \\sigma_d$. Right: where training "
                "puts its noise levels ($\\ln\\sigma \\sim \\mathcal{N}(-1.2, 1.2^2)$) and where 18 sampling "
                "steps land with $\\rho = 7$ and as $\\rho \\to \\infty$ (even in $\\ln\\sigma$): $\\rho = 7$ "
                "moves steps from small to large $\\sigma$ in $\\ln\\sigma$, and its steps are short in "
                "$\\sigma$ itself near $\\sigma_{\\min}$.")
def preconditioning():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from figures._style import GREEN, GREY, INDIGO, ORANGE, axes

    sigma = np.geomspace(S_MIN, S_MAX, 400)
    total = sigma**2 + SD**2
    c_skip, c_out, c_in = SD**2 / total, sigma * SD / np.sqrt(total), 1 / np.sqrt(total)
    weight = total / (sigma * SD) ** 2
    fig, (ax, bx) = axes(2, size=(8.6, 3.2))
    ax.plot(sigma, c_skip, color=INDIGO, label="$c_\\mathrm{skip}$")
    ax.plot(sigma, c_out, color=ORANGE, label="$c_\\mathrm{out}$")
    ax.plot(sigma, c_in * SD, color=GREEN, label="$\\sigma_d\\,c_\\mathrm{in}$")
    ax.plot(sigma, weight * c_out**2, color=GREY, ls="--", label="$\\lambda(\\sigma)\\,c_\\mathrm{out}^2$")
    ax.axvline(SD, color=GREY, lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("$\\sigma$")
    ax.set_ylim(0, 1.1)
    ax.legend(frameon=False, fontsize=8, loc="center left")
    ax.set_title("the coefficients, $\\sigma_d = 0.5$", fontsize=10)

    density = np.exp(-(np.log(sigma) - P_MEAN) ** 2 / (2 * P_STD**2)) / (P_STD * np.sqrt(2 * np.pi))
    bx.plot(sigma, density, color=INDIGO, label="training: density of $\\ln\\sigma$")
    i = np.arange(N) / (N - 1)
    karras = (S_MAX ** (1 / RHO) + i * (S_MIN ** (1 / RHO) - S_MAX ** (1 / RHO))) ** RHO
    even = np.exp((1 - i) * np.log(S_MAX) + i * np.log(S_MIN))
    bx.plot(karras, np.full(N, 0.02), "|", color=ORANGE, ms=12, mew=1.5, label="sampling, $\\rho = 7$")
    bx.plot(even, np.full(N, -0.03), "|", color=GREEN, ms=12, mew=1.5, label="$\\rho \\to \\infty$")
    bx.set_xscale("log")
    bx.set_xlabel("$\\sigma$")
    bx.legend(frameon=False, fontsize=8, loc="upper right")
    bx.set_title("training density and 18 sampling steps", fontsize=10)
    return fig
