"""Figures for docs/diffusion/training-objective.md."""
from figures import figure


@figure(alt="The weight of each bound term on the noise error, against t, on a log scale: large at the "
            "first steps, falling by about two orders of magnitude within the first hundred steps, then "
            "nearly flat; a dashed horizontal line marks the constant weight of the simple loss.",
        caption="Why $L_\\mathrm{simple}$ is a re-weighting. The bound weighs the noise error of step $t$ by "
                "$\\frac{\\beta_t^2}{2\\sigma_t^2\\alpha_t(1-\\bar\\alpha_t)}$ (here $\\sigma_t^2 = \\tilde\\beta_t$, "
                "linear schedule, from the `NoiseSchedule` tables); $L_\\mathrm{simple}$ weighs every step by 1 "
                "(up to a constant factor, dashed at the bound's mean weight). Relative to the bound, the simple "
                "loss spends far less effort on the first, nearly clean steps.")
def bound_weights():
    import numpy as np
    import torch

    from diffusion_core import NoiseSchedule

    from figures._style import GREY, INDIGO, axes

    s = NoiseSchedule.linear(1000, dtype=torch.float64)
    beta, alpha = s.betas.numpy(), s.alphas.numpy()
    abar, post = s.alphas_cumprod.numpy(), s.posterior_variance.numpy()
    t = np.arange(2, 1001)                           # t = 1 is the decoder term L_0
    weight = beta[1:] ** 2 / (2 * post[1:] * alpha[1:] * (1 - abar[1:]))
    fig, ax = axes()
    ax.semilogy(t, weight, color=INDIGO, lw=1.6, label="the bound's weight on $\\|\\epsilon - \\epsilon_\\theta\\|^2$")
    ax.axhline(weight.mean(), color=GREY, ls="--", lw=1.2, label="$L_\\mathrm{simple}$: the same weight at every $t$")
    ax.set_xlabel("$t$"), ax.set_ylabel("weight")
    ax.legend(fontsize=8, frameon=False)
    return fig


@figure(alt="Two panels over the log-SNR lambda from -10 to 10. Left, on a log scale, the weight each objective "
            "puts on the noise error: flat for the noise error, rising to the left for the x0, v, velocity and EDM "
            "losses, min-SNR flat then falling to the right, the sigmoid falling to the right. Right, the density "
            "of lambda at training: a wide hump for uniform times on the cosine VP schedule, the same shape on "
            "rectified flow, a narrower normal bump around 0 for logit-normal times and a bump around 2.4 for EDM.",
        caption="Every objective is a weighting $w(\\lambda)$ of the noise error and a density of training "
                "log-SNRs $p(\\lambda)$ (Kingma & Gao 2023). Left: $w(\\lambda)$ from `diffusion_core.weighting` "
                "(the MSE on $x_0$, $v$ and the rectified-flow velocity as `target_error_scale`; min-SNR with "
                "$\\gamma = 5$; EDM with $\\sigma_d = 0.5$; sigmoid with $b = 0$). Right: $p(\\lambda)$ as "
                "histograms of 200,000 draws from `diffusion_core.time_sampling` on each path (SD3's "
                "logit-normal times, EDM's log-normal $\\sigma$). The loss a run minimises weighs the noise error "
                "at $\\lambda$ by the product $w(\\lambda)\\,p(\\lambda)$.")
def weightings():
    import numpy as np
    import torch

    from diffusion_core import ContinuousVP, RectifiedFlow, Target, VarianceExploding
    from diffusion_core import weighting as w
    from diffusion_core.targets import Coefficients
    from diffusion_core.time_sampling import LogitNormalTime, LogNormalSigma, UniformTime

    from figures._style import GREEN, GREY, INDIGO, ORANGE, axes

    lam = torch.linspace(-10, 10, 401, dtype=torch.float64)
    vp = Coefficients(torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt())
    rf, t = RectifiedFlow(), torch.sigmoid(-lam / 2)  # alpha = 1 - t, sigma = t: lambda = 2 log((1 - t)/t)
    d_alpha, d_sigma = rf.derivatives(t)
    velocity = Coefficients(rf.alpha(t), rf.sigma(t), d_alpha, d_sigma)
    curves = [("$\\epsilon$ MSE ($L_\\mathrm{simple}$)", w.uniform(lam), GREY, "-"),
              ("$x_0$ MSE", w.target_error_scale(Target.X0, vp), INDIGO, ":"),
              ("$v$ MSE (VP)", w.target_error_scale(Target.V, vp), INDIGO, "-"),
              ("velocity MSE (rectified flow)", w.target_error_scale(Target.VELOCITY, velocity), ORANGE, "-"),
              ("min-SNR, $\\gamma = 5$", w.min_snr(5.0)(lam), GREEN, "-"),
              ("EDM, $\\sigma_d = 0.5$", w.edm(0.5)(lam), "black", "--"),
              ("sigmoid, $b = 0$", w.sigmoid(0.0)(lam), GREEN, ":")]
    fig, (left, right) = axes(2, size=(7.2, 3.2))
    for label, weight, colour, style in curves:
        left.semilogy(lam.numpy(), weight.numpy(), color=colour, ls=style, lw=1.4, label=label)
    left.set_xlabel("$\\lambda = \\log(\\alpha^2/\\sigma^2)$"), left.set_ylabel("$w(\\lambda)$ on the noise error")
    left.set_ylim(1e-3, 1e5)
    left.legend(fontsize=6.5, frameon=False, loc="upper right")
    g = torch.Generator().manual_seed(0)
    densities = [("VP (cosine), uniform $t$", ContinuousVP.cosine(), UniformTime(), INDIGO),
                 ("rectified flow, uniform $t$", rf, UniformTime(), ORANGE),
                 ("rectified flow, logit-normal $t$", rf, LogitNormalTime(), GREEN),
                 ("EDM, log-normal $\\sigma$", VarianceExploding(80.0), LogNormalSigma(), "black")]
    bins = np.linspace(-10, 10, 81)
    for label, path, draw, colour in densities:
        lams = path.log_snr(draw(path, 200_000, generator=g)).double().numpy()
        right.hist(lams, bins=bins, density=True, histtype="step", color=colour, lw=1.4, label=label)
    right.set_xlabel("$\\lambda$"), right.set_ylabel("$p(\\lambda)$ at training")
    right.set_ylim(0, 0.3)
    right.legend(fontsize=6.5, frameon=False, loc="upper left")
    return fig
