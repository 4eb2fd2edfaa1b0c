"""Derivations for docs/ddim/index.md."""
import sympy as sp

from diffusion_core.derivations import (Cov, E, GaussPdf, Model, Pdf, Pr, Var, derivation, normal, ordered,
                                        random_variables, times)

x_t, z = random_variables("x_t z")                      # random: E averages over them
x0, y = sp.symbols("x_0 x_t-1", real=True)
xt = sp.Symbol("x_t", real=True)                        # x_t as an integration variable
ab, ab_prev = sp.symbols("alphabar_t alphabar_t-1", positive=True)
alpha, beta, sigma = sp.symbols("alpha_t beta_t sigma_t", positive=True)
eta = sp.Symbol("eta", nonnegative=True)
x0_hat, eps_hat = sp.symbols("xhat_0 epsilonhat", real=True)
rho, delta, kappa = sp.symbols("rho delta kappa", positive=True)


def ddim_mean(x, x_0, s=sigma):
    """Mean of q_sigma(x_{t-1} | x_t = x, x_0) (Song et al. 2021)."""
    return ordered(sp.sqrt(ab_prev) * x_0,
                   times(sp.sqrt(1 - ab_prev - s**2), (x - sp.sqrt(ab) * x_0) / sp.sqrt(1 - ab)))


def sigma_of(e):
    """sigma_t(eta) (Song et al. 2021)."""
    return e * sp.sqrt((1 - ab_prev) / (1 - ab)) * sp.sqrt(1 - ab / ab_prev)


x_prev = ordered(ddim_mean(x_t, x0), sigma * z)        # x_{t-1} ~ q_sigma(x_{t-1} | x_t, x_0)
beta_tilde = (1 - ab_prev) / (1 - ab) * beta             # DDPM's posterior variance
mu_tilde = ordered(times(sp.sqrt(ab_prev) * beta / (1 - ab), x0),
                   times(sp.sqrt(alpha) * (1 - ab_prev) / (1 - ab), xt))   # DDPM's posterior mean

# Only the first two moments of x_t given x_0, and of the fresh noise z, are used ...
MOMENTS = Model(
    "$x_t$ with mean $\\sqrt{\\bar\\alpha_t}\\,x_0$ and variance $1-\\bar\\alpha_t$; $z$ with "
    "mean 0 and variance 1, independent of $x_t$",
    independent=[(x_t, z)],
    facts={E(x_t): sp.sqrt(ab) * x0, E(x_t**2): 1 - ab + ab * x0**2, E(z): 0, E(z**2): 1})
# ... and the same with both normal: every expectation an exact integral.
GAUSSIAN = Model(bind={x_t: normal(sp.sqrt(ab) * x0, 1 - ab), z: normal(0, 1)})


class FactoredRoots(Model):
    """A model that also factors inside square roots, so sqrt((1+rho)^2 rho) = (1+rho) sqrt(rho)."""

    def evaluate(self, expr):
        return super().evaluate(expr).replace(
            lambda e: e.is_Pow and e.exp.is_Rational and e.exp.q == 2,
            lambda e: sp.factor(e.base) ** e.exp)


# Every schedule step 0 < alphabar_t < alphabar_{t-1} < 1 is of this form: rho is the
# noise-to-signal ratio (1 - alphabar)/alphabar of step t-1, and delta what step t adds to it.
STEP_TEXT = ("$\\bar\\alpha_{t-1} = \\frac{1}{1+\\rho}$, "
             "$\\bar\\alpha_t = \\frac{1}{1+\\rho+\\delta}$, "
             "$\\alpha_t = \\bar\\alpha_t/\\bar\\alpha_{t-1}$, $\\beta_t = 1-\\alpha_t$ for any "
             "$\\rho, \\delta > 0$")
STEP_BIND = {ab_prev: 1 / (1 + rho), ab: 1 / (1 + rho + delta),
             alpha: (1 + rho) / (1 + rho + delta), beta: delta / (1 + rho + delta)}
STEP = FactoredRoots(STEP_TEXT, bind=STEP_BIND)
# ... and every 0 < sigma_t^2 < 1 - alphabar_{t-1}.
SCHEDULE = FactoredRoots(
    STEP_TEXT + ", and $\\sigma_t^2 = \\frac{1-\\bar\\alpha_{t-1}}{1+\\kappa}$ "
    "for any $\\kappa > 0$",
    bind={**STEP_BIND, sigma: sp.sqrt(rho / ((1 + rho) * (1 + kappa)))})
# DDIM at eta = 1.
ETA_ONE = FactoredRoots(STEP_TEXT + "; $\\sigma_t = \\sigma_t(1)$",
                        bind={**STEP_BIND, sigma: sigma_of(1)})
