"""Derivations for docs/background/reparameterization.md."""
import sympy as sp

from diffusion_core.derivations import (E, GaussPdf, Model, Pdf, Pr, Var, derivation, normal, ordered,
                                        random_variables, times)

eps = random_variables("epsilon")
mu = sp.Symbol("mu", real=True)
sigma = sp.Symbol("sigma", positive=True)
s, t = sp.symbols("s t", real=True)
z = ordered(mu, sigma * eps)  # the reparameterized sample, shown as mu + sigma*eps

# The noise is standard normal ...
STANDARD_NORMAL = Model(bind={eps: normal(0, 1)})
# ... but the moment results only use E[eps] = 0 and E[eps^2] = 1.
STANDARDIZED = Model("any $\\epsilon$ with $\\mathbb{E}[\\epsilon] = 0$ and "
                     "$\\mathbb{E}[\\epsilon^2] = 1$",
                     facts={E(eps): 0, E(eps**2): 1})


# The objective L(phi) = E_{z ~ q_phi}[f(z)], checked for two concrete families and functions.
phi = sp.Symbol("phi", positive=True)
w, k = sp.Symbol("z", real=True), sp.Symbol("k", real=True)  # w: the sample z as a plain variable
L, f = sp.Function("L"), sp.Function("f")
q_phi = Pdf("q_\\phi", w)


class Differentiating(Model):
    """Also differentiates normal densities: inside a derivative their formula is written out."""

    def _visit(self, node):
        if isinstance(node, sp.Derivative):
            node = node.replace(lambda e: isinstance(e, GaussPdf), lambda e: e.unfold())
        return super()._visit(node)


SHIFT = Differentiating("$q_\\phi = \\mathcal{N}(\\phi, 1)$, $f(z) = z^2$",
                        bind={L(phi): E(f(w), q_phi), q_phi: GaussPdf(w, phi, 1), f(w): w**2})
SCALE = Differentiating("$q_\\phi = \\mathcal{N}(0, \\phi^2)$, $f(z) = e^{kz}$ for any real $k$",
                        bind={L(phi): E(f(w), q_phi), q_phi: GaussPdf(w, 0, phi**2),
                              f(w): sp.exp(k * w)})


def autograd_gradient():
    """Autograd Monte Carlo estimate of d/d sigma E[(mu + sigma eps)^2] at mu=0.5, sigma=1.5."""
    import torch

    generator = torch.Generator().manual_seed(0)
    mu_t = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    sigma_t = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(400_000, generator=generator, dtype=torch.float64)
    ((mu_t + sigma_t * noise) ** 2).mean().backward()
    return sigma_t.grad


@derivation("The gradient of an expectation acts on the density", models=[SHIFT, SCALE])
def objective_gradient(d):
    d.start(sp.Derivative(L(phi), phi))
    d.eq(sp.Derivative(E(f(w), q_phi), phi), "definition of the objective")
    d.eq(sp.Derivative(sp.Integral(q_phi * f(w), (w, -sp.oo, sp.oo)), phi),
         "an expectation under $q_\\phi$ is an integral against $q_\\phi$")
    d.eq(sp.Integral(f(w) * sp.Derivative(q_phi, phi), (w, -sp.oo, sp.oo)),
         "differentiate under the integral: $\\phi$ sits in the density, not in $f$")
    d.eq(E(f(w) * sp.Derivative(sp.log(q_phi), phi), q_phi),
         "$\\partial_\\phi q_\\phi = q_\\phi\\, \\partial_\\phi \\log q_\\phi$")


@derivation("Mean of the reparameterized sample", models=[STANDARDIZED, STANDARD_NORMAL])
def mean(d):
    d.start(E(z))
    d.eq(mu + sigma * E(eps), "linearity")
    d.eq(mu, "$\\mathbb{E}[\\epsilon] = 0$")


@derivation("Variance of the reparameterized sample", models=[STANDARDIZED, STANDARD_NORMAL])
def variance(d):
    d.start(Var(z))
    d.eq(E(ordered(mu, sigma * eps, -mu) ** 2), "definition, and the mean above")
    d.eq(sigma**2 * E(eps**2), "linearity")
    d.eq(sigma**2, "$\\mathbb{E}[\\epsilon^2] = \\operatorname{Var}[\\epsilon] = 1$")


@derivation("Density of the reparameterized sample",
            models=[Model("$\\epsilon \\sim \\mathcal{N}(0, 1)$; $\\Pr$ from its distribution function")])
def density(d):
    # the distribution function of z = mu + sigma eps at t, differentiated in t
    d.start(sp.Derivative(Pr(z, t, eps), t))
    d.eq(sp.Derivative(Pr(eps, (t - mu) / sigma, eps), t),
         "subtract $\\mu$, divide by $\\sigma > 0$")
    d.eq(sp.Derivative(sp.Integral(GaussPdf(s, 0, 1), (s, -sp.oo, (t - mu) / sigma)), t),
         "$\\epsilon \\sim \\mathcal{N}(0, 1)$")
    d.eq(GaussPdf((t - mu) / sigma, 0, 1) / sigma, "fundamental theorem of calculus, chain rule")
    d.eq(GaussPdf(t, mu, sigma**2), "write out both densities")


@derivation("Gradient through the sample", models=[STANDARDIZED, STANDARD_NORMAL])
def gradient(d):
    d.start(sp.Derivative(E(z**2), sigma))
    d.eq(E(sp.Derivative(z**2, sigma)),
         "the distribution of $\\epsilon$ does not depend on $\\sigma$")
    d.eq(E(times(2, z, eps)), "chain rule")
    d.eq(2 * mu * E(eps) + 2 * sigma * E(eps**2), "linearity")
    d.eq(2 * sigma, "$\\mathbb{E}[\\epsilon] = 0$, $\\mathbb{E}[\\epsilon^2] = 1$")
    d.numeric(autograd_gradient, at={mu: 0.5, sigma: 1.5}, rtol=0.02,
              label="PyTorch autograd on 400 000 samples")


Z = random_variables("z")
k = sp.Symbol("k", real=True)
BOTH = Model("$z \\sim \\mathcal{N}(\\mu, \\sigma^2)$, $\\epsilon \\sim \\mathcal{N}(0, 1)$, exact integrals",
             bind={Z: normal(mu, sigma**2), eps: normal(0, 1)})


@derivation("Averaging over z or over the noise gives the same law", models=[BOTH])
def same_law(d):
    # f(z) = exp(k z) for every real k: equal moment generating functions mean equal distributions,
    # so E over z ~ N(mu, sigma^2) equals E over eps of the same function of mu + sigma eps, for any f.
    d.start(E(sp.exp(k * Z)))
    d.eq(sp.exp(k * mu + k**2 * sigma**2 / 2), "a Gaussian integral over $z$")
    d.eq(E(sp.exp(k * z)), "a Gaussian integral over $\\epsilon$")
