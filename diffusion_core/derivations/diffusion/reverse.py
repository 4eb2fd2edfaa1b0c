"""Derivations for docs/diffusion/reverse-process.md."""
import sympy as sp

from diffusion_core.derivations import (Check, GaussPdf, Model, Pdf, StepFailure, assumption, definition,
                                        derivation, ordered, ratio_is_one, times, under, uses)

alpha, beta = sp.symbols("alpha_t beta_t", positive=True)
abar, abar_prev = sp.symbols("alphabar_t alphabar_t-1", positive=True)
x0, xt, y = sp.symbols("x_0 x_t x_t-1", real=True)  # y is x_{t-1}
eps = sp.Symbol("epsilon_theta", real=True)          # the network's noise prediction
A, B, C = sp.Symbol("A", positive=True), sp.Symbol("B", real=True), sp.Symbol("C", real=True)
r, k = sp.symbols("r k", positive=True)

# The densities of the forward process, abstract first.
posterior = Pdf("q", y, given=(xt, x0))
step_x0, step, prev, marginal = (Pdf("q", xt, given=(y, x0)), Pdf("q", xt, given=y),
                                 Pdf("q", y, given=x0), Pdf("q", xt, given=x0))
step_gauss = GaussPdf(xt, sp.sqrt(alpha) * y, beta)
prev_gauss = GaussPdf(y, sp.sqrt(abar_prev) * x0, 1 - abar_prev)
marginal_gauss = GaussPdf(xt, sp.sqrt(abar) * x0, 1 - abar)


def twice(expr):
    """2 * expr, shown as 2 (expr) rather than multiplied out."""
    return sp.Mul(2, expr, evaluate=False)


# The exponent of q(x_t | x_{t-1}) q(x_{t-1} | x_0): all of the posterior's x_{t-1} dependence.
exponent_terms = ordered(-(xt - sp.sqrt(alpha) * y) ** 2 / (2 * beta),
                         -(y - sp.sqrt(abar_prev) * x0) ** 2 / twice(1 - abar_prev))
# What the page derives: the posterior's precision, variance and mean coefficients.
precision = alpha / beta + 1 / (1 - abar_prev)
linear_coef = sp.sqrt(alpha) / beta * xt + sp.sqrt(abar_prev) / (1 - abar_prev) * x0
beta_tilde = (1 - abar_prev) / (1 - abar) * beta
coef1 = sp.sqrt(abar_prev) * beta / (1 - abar)
coef2 = sp.sqrt(alpha) * (1 - abar_prev) / (1 - abar)

ANY = Model("any joint density $q$ of $x_0, x_{t-1}, x_t$")
MARKOV = Model("the forward process is a Markov chain: "
               "$q(x_t \\mid x_{t-1}, x_0) = q(x_t \\mid x_{t-1})$", bind={step_x0: step})
FORWARD = Model("the forward step and the closed form of the forward process page",
                bind={step: step_gauss, prev: prev_gauss, marginal: marginal_gauss})
ALGEBRA = Model("plain algebra, all symbols real")
CONSTANT = Model("$C$ collects the terms without $x_{t-1}$: "
                 "$C = -\\frac{x_t^2}{2\\beta_t} "
                 "- \\frac{\\bar\\alpha_{t-1} x_0^2}{2(1 - \\bar\\alpha_{t-1})}$",
                 bind={C: -xt**2 / (2 * beta) - abar_prev * x0**2 / twice(1 - abar_prev)})
mu_t, beta_t_tilde = sp.Symbol("mutilde_t", real=True), sp.Symbol("betatilde_t", positive=True)
SCHEDULE = Model("$\\alpha_t = 1 - \\beta_t$ and $\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$",
                 bind={alpha: 1 - beta, abar: (1 - beta) * abar_prev})
DERIVED = Model("$\\tilde\\mu_t$ and $\\tilde\\beta_t$ as derived above; "
                "$\\alpha_t = 1 - \\beta_t$ and $\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$",
                bind={mu_t: coef1 * x0 + coef2 * xt, beta_t_tilde: beta_tilde,
                      alpha: 1 - beta, abar: (1 - beta) * abar_prev})
# Every alpha_t and alphabar_{t-1} in (0, 1), written so that SymPy can see the signs.
ANY_SCHEDULE = Model("$\\alpha_t = 1/(1+r)$ and $\\bar\\alpha_{t-1} = 1/(1+k)$ for any $r, k > 0$ "
                     "(any values in $(0, 1)$), $\\beta_t = 1 - \\alpha_t$, "
                     "$\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$",
                     bind={alpha: 1 / (1 + r), beta: r / (1 + r), abar_prev: 1 / (1 + k),
                           abar: 1 / ((1 + r) * (1 + k))})


