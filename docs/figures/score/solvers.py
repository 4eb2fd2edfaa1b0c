"""Figures for docs/score/solvers.md."""
from figures import figure

M, S = 0.5, 0.4          # data N(M, S^2), the DDIM page's example


def _exact(sb, sb0, xb0):
    """The ODE's solution through (sb0, xb0) for Gaussian data (checked on the page)."""
    import numpy as np

    return M + (xb0 - M) * np.sqrt((S**2 + sb**2) / (S**2 + sb0**2))


def _slope(sb, xb):
    """d xbar / d sigmabar = (xbar - D(xbar; sigmabar)) / sigmabar for Gaussian data."""
    return sb * (xb - M) / (S**2 + sb**2)


@figure(alt="Left: curves of the exact ODE solution xbar against sigmabar (log axis) from sigmabar = 4 down to "
            "0.05 for four starting points, each with six Euler (DDIM) steps drawn as straight segments that "
            "miss where the curve bends, and six Heun steps that stay closer to it. Right: the error of one step against the step length "
            "on log-log axes: Euler's falls with slope 2, Heun's with slope 3.",
        caption="Data $x_0 \\sim \\mathcal{N}(0.5, 0.4^2)$, whose probability-flow ODE is solved exactly. Left: "
                "each Euler step (DDIM) follows the tangent at its start, so it cuts the corner of the curving "
                "solution; Heun averages the start's slope with the slope at the Euler guess (two evaluations per step; "
                "with fewer, longer steps it can overshoot). Right: one step's "
                "error from $\\bar\\sigma_0 = 1$: order 2 for Euler, 3 for Heun (the local errors checked above; "
                "dashed: their leading terms).")
def trajectories():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [1.35, 1]})
    top, low, steps = 4.0, 0.05, 6
    grid = np.geomspace(top, low, 300)
    levels = np.geomspace(top, low, steps + 1)       # uniform in log sigmabar = -lambda: uniform log-SNR steps
    for i, z in enumerate((-1.2, -0.4, 0.4, 1.2)):
        xb0 = M + z * np.sqrt(S**2 + top**2)
        ax.plot(grid, _exact(grid, top, xb0), color="0.6", lw=2.2, zorder=1,
                label="exact solution" if i == 0 else None)
        e = h = xb0
        for a, b in zip(levels[:-1], levels[1:]):
            e_next = e + (b - a) * _slope(a, e)
            ax.plot([a, b], [e, e_next], color="C3", lw=1.2, marker="o", ms=3, zorder=2,
                    label="Euler = DDIM" if (i == 0 and a == top) else None)
            e = e_next
            d0 = _slope(a, h)
            guess = h + (b - a) * d0
            h_next = h + (b - a) * (d0 + _slope(b, guess)) / 2
            ax.plot([a, b], [h, h_next], color="C0", lw=1.2, marker="s", ms=3, zorder=3,
                    label="Heun" if (i == 0 and a == top) else None)
            h = h_next
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("noise-to-signal ratio $\\bar\\sigma$ (time runs to the right)")
    ax.set_ylabel("$\\bar x = x/\\sqrt{\\bar\\alpha}$")
    ax.set_title(f"{steps} steps from $\\bar\\sigma = {top:g}$ to ${low:g}$, uniform in $\\log\\bar\\sigma$")
    ax.legend(frameon=False, fontsize=8, loc="upper left")

    sb0, xb0 = 1.0, M + 1.2
    dl = np.geomspace(1e-3, 0.5, 30)
    exact = _exact(sb0 - dl, sb0, xb0)
    euler = xb0 - dl * _slope(sb0, xb0)
    guess = euler
    heun = xb0 - dl * (_slope(sb0, xb0) + _slope(sb0 - dl, guess)) / 2
    bx.loglog(dl, np.abs(euler - exact), color="C3", label="Euler (DDIM)")
    bx.loglog(dl, np.abs(heun - exact), color="C0", label="Heun")
    y = xb0 - M
    bx.loglog(dl, dl**2 * S**2 * y / (2 * (S**2 + sb0**2) ** 2), "k--", lw=0.8)
    bx.loglog(dl, dl**3 * S**2 * sb0 * y / (2 * (S**2 + sb0**2) ** 3), "k--", lw=0.8,
              label="leading terms ($\\Delta^2$, $\\Delta^3$)")
    bx.set_xlabel("step length $|\\Delta|$")
    bx.set_ylabel("error of one step")
    bx.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
