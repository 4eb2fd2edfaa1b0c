"""Figures for docs/background/kl-divergence.md."""
from figures import figure


@figure(alt="Left: two normal densities q and p. Right: the integrand q log(q/p), positive where q is "
            "above p and negative where it is below; the shaded net area is the KL divergence. The two KL "
            "values printed on the right differ: the divergence is not symmetric.",
        caption="$D_{\\mathrm{KL}}(q\\,\\|\\,p)$ is the area under $q \\log(q/p)$ (right). The integrand can be "
                "negative, but its area never is. Swapping the arguments changes the value (printed, from "
                "`torch.distributions.kl_divergence`): $q = \\mathcal{N}(0.3, 1.2^2)$, "
                "$p = \\mathcal{N}(-0.5, 0.7^2)$, the pair of the numeric check below.")
def integrand():
    import numpy as np
    import torch
    from torch.distributions import Normal, kl_divergence

    from figures._style import INDIGO, ORANGE, axes

    q, p = Normal(0.3, 1.2), Normal(-0.5, 0.7)
    x = torch.linspace(-9, 9, 3601, dtype=torch.float64)
    qx, px = q.log_prob(x).exp(), p.log_prob(x).exp()
    inner = (qx * (q.log_prob(x) - p.log_prob(x))).numpy()
    fig, (left, right) = axes(2)
    left.plot(x, qx, color=INDIGO, lw=1.8, label="$q$")
    left.plot(x, px, color=ORANGE, lw=1.8, label="$p$")
    left.set_xlabel("$x$"), left.legend(fontsize=8, frameon=False)
    right.plot(x, inner, color=INDIGO, lw=1.4)
    right.fill_between(x.numpy(), inner, 0, where=inner >= 0, color=INDIGO, alpha=0.25)
    right.fill_between(x.numpy(), inner, 0, where=inner < 0, color=ORANGE, alpha=0.25)
    right.axhline(0, color="k", lw=0.6)
    right.set_xlabel("$x$"), right.set_title("$q(x)\\log(q(x)/p(x))$", fontsize=10)
    kl_qp, kl_pq = float(kl_divergence(q, p)), float(kl_divergence(p, q))
    right.text(0.03, 0.95, f"$D(q\\|p) = {kl_qp:.3f}$\n$D(p\\|q) = {kl_pq:.3f}$", transform=right.transAxes,
               ha="left", va="top", fontsize=9)
    assert abs(np.trapezoid(inner, x.numpy()) - kl_qp) < 1e-4     # the area is the KL divergence
    left.set_xlim(-5, 5), right.set_xlim(-5, 5)
    return fig