class MatchesLibrary(Check):
    """Check the step symbolically, then evaluate its right side at every step t = 1..T of
    diffusion_core's T = 1000 linear and cosine schedules and compare it with the library's
    tables. ``tables`` maps a table name to the symbol whose coefficient it holds (None: the
    whole line). Our alphabar_{t-1} is a cumulative product of the betas, not the library's."""

    def __init__(self, tables, rtol=1e-9):
        self.tables, self.rtol = tables, rtol

    def verify(self, step, derivation):
        import numpy as np
        import torch
        from diffusion_core import NoiseSchedule

        said = under(*derivation.models).verify(step, derivation)
        line = SCHEDULE.evaluate(step.rhs)  # in beta_t and alphabar_{t-1} only
        worst = 0.0
        for kind in ("linear", "cosine"):
            schedule = NoiseSchedule.make(kind, 1000, dtype=torch.float64)
            betas = schedule.betas.numpy()
            abar_before = np.concatenate([[1.0], np.cumprod(1 - betas)[:-1]])  # alphabar_0 = 1
            for name, symbol in self.tables.items():
                formula = line if symbol is None else sp.diff(line, symbol)
                evaluate = sp.lambdify((beta, abar_prev), formula, "numpy")
                ours = np.broadcast_to(evaluate(betas, abar_before), betas.shape)
                theirs = getattr(schedule, name).numpy()  # index t - 1 holds step t
                error = np.abs(ours - theirs) / np.where(theirs == 0, 1.0, np.abs(theirs))
                worst = max(worst, float(error.max()))
                if not error.max() <= self.rtol:
                    t = int(error.argmax()) + 1
                    raise StepFailure(f"{kind} schedule, step t = {t}: the formula gives "
                                      f"{float(ours[t - 1])!r}, diffusion_core's {name} "
                                      f"holds {float(theirs[t - 1])!r}")
        names = " and ".join(f"`{name}`" for name in self.tables)
        return (f"{said}; with the betas of diffusion_core's `linear` and `cosine` schedules "
                f"($T = 1000$) this line matches {names} at every step $t = 1, \\dots, 1000$ "
                f"(largest relative difference {worst:.1e})")


def ho_beta(step):
    """beta_t of Ho et al. 2020 (1e-4 to 0.02, linear, T = 1000) from the formula."""
    return 1e-4 + (step - 1) * (0.02 - 1e-4) / 999


T_CHECK = 500
AT_T = {beta: ho_beta(T_CHECK), xt: 0.3, eps: -1.2,
        abar_prev: float(sp.prod([1 - ho_beta(s) for s in range(1, T_CHECK)]))}


# A point (x_0, x_t, x_{t-1}) at which to compare the Bayes formula with the library's posterior.
AT_POINT = {alpha: 1 - AT_T[beta], beta: AT_T[beta], abar_prev: AT_T[abar_prev],
            abar: (1 - AT_T[beta]) * AT_T[abar_prev], x0: 0.5, xt: 0.3, y: 0.4}


def library_posterior_density():
    """q(x_{t-1} | x_t, x_0) at AT_POINT: diffusion_core.reverse.q_posterior's moments, torch's Normal."""
    import torch
    from torch.distributions import Normal
    from diffusion_core import NoiseSchedule
    from diffusion_core.reverse import q_posterior

    schedule = NoiseSchedule.linear(1000, dtype=torch.float64)
    x0_, xt_ = (torch.tensor([[AT_POINT[s]]], dtype=torch.float64) for s in (x0, xt))
    mean, variance, _ = q_posterior(schedule, x0_, xt_, torch.tensor([T_CHECK - 1]))
    x_prev = torch.tensor(AT_POINT[y], dtype=torch.float64)
    return Normal(mean, variance.sqrt()).log_prob(x_prev).exp()


def library_eps_mean():
    """mu_theta from diffusion_core (t = 500): a Denoiser reads the noise prediction as (x0_hat, eps_hat),
    then Diffusion.p_mean_variance puts x0_hat into the posterior mean."""
    import torch
    from diffusion_core import Denoiser, Diffusion, NoiseSchedule

    diffusion = Diffusion(NoiseSchedule.linear(1000, dtype=torch.float64), parameterization="eps")
    x_t = torch.tensor([[AT_T[xt]]], dtype=torch.float64)
    eps_theta = torch.tensor([[AT_T[eps]]], dtype=torch.float64)

    def network(x, t):  # a "network" that predicts this noise
        return eps_theta

    # The denoiser runs on the diffusion's path, whose time is the paper's step t; the Diffusion's
    # methods take the schedule's index t - 1.
    prediction = Denoiser(network, diffusion.path, "eps")(x_t, torch.tensor([T_CHECK]))
    return diffusion.p_mean_variance(prediction, x_t, torch.tensor([T_CHECK - 1])).mean