# The two densities of the marginal-density check, written out.
q_t, q_sigma = Pdf("q", xt, given=x0), Pdf("q_\\sigma", y, given=(xt, x0))
DENSITIES = FactoredRoots(
    SCHEDULE.label + "; $q(x_t \\mid x_0)$ and $q_\\sigma(x_{t-1} \\mid x_t, x_0)$ the normal "
    "densities above",
    bind={**SCHEDULE.subs, q_t: GaussPdf(xt, sp.sqrt(ab) * x0, 1 - ab),
          q_sigma: GaussPdf(y, ddim_mean(xt, x0), sigma**2)})
# x0_hat from the noise prediction (the epsilon parameterization).
PREDICTION = FactoredRoots(
    STEP_TEXT + "; $\\hat x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\epsilon)"
    "/\\sqrt{\\bar\\alpha_t}$",
    bind={**STEP_BIND, x0_hat: (xt - sp.sqrt(1 - ab) * eps_hat) / sp.sqrt(ab)})


RECURSION = Model(bind={ab: alpha * ab_prev, beta: 1 - alpha})
ONE_STEP = Model("$z \\sim \\mathcal{N}(0, 1)$; $\\hat x_0$, $\\hat\\epsilon$ fixed (given $x_t$); "
                 "$\\sigma_t = \\sigma_t(\\eta)$", bind={z: normal(0, 1), sigma: sigma_of(eta)})


def linear_abar():
    """alphabar of Ho et al.'s linear schedule (beta from 1e-4 to 0.02, T = 1000), by hand in NumPy: the values
    the formulas are evaluated at, computed apart from the library they are compared with."""
    import numpy as np

    return np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))


def linear_schedule(index):
    """{alphabar_t: ..., alphabar_{t-1}: ...} of the linear schedule, T = 1000, at one index."""
    abar = linear_abar()
    return {ab: float(abar[index]), ab_prev: float(abar[index - 1]) if index > 0 else 1.0}


def ten_step_schedule():
    """alphabar at the first step of the linear schedule respaced to 10 steps: from index 999 to 888 (the
    10 indices round(linspace(0, 999, 10)) are 0, 111, ..., 888, 999)."""
    abar = linear_abar()
    return {ab: float(abar[999]), ab_prev: float(abar[888])}


def posterior_variance(index):
    import torch
    from diffusion_core import NoiseSchedule

    return NoiseSchedule.linear(1000, dtype=torch.float64).posterior_variance[index]


def posterior_mean(index, x_0, x_t):
    import torch
    from diffusion_core import NoiseSchedule
    from diffusion_core.reverse import q_posterior

    def tensor(v):
        return torch.tensor([[v]], dtype=torch.float64)

    s = NoiseSchedule.linear(1000, dtype=torch.float64)
    return q_posterior(s, tensor(x_0), tensor(x_t), torch.tensor([index])).mean


def gaussian_data_model(schedule, m=0.5, s0=0.4):
    """The exact noise predictor E[eps | x_t] for data x_0 ~ N(m, s0^2); t is the original index."""
    def model(x, t):
        a = schedule.alphas_cumprod[t].to(x.dtype).view(-1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * s0**2 + 1 - a)
    return model


def first_step_variance(eta_value):
    """Variance over 200 000 runs of the first DDIM step from one fixed x_T (10 of 1000 steps)."""
    import torch
    from diffusion_core import Diffusion, NoiseSchedule, ddim_sample

    schedule = NoiseSchedule.linear(1000, dtype=torch.float64)
    x_T = torch.full((200_000, 1), 0.7, dtype=torch.float64)
    out = ddim_sample(gaussian_data_model(schedule), Diffusion(schedule), x_T, steps=10,
                      eta=eta_value, generator=torch.Generator().manual_seed(0), progress=False,
                      return_trajectory=True)
    return out.trajectory[1].var()


@derivation("DDIM keeps the marginal mean", models=[MOMENTS, GAUSSIAN])
def marginal_mean(d):
    d.start(E(x_prev))
    d.eq(ordered(sp.sqrt(ab_prev) * x0,
                 times(sp.sqrt(1 - ab_prev - sigma**2),
                       (E(x_t) - sp.sqrt(ab) * x0) / sp.sqrt(1 - ab)),
                 sigma * E(z)), "linearity")
    d.eq(sp.sqrt(ab_prev) * x0, "$\\mathbb{E}[x_t] = \\sqrt{\\bar\\alpha_t}\\,x_0$, "
         "$\\mathbb{E}[z] = 0$")


