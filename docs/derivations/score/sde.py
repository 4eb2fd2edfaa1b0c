"""Derivations for docs/score/sde.md (written by the lead)."""
import sympy as sp

from derivations import Check, Model, StepFailure, derivation

# ---- the chain as a discretization: beta_t = beta(t) * Delta t
x = sp.Symbol("x", real=True)
dt = sp.Symbol("Delta_t", positive=True)
b = sp.Symbol("beta(t)", positive=True)

# ---- marginals of the VP-SDE for Gaussian data x_0 ~ N(m, s^2)
t = sp.Symbol("t", positive=True)
m = sp.Symbol("m", real=True)
s = sp.Symbol("s", positive=True)
B, beta, p = sp.Function("B"), sp.Function("beta"), sp.Function("p")
a = sp.exp(-B(t) / 2)                                  # sqrt(alphabar(t)), B(t) = int_0^t beta
variance = a**2 * s**2 + 1 - a**2
density = sp.exp(-(x - a * m) ** 2 / (2 * variance)) / sp.sqrt(2 * sp.pi * variance)


class GaussianMarginal(Model):
    """p(x, t) is the normal density with mean sqrt(alphabar) m and variance alphabar s^2 + 1 - alphabar,
    alphabar = exp(-B(t)) with B' = beta: derivatives are taken, then B'(t) is replaced by beta(t)."""

    def evaluate(self, expr):
        done = expr.xreplace({p(x, t): density}).doit()
        return done.subs(sp.Derivative(B(t), t), beta(t))


MARGINAL = GaussianMarginal(
    "$x_0 \\sim \\mathcal{N}(m, s^2)$, so $p(x, t) = \\mathcal{N}(x; \\sqrt{\\bar\\alpha(t)}\\,m, "
    "\\bar\\alpha(t) s^2 + 1 - \\bar\\alpha(t))$ with $\\bar\\alpha(t) = e^{-B(t)}$, $B' = \\beta$, any "
    "$\\beta(t) > 0$, $m$, $s > 0$")


class SameOverDensity(Check):
    """Both sides divided by the density p(x, t) simplify to the same function of x and t."""

    def verify(self, step, derivation):
        for model in derivation.models:
            gap = sp.simplify((model.evaluate(step.lhs) - model.evaluate(step.rhs)) / density)
            if sp.simplify(sp.expand(gap)) != 0:
                raise StepFailure(f"under model {model.label!r}, (left - right) / p = {gap}, not 0")
        return ("both sides computed (derivatives taken, $B' = \\beta$), divided by $p(x, t)$, and "
                "simplified to the same expression, for every $x$, $t$, $m$, $s$ and schedule $\\beta$")


def library_alpha_bar():
    """alphas_cumprod of NoiseSchedule.linear(1000) at index 99 (the paper's t = 100)."""
    import torch
    from diffusion_core import NoiseSchedule

    return NoiseSchedule.linear(1000, dtype=torch.float64).alphas_cumprod[99]


@derivation("Drift of one step per unit time", models=[Model("any $\\beta(t) > 0$")])
def drift_limit(d):
    d.start(sp.Limit((sp.sqrt(1 - b * dt) - 1) * x / dt, dt, 0))
    d.eq(-b * x / 2, "$\\sqrt{1 - u} = 1 - u/2 + O(u^2)$")


@derivation("Mean square of one step per unit time", models=[Model("any $\\beta(t) > 0$")])
def variance_limit(d):
    # E[(x_t - x_{t-1})^2 | x_{t-1} = x] = (sqrt(1 - beta dt) - 1)^2 x^2 + beta dt
    d.start(sp.Limit(((sp.sqrt(1 - b * dt) - 1) ** 2 * x**2 + b * dt) / dt, dt, 0))
    d.eq(b, "the drift's share is $O(\\Delta t^2)$; the noise gives $\\beta(t)\\,\\Delta t$")


tt = sp.Symbol("t", positive=True)
bmin, bmax, u = sp.symbols("beta_min beta_max u", positive=True)
class Integrated(Model):
    """Integrals are carried out."""

    def evaluate(self, expr):
        return super().evaluate(expr).doit()


LINEAR = Integrated("the linear schedule in continuous time, $\\beta(u) = \\beta_{\\min} + u(\\beta_{\\max} - "
               "\\beta_{\\min})$, $u \\in [0, 1]$")


@derivation("The signal fraction of the continuous linear schedule", models=[LINEAR])
def continuous_alpha_bar(d):
    d.start(sp.exp(-sp.Integral(bmin + u * (bmax - bmin), (u, 0, tt))))
    d.eq(sp.exp(-tt * bmin - tt**2 * (bmax - bmin) / 2), "integrate the line")
    # T = 1000 steps of beta_i = beta(i / T) / T: beta_min = 0.1, beta_max = 20 (Song et al. 2021, appendix)
    d.numeric(library_alpha_bar, at={tt: sp.Rational(1, 10), bmin: sp.Rational(1, 10), bmax: 20},
              rtol=2e-3, label="`NoiseSchedule.linear(1000).alphas_cumprod` at index 99, the discrete "
                               "product (rtol 0.2%: its sum of betas differs from the integral by about half a "
                               "step of $\\beta$, $10^{-3}$ in the exponent, and $\\log(1-\\beta_i)$ from "
                               "$-\\beta_i$ by $\\beta_i^2/2$)")


@derivation("The Gaussian marginals solve the Fokker-Planck equation of the VP-SDE", models=[MARGINAL])
def fokker_planck(d):
    d.start(sp.Derivative(p(x, t), t))
    d.eq(sp.Derivative(beta(t) * x * p(x, t) / 2, x) + beta(t) / 2 * sp.Derivative(p(x, t), (x, 2)),
         "drift $-\\frac12\\beta x$, diffusion $\\beta$", by=SameOverDensity())


@derivation("The probability-flow ODE moves the same marginals", models=[MARGINAL])
def continuity(d):
    velocity = -beta(t) / 2 * (x + sp.Derivative(sp.log(p(x, t)), x))
    d.start(sp.Derivative(p(x, t), t))
    d.eq(-sp.Derivative(p(x, t) * velocity, x),
         "velocity $-\\frac12\\beta(t)\\,(x + \\partial_x \\log p)$", by=SameOverDensity())
