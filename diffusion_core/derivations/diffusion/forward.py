"""Derivations for docs/diffusion/forward-process.md."""
import functools
import math

import sympy as sp

from diffusion_core.derivations import (E, GaussPdf, Model, Pdf, Var, assumption, definition, derivation, normal,
                                        ordered, random_variables, times, under)
from diffusion_core.derivations.diffusion.objective import Normalized

# Random quantities: the previous state and the fresh, independent noise of each step.
x_prev, eps, eps1, eps2, eps_bar = random_variables("x_t-1 epsilon epsilon_1 epsilon_2 epsilonbar")
beta = sp.Symbol("beta_t", positive=True)
alpha, alpha_prev = sp.symbols("alpha_t alpha_t-1", positive=True)
abar, abar_prev = sp.symbols("alphabar_t alphabar_t-1", positive=True)
x0, x_tm2, s = sp.symbols("x_0 x_t-2 s", real=True)
m, m1, m2, u = sp.symbols("m m_1 m_2 u", real=True)
v, v1, v2 = sp.symbols("v v_1 v_2", positive=True)

STANDARD = {E(eps): 0, E(eps**2): 1}
ONE_STEP = Model("$x_{t-1}$ and $\\epsilon$ independent, $\\mathbb{E}[\\epsilon] = 0$, "
                 "$\\mathbb{E}[\\epsilon^2] = 1$", independent=[(x_prev, eps)], facts=STANDARD)
ONE_STEP_NORMAL = Model(bind={x_prev: normal(m, v), eps: normal(0, 1)})
UNIT = Model("$x_{t-1}$ and $\\epsilon$ independent, $\\operatorname{Var}[x_{t-1}] = 1$, "
             "$\\mathbb{E}[\\epsilon] = 0$, $\\mathbb{E}[\\epsilon^2] = 1$", independent=[(x_prev, eps)],
             facts={**STANDARD, E(x_prev**2): 1 + E(x_prev) ** 2})
UNIT_NORMAL = Model(bind={x_prev: normal(m, 1), eps: normal(0, 1)})
TWO_NOISES = Model("$\\epsilon_1, \\epsilon_2$ independent, each with mean 0 and variance 1",
                   independent=[(eps1, eps2)],
                   facts={E(eps1): 0, E(eps1**2): 1, E(eps2): 0, E(eps2**2): 1})
TWO_NORMALS = Model(bind={eps1: normal(0, 1), eps2: normal(0, 1)})
EXACT = Model("exact integrals over the normal densities")
# The induction hypothesis: x_{t-1} = sqrt(abar_{t-1}) x_0 + sqrt(1 - abar_{t-1}) eps_bar.
RECURSION = Model("$\\bar\\epsilon, \\epsilon$ independent, each with mean 0 and variance 1; "
                  "$\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$",
                  independent=[(eps_bar, eps)], bind={abar: alpha * abar_prev},
                  facts={**STANDARD, E(eps_bar): 0, E(eps_bar**2): 1})
RECURSION_NORMAL = Model(bind={eps_bar: normal(0, 1), eps: normal(0, 1), abar: alpha * abar_prev})

# ---- ties to diffusion_core: Ho et al.'s linear schedule, T = 1000, at step t = 100.
T_CHECK, X0_CHECK, SAMPLES = 100, 1.0, 100_000
SAMPLES_TEXT = f"{SAMPLES:,}".replace(",", " ")


def ho_beta(step):
    """beta_t of Ho et al. 2020 (1e-4 to 0.02, linear, T = 1000), from the formula."""
    return 1e-4 + (step - 1) * (0.02 - 1e-4) / 999


AT_T = {x0: X0_CHECK, alpha: 1 - ho_beta(T_CHECK),
        abar_prev: math.prod(1 - ho_beta(k) for k in range(1, T_CHECK))}
ABAR_CHECK = AT_T[alpha] * AT_T[abar_prev]
# Standard errors of a sample mean and a sample variance of SAMPLES Gaussian draws, relative.
SE_MEAN = math.sqrt((1 - ABAR_CHECK) / SAMPLES) / math.sqrt(ABAR_CHECK)
SE_VAR = math.sqrt(2 / (SAMPLES - 1))


