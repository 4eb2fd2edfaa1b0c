"""Figures for docs/quality/likelihood.md."""
from figures import figure


@figure(alt="Two panels. Left: the log-density of a two-bump mixture drawn as a curve, with dots from the ODE "
            "likelihood lying on it. Right: a log-log plot of the largest error against the number of Runge-Kutta "
            "steps for rectified flow and the cosine path; both fall steeply, about sixteen-fold per doubling.",
        caption="Left: `ode_log_likelihood` (dots, 50 RK4 steps, exact divergence, the mixture's exact denoiser as "
                "the network) against the closed-form log-density of the data at $t_{\\min} = 10^{-3}$ (curve) "
                "for the mixture $0.3\\,\\mathcal{N}(-1, 0.3^2) + 0.7\\,\\mathcal{N}(0.8, 0.5^2)$ on rectified flow. "
                "Right: the largest error over the 41 points against the number of steps, with the exact density at "
                "$t_{\\max}$ as the prior so that only the integration errs: it falls by a factor of 8 to 20 per "
                "doubling, as a fourth-order method should (16). With the default normal prior the cosine path "
                "keeps an error of about $2 \\times 10^{-3}$ nats at any step count: at $t_{\\max} = 0.999$ its "
                "$\\alpha$ is small but not zero.")
def ode_against_exact():
    import math

    import numpy as np
    import torch

    from diffusion_core import ContinuousVP, Denoiser, RectifiedFlow, ode_log_likelihood
    from diffusion_core.mixture import GaussianMixture
    from figures._style import INDIGO, ORANGE, axes

    data = GaussianMixture([0.3, 0.7], [-1.0, 0.8], [0.3, 0.5])
    xs = torch.linspace(-2.5, 2.5, 41, dtype=torch.float64).reshape(-1, 1)

    def denoiser(path):
        def network(x_in, t_in):
            tt = t_in / 1000
            return data.eps(x_in, path.alpha(tt).reshape(-1, 1), path.sigma(tt).reshape(-1, 1))
        return Denoiser(network, path, "eps")

    def exact(path, t=1e-3, x=xs):
        tt = torch.tensor(t, dtype=torch.float64)
        a, s = float(path.alpha(tt)), float(path.sigma(tt))
        x = x.numpy()
        density = sum(w * np.exp(-(x - a * m) ** 2 / (2 * (a * a * sd * sd + s * s)))
                      / math.sqrt(2 * math.pi * (a * a * sd * sd + s * s))
                      for w, m, sd in zip([0.3, 0.7], [-1.0, 0.8], [0.3, 0.5]))
        return np.log(density).ravel()

    fig, (left, right) = axes(2)
    flow = RectifiedFlow()
    left.plot(xs.ravel(), exact(flow), color=ORANGE, lw=1.6, label="closed form")
    left.plot(xs.ravel(), ode_log_likelihood(denoiser(flow), xs, steps=50).log_p, "o", color=INDIGO, ms=3.5,
              label="ODE, 50 steps")
    left.set_xlabel("$x$"), left.set_ylabel("$\\log p(x)$"), left.legend(fontsize=8, frameon=False)
    steps = [4, 8, 16, 32, 64]
    for path, name, colour in ((flow, "rectified flow", INDIGO), (ContinuousVP.cosine(), "cosine VP", ORANGE)):
        top = path.t_max * (1 - 1e-4) if name == "rectified flow" else path.t_max

        def prior(x_end, path=path, top=top):
            return torch.from_numpy(exact(path, top, x_end))

        errors = [np.abs(ode_log_likelihood(denoiser(path), xs, steps=n, t_max=top, prior=prior).log_p.numpy()
                         - exact(path)).max() for n in steps]
        right.loglog(steps, errors, "o-", color=colour, ms=4, label=name)
    right.set_xticks(steps, [str(n) for n in steps]), right.minorticks_off()
    right.set_xlabel("RK4 steps"), right.set_ylabel("largest error (nats)"), right.legend(fontsize=8, frameon=False)
    return fig