@derivation("Bayes' rule for the forward process", models=[ANY])
def bayes(d):
    d.start(posterior)
    d.eq(step_x0 * prev / marginal, "Bayes' rule, with $x_0$ given throughout", by=under(ANY))
    d.eq(step * prev / marginal, "the Markov property", by=assumption("the forward chain is Markov", models=[MARKOV]))
    d.eq(step_gauss * prev_gauss / marginal_gauss, "the forward step and the closed form",
         by=definition("the forward step; the closed form, derived on the forward-process page", models=[FORWARD]))
    d.numeric(library_posterior_density, at=AT_POINT, model=ALGEBRA, rtol=1e-9,
              label="the normal density with `diffusion_core.reverse.q_posterior`'s mean and variance "
                    "(linear schedule, $t = 500$)")


@derivation("The exponent as a quadratic in $x_{t-1}$", models=[CONSTANT])
def exponent(d):
    d.start(exponent_terms)
    d.eq(ordered(-times(sp.UnevaluatedExpr(sp.Rational(1, 2)),
                        ordered(alpha / beta, 1 / (1 - abar_prev)), y**2),
                 times(ordered(sp.sqrt(alpha) / beta * xt,
                               sp.sqrt(abar_prev) / (1 - abar_prev) * x0), y),
                 C),
         "expand both squares and collect the powers of $x_{t-1}$")


@derivation("Completing the square", models=[ALGEBRA])
def complete_square(d):
    d.start(ordered(-A * y**2 / 2, B * y, C))
    d.eq(ordered(-times(A / 2, (y - B / A) ** 2), B**2 / (2 * A), C),
         "expand $(x_{t-1} - B/A)^2$ to check")


@derivation("The posterior variance", models=[SCHEDULE])
def posterior_variance(d):
    d.start(1 / precision)
    d.eq(beta * (1 - abar_prev) / (alpha * (1 - abar_prev) + beta),
         "multiply top and bottom by $\\beta_t (1 - \\bar\\alpha_{t-1})$")
    d.eq(beta * (1 - abar_prev) / (1 - alpha * abar_prev), "$\\beta_t = 1 - \\alpha_t$")
    d.eq(times((1 - abar_prev) / (1 - abar), beta),
         "$\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$",
         by=MatchesLibrary({"posterior_variance": None}))


@derivation("The posterior mean", models=[SCHEDULE])
def posterior_mean(d):
    d.start(linear_coef / precision)
    d.eq(times(beta_tilde, ordered(sp.sqrt(alpha) / beta * xt,
                                   sp.sqrt(abar_prev) / (1 - abar_prev) * x0)),
         "$1/A = \\tilde\\beta_t$, derived above")
    d.eq(ordered(times(coef1, x0), times(coef2, xt)), "multiply out",
         by=MatchesLibrary({"posterior_mean_coef1": x0, "posterior_mean_coef2": xt}))


@derivation("The final formulas complete the square", models=[DERIVED])
def completed(d):
    d.start(sp.Derivative(ordered(exponent_terms, (y - mu_t) ** 2 / (2 * beta_t_tilde)), y))
    d.eq(0, "differentiate: every term with $x_{t-1}$ cancels")


@derivation("The two variances: $\\tilde\\beta_t \\le \\beta_t$", models=[ANY_SCHEDULE])
def variance_order(d):
    d.start(times((1 - abar_prev) / (1 - abar), beta))
    d.le(beta, "$\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1} < \\bar\\alpha_{t-1}$, "
               "so the fraction is below one")


@derivation("The mean through the noise prediction (Ho et al. eq. 11)", models=[SCHEDULE])
def eps_mean(d):
    x0_hat = ordered(xt, -times(sp.sqrt(1 - abar), eps)) / sp.sqrt(abar)
    d.start(ordered(times(coef1, x0_hat), times(coef2, xt)))
    d.eq(ordered(times(ordered(coef1 / sp.sqrt(abar), coef2), xt),
                 -times(coef1 * sp.sqrt(1 - abar) / sp.sqrt(abar), eps)),
         "collect $x_t$ and $\\epsilon_\\theta$")
    d.eq(ordered(times(ordered(beta / (sp.sqrt(alpha) * (1 - abar)), coef2), xt),
                 -times(beta / (sp.sqrt(alpha) * sp.sqrt(1 - abar)), eps)),
         "$\\sqrt{\\bar\\alpha_{t-1}} / \\sqrt{\\bar\\alpha_t} = 1/\\sqrt{\\alpha_t}$")
    d.eq(ordered(times(1 / sp.sqrt(alpha), xt),
                 -times(beta / (sp.sqrt(alpha) * sp.sqrt(1 - abar)), eps)),
         "$\\beta_t + \\alpha_t (1 - \\bar\\alpha_{t-1}) = 1 - \\bar\\alpha_t$")
    d.eq(times(sp.UnevaluatedExpr(1 / sp.sqrt(alpha)),
               ordered(xt, -times(beta / sp.sqrt(1 - abar), eps))),
         "factor out $1/\\sqrt{\\alpha_t}$")
    d.numeric(library_eps_mean, at=AT_T, rtol=1e-12,
              label="`diffusion_core.Denoiser` and `diffusion_core.Diffusion.p_mean_variance` ($\\epsilon$ parameterization, "
                    "linear schedule, $t = 500$)")


