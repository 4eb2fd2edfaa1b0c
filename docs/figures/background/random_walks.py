"""Figures for docs/background/random-walks.md."""
from figures import figure


@figure(alt="Two panels of many faint sample paths against time. Left: random walks started at 0 fan out, "
            "staying mostly inside two curves at plus and minus two square roots of time. Right: "
            "Ornstein-Uhlenbeck paths started at 3 fall towards 0 and then wander inside a horizontal band of "
            "fixed width, the stationary density's two standard deviations.",
        caption="Left: 200 random walks with steps $\\sqrt{\\Delta t}\\,\\xi$, $\\Delta t = 0.01$; the curves are "
                "$\\pm 2\\sqrt{t}$, two standard deviations of a variance equal to the time. Right: 200 paths of "
                "the Ornstein-Uhlenbeck step $x \\mapsto x - \\theta x\\,\\Delta t + g\\sqrt{\\Delta t}\\,\\xi$ "
                "with $\\theta = 1$, $g = 1$ from $x = 3$: the mean decays like $3e^{-\\theta t}$ (dashed) and "
                "the spread settles at the stationary $\\pm 2\\sqrt{g^2/(2\\theta)}$ (band).")
def walks_and_ou():
    import numpy as np

    from figures._style import GREY, INDIGO, ORANGE, axes

    rng = np.random.default_rng(0)
    dt, n, paths = 0.01, 400, 200
    t = dt * np.arange(n + 1)
    xi = rng.standard_normal((paths, n))
    walk = np.concatenate([np.zeros((paths, 1)), np.cumsum(np.sqrt(dt) * xi, axis=1)], axis=1)
    theta, g = 1.0, 1.0
    ou = np.empty((paths, n + 1))
    ou[:, 0] = 3.0
    for i in range(n):
        ou[:, i + 1] = ou[:, i] - theta * ou[:, i] * dt + g * np.sqrt(dt) * xi[:, i]
    fig, (left, right) = axes(2, sharey=True)
    left.plot(t, walk.T, color=INDIGO, lw=0.4, alpha=0.15)
    left.plot(t, 2 * np.sqrt(t), color=ORANGE, lw=1.6, label="$\\pm 2\\sqrt{t}$")
    left.plot(t, -2 * np.sqrt(t), color=ORANGE, lw=1.6)
    left.set_title("random walk", fontsize=10), left.legend(fontsize=8, frameon=False, loc="upper left")
    band = 2 * np.sqrt(g**2 / (2 * theta))
    right.axhspan(-band, band, color=GREY, alpha=0.15, label="stationary $\\pm 2$ sd")
    right.plot(t, ou.T, color=INDIGO, lw=0.4, alpha=0.15)
    right.plot(t, 3 * np.exp(-theta * t), color=ORANGE, ls="--", lw=1.6, label="$3e^{-\\theta t}$")
    right.set_title("Ornstein-Uhlenbeck", fontsize=10), right.legend(fontsize=8, frameon=False, loc="lower right")
    for ax in (left, right):
        ax.set_xlabel("$t$")
    return fig
