"""Derivations for docs/background/elbo.md."""
import sympy as sp

from diffusion_core.derivations import ELBO, KL, E, GaussPdf, Model, Pdf, derivation, jensen, ordered, times

x, z, m = sp.symbols("x z m", real=True)
s, v, u = sp.symbols("s v u", positive=True)

p_x, p_xz, p_z_x = Pdf("p", x), Pdf("p", (x, z)), Pdf("p", z, given=x)
p_z, p_x_z = Pdf("p", z), Pdf("p", x, given=z)
q = Pdf("q", z)

# The running example: z ~ N(0, 1), x | z ~ N(z, s^2), and q(z) = N(m, v).
prior, likelihood = GaussPdf(z, 0, 1), GaussPdf(x, z, s**2)
marginal = GaussPdf(x, 0, 1 + s**2)
posterior = GaussPdf(z, x / (1 + s**2), s**2 / (1 + s**2))
q_gauss = GaussPdf(z, m, v)

ANY = Model("any joint density $p(x, z)$ and any $q(z)$")
GAUSSIAN = Model(
    "the Gaussian example: $p(z) = \\mathcal{N}(0, 1)$, $p(x \\mid z) = \\mathcal{N}(z, s^2)$, "
    "$q(z) = \\mathcal{N}(m, v)$",
    bind={p_xz: prior * likelihood, p_x: marginal, p_z_x: posterior, q: q_gauss,
          p_z: prior, p_x_z: likelihood})
EXPLICIT = Model("exact integrals over the normal densities")
EXAMPLE = Model("the Gaussian example: $p(z) = \\mathcal{N}(0, 1)$, "
                "$p(x \\mid z) = \\mathcal{N}(z, s^2)$, exact integrals",
                bind={p_z: prior, p_x_z: likelihood})


def monte_carlo_elbo():
    """ELBO estimated by sampling q with PyTorch, at x = 1.3, s = 0.7, m = 0.4, v = 0.3."""
    import torch
    from torch.distributions import Normal

    generator = torch.Generator().manual_seed(0)
    x_t, s_t, m_t, v_t = (torch.tensor(a, dtype=torch.float64) for a in (1.3, 0.7, 0.4, 0.3))
    q_t = Normal(m_t, v_t.sqrt())
    z_t = m_t + v_t.sqrt() * torch.randn(1_000_000, generator=generator, dtype=torch.float64)
    log_joint = Normal(0.0, 1.0).log_prob(z_t) + Normal(z_t, s_t).log_prob(x_t)
    return (log_joint - q_t.log_prob(z_t)).mean()


@derivation("The evidence is the likelihood averaged over the prior", models=[ANY, GAUSSIAN])
def evidence(d):
    d.start(p_x)
    d.eq(sp.Integral(p_xz, (z, -sp.oo, sp.oo)), "definition: integrate the latent out")
    d.eq(sp.Integral(times(p_z, p_x_z), (z, -sp.oo, sp.oo)), "$p(x, z) = p(z)\\,p(x \\mid z)$")
    d.eq(E(p_x_z, p_z), "an integral against $p(z)$ is an expectation under $p(z)$")


@derivation("The Gaussian example: the evidence", models=[EXAMPLE])
def gaussian_evidence(d):
    d.start(sp.Integral(times(p_z, p_x_z), (z, -sp.oo, sp.oo)))
    d.eq(sp.Integral(times(prior, likelihood), (z, -sp.oo, sp.oo)), "the example's prior and likelihood")
    d.eq(marginal, "a Gaussian integral: $x = z + s\\,\\epsilon$ has variance $1 + s^2$")


@derivation("The Gaussian example: the posterior", models=[EXPLICIT])
def gaussian_posterior(d):
    d.start(prior * likelihood / marginal)
    d.eq(posterior, "complete the square in $z$")


@derivation("Log evidence minus ELBO is a KL divergence", models=[ANY, GAUSSIAN])
def gap(d):
    d.start(sp.log(p_x) - ELBO(p_xz, q))
    d.eq(sp.log(p_x) - E(sp.log(p_xz) - sp.log(q), q), "definition of the ELBO")
    d.eq(E(sp.log(q) - sp.log(p_xz / p_x), q),
         "$\\log p(x)$ does not depend on $z$ and $\\mathbb{E}_q[1] = 1$")
    d.eq(E(sp.log(q) - sp.log(p_z_x), q), "$p(x, z) / p(x) = p(z \\mid x)$")
    d.eq(KL(q, p_z_x), "definition of KL")


@derivation("The ELBO is a lower bound on the log evidence", models=[ANY, GAUSSIAN])
def bound(d):
    d.start(ELBO(p_xz, q))
    d.eq(E(sp.log(p_xz / q), q), "definition")
    d.le(sp.log(E(p_xz / q, q)), "Jensen's inequality, $\\log$ is concave", by=jensen(sp.log(u), u))
    d.eq(sp.log(sp.Integral(p_xz, (z, -sp.oo, sp.oo))), "the $q$ cancels")
    d.eq(sp.log(p_x), "integrate $z$ out")


@derivation("The ELBO of the Gaussian example in closed form", models=[GAUSSIAN])
def gaussian_elbo(d):
    d.start(ELBO(p_xz, q))
    d.eq(E(ordered(sp.log(prior), sp.log(likelihood), -sp.log(q_gauss)), q_gauss),
         "$p(x, z) = p(z)\\,p(x \\mid z)$")
    d.eq(ordered(-sp.log(2 * sp.pi) / 2, -ordered(m**2, v) / 2,
                 -sp.log(2 * sp.pi * s**2) / 2, -ordered((x - m) ** 2, v) / (2 * s**2),
                 sp.log(2 * sp.pi * v) / 2, sp.Rational(1, 2)),
         "term by term: $\\mathbb{E}_q[z^2] = m^2 + v$, "
         "$\\mathbb{E}_q[(x - z)^2] = (x - m)^2 + v$")
    d.numeric(monte_carlo_elbo, at={x: 1.3, s: 0.7, m: 0.4, v: 0.3}, rtol=0.01,
              label="a Monte Carlo average over 1 000 000 samples of $q$ (PyTorch)")


@derivation("The ELBO as expected log-likelihood minus a KL divergence", models=[ANY, GAUSSIAN])
def elbo_forms(d):
    d.start(ELBO(p_xz, q))
    d.eq(E(sp.log(p_xz) - sp.log(q), q), "definition of the ELBO")
    d.eq(E(sp.log(p_x_z), q) - KL(q, p_z),
         "$p(x, z) = p(z)\\,p(x \\mid z)$, then the definition of KL")


@derivation("The log evidence is the ELBO plus the posterior's KL divergence", models=[ANY, GAUSSIAN])
def decomposition(d):
    d.start(sp.log(p_x))
    d.eq(ELBO(p_xz, q) + KL(q, p_z_x),
         "the two log q terms cancel and $p(x, z)/p(z \\mid x) = p(x)$")
