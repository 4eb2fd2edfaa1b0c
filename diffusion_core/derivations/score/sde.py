"""Derivations for docs/score/sde.md."""
import sympy as sp

from diffusion_core.derivations import (E, GaussPdf, Model, Var, derivation, ordered, random_variables,
                                        times)
from diffusion_core.derivations._notation import Notation
from diffusion_core.derivations.score.scores import Agree

t, s = sp.symbols("t s", nonnegative=True)
dt = sp.Symbol("Delta_t", positive=True)
x, m = sp.symbols("x m", real=True)
sd = sp.Symbol("s_0", positive=True)              # the data's standard deviation
eps = random_variables("epsilon")
beta = sp.Function("beta")(t)                      # any noise rate beta(t) > 0
B = sp.Function("B")(t)                            # B(t) = int_0^t beta, so B' = beta
p = sp.Function("p")(x, t)                         # the density of x(t)
b_min, b_max = sp.symbols("beta_min beta_max", positive=True)
N = sp.Symbol("N", positive=True)                  # number of discrete steps

class Dx(Notation):
    """``Dx(f, n)``: the n-th partial derivative in x, printed with brackets around f."""

    nargs = (1, 2)

    def unfold(self):
        return sp.Derivative(self.args[0], (x, self.args[1] if len(self.args) > 1 else 1))

    def _tex(self, printer):
        n = self.args[1] if len(self.args) > 1 else 1
        op = "\\partial_x" if n == 1 else f"\\partial_x^{{{n}}}"
        body = self.args[0]
        if isinstance(body, sp.Function) or body.is_Atom:
            return f"{op} {printer._print(body)}"
        return f"{op}\\left[{printer._print(body)}\\right]"


x_next = ordered(sp.sqrt(1 - beta * dt) * x, sp.sqrt(beta * dt) * eps)   # one DDPM step


class Calculus(Model):
    """Binds symbols and functions, unfolds normal densities, carries out derivatives and
    limits, then applies ``after`` (e.g. B'(t) = beta(t), or an equation p solves)."""

    def __init__(self, label, bind=None, after=None, facts=None):
        super().__init__(label, facts=facts)
        self.bind, self.after = dict(bind or {}), dict(after or {})

    def evaluate(self, expr):
        e = sp.sympify(expr).replace(lambda g: isinstance(g, Dx), lambda g: g.unfold())
        e = e.xreplace(self.bind)
        e = e.replace(lambda g: isinstance(g, GaussPdf), lambda g: g.unfold())
        if e.has(Notation):                         # E, Var: the framework's rules
            e = super().evaluate(e)
        e = e.replace(lambda g: isinstance(g, sp.UnevaluatedExpr), lambda g: g.args[0])
        e = e.replace(lambda g: isinstance(g, GaussPdf), lambda g: g.unfold())
        e = e.replace(lambda d: isinstance(d, sp.Derivative), lambda d: d.doit(deep=False))
        e = e.xreplace(self.after)
        e = e.replace(lambda d: isinstance(d, sp.Derivative), lambda d: d.doit(deep=False))
        e = e.replace(lambda i: isinstance(i, sp.Integral), lambda i: i.doit())
        return e.replace(lambda lim: isinstance(lim, sp.Limit), lambda lim: lim.doit())


class AgreeUnder(Agree):
    """``Agree`` under the given models instead of the derivation's."""

    def __init__(self, *models):
        self.models = models

    def verify(self, step, derivation):
        class Only:
            models = self.models
        return super().verify(step, Only)


ONE_STEP = Calculus("$x = x_{t-1}$ fixed; $\\mathbb{E}[\\epsilon] = 0$, "
                    "$\\mathbb{E}[\\epsilon^2] = 1$; $\\beta(t) > 0$ any function",
                    facts={E(eps): 0, E(eps**2): 1})
a = sp.exp(-B / 2)                                  # a(t)^2 = alphabar(t) = exp(-int beta)
marginal = GaussPdf(x, m * a, sd**2 * a**2 + 1 - a**2)
GAUSSIAN_DATA = Calculus(
    "$x_0 \\sim \\mathcal{N}(m, s_0^2)$: $p(x, t) = \\mathcal{N}(x; m\\,a(t), s_0^2 a(t)^2 + 1 - a(t)^2)$ "
    "with $a(t) = e^{-B(t)/2}$, $B' = \\beta$, $\\beta$ and $B$ any functions",
    bind={p: marginal}, after={sp.Derivative(B, t): beta})
ANY_DENSITY = Calculus("$p(x, t)$ any positive differentiable function; $\\beta(t)$ any function")
fp_rhs = ordered(Dx(beta / 2 * x * p), beta / 2 * Dx(p, 2))
FORWARD_FP = Calculus("$p(x, t)$ any positive function that solves the forward Fokker-Planck "
                      "equation (the previous result)",
                      after={sp.Derivative(p, t): fp_rhs.replace(lambda g: isinstance(g, Dx),
                                                                  lambda g: g.unfold())})
