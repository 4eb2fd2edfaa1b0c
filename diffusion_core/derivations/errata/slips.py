"""Derivations for docs/errata.md: the correct forms of results that are often mis-stated.

tests/test_errata.py writes each common wrong form into the same derivation and checks that
the checker rejects it.
"""
import sympy as sp

from diffusion_core.derivations import (KL, E, GaussPdf, Model, Pdf, Var, derivation, normal, ordered,
                                        random_variables, times, under)
from diffusion_core.derivations.ddim.index import STEP, STEP_BIND, STEP_TEXT

X, Y, W, eps, eps1, eps2 = random_variables("X Y W epsilon epsilon_1 epsilon_2")
x0, xt, y, u, s, mu1, mu2 = sp.symbols("x_0 x_t x_t-1 u s mu1 mu2", real=True)
ab, ab_prev, alpha, beta = sp.symbols("alphabar_t alphabar_t-1 alpha_t beta_t", positive=True)
alpha1, alpha2, beta1, beta2 = sp.symbols("alpha_1 alpha_2 beta_1 beta_2", positive=True)
c = sp.Symbol("c", real=True)
sigma1, sigma2 = sp.symbols("sigma1 sigma2", positive=True)

beta_tilde = (1 - ab_prev) / (1 - ab) * beta                       # DDPM's posterior variance
mu_tilde = ordered(sp.sqrt(ab_prev) * beta / (1 - ab) * x0,
                   sp.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * xt)   # and posterior mean


def N(x, mean, var):
    return GaussPdf(x, mean, var)


# Shown as names; every model of the posterior derivation writes them out.
bt, mt = sp.Symbol("betatilde_t", positive=True), sp.Symbol("mutilde_t", real=True)
q_step, q_prev, q_t = Pdf("q", xt, given=y), Pdf("q", y, given=x0), Pdf("q", xt, given=x0)
DEFINITIONS = {bt: beta_tilde, mt: mu_tilde, q_step: N(xt, sp.sqrt(alpha) * y, beta),
               q_prev: N(y, sp.sqrt(ab_prev) * x0, 1 - ab_prev),
               q_t: N(xt, sp.sqrt(ab) * x0, 1 - ab)}
AS_DEFINED = "; the three densities, $\\tilde\\mu_t$ and $\\tilde\\beta_t$ as defined above"

# Every forward step 0 < alphabar_t < alphabar_{t-1} < 1: the DDIM page's model, in the same symbols.
POSITIVE_STEP = Model(STEP_TEXT + AS_DEFINED, bind={**STEP_BIND, **DEFINITIONS})
# The algebra of the square needs only the definitions; it is fastest in these symbols.
RECURSION = Model("$\\bar\\alpha_t = \\alpha_t\\bar\\alpha_{t-1}$, $\\beta_t = 1 - \\alpha_t$"
                  + AS_DEFINED,
                  bind={ab: alpha * ab_prev, beta: 1 - alpha, **DEFINITIONS})
# One concrete step whose square roots are rational: a quick counterexample to a wrong form.
EXAMPLE = Model("one step with $\\bar\\alpha_{t-1} = 9/16$, $\\alpha_t = 64/81$" + AS_DEFINED,
                bind={ab_prev: sp.Rational(9, 16), alpha: sp.Rational(64, 81),
                      ab: sp.Rational(4, 9), beta: sp.Rational(17, 81), **DEFINITIONS})
EXACT = Model("the normal densities, expectations as exact integrals")
STANDARD_NOISE = Model(bind={eps: normal(0, 1)})
FRESH_NOISE = Model(bind={eps1: normal(0, 1), eps2: normal(0, 1), beta1: 1 - alpha1,
                          beta2: 1 - alpha2})
GENERAL = Model()
# X and Y = c X + W are correlated (Cov = c) whenever c != 0.
CORRELATED = Model(bind={Y: c * X + W, X: normal(0, 1), W: normal(0, 1)})
# Var[x_0] stays symbolic: only independence of the data and the noise is assumed.
DATA_AND_NOISE = Model(independent=[(X, eps)], facts={E(eps): 0, E(eps**2): 1})


