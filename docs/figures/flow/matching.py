"""Figures for docs/flow/flow-matching.md."""
from figures import figure

SPREAD = 0.15          # data: two bumps N(-1, SPREAD^2) and N(+1, SPREAD^2), equal weights


def _posterior_mean(x, t):
    """E[x0 | x_t] on rectified flow (alpha = 1 - t, sigma = t) for the two-bump data, in closed form
    (Gaussian conditioning per bump, weighted by each bump's evidence)."""
    import numpy as np

    a, s = 1 - t, t
    var = a**2 * SPREAD**2 + s**2                       # Var[x_t] within a bump
    logw = np.stack([-(x - a * m) ** 2 / (2 * var) for m in (-1.0, 1.0)])
    w = np.exp(logw - logw.max(0))
    w /= w.sum(0)
    means = [m + a * SPREAD**2 / var * (x - a * m) for m in (-1.0, 1.0)]
    return w[0] * means[0] + w[1] * means[1]


@figure(alt="Two panels over time t from 0 (data, left) to 1 (noise, right), the position on the vertical axis. "
            "Left: straight grey lines join data points near -1 and +1 to noise draws; many of them cross. "
            "Right: curves of the marginal velocity's ODE, integrated from the same noise draws at t = 1 back "
            "to t = 0; they never cross, bend near the middle, and end in the two bumps.",
        caption="Rectified flow on data with two bumps at $\\pm 1$. Left: conditional paths "
                "$x_t = (1 - t)x_0 + t\\epsilon$, straight lines that cross. Right: the ODE "
                "$dx/dt = u_t(x)$ with the marginal velocity $u_t(x) = (x - \\mathbb{E}[x_0 \\mid x_t = x])/t$ "
                "derived below, integrated from the same noise values: its solutions cannot cross, so they bend, "
                "and one Euler step is no longer exact (reflow, at the end of the page, straightens them).")
def paths():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from figures._style import GREY, INDIGO, ORANGE, axes

    rng = np.random.default_rng(3)
    n = 14
    x0 = np.where(rng.random(n) < 0.5, -1.0, 1.0) + SPREAD * rng.standard_normal(n)
    eps = np.sort(rng.standard_normal(n))
    fig, (ax, bx) = axes(2, size=(8.4, 3.2), sharey=True)
    ts = np.linspace(0, 1, 2)
    for a, e in zip(x0, eps):
        ax.plot(ts, (1 - ts) * a + ts * e, color=INDIGO if a > 0 else ORANGE, lw=1, alpha=0.8)
    ax.set_title("conditional paths (straight, crossing)", fontsize=10)
    grid = np.linspace(1, 1e-4, 2001)
    x = eps.copy()
    track = [x.copy()]
    for t, t_next in zip(grid[:-1], grid[1:]):
        x = x + (t_next - t) * (x - _posterior_mean(x, t)) / t
        track.append(x.copy())
    track = np.array(track)
    for k in range(n):
        bx.plot(grid, track[:, k], color=INDIGO if track[-1, k] > 0 else ORANGE, lw=1)
    bx.set_title("marginal ODE from the same noise (bent, never crossing)", fontsize=10)
    for a in (ax, bx):
        a.set_xlabel("$t$ (data at 0, noise at 1)")
        a.axhline(0, color=GREY, lw=0.5)
    ax.set_ylabel("$x_t$")
    return fig