score = Dx(sp.log(p))
linear_beta = b_min + s * (b_max - b_min)          # Song et al.'s VP schedule, t in [0, 1]
SCHEDULE_AT = {t: 1, b_min: 0.1, b_max: 20, N: 1000}


def library_log_abar_end():
    """log alphabar at the last index of the library's 1000-step linear schedule (1e-4 .. 0.02)."""
    import torch
    from diffusion_core import NoiseSchedule

    return torch.log(NoiseSchedule.linear(1000, dtype=torch.float64).alphas_cumprod[-1])


@derivation("The drift of one DDPM step per unit time", models=[ONE_STEP])
def drift_limit(d):
    d.start(sp.Limit(E(x_next - x) / dt, dt, 0))
    d.eq(sp.Limit(times(sp.sqrt(1 - beta * dt) - 1, x) / dt, dt, 0),
         "linearity, $\\mathbb{E}[\\epsilon] = 0$")
    d.eq(-beta * x / 2, "the limit: $\\sqrt{1-u} = 1 - u/2 + O(u^2)$")


@derivation("The variance of one DDPM step per unit time", models=[ONE_STEP])
def variance_limit(d):
    d.start(sp.Limit(Var(x_next) / dt, dt, 0))
    d.eq(sp.Limit(beta * dt * Var(eps) / dt, dt, 0), "only the noise term varies")
    d.eq(beta, "$\\operatorname{Var}[\\epsilon] = 1$")


@derivation("A DDPM step and an Euler-Maruyama step differ by O(dt^2)", models=[ONE_STEP])
def step_difference(d):
    euler = ordered(x, -beta * x / 2 * dt, sp.sqrt(beta * dt) * eps)
    d.start(sp.Limit((x_next - euler) / dt**2, dt, 0))
    d.eq(sp.Limit((sp.sqrt(1 - beta * dt) - 1 + beta * dt / 2) * x / dt**2, dt, 0),
         "the noise terms cancel")
    d.eq(-beta**2 * x / 8, "second-order Taylor term of the square root")


@derivation("Gaussian data: the marginals solve the Fokker-Planck equation",
            models=[GAUSSIAN_DATA])
def fokker_planck(d):
    d.start(sp.Derivative(p, t))
    d.eq(ordered(-Dx(-beta / 2 * x * p), beta / 2 * Dx(p, 2)),
         "insert the normal density and differentiate; $B' = \\beta$", by=Agree())
    d.eq(fp_rhs, "collect the signs")


@derivation("The probability-flow ODE has the same marginals", models=[ANY_DENSITY, GAUSSIAN_DATA])
def flow_continuity(d):
    d.start(sp.Derivative(p, t))
    d.eq(fp_rhs, "Fokker-Planck (checked for Gaussian data above)", by=AgreeUnder(GAUSSIAN_DATA))
    d.eq(-Dx(times(-beta / 2, x + score, p)),
         "$p\\,\\partial_x \\log p = \\partial_x p$", by=Agree())


@derivation("The reverse SDE has the reversed marginals", models=[FORWARD_FP])
def reverse_fokker_planck(d):
    d.start(-sp.Derivative(p, t))
    d.eq(ordered(-Dx(beta / 2 * x * p), -beta / 2 * Dx(p, 2)),
         "the forward Fokker-Planck equation")
    d.eq(ordered(-Dx(times(ordered(beta / 2 * x, beta * score), p)), beta / 2 * Dx(p, 2)),
         "add and subtract $\\beta\\,\\partial_x^2 p$; $p\\,\\partial_x \\log p = \\partial_x p$",
         by=AgreeUnder(ANY_DENSITY))


@derivation("The continuous schedule: log alphabar(t)", models=[Calculus("$0 \\le t \\le 1$")])
def continuous_abar(d):
    d.start(-sp.Integral(linear_beta, (s, 0, t)))
    d.eq(-(b_min * t + (b_max - b_min) * t**2 / 2), "integrate")
    d.numeric(library_log_abar_end, at=SCHEDULE_AT, rtol=1e-2,
              label="`torch.log(NoiseSchedule.linear(1000).alphas_cumprod[-1])` "
                    "(first order; the gap is the $\\beta_i^2/2$ term, 0.67 %)")
    second_order = d.lines[-1] - sp.Integral(linear_beta**2, (s, 0, t)) / (2 * N)
    d.numeric(library_log_abar_end, at=SCHEDULE_AT, expr=second_order, rtol=2e-4,
              label="the same, with the second-order term "
                    "$-\\frac{1}{2N}\\int_0^1 \\beta(s)^2\\,ds$ added (next term about $7 \\cdot 10^{-5}$)")
