"""Derivations for docs/background/random-walks.md: from a random walk to a stochastic differential equation and
the Fokker-Planck equation that its density solves."""
import sympy as sp

from diffusion_core.derivations import E, GaussPdf, Model, Var, derivation, ordered, random_variables, times
from diffusion_core.derivations.score.scores import Agree
from diffusion_core.derivations.score.sde import Calculus, Dx

xi1, xi2, xi3, xi = random_variables("xi_1 xi_2 xi_3 xi")
dt = sp.Symbol("Delta_t", positive=True)
t = sp.Symbol("t", positive=True)
x, x0, f = sp.symbols("x x_0 f", real=True)
g, theta = sp.symbols("g theta", positive=True)
p = sp.Function("p")(x, t)

THREE_STEPS = Model("$\\xi_1, \\xi_2, \\xi_3$ independent, each with mean 0 and variance 1",
                    independent=[(xi1, xi2), (xi1, xi3), (xi2, xi3)],
                    facts={E(xi1): 0, E(xi2): 0, E(xi3): 0, E(xi1**2): 1, E(xi2**2): 1, E(xi3**2): 1})
ONE_STEP = Model("$x$, $f$, $g$ fixed; $\\xi$ with mean 0 and variance 1", facts={E(xi): 0, E(xi**2): 1})
CONSTANT = Calculus("$p(x, t) = \\mathcal{N}(x; x_0 + f t, g^2 t)$: the walk's density, constant drift $f$ and "
                    "diffusion $g$", bind={p: GaussPdf(x, x0 + f * t, g**2 * t)})
STATIONARY = Calculus("$p(x) = \\mathcal{N}(x; 0, g^2/(2\\theta))$, no time dependence",
                      bind={p: GaussPdf(x, 0, g**2 / (2 * theta))})

step = ordered(x, f * dt, g * sp.sqrt(dt) * xi)        # one step of the walk with drift


def library_stationary_variance():
    """The variance of 40,000 chains after 150 forward steps of the library's DDPM step with a constant
    beta = 0.05 (diffusion_core.forward.q_step_sample), started at x = 3: an Ornstein-Uhlenbeck step."""
    import torch
    from diffusion_core import NoiseSchedule
    from diffusion_core.forward import q_step_sample

    schedule = NoiseSchedule.from_betas([0.05], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    x_ = torch.full((40_000, 1), 3.0, dtype=torch.float64)
    t_ = torch.zeros(40_000, dtype=torch.long)
    for _ in range(150):  # the variance is then 1 - 0.95^150 = 0.9995
        x_ = q_step_sample(schedule, x_, t_, generator=generator)
    return x_.var()


@derivation("A random walk spreads like time", models=[THREE_STEPS])
def walk_variance(d):
    d.start(Var(ordered(sp.sqrt(dt) * xi1, sp.sqrt(dt) * xi2, sp.sqrt(dt) * xi3)))
    d.eq(ordered(dt * Var(xi1), dt * Var(xi2), dt * Var(xi3)), "independent steps: the variances add")
    d.eq(3 * dt, "each $\\xi_n$ has variance 1")


@derivation("One step with drift: the mean moves by f dt", models=[ONE_STEP])
def step_mean(d):
    d.start(E(step) - x)
    d.eq(times(f, dt), "linearity, $\\mathbb{E}[\\xi] = 0$")


@derivation("One step with drift: the variance grows by g^2 dt", models=[ONE_STEP])
def step_variance(d):
    d.start(Var(step))
    d.eq(times(g**2, dt), "only the noise term varies, $\\operatorname{Var}[\\xi] = 1$")


@derivation("The walk's density solves the Fokker-Planck equation", models=[CONSTANT])
def fokker_planck(d):
    d.start(sp.Derivative(p, t))
    d.eq(ordered(-Dx(f * p), g**2 / 2 * Dx(p, 2)), "insert the normal density and differentiate", by=Agree())


@derivation("A restoring drift has a stationary normal density", models=[STATIONARY])
def stationary(d):
    d.start(ordered(-Dx(-theta * x * p), g**2 / 2 * Dx(p, 2)))
    d.eq(0, "insert the normal density and differentiate", by=Agree())
    d.numeric(library_stationary_variance, expr=g**2 / (2 * theta), at={g: sp.sqrt(sp.Rational(5, 100)),
              theta: sp.Rational(5, 200)}, rtol=0, atol=0.04,
              label="the variance of 40,000 chains after 150 steps of diffusion_core.forward.q_step_sample with "
                    "$\\beta = 0.05$ from $x = 3$ (Monte Carlo; standard error 0.007)")