noise = sp.Symbol("epsilon", real=True)
FORWARD_DRAW = Model("$x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon$",
                     bind={xt: sp.sqrt(abar) * x0 + sp.sqrt(1 - abar) * noise})


@derivation("The data from the noisy point and its noise", models=[FORWARD_DRAW])
def x0_from_noise(d):
    d.start(ordered(xt, -times(sp.sqrt(1 - abar), noise)) / sp.sqrt(abar))
    d.eq(x0, "insert $x_t$: the noise cancels")


# ---- the learned step and the sampling rule
mu_theta, z = sp.Symbol("mu_theta", real=True), sp.Symbol("z", real=True)
sigma = sp.Symbol("sigma_t", positive=True)
learned = Pdf("p_\\theta", y, given=xt)
LEARNED_CDF = sp.Derivative(sp.Integral(GaussPdf(k, 0, 1), (k, -sp.oo, (y - mu_theta) / sigma)), y)
LEARNED_DRAW = Model("$p_\\theta(x_{t-1} \\mid x_t)$ is the density of the draw "
                     "$x_{t-1} = \\mu_\\theta + \\sigma_t z$, $z \\sim \\mathcal{N}(0, 1)$: "
                     "the derivative of its distribution function", bind={learned: LEARNED_CDF})


@derivation("The learned step is Gaussian", models=[LEARNED_DRAW])
def learned_step(d):
    d.start(learned)
    d.eq(LEARNED_CDF, "the density of the draw: differentiate "
                      "$P(z \\le (x_{t-1} - \\mu_\\theta)/\\sigma_t)$", by=definition("of the density of a draw"))
    d.eq(GaussPdf((y - mu_theta) / sigma, 0, 1) / sigma, "fundamental theorem of calculus, chain rule")
    d.eq(GaussPdf(y, mu_theta, sigma**2), "write out both densities")


x0_hat = ordered(xt, -times(sp.sqrt(1 - abar), eps)) / sp.sqrt(abar)
SAMPLE = Model("$x_{t-1} = \\mu_\\theta + \\sigma_t z$ with $\\mu_\\theta = \\tilde\\mu_t(x_t, \\hat x_0)$, "
               "$\\hat x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon_\\theta)/\\sqrt{\\bar\\alpha_t}$; "
               "$\\alpha_t = 1 - \\beta_t$ and $\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$",
               bind={y: coef1 * x0_hat + coef2 * xt + sigma * z,
                     alpha: 1 - beta, abar: (1 - beta) * abar_prev})


@derivation("One step of DDPM sampling (Ho et al. algorithm 2)", models=[SAMPLE])
def sampling_step(d):
    d.start(y)
    d.eq(ordered(times(coef1, x0_hat), times(coef2, xt), sigma * z),
         "a draw from $p_\\theta$, whose mean is the posterior mean with $\\hat x_0$ for $x_0$",
         by=definition("of the model's step"))
    d.eq(ordered(times(sp.UnevaluatedExpr(1 / sp.sqrt(alpha)),
                       ordered(xt, -times(beta / sp.sqrt(1 - abar), eps))), sigma * z),
         "collect $x_t$ and $\\epsilon_\\theta$ as in eq. 11 above")


@derivation("The posterior is normal, with the mean and variance derived above", models=[ANY_SCHEDULE])
def posterior_normal(d):
    d.start(posterior)
    d.eq(step_gauss * prev_gauss / marginal_gauss, "Bayes' rule, the Markov property, the forward densities",
         by=uses("diffusion.reverse:bayes"))
    d.eq(GaussPdf(y, ordered(times(coef1, x0), times(coef2, xt)), times((1 - abar_prev) / (1 - abar), beta)),
         "complete the square in $x_{t-1}$",
         by=ratio_is_one())
