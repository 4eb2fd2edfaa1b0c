"""Derivations for docs/diffusion/training-objective.md: the model, the bound and the losses
(the rest of the page's derivations are in objective.py)."""
import sympy as sp

from diffusion_core.derivations import (E, KL, Model, Pdf, definition, derivation, discrete, jensen, ordered,
                                        random_variables, times, uses)
from diffusion_core.derivations.diffusion.objective import (EPS, MUt, MUth, T, X0, Xt, a, a_prev,
                                                            abar, abar_prev, alpha, beta, btilde, d_, e, eth,
                                                            i, mut, muth, p, p_model, pi_, q, q_post, qi,
                                                            sigma, SqNorm, sqnorm, t, x0c, xs, xt)

# ---- the model's chain and the forward chain as single densities
x_all, x_lat = sp.Symbol("x_{0:T}", real=True), sp.Symbol("x_{1:T}", real=True)
u = sp.Symbol("u", positive=True)
joint, chain = Pdf("p_\\theta", x_all), Pdf("q", x_lat, given=xs[0])


def chains(n):
    return Model(f"$T = {n}$, any densities; $p_\\theta(x_{{0:T}}) = p(x_T) \\prod_{{t=1}}^{{T}} "
                 f"p_\\theta(x_{{t-1}} \\mid x_t)$, $q(x_{{1:T}} \\mid x_0) = \\prod_{{t=1}}^{{T}} "
                 f"q(x_t \\mid x_{{t-1}})$",
                 bind={T: n, joint: p(xs[T]) * sp.Product(p(xs[t - 1], xs[t]), (t, 1, T)),
                       chain: sp.Product(q(xs[t], xs[t - 1]), (t, 1, T))})


@derivation("Both chains factorize, so their log-ratio is a sum over the steps",
            models=[chains(2), chains(3), chains(5)])
def log_ratio(d):
    d.start(-sp.log(joint / chain))
    d.eq(-sp.log(times(p(xs[T]), sp.Product(p(xs[t - 1], xs[t]), (t, 1, T)))
                 / sp.Product(q(xs[t], xs[t - 1]), (t, 1, T))),
         "the model: a prior, then $T$ learned steps; the forward chain: $T$ steps",
         by=definition("of the two chains"))
    d.eq(ordered(-sp.log(p(xs[T])), -sp.Sum(sp.log(p(xs[t - 1], xs[t]) / q(xs[t], xs[t - 1])), (t, 1, T))),
         "the log of a product is a sum")


# ---- the bound, with the latent z = x_{1:T}
pair, marginal0 = Pdf("p_\\theta", (xs[0], x_lat)), Pdf("p_\\theta", xs[0])
ANY = Model("any joint density $p_\\theta(x_0, x_{1:T})$ and any $q(x_{1:T} \\mid x_0)$")


@derivation("The loss bounds the negative log-likelihood", models=[ANY])
def bound(d):
    d.start(E(-sp.log(pair / chain), chain))
    d.ge(-sp.log(E(pair / chain, chain)), "Jensen's inequality, $-\\log$ is convex",
         by=jensen(-sp.log(u), u))
    d.eq(-sp.log(sp.Integral(pair, (x_lat, -sp.oo, sp.oo))), "the $q$ cancels")
    d.eq(-sp.log(marginal0), "integrate $x_{1:T}$ out")


# ---- each term of the bound as a squared error, then as a noise error
C = sp.Symbol("C", real=True)
q_xt = Pdf("q", Xt, given=X0)
network_free = times(d_ / 2, ordered(btilde / sigma**2, -1, -sp.log(btilde / sigma**2)))
mean_error_term = sqnorm(MUt - MUth, mut[i] - muth[i]) / (2 * sigma**2)
C_TEXT = ("$C = \\frac{d}{2}\\big(\\tilde\\beta_t/\\sigma_t^2 - 1 - "
          "\\log(\\tilde\\beta_t/\\sigma_t^2)\\big)$")