def library_moments():
    """q(x_t | x_0) from diffusion_core.forward.q_mean_variance (index t - 1 is the paper's step t)."""
    import torch
    from diffusion_core import NoiseSchedule
    from diffusion_core.forward import q_mean_variance

    schedule = NoiseSchedule.linear(1000, dtype=torch.float64)
    x0_t = torch.full((1, 1), X0_CHECK, dtype=torch.float64)
    return q_mean_variance(schedule, x0_t, torch.tensor([T_CHECK - 1]))


@functools.cache
def chains():
    """SAMPLES independent chains (the coordinates of one example), each pushed through t steps."""
    import torch
    from diffusion_core import NoiseSchedule
    from diffusion_core.forward import q_step_sample

    schedule = NoiseSchedule.linear(1000, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    x = torch.full((1, SAMPLES), X0_CHECK, dtype=torch.float64)  # one example, SAMPLES coordinates
    for index in range(T_CHECK):  # library index i is the paper's step i + 1
        x = q_step_sample(schedule, x, torch.tensor([index]), generator=generator)
    return x


@derivation("One step keeps unit variance", models=[UNIT, UNIT_NORMAL])
def variance_preserved(d):
    d.start(Var(ordered(sp.sqrt(1 - beta) * x_prev, sp.sqrt(beta) * eps)))
    d.eq(ordered((1 - beta) * Var(x_prev), beta * Var(eps)),
         "independent terms: the variances add, each scaled by its coefficient squared")
    d.eq(ordered(1 - beta, beta),
         "$\\operatorname{Var}[x_{t-1}] = \\operatorname{Var}[\\epsilon] = 1$")
    d.eq(1)


@derivation("One step pulls any variance towards one", models=[ONE_STEP, ONE_STEP_NORMAL])
def variance_step(d):
    d.start(Var(ordered(sp.sqrt(1 - beta) * x_prev, sp.sqrt(beta) * eps)))
    d.eq(ordered((1 - beta) * Var(x_prev), beta * Var(eps)), "independent terms")
    d.eq(ordered((1 - beta) * Var(x_prev), beta), "$\\operatorname{Var}[\\epsilon] = 1$")
    d.eq(ordered(1, times(1 - beta, Var(x_prev) - 1)), "regroup around 1")


@derivation("Two steps at once: the mean", models=[TWO_NOISES, TWO_NORMALS])
def two_steps_mean(d):
    d.start(E(ordered(times(sp.sqrt(alpha), ordered(sp.sqrt(alpha_prev) * x_tm2,
                                                      sp.sqrt(1 - alpha_prev) * eps1)),
                      sp.sqrt(1 - alpha) * eps2)))
    d.eq(ordered(sp.sqrt(alpha * alpha_prev) * x_tm2,
                 sp.sqrt(alpha * (1 - alpha_prev)) * E(eps1), sp.sqrt(1 - alpha) * E(eps2)),
         "linearity; $x_{t-2}$ is given, so it is a constant")
    d.eq(sp.sqrt(alpha * alpha_prev) * x_tm2, "the noises have mean 0")


@derivation("Two steps at once: the variance of the merged noise", models=[TWO_NOISES, TWO_NORMALS])
def two_steps_variance(d):
    d.start(Var(ordered(times(sp.sqrt(alpha), ordered(sp.sqrt(alpha_prev) * x_tm2,
                                                        sp.sqrt(1 - alpha_prev) * eps1)),
                        sp.sqrt(1 - alpha) * eps2)))
    d.eq(Var(ordered(sp.sqrt(alpha * (1 - alpha_prev)) * eps1, sp.sqrt(1 - alpha) * eps2)),
         "the constant $\\sqrt{\\alpha_t \\alpha_{t-1}}\\, x_{t-2}$ does not change the variance")
    d.eq(ordered(times(alpha, 1 - alpha_prev) * Var(eps1), (1 - alpha) * Var(eps2)),
         "$\\epsilon_1, \\epsilon_2$ independent")
    d.eq(ordered(times(alpha, 1 - alpha_prev), 1 - alpha), "each has variance 1")
    d.eq(1 - alpha * alpha_prev, "the $\\alpha_t$ terms cancel")


@derivation("A sum of independent Gaussians is Gaussian", models=[EXACT])
def gaussian_sum(d):
    d.start(sp.Integral(GaussPdf(u, m1, v1) * GaussPdf(s - u, m2, v2), (u, -sp.oo, sp.oo)))
    d.eq(GaussPdf(s, m1 + m2, v1 + v2), "complete the square in $u$, then integrate")


@derivation("Induction step: the mean", models=[RECURSION, RECURSION_NORMAL])
def induction_mean(d):
    d.start(E(ordered(times(sp.sqrt(alpha), ordered(sp.sqrt(abar_prev) * x0,
                                                      sp.sqrt(1 - abar_prev) * eps_bar)),
                      sp.sqrt(1 - alpha) * eps)))
    d.eq(sp.sqrt(alpha * abar_prev) * x0, "linearity; both noises have mean 0")
    d.eq(sp.sqrt(abar) * x0, "$\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$")
    d.numeric(lambda: library_moments().mean, at=AT_T, rtol=1e-12,
              label="`diffusion_core.forward.q_mean_variance` (linear schedule, $T = 1000$, $t = 100$)")
    d.numeric(lambda: chains().mean(), at=AT_T, rtol=6 * SE_MEAN,
              label=f"the mean of {SAMPLES_TEXT} chains run through {T_CHECK} calls of "
                    "`diffusion_core.forward.q_step_sample` (tolerance: 6 standard errors)")


@derivation("Induction step: the variance", models=[RECURSION, RECURSION_NORMAL])
def induction_variance(d):
    d.start(Var(ordered(times(sp.sqrt(alpha), ordered(sp.sqrt(abar_prev) * x0,
                                                        sp.sqrt(1 - abar_prev) * eps_bar)),
                        sp.sqrt(1 - alpha) * eps)))
    d.eq(ordered(times(alpha, 1 - abar_prev) * Var(eps_bar), (1 - alpha) * Var(eps)),
         "$x_0$ is given; the two noises are independent")
    d.eq(ordered(times(alpha, 1 - abar_prev), 1 - alpha), "each noise has variance 1")
    d.eq(1 - alpha * abar_prev, "the $\\alpha_t$ terms cancel")
    d.eq(1 - abar, "$\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$")
    d.numeric(lambda: library_moments().variance, at=AT_T, rtol=1e-12,
              label="`diffusion_core.forward.q_mean_variance` (linear schedule, $T = 1000$, $t = 100$)")
    d.numeric(lambda: chains().var(), at=AT_T, rtol=6 * SE_VAR,
              label=f"the variance of {SAMPLES_TEXT} chains run through {T_CHECK} calls of "
                    "`diffusion_core.forward.q_step_sample` (tolerance: 6 standard errors)")


@derivation("Two steps, substituted and expanded", models=[TWO_NOISES])
def two_steps_expanded(d):
    d.start(ordered(times(sp.sqrt(alpha), ordered(sp.sqrt(alpha_prev) * x_tm2,
                                                  sp.sqrt(1 - alpha_prev) * eps1)),
                    sp.sqrt(1 - alpha) * eps2))
    d.eq(ordered(sp.sqrt(alpha * alpha_prev) * x_tm2, sp.sqrt(alpha * (1 - alpha_prev)) * eps1,
                 sp.sqrt(1 - alpha) * eps2), "multiply out")


x_t = sp.Symbol("x_t", real=True)
x_given = sp.Symbol("x_t-1", real=True)               # x_{t-1} as a given number
kernel = Pdf("q", x_t, given=x_given)
# The kernel is defined as the density of the draw x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps:
# the derivative of P(x_t <= u) = P(eps <= (u - sqrt(1 - beta_t) x_{t-1}) / sqrt(beta_t)) at u = x_t.
DRAW_CDF = sp.Derivative(sp.Integral(GaussPdf(s, 0, 1),
                                     (s, -sp.oo, (x_t - sp.sqrt(1 - beta) * x_given) / sp.sqrt(beta))), x_t)
ONE_DRAW = Model("$q(x_t \\mid x_{t-1})$ is the density of the draw "
                 "$x_t = \\sqrt{1-\\beta_t}\\,x_{t-1} + \\sqrt{\\beta_t}\\,\\epsilon$, "
                 "$\\epsilon \\sim \\mathcal{N}(0, 1)$: the derivative of its distribution function",
                 bind={kernel: DRAW_CDF})


@derivation("The one-step sample has the one-step density", models=[ONE_DRAW])
def one_step_density(d):
    d.start(kernel)
    d.eq(DRAW_CDF, "the density of the draw: differentiate "
                   "$P(\\epsilon \\le (x_t - \\sqrt{1-\\beta_t}\\,x_{t-1})/\\sqrt{\\beta_t})$",
         by=definition("of the density of a draw"))
    d.eq(GaussPdf((x_t - sp.sqrt(1 - beta) * x_given) / sp.sqrt(beta), 0, 1) / sp.sqrt(beta),
         "fundamental theorem of calculus, chain rule")
    d.eq(GaussPdf(x_t, times(sp.sqrt(1 - beta), x_given), beta), "write out both densities")


# ---- alpha-bar as a product, for concrete t (SymPy cannot split a product of symbolic length)
n = sp.Symbol("t", integer=True, positive=True)
k = sp.Symbol("s", integer=True, positive=True)
alphas, abars = sp.IndexedBase("alpha", positive=True), sp.IndexedBase(r"\bar{\alpha}", positive=True)


def first_steps(count):
    return Model(f"$t = {count}$; $\\bar\\alpha_t = \\prod_{{s=1}}^{{t}} \\alpha_s$ for every $t$ "
                 "(so $\\bar\\alpha_0 = 1$, the empty product); any $\\alpha_s$",
                 bind={n: count, abars[n]: sp.Product(alphas[k], (k, 1, n)),
                       abars[n - 1]: sp.Product(alphas[k], (k, 1, n - 1))})


@derivation("The cumulative product, one step at a time",
            models=[first_steps(1), first_steps(2), first_steps(3), first_steps(4)])
def abar_recursion(d):
    d.start(abars[n])
    d.eq(sp.Product(alphas[k], (k, 1, n)), "definition")
    d.eq(times(alphas[n], sp.Product(alphas[k], (k, 1, n - 1))), "split off the last factor")
    d.eq(times(alphas[n], abars[n - 1]), "definition at $t - 1$")


# ---- the induction step on densities: q(x_t | x_0) from the kernel and q(x_{t-1} | x_0)
y = sp.Symbol("x_t-1", real=True)
r, k_ = sp.symbols("r k", positive=True)
jump, jump_prev = Pdf("q", x_t, given=x0), Pdf("q", y, given=x0)
step_x0, step_y = Pdf("q", x_t, given=(y, x0)), Pdf("q", x_t, given=y)
CHAIN = Model("any joint density $q$ of $x_0, x_{t-1}, x_t$")
MARKOV = Model("the Markov property: $q(x_t \\mid x_{t-1}, x_0) = q(x_t \\mid x_{t-1})$",
               bind={step_x0: step_y})
HYPOTHESIS = Model("the kernel above and the claim for $t - 1$: "
                   "$q(x_{t-1} \\mid x_0) = \\mathcal{N}(\\sqrt{\\bar\\alpha_{t-1}}\\,x_0, "
                   "1 - \\bar\\alpha_{t-1})$; $\\beta_t = 1 - \\alpha_t$, "
                   "$\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$, with every $\\alpha_t$ and "
                   "$\\bar\\alpha_{t-1}$ in $(0, 1)$ written as $1/(1+r)$ and $1/(1+k)$, $r, k > 0$",
                   bind={step_y: GaussPdf(x_t, sp.sqrt(alpha) * y, beta),
                         jump_prev: GaussPdf(y, sp.sqrt(abar_prev) * x0, 1 - abar_prev),
                         alpha: 1 / (1 + r), beta: r / (1 + r), abar_prev: 1 / (1 + k_),
                         abar: 1 / ((1 + r) * (1 + k_))})


@derivation("Induction step: the density", models=[HYPOTHESIS])
def induction_density(d):
    d.start(jump)
    d.eq(sp.Integral(step_x0 * jump_prev, (y, -sp.oo, sp.oo)),
         "average over the state before: $x_{t-1}$ integrates out of the joint", by=under(CHAIN))
    d.eq(sp.Integral(step_y * jump_prev, (y, -sp.oo, sp.oo)), "the Markov property",
         by=assumption("the forward chain is Markov", models=[MARKOV]))
    d.eq(sp.Integral(GaussPdf(x_t, sp.sqrt(alpha) * y, beta)
                     * GaussPdf(y, sp.sqrt(abar_prev) * x0, 1 - abar_prev), (y, -sp.oo, sp.oo)),
         "the kernel ($\\alpha_t = 1 - \\beta_t$) and the claim for $t - 1$",
         by=assumption("the kernel's definition and the induction hypothesis"))
    d.eq(GaussPdf(x_t, sp.sqrt(abar) * x0, 1 - abar),
         "complete the square in $x_{t-1}$ and integrate; "
         "$\\bar\\alpha_t = \\alpha_t \\bar\\alpha_{t-1}$", by=Normalized())