@derivation("The posterior of one forward step (Bayes' rule)", models=[POSITIVE_STEP, EXAMPLE])
def posterior(d):
    d.start(-2 * sp.log(q_step * q_prev / q_t))
    d.eq(ordered((xt - sp.sqrt(alpha) * y) ** 2 / beta,
                 (y - sp.sqrt(ab_prev) * x0) ** 2 / (1 - ab_prev),
                 -(xt - sp.sqrt(ab) * x0) ** 2 / (1 - ab), sp.log(2 * sp.pi * bt)),
         "log of each normal density; the constants combine into $\\log(2\\pi\\tilde\\beta_t)$")
    d.eq(ordered((y - mt) ** 2 / bt, sp.log(2 * sp.pi * bt)),
         "complete the square in $x_{t-1}$", by=under(RECURSION, EXAMPLE))
    d.eq(-2 * sp.log(N(y, mt, bt)), "log of a normal density")


@derivation("The posterior mean in terms of the noise", models=[STEP, EXAMPLE])
def posterior_mean_eps(d):
    x0_of_eps = (xt - sp.sqrt(1 - ab) * eps) / sp.sqrt(ab)
    d.start(ordered(sp.sqrt(ab_prev) * beta / (1 - ab) * x0_of_eps,
                    sp.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * xt))
    d.eq((xt - beta / sp.sqrt(1 - ab) * eps) / sp.sqrt(alpha),
         "$x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon)/\\sqrt{\\bar\\alpha_t}$; collect")


@derivation("KL divergence between two normal distributions, in one step", models=[EXACT])
def gaussian_kl(d):
    d.start(KL(GaussPdf(u, mu1, sigma1**2), GaussPdf(u, mu2, sigma2**2)))
    d.eq(ordered(sp.log(sigma2 / sigma1), (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2),
                 -sp.Rational(1, 2)), "exact integrals against the first density")


@derivation("Variance of one forward jump", models=[DATA_AND_NOISE])
def forward_variance(d):
    d.start(Var(ordered(sp.sqrt(ab) * X, sp.sqrt(1 - ab) * eps)))
    d.eq(ordered(ab * Var(X), (1 - ab) * Var(eps)),
         "independent terms; a factor comes out squared")
    d.eq(ordered(ab * Var(X), 1 - ab), "$\\operatorname{Var}[\\epsilon] = 1$")


@derivation("Density of x_t given x_0", models=[STANDARD_NOISE])
def forward_density(d):
    # P(x_t <= u) = P(eps <= (u - sqrt(alphabar) x_0) / sqrt(1 - alphabar)); differentiate in u
    d.start(sp.Derivative(sp.Integral(GaussPdf(s, 0, 1),
                                      (s, -sp.oo, (u - sp.sqrt(ab) * x0) / sp.sqrt(1 - ab))), u))
    d.eq(GaussPdf((u - sp.sqrt(ab) * x0) / sp.sqrt(1 - ab), 0, 1) / sp.sqrt(1 - ab),
         "fundamental theorem of calculus, chain rule")
    d.eq(GaussPdf(u, sp.sqrt(ab) * x0, 1 - ab), "the variance is $1 - \\bar\\alpha_t$")


@derivation("The variance of a sum needs the covariance", models=[GENERAL, CORRELATED])
def variance_of_sum(d):
    d.start(Var(X + Y))
    d.eq(ordered(Var(X), Var(Y), times(2, E(X * Y) - E(X) * E(Y))), "expand; linearity")


@derivation("Two forward steps need fresh noise", models=[FRESH_NOISE])
def two_steps(d):
    d.start(Var(ordered(sp.sqrt(alpha2) * ordered(sp.sqrt(alpha1) * x0, sp.sqrt(beta1) * eps1),
                        sp.sqrt(beta2) * eps2)))
    d.eq(ordered(alpha2 * beta1, beta2), "$\\epsilon_1$, $\\epsilon_2$ independent, variance 1")
    d.eq(1 - alpha1 * alpha2, "$\\beta_s = 1 - \\alpha_s$")