@derivation("DDIM keeps the marginal variance", models=[MOMENTS, GAUSSIAN])
def marginal_variance(d):
    d.start(Var(x_prev))
    d.eq(ordered((1 - ab_prev - sigma**2) / (1 - ab) * Var(x_t), sigma**2 * Var(z)),
         "$x_t$ and $z$ independent; constants shift, squared factors scale")
    d.eq(ordered(1 - ab_prev - sigma**2, sigma**2),
         "$\\operatorname{Var}[x_t] = 1 - \\bar\\alpha_t$, $\\operatorname{Var}[z] = 1$")
    d.eq(1 - ab_prev)


@derivation("DDIM keeps the marginal density", models=[DENSITIES])
def marginal_density(d):
    d.start(sp.Integral(q_t * q_sigma, (xt, -sp.oo, sp.oo)))
    d.eq(GaussPdf(y, sp.sqrt(ab_prev) * x0, 1 - ab_prev),
         "insert both normal densities; complete the square in $x_t$")


@derivation("At eta = 1 the DDIM variance is DDPM's posterior variance", models=[RECURSION])
def sigma_eta_one(d):
    d.start(sp.Pow(sigma_of(1), 2, evaluate=False))
    d.eq((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev), "square")
    d.eq((1 - ab_prev) / (1 - ab) * (1 - alpha), "$\\bar\\alpha_t = \\alpha_t\\bar\\alpha_{t-1}$")
    d.eq(beta_tilde, "$\\beta_t = 1 - \\alpha_t$: this is $\\tilde\\beta_t$")
    for index in (1, 500, 999):
        d.numeric(lambda index=index: posterior_variance(index), at=linear_schedule(index),
                  expr=d.lines[0], model=Model(), rtol=1e-10,
                  label=f"NoiseSchedule.linear(1000).posterior_variance[{index}]")


@derivation("At eta = 1 the DDIM mean is DDPM's posterior mean", models=[ETA_ONE])
def mean_eta_one(d):
    d.start(ddim_mean(xt, x0))
    d.eq(ordered(sp.sqrt(ab_prev) * x0,
                 times(sp.sqrt(alpha) * (1 - ab_prev) / (1 - ab), xt - sp.sqrt(ab) * x0)),
         "$\\sigma_t^2 = \\tilde\\beta_t$, and $1 - \\bar\\alpha_{t-1} - \\tilde\\beta_t = "
         "\\alpha_t (1-\\bar\\alpha_{t-1})^2 / (1 - \\bar\\alpha_t)$")
    d.eq(ordered(times(sp.sqrt(ab_prev) * (1 - ab - alpha * (1 - ab_prev)) / (1 - ab), x0),
                 times(sp.sqrt(alpha) * (1 - ab_prev) / (1 - ab), xt)),
         "collect $x_0$; $\\sqrt{\\alpha_t\\bar\\alpha_t} = \\alpha_t\\sqrt{\\bar\\alpha_{t-1}}$")
    d.eq(mu_tilde, "$1 - \\bar\\alpha_t - \\alpha_t + \\bar\\alpha_t = \\beta_t$: this is "
         "$\\tilde\\mu_t(x_t, x_0)$")
    at = {**linear_schedule(500), x0: 0.3, xt: -1.2}
    d.numeric(lambda: posterior_mean(500, 0.3, -1.2), at=at, expr=d.lines[0],
              model=Model(bind={sigma: sigma_of(1)}), rtol=1e-10,
              label="diffusion_core.reverse.q_posterior(...).mean")


@derivation("One DDIM step: the only randomness is sigma_t z", models=[ONE_STEP])
def step_variance(d):
    d.start(Var(ordered(sp.sqrt(ab_prev) * x0_hat, times(sp.sqrt(1 - ab_prev - sigma**2), eps_hat),
                        sigma * z)))
    d.eq(sigma**2 * Var(z), "$\\hat x_0$ and $\\hat\\epsilon$ are functions of $x_t$")
    d.eq(sigma**2, "$\\operatorname{Var}[z] = 1$")
    d.eq(sigma_of(eta) ** 2, "$\\sigma_t = \\sigma_t(\\eta)$")
    for e, rtol, atol in ((0, 0, 1e-12), (1, 0.02, 0)):
        d.numeric(lambda e=e: first_step_variance(e), at={**ten_step_schedule(), eta: e},
                  rtol=rtol, atol=atol,
                  label=f"ddim_sample(eta={e}, steps=10): variance of the first step over "
                        "200 000 runs from one $x_T$")