def per_step(n):
    return Model(f"$d = {n}$; both steps Gaussian, as above; " + C_TEXT,
                 bind={d_: n, q_post: sp.Product(qi, (i, 1, d_)), p_model: sp.Product(pi_, (i, 1, d_)),
                       C: network_free})


@derivation("Each term of the bound is a squared error between means (Ho et al. 2020, eq. 8)",
            models=[per_step(1), per_step(2), per_step(3)])
def mean_error(d):
    d.start(E(KL(q_post, p_model), q_xt))
    d.eq(E(ordered(network_free, mean_error_term), q_xt), "the KL term derived above",
         by=uses("diffusion.objective:kl_term"))
    d.eq(ordered(E(mean_error_term, q_xt), C),
         "the first term has no network and no $\\mathbf{x}_t$: it is the constant $C$")


EPS_TH_AT = sp.Symbol(r"\boldsymbol{\epsilon}_\theta\big(\sqrt{\bar\alpha_t}\,\mathbf{x}_0"
                      r" + \sqrt{1-\bar\alpha_t}\,\boldsymbol{\epsilon},\, t\big)", real=True)
weight = beta**2 / (2 * sigma**2 * alpha * (1 - abar))
mu_tilde = sp.sqrt(abar_prev) * beta / (1 - abar) * x0c[i] + sp.sqrt(alpha) * (1 - abar_prev) / (1 - abar) * xt[i]
mu_eps = (xt[i] - beta / sp.sqrt(1 - abar) * eth[i]) / sp.sqrt(alpha)


def through_noise(n):
    return Model(f"$d = {n}$; "
                 "$\\tilde{\\boldsymbol{\\mu}}_t$ and $\\boldsymbol{\\mu}_\\theta$ written through the "
                 "noise, $\\mathbf{x}_t = \\sqrt{\\bar\\alpha_t}\\mathbf{x}_0 + "
                 "\\sqrt{1-\\bar\\alpha_t}\\boldsymbol{\\epsilon}$, $\\alpha_t = "
                 "\\bar\\alpha_t / \\bar\\alpha_{t-1} = 1 - \\beta_t$ ($\\bar\\alpha_t = a_t^2$, "
                 "$\\bar\\alpha_{t-1} = a_{t-1}^2$)",
                 bind={d_: n, mut[i]: mu_tilde, muth[i]: mu_eps,
                       xt[i]: a * x0c[i] + sp.sqrt(1 - a**2) * e[i], abar: a**2, abar_prev: a_prev**2,
                       alpha: a**2 / a_prev**2, beta: 1 - a**2 / a_prev**2})


@derivation("Each term of the bound is a weighted noise error (Ho et al. 2020, eq. 12)",
            models=[through_noise(1), through_noise(2), through_noise(3)])
def noise_error(d):
    d.start(E(mean_error_term, q_xt))
    d.eq(E(weight * sqnorm(EPS - EPS_TH_AT, e[i] - eth[i]), q_xt),
         "the mean error is a noise error, above", by=uses("diffusion.objective:eps_weight"))


# ---- the simple loss: a uniform step, then the unweighted noise error of that step
step = random_variables("t")
ell = sp.IndexedBase(r"\ell", real=True)   # ell_t: the expected noise error of step t


def uniform_steps(n):
    return Model(f"$T = {n}$; $t$ uniform on $\\{{1, \\dots, T\\}}$; $\\ell_t$ the expected "
                 "squared noise error of step $t$",
                 bind={T: n, step: discrete({k: sp.Rational(1, n) for k in range(1, n + 1)})})


@derivation("The simple loss averages the unweighted noise errors of all steps (Ho et al. 2020, eq. 14)",
            models=[uniform_steps(2), uniform_steps(3), uniform_steps(4)])
def simple_loss(d):
    d.start(E(SqNorm(EPS - EPS_TH_AT, ell[step])))
    d.eq(E(ell[step]), "$\\ell_t$: the squared noise error averaged over the data and the noise at step $t$",
         by=definition("of $\\ell_t$"))
    d.eq(sp.Sum(ell[t], (t, 1, T)) / T, "each step $t$ has probability $1/T$")
