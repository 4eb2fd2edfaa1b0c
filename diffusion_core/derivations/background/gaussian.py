"""Derivations for docs/background/gaussian-conditioning.md: completing the square, the product of two normal
densities, and conditioning a normal variable on a noisy observation of it."""
import sympy as sp

from diffusion_core.derivations import GaussPdf, Model, derivation, ordered, ratio_is_one, times

x, y = sp.symbols("x y", real=True)
a2 = sp.Symbol("a", positive=True)           # the quadratic's leading coefficient (positive: a density's exponent)
b, c = sp.symbols("b c", real=True)
m1, m2, mu = sp.symbols("m_1 m_2 mu", real=True)
v1, v2, tau, sig = sp.symbols("v_1 v_2 tau sigma", positive=True)
k = sp.Symbol("k", real=True)                # the observation's gain: y = k x + sigma * noise

ALGEBRA = Model("$a > 0$, $b$, $c$ any real numbers")
TWO_NORMALS = Model("two normal densities in $x$: means $m_1, m_2$, variances $v_1, v_2 > 0$")
OBSERVATION = Model("$x \\sim \\mathcal{N}(\\mu, \\tau^2)$ and, given $x$, "
                    "$y \\sim \\mathcal{N}(kx, \\sigma^2)$; $\\tau, \\sigma > 0$")

v_prod = v1 * v2 / (v1 + v2)
m_prod = (m1 * v2 + m2 * v1) / (v1 + v2)
gain = k * tau**2 / (k**2 * tau**2 + sig**2)
post_mean = ordered(mu, times(gain, y - k * mu))
post_var = tau**2 * sig**2 / (k**2 * tau**2 + sig**2)


def library_posterior_mean():
    """E[x | y] from the library's exact Gaussian-mixture predictions (diffusion_core.mixture, one component):
    x = x_0 ~ N(0.3, 0.8^2) observed as y = x_t = 0.6 x_0 + 0.5 eps, at y = -0.4."""
    import torch
    from diffusion_core.mixture import GaussianMixture

    f64 = torch.float64
    return GaussianMixture([1.0], [0.3], [0.8]).x0(torch.tensor(-0.4, dtype=f64), torch.tensor(0.6, dtype=f64),
                                                  torch.tensor(0.5, dtype=f64))


@derivation("Completing the square", models=[ALGEBRA])
def complete_square(d):
    d.start(ordered(a2 * x**2, b * x, c))
    d.eq(ordered(times(a2, ordered(x**2, b / a2 * x)), c), "take $a$ out of the $x$ terms")
    d.eq(ordered(times(a2, (x + b / (2 * a2)) ** 2), c - b**2 / (4 * a2)),
         "add and subtract $(b/2a)^2$ inside the bracket")


@derivation("The product of two normal densities in x", models=[TWO_NORMALS])
def product(d):
    d.start(GaussPdf(x, m1, v1) * GaussPdf(x, m2, v2))
    d.eq(times(GaussPdf(m1, m2, v1 + v2), GaussPdf(x, m_prod, v_prod)),
         "complete the square in $x$; what is left does not depend on $x$", by=ratio_is_one())


@derivation("Precisions add", models=[TWO_NORMALS])
def precisions(d):
    d.start(1 / v_prod)
    d.eq(1 / v1 + 1 / v2, "the variance of the product above")


@derivation("Conditioning a normal variable on a noisy observation", models=[OBSERVATION])
def conditioning(d):
    d.start(GaussPdf(x, mu, tau**2) * GaussPdf(y, k * x, sig**2) / GaussPdf(y, k * mu, k**2 * tau**2 + sig**2))
    d.eq(GaussPdf(x, post_mean, post_var), "complete the square in $x$", by=ratio_is_one())
    d.numeric(library_posterior_mean, expr=post_mean, at={mu: 0.3, tau: 0.8, k: 0.6, sig: 0.5, y: -0.4},
              rtol=1e-12, label="diffusion_core.mixture.GaussianMixture([1], [0.3], [0.8]).x0 at $x_t = -0.4$, "
                                "$\\alpha = 0.6$, $\\sigma = 0.5$")


@derivation("The evidence: the observation's own distribution", models=[OBSERVATION])
def evidence(d):
    d.start(sp.Integral(GaussPdf(x, mu, tau**2) * GaussPdf(y, k * x, sig**2), (x, -sp.oo, sp.oo)))
    d.eq(GaussPdf(y, k * mu, k**2 * tau**2 + sig**2), "a Gaussian integral: complete the square in $x$")


@derivation("The posterior's precision is the prior's plus the observation's", models=[OBSERVATION])
def posterior_precision(d):
    d.start(1 / post_var)
    d.eq(ordered(1 / tau**2, k**2 / sig**2), "divide the numerator by each factor of the denominator")