@derivation("With eta = 0, DDIM is an Euler step in the noise-to-signal ratio", models=[PREDICTION])
def ode_form(d):
    d.start(ordered(sp.sqrt(ab_prev) * x0_hat, sp.sqrt(1 - ab_prev) * eps_hat) / sp.sqrt(ab_prev))
    d.eq(ordered(sp.sqrt(ab_prev) * (xt - sp.sqrt(1 - ab) * eps_hat) / sp.sqrt(ab),
                 sp.sqrt(1 - ab_prev) * eps_hat) / sp.sqrt(ab_prev),
         "$\\hat x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\epsilon)/\\sqrt{\\bar\\alpha_t}$")
    d.eq(ordered(xt / sp.sqrt(ab),
                 times(sp.sqrt((1 - ab_prev) / ab_prev) - sp.sqrt((1 - ab) / ab), eps_hat)),
         "divide out and collect $\\hat\\epsilon$")


@derivation("The DDIM update: the draw with the prediction in place of the data",
            models=[Model("$\\hat x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\epsilon)"
                          "/\\sqrt{\\bar\\alpha_t}$",
                          bind={x0_hat: (xt - sp.sqrt(1 - ab) * eps_hat) / sp.sqrt(ab)})])
def update(d):
    d.start(ordered(ddim_mean(xt, x0_hat), sigma * z))
    d.eq(ordered(sp.sqrt(ab_prev) * x0_hat, times(sp.sqrt(1 - ab_prev - sigma**2), eps_hat),
                 sigma * z),
         "the noise that $\\hat x_0$ leaves in $x_t$ is $\\hat\\epsilon$")


s_int = sp.Symbol("s", real=True)


m_draw = sp.Symbol("m", real=True)                      # short for the mean of the draw


@derivation("The draw has the density q_sigma",
            models=[Model("$z \\sim \\mathcal{N}(0, 1)$; $\\Pr$ from its distribution function; "
                          "$m$ the mean of the draw", bind={m_draw: ddim_mean(xt, x0)})])
def draw_density(d):
    # P(x_{t-1} <= y) for the draw x_{t-1} = mean + sigma_t z, differentiated in y
    d.start(sp.Derivative(Pr(ordered(ddim_mean(xt, x0), sigma * z), y, z), y))
    d.eq(sp.Derivative(Pr(z, (y - m_draw) / sigma, z), y),
         "write $m$ for the first two terms; subtract $m$, divide by $\\sigma_t > 0$")
    d.eq(sp.Derivative(sp.Integral(GaussPdf(s_int, 0, 1), (s_int, -sp.oo, (y - m_draw) / sigma)), y),
         "$z \\sim \\mathcal{N}(0, 1)$")
    d.eq(GaussPdf((y - m_draw) / sigma, 0, 1) / sigma, "fundamental theorem of calculus, chain rule")
    d.eq(GaussPdf(y, ddim_mean(xt, x0), sigma**2), "write out both densities; put $m$ back")


# The forward step of q_sigma by Bayes' rule. Given x_0, x_t ~ N(sqrt(ab) x_0, 1 - ab) and
# x_{t-1} = ddim_mean(x_t, x_0) + sigma z, so (x_{t-1}, x_t) are jointly normal and
# E[x_t | x_{t-1}, x_0] = sqrt(ab) x_0 + k (x_{t-1} - sqrt(ab_prev) x_0) with
# k = Cov[x_t, x_{t-1}] / Var[x_{t-1}] = sqrt(1 - ab_prev - sigma^2) sqrt(1 - ab) / (1 - ab_prev).
k_forward = sp.sqrt(1 - ab_prev - sigma**2) * sp.sqrt(1 - ab) / (1 - ab_prev)
forward_x0_weight = sp.sqrt(ab) - k_forward * sp.sqrt(ab_prev)   # the weight of x_0 in that mean

@derivation("The forward step's regression on the previous state", models=[MOMENTS])
def forward_regression(d):
    d.start(Cov(x_t, x_prev) / Var(x_prev))
    d.eq(k_forward, "the covariance and variance of the marginal checks")


@derivation("With eta = 1 the forward step ignores x_0: Markov, as DDPM", models=[ETA_ONE])
def eta_one_markov(d):
    d.start(forward_x0_weight)
    d.eq(0, "$\\sigma_t^2 = \\tilde\\beta_t$")


@derivation("With eta = 0 the forward step depends on x_0: not Markov",
            models=[FactoredRoots(STEP_TEXT + "; $\\sigma_t = 0$", bind={**STEP_BIND, sigma: 0})])
def eta_zero_not_markov(d):
    d.start(forward_x0_weight)
    d.eq(-delta / (sp.sqrt(rho) * (sp.sqrt(rho) + sp.sqrt(rho + delta)) * sp.sqrt(1 + rho + delta)),
         "$\\sigma_t = 0$; rationalize: negative for every $\\delta > 0$")
