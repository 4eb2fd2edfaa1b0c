"""Derivations for docs/background/kl-divergence.md."""
import sympy as sp

from diffusion_core.derivations import (KL, E, GaussPdf, H, Model, Pdf, derivation, jensen, ordered, under,
                                        uses)

x = sp.Symbol("x", real=True)
u = sp.Symbol("u", positive=True)
q, p = Pdf("q", x), Pdf("p", x)

mu1, mu2 = sp.symbols("mu1 mu2", real=True)
sigma1, sigma2 = sp.symbols("sigma1 sigma2", positive=True)
q1, p1 = GaussPdf(x, mu1, sigma1**2), GaussPdf(x, mu2, sigma2**2)

ANY = Model("any densities $q$, $p$ on the same space")
EXACT = Model("the two normal densities, expectations as exact integrals")

# Diagonal Gaussians in d dimensions, q = prod_i N(mu_i, sigma_i^2), p = prod_i N(m_i, s_i^2)
d_ = sp.Symbol("d", integer=True, positive=True)
i = sp.Symbol("i", integer=True, positive=True)
xv = sp.Symbol("\\mathbf{x}", real=True)
xs = sp.IndexedBase("x", real=True)
mus, ms = sp.IndexedBase("mu", real=True), sp.IndexedBase("m", real=True)
sigmas, ss = sp.IndexedBase("sigma", positive=True), sp.IndexedBase("s", positive=True)
qv, pv = Pdf("q", xv), Pdf("p", xv)
qi, pi_ = GaussPdf(xs[i], mus[i], sigmas[i] ** 2), GaussPdf(xs[i], ms[i], ss[i] ** 2)


def diagonal_model(dim):
    """Check the d-dimensional steps for a concrete dimension."""
    return Model(f"$d = {dim}$", bind={
        d_: dim,
        qv: sp.Product(qi, (i, 1, d_)),
        pv: sp.Product(pi_, (i, 1, d_)),
    })


def torch_kl():
    """KL between N(0.3, 1.2^2) and N(-0.5, 0.7^2) from torch.distributions."""
    import torch
    from torch.distributions import Normal, kl_divergence

    q_t = Normal(torch.tensor(0.3, dtype=torch.float64), torch.tensor(1.2, dtype=torch.float64))
    p_t = Normal(torch.tensor(-0.5, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64))
    return kl_divergence(q_t, p_t)


@derivation("The KL divergence is never negative (Gibbs' inequality)", models=[ANY])
def nonnegativity(d):
    d.start(-KL(q, p))
    d.eq(E(sp.log(p / q), q), "definition; $-\\log(q/p) = \\log(p/q)$")
    d.le(sp.log(E(p / q, q)), "Jensen's inequality, $\\log$ is concave", by=jensen(sp.log(u), u))
    d.eq(sp.log(sp.Integral(p, (x, -sp.oo, sp.oo))), "the $q$ cancels")
    d.eq(sp.log(1, evaluate=False), "$p$ is a density")
    d.eq(0)


@derivation("Cross-entropy is at least the entropy", models=[ANY])
def cross_entropy(d):
    d.start(H(q, p))
    d.eq(-E(sp.log(p), q), "definition of cross-entropy")
    d.eq(ordered(-E(sp.log(q), q), E(sp.log(q) - sp.log(p), q)),
         "add and subtract $\\mathbb{E}_q[\\log q]$")
    d.eq(H(q) + KL(q, p), "definitions of entropy and KL")
    d.ge(H(q), "KL is non-negative", by=uses("background.kl:nonnegativity"))


@derivation("KL divergence between two normal distributions", models=[EXACT])
def gaussian(d):
    d.start(KL(q1, p1))
    d.eq(E(sp.log(q1) - sp.log(p1), q1), "definition")
    d.eq(E(ordered(sp.log(sigma2 / sigma1), -(x - mu1) ** 2 / (2 * sigma1**2),
                   (x - mu2) ** 2 / (2 * sigma2**2)), q1),
         "log of each density; the $\\sqrt{2\\pi}$ cancel")
    d.eq(ordered(sp.log(sigma2 / sigma1), -E((x - mu1) ** 2, q1) / (2 * sigma1**2),
                 E((x - mu2) ** 2, q1) / (2 * sigma2**2)), "linearity")
    d.eq(ordered(sp.log(sigma2 / sigma1), (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2),
                 -sp.Rational(1, 2)),
         "$\\mathbb{E}_q[(x-\\mu_1)^2] = \\sigma_1^2$, "
         "$\\mathbb{E}_q[(x-\\mu_2)^2] = \\sigma_1^2 + (\\mu_1-\\mu_2)^2$")
    d.numeric(torch_kl, at={mu1: 0.3, sigma1: 1.2, mu2: -0.5, sigma2: 0.7}, rtol=1e-12,
              label="torch.distributions.kl_divergence")


@derivation("KL divergence between diagonal normal distributions",
            models=[diagonal_model(1), diagonal_model(2), diagonal_model(3)])
def diagonal_gaussian(d):
    d.start(KL(qv, pv))
    d.eq(E(sp.log(qv) - sp.log(pv), qv), "definition")
    d.eq(E(sp.Sum(sp.log(qi) - sp.log(pi_), (i, 1, d_)), qv),
         "both densities are products over coordinates")
    d.eq(sp.Sum(E(sp.log(qi) - sp.log(pi_), qi), (i, 1, d_)),
         "linearity; under $q$ the coordinate $x_i$ is $\\mathcal{N}(\\mu_i, \\sigma_i^2)$")
    d.eq(sp.Sum(KL(qi, pi_), (i, 1, d_)), "definition, one coordinate at a time")
    d.eq(sp.Sum(ordered(sp.log(ss[i] / sigmas[i]),
                        (sigmas[i] ** 2 + (mus[i] - ms[i]) ** 2) / (2 * ss[i] ** 2),
                        -sp.Rational(1, 2)), (i, 1, d_)), "the univariate result above")


NORMALS = Model("$q = \\mathcal{N}(\\mu_1, \\sigma_1^2)$, $p = \\mathcal{N}(\\mu_2, \\sigma_2^2)$, "
                "exact integrals", bind={q: q1, p: p1})


@derivation("The KL divergence as an integral", models=[ANY, NORMALS])
def definition(d):
    d.start(KL(q, p))
    d.eq(E(sp.log(q) - sp.log(p), q), "definition: the expected log-ratio under $q$")
    d.eq(sp.Integral(q * (sp.log(q) - sp.log(p)), (x, -sp.oo, sp.oo)),
         "an expectation under $q$ is an integral against $q$", by=under(NORMALS))
