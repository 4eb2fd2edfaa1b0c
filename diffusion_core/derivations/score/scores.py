"""Derivations for docs/score/scores.md."""
import sympy as sp

from diffusion_core.derivations import (E, Check, GaussPdf, Model, Pdf, StepFailure, are_equal, derivation,
                                        ordered, times)
from diffusion_core.derivations._notation import Expectation, density_variables
from diffusion_core.derivations._spaces import integrate_exact

x, mu = sp.symbols("x mu", real=True)
sigma = sp.Symbol("sigma", positive=True)
x0, xt, eps = sp.symbols("x_0 x_t epsilon", real=True)
ab = sp.Symbol("alphabar_t", positive=True)
r = sp.Symbol("r", positive=True)                # alphabar_t = 1/(1 + r^2): any value in (0, 1)
w, s1, s2 = sp.symbols("w s_1 s_2", positive=True)    # mixture weight and spreads
m1, m2 = sp.symbols("m_1 m_2", real=True)
R0, Rt = (x0, -sp.oo, sp.oo), (xt, -sp.oo, sp.oo)

# The forward process with abstract data: q(x_0) is any density.
q0, qt, qk = Pdf("q", x0), Pdf("q", xt), Pdf("q", xt, given=x0)
qpost, qjoint = Pdf("q", x0, given=xt), Pdf("q", (x0, xt))
kernel = GaussPdf(xt, sp.sqrt(ab) * x0, 1 - ab)
s_theta = sp.Function("s_theta")(xt)            # a score model
eps_theta = sp.Function("epsilon_theta")(xt)    # a noise predictor
f = sp.Function("q")                             # the data density, as a SymPy function


def split(term, v):
    """term = const * rest, with const free of v (exponents split term by term)."""
    const, rest = sp.S.One, sp.S.One
    for fac in sp.Mul.make_args(term):
        if isinstance(fac, sp.exp):
            for a in sp.Add.make_args(sp.expand(fac.args[0])):
                if v in a.free_symbols:
                    rest *= sp.exp(a)
                else:
                    const *= sp.exp(a)
        elif v in fac.free_symbols:
            rest *= fac
        else:
            const *= fac
    return const, sp.powsimp(rest, combine="exp")


def linear_integrals(expr):
    """Linearity of every integral, innermost first: split sums, pull out factors free of
    the integration variable, write the rest in one normal form, so that equal integrands
    give equal integrals."""
    def one(body, limit):
        v = limit[0]
        body = sp.powsimp(sp.expand(sp.powsimp(body, combine="exp"), power_exp=False),
                          combine="exp")
        out = 0
        for term in sp.Add.make_args(body):
            const, rest = split(term, v)
            out += const * sp.Integral(rest, limit)
        return out

    def rule(integral):
        body = integral.function
        for limit in integral.limits:
            body = one(body, limit)
        return body
    return expr.replace(lambda e: isinstance(e, sp.Integral), rule)


def exact_integrals(expr):
    """Every integral done exactly, innermost variable first."""
    def rule(integral):
        body = integral.function
        for limit in integral.limits:
            body = integrate_exact(body, limit[0])
        return body
    return expr.replace(lambda i: isinstance(i, sp.Integral), rule)


class ForwardProcess(Model):
    """q(x_t | x_0) the normal kernel, q(x_t) = int q(x_0) q(x_t | x_0) dx_0, q(x_0) = ``data``
    (None: an abstract density; then integrals stay symbolic and only linearity is used).
    ``after``: substitutions made once derivatives are taken (definitions of eps, s_theta)."""

    def __init__(self, label, data=None, bind=None, after=None):
        super().__init__(label)
        self.data, self.bind, self.after = data, dict(bind or {}), dict(after or {})

    def evaluate(self, expr):
        n = kernel.unfold()
        marginal = sp.Integral(f(x0) * n, R0)
        rules = {q0: f(x0), qk: n, qt: marginal, qpost: f(x0) * n / marginal,
                 qjoint: f(x0) * n}
        e = sp.sympify(expr).replace(lambda g: isinstance(g, Expectation) and len(g.args) == 2,
                                     lambda g: _integral(g.args[0] * g.args[1],
                                                         density_variables(g.args[1])))
        e = e.xreplace(rules)
        e = e.replace(lambda g: isinstance(g, sp.UnevaluatedExpr), lambda g: g.args[0])
        e = e.replace(lambda g: isinstance(g, GaussPdf), lambda g: g.unfold())
        e = e.replace(lambda d: isinstance(d, sp.Derivative), lambda d: d.doit(deep=False))
        e = linear_integrals(e.xreplace(self.after))
        if self.data is None:
            return e.xreplace(self.bind)
        e = e.xreplace({f(x0): self.data, **self.bind})
        return exact_integrals(e)


def _exponents(e):
    """Merge products of exponentials, each exponent over one denominator."""
    def tidy(z):
        return z.replace(lambda u: isinstance(u, sp.exp),
                         lambda u: sp.exp(sp.cancel(sp.expand(u.args[0]))))
    return tidy(sp.powsimp(tidy(e), combine="exp"))


def zero_over_common_denominator(diff) -> bool:
    """diff == 0 shown on the numerator over a common denominator, exponentials merged."""
    if sp.expand(sp.together(diff)) == 0:
        return True
    numerator, _ = sp.fraction(_exponents(sp.together(diff)))
    return sp.expand(_exponents(sp.expand(numerator))) == 0


def nonzero_somewhere(diff):
    """A clearly non-zero value of ``diff`` at a test point (fails a wrong step fast), or None."""
    free = sorted(diff.free_symbols, key=str)
    if diff.has(sp.Function, sp.Integral, sp.Derivative) and not all(
            isinstance(f, (sp.exp, sp.log, sp.Pow)) for f in diff.atoms(sp.Function)):
        return None                                   # abstract functions: no test point
    point = {v: sp.Rational(37 + 13 * k, 100) for k, v in enumerate(free)}
    try:
        value = complex(diff.xreplace(point).evalf(30))
    except (TypeError, ValueError):
        return None
    return value if abs(value) > 1e-12 else None


class Agree(Check):
    """``=`` under every model of the derivation: the difference of the two sides is zero over
    a common denominator (fast for ratios of exact Gaussian integrals), or by the framework's
    usual test."""

    def verify(self, step, derivation):
        for model in derivation.models:
            diff = model.evaluate(step.lhs) - model.evaluate(step.rhs)
            if zero_over_common_denominator(diff):
                continue
            value = nonzero_somewhere(diff)
            if value is not None or not are_equal(diff, sp.S.Zero):
                raise StepFailure(f"under model {model.label!r} the sides differ by {diff}"
                                  + (f"; at a test point the difference is {value}"
                                     if value is not None else ""))
        return "both sides agree under: " + "; ".join(m.label for m in derivation.models)


AGREE = Agree()


def _integral(body, variables):
    for v in sorted(variables, key=str):          # x_0 innermost
        body = sp.Integral(body, (v, -sp.oo, sp.oo))
    return body


def mixture(weight, mean1, var1, mean2, var2, at=x0):
    return weight * GaussPdf(at, mean1, var1) + (1 - weight) * GaussPdf(at, mean2, var2)


# The concrete data of the checks and the figures: a two-component mixture.
W, M1, V1, M2, V2 = (sp.Rational(3, 10), -1, sp.Rational(9, 100), sp.Rational(3, 2),
                     sp.Rational(1, 4))
KERNEL = ("$q(x_t \\mid x_0) = \\mathcal{N}(x_t; \\sqrt{\\bar\\alpha_t}\\,x_0, 1-\\bar\\alpha_t)$ "
          "and $q(x_t) = \\int q(x_0)\\, q(x_t \\mid x_0)\\, dx_0$")
ANY_DATA = ForwardProcess(f"$q(x_0)$ any density; {KERNEL}")
MIXTURE = ForwardProcess(
    f"$q(x_0) = \\tfrac{{3}}{{10}}\\,\\mathcal{{N}}(x_0; -1, 0.3^2) + \\tfrac{{7}}{{10}}\\,"
    f"\\mathcal{{N}}(x_0; 1.5, 0.5^2)$ (every integral exact); {KERNEL}; "
    "$\\bar\\alpha_t = 1/(1+r^2)$ for any $r > 0$",
    data=mixture(W, M1, V1, M2, V2).replace(lambda g: isinstance(g, GaussPdf),
                                            lambda g: g.unfold()),
    bind={ab: 1 / (1 + r**2), w: W, m1: M1, s1: sp.sqrt(V1), m2: M2, s2: sp.sqrt(V2)})
NOISE = "$\\epsilon = (x_t - \\sqrt{\\bar\\alpha_t}\\,x_0)/\\sqrt{1-\\bar\\alpha_t}$"
WITH_NOISE = ForwardProcess(f"{KERNEL}; {NOISE}, the noise $x_t$ carries",
                            after={eps: (xt - sp.sqrt(ab) * x0) / sp.sqrt(1 - ab)})
EPS_MODEL = ForwardProcess(
    f"$q(x_0)$ any density; {KERNEL}; {NOISE}; "
    "$s_\\theta(x_t) = -\\epsilon_\\theta(x_t)/\\sqrt{1-\\bar\\alpha_t}$",
    after={eps: (xt - sp.sqrt(ab) * x0) / sp.sqrt(1 - ab),
           s_theta: -eps_theta / sp.sqrt(1 - ab)})


def component(mean, var):
    """Component k of the noisy mixture: N(x_t; sqrt(abar) m_k, abar s_k^2 + 1 - abar)."""
    return GaussPdf(xt, sp.sqrt(ab) * mean, ab * var + 1 - ab)


def mixture_score(weight, mean1, var1, mean2, var2):
    """The exact score of the noisy two-component mixture (the result derived below)."""
    n1, n2 = component(mean1, var1), component(mean2, var2)
    v1, v2 = ab * var1 + 1 - ab, ab * var2 + 1 - ab
    return ordered(weight * n1 * (sp.sqrt(ab) * mean1 - xt) / v1,
                   (1 - weight) * n2 * (sp.sqrt(ab) * mean2 - xt) / v2) / \
        ordered(weight * n1, (1 - weight) * n2)


# ---- numbers: the same mixture in torch, float64
MIX = dict(w=0.3, m=(-1.0, 1.5), s=(0.3, 0.5))
T_CHECK = 300                                     # schedule index of the library checks
X_CHECK = 0.3


def library_abar(index=T_CHECK):
    import torch
    from diffusion_core import NoiseSchedule

    return float(NoiseSchedule.linear(1000, dtype=torch.float64).alphas_cumprod[index])


def at_library(index=T_CHECK, x_value=X_CHECK):
    a = library_abar(index)
    return {r: ((1 - a) / a) ** 0.5, xt: x_value}


def torch_mixture(a):
    """Log-density, posterior mean E[x_0 | x_t] and score of the noisy mixture at alphabar a,
    written directly in torch (responsibilities times each component's posterior mean)."""
    import torch

    def parts(x):
        a_ = torch.as_tensor(a, dtype=torch.float64)
        logs, means = [], []
        for weight, m, s in zip((MIX["w"], 1 - MIX["w"]), MIX["m"], MIX["s"]):
            v = a_ * s**2 + 1 - a_
            logs.append(torch.log(torch.tensor(weight, dtype=torch.float64))
                        - 0.5 * torch.log(2 * torch.pi * v) - (x - a_.sqrt() * m) ** 2 / (2 * v))
            means.append(m + s**2 * a_.sqrt() * (x - a_.sqrt() * m) / v)
        logs, means = torch.stack(logs), torch.stack(means)
        return torch.logsumexp(logs, 0), (torch.softmax(logs, 0) * means).sum(0)
    return parts


def quadrature_log_density(x_value, a):
    """log q(x_t) by the trapezoidal rule over x_0 (no closed form used)."""
    import torch

    grid = torch.linspace(-8, 8, 200_001, dtype=torch.float64)
    prior = sum(weight * torch.exp(-(grid - m) ** 2 / (2 * s**2)) / (2 * torch.pi * s**2) ** 0.5
                for weight, m, s in zip((MIX["w"], 1 - MIX["w"]), MIX["m"], MIX["s"]))
    kern = torch.exp(-(x_value - a**0.5 * grid) ** 2 / (2 * (1 - a))) / (2 * torch.pi * (1 - a)) ** 0.5
    return torch.log(torch.trapezoid(prior * kern, grid))


def finite_difference_score(x_value=X_CHECK, a=None, h=1e-4):
    """Central difference of the quadrature log-density: independent of every formula above."""
    a = library_abar() if a is None else a
    return (quadrature_log_density(x_value + h, a) - quadrature_log_density(x_value - h, a)) / (2 * h)


def library_eps_from_posterior_mean():
    """The x0 target read back as eps (diffusion_core.targets.to_x0_eps) at the linear schedule's alphabar,
    fed the exact E[x_0 | x_t]."""
    import torch
    from diffusion_core import Diffusion, NoiseSchedule, Target
    from diffusion_core.targets import to_x0_eps

    schedule = NoiseSchedule.linear(1000, dtype=torch.float64)
    x = torch.tensor([[X_CHECK]], dtype=torch.float64)
    _, x0_hat = torch_mixture(library_abar())(x)
    # sqrt(alphabar) and sqrt(1 - alphabar) at the schedule's index T_CHECK
    coefficients = Diffusion(schedule).coefficients(torch.tensor([T_CHECK]), x)
    _, eps_hat = to_x0_eps(Target.X0, x0_hat, x, coefficients)
    return eps_hat


def library_denoiser_x0():
    """A noise predictor made from the score by autograd, -sqrt(1 - alphabar) d/dx log q(x),
    wrapped by diffusion_core.Denoiser: its x0 prediction at (x_t, t)."""
    import torch
    from diffusion_core import Denoiser, DiscreteVP, NoiseSchedule

    schedule = NoiseSchedule.linear(1000, dtype=torch.float64)

    def eps_model(x, t):
        a = schedule.alphas_cumprod[t].view(-1, 1)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            log_q = torch_mixture(a)(x)[0]
            score, = torch.autograd.grad(log_q.sum(), x)
        return -(1 - a).sqrt() * score

    x = torch.tensor([[X_CHECK]], dtype=torch.float64)
    denoiser = Denoiser(eps_model, DiscreteVP(schedule), "eps")
    # a DiscreteVP's time is the paper's step, the schedule's index + 1; the network gets the index
    return denoiser(x, torch.tensor([T_CHECK + 1])).x0


@derivation("The score of a normal density",
            models=[ForwardProcess("$x, \\mu$ real, $\\sigma > 0$")])
def gaussian_score(d):
    d.start(sp.Derivative(sp.log(GaussPdf(x, mu, sigma**2)), x))
    d.eq(sp.Derivative(ordered(-(x - mu) ** 2 / (2 * sigma**2), -sp.log(2 * sp.pi * sigma**2) / 2),
                       x), "the log of the normal density")
    d.eq(-(x - mu) / sigma**2, "differentiate")


@derivation("The score of the forward kernel is the scaled noise", models=[WITH_NOISE])
def kernel_score(d):
    d.start(sp.Derivative(sp.log(qk), xt))
    d.eq(-(xt - sp.sqrt(ab) * x0) / (1 - ab),
         "the score of a normal density, mean $\\sqrt{\\bar\\alpha_t}\\,x_0$, variance "
         "$1-\\bar\\alpha_t$")
    d.eq(-eps / sp.sqrt(1 - ab), "$x_t - \\sqrt{\\bar\\alpha_t}\\,x_0 = \\sqrt{1-\\bar\\alpha_t}"
         "\\,\\epsilon$")


@derivation("Tweedie's formula", models=[ANY_DATA, MIXTURE])
def tweedie(d):
    d.start(sp.Derivative(sp.log(qt), xt))
    d.eq(sp.Derivative(qt, xt, evaluate=False) / qt, "chain rule")
    d.eq(sp.Integral(q0 * sp.Derivative(qk, xt, evaluate=False), R0) / qt,
         "$q(x_t) = \\int q(x_0)\\, q(x_t \\mid x_0)\\, dx_0$; differentiate under the integral")
    d.eq(sp.Integral(q0 * qk * (sp.sqrt(ab) * x0 - xt) / (1 - ab), R0) / qt,
         "$\\partial_{x_t} q(x_t \\mid x_0) = q(x_t \\mid x_0)\\, \\partial_{x_t} \\log "
         "q(x_t \\mid x_0)$, the kernel's score")
    d.eq(sp.Integral(qpost * (sp.sqrt(ab) * x0 - xt) / (1 - ab), R0),
         "Bayes: $q(x_0 \\mid x_t) = q(x_0)\\, q(x_t \\mid x_0) / q(x_t)$")
    d.eq((sp.sqrt(ab) * E(x0, qpost) - xt) / (1 - ab),
         "linearity; $q(x_0 \\mid x_t)$ integrates to one")


@derivation("The optimal noise prediction is the scaled score", models=[ANY_DATA, MIXTURE])
def noise_is_score(d):
    d.start(E((xt - sp.sqrt(ab) * x0) / sp.sqrt(1 - ab), qpost))
    d.eq((xt - sp.sqrt(ab) * E(x0, qpost)) / sp.sqrt(1 - ab), "linearity", by=AGREE)
    d.eq(-sp.sqrt(1 - ab) * sp.Derivative(sp.log(qt), xt), "Tweedie's formula", by=AGREE)
    d.numeric(library_eps_from_posterior_mean, at=at_library(), model=MIXTURE, rtol=1e-10,
              label="$\\hat\\epsilon$ of `diffusion_core.targets.to_x0_eps` for the $x_0$ target, on the "
                    f"linear schedule at index {T_CHECK}, $x_t = {X_CHECK}$, fed the exact posterior mean")
    d.numeric(library_denoiser_x0, at=at_library(), model=MIXTURE, rtol=1e-10,
              expr=E(x0, qpost),
              label="`diffusion_core.Denoiser` around the noise predictor "
                    "$-\\sqrt{1-\\bar\\alpha_t}\\,\\partial_{x_t}\\log q(x_t)$ (torch autograd): "
                    "its `x0`, against $\\mathbb{E}[x_0 \\mid x_t]$")


@derivation("The score of a noisy two-component mixture", models=[MIXTURE])
def mixture_score_closed_form(d):
    d.start(sp.Derivative(sp.log(qt), xt))
    d.eq(sp.Derivative(sp.log(ordered(w * component(m1, s1**2), (1 - w) * component(m2, s2**2))),
                       xt),
         "integrate over $x_0$: each component convolved with the kernel", by=AGREE)
    d.eq(mixture_score(w, m1, s1**2, m2, s2**2), "differentiate", by=AGREE)
    at = {**at_library(), w: W, m1: M1, s1: sp.sqrt(V1), m2: M2, s2: sp.sqrt(V2)}
    d.numeric(finite_difference_score, at=at, model=Model(bind={ab: 1 / (1 + r**2)}), rtol=1e-7,
              label="central difference ($h = 10^{-4}$) of $\\log q(x_t)$ computed by the "
                    "trapezoidal rule over $x_0$, at the linear schedule's "
                    f"$\\bar\\alpha_{{{T_CHECK}}}$, $x_t = {X_CHECK}$")


@derivation("Vincent: the cross term", models=[ANY_DATA])
def cross_term(d):
    d.start(E(s_theta * sp.Derivative(sp.log(qt), xt), qt))
    d.eq(sp.Integral(s_theta * sp.Derivative(qt, xt, evaluate=False), Rt),
         "$q\\,\\partial \\log q = \\partial q$")
    d.eq(sp.Integral(s_theta * sp.Integral(q0 * sp.Derivative(qk, xt, evaluate=False), R0), Rt),
         "differentiate under the integral")
    d.eq(E(s_theta * sp.Derivative(sp.log(qk), xt), qjoint),
         "$\\partial q(x_t \\mid x_0) = q(x_t \\mid x_0)\\,\\partial \\log q(x_t \\mid x_0)$")


@derivation("Explicit and denoising score matching differ by a constant", models=[ANY_DATA])
def esm_dsm(d):
    d.start(ordered(E((s_theta - sp.Derivative(sp.log(qt), xt)) ** 2, qt),
                    -E((s_theta - sp.Derivative(sp.log(qk), xt)) ** 2, qjoint)))
    d.eq(ordered(E(sp.Derivative(sp.log(qt), xt) ** 2, qt),
                 -E(sp.Derivative(sp.log(qk), xt) ** 2, qjoint)),
         "expand the squares: the $s_\\theta^2$ terms agree ($x_t$ has the same distribution), "
         "and so do the cross terms (above)")


@derivation("Denoising score matching is the noise-prediction loss, weighted", models=[EPS_MODEL])
def dsm_is_eps_loss(d):
    d.start(E((s_theta - sp.Derivative(sp.log(qk), xt)) ** 2, qjoint))
    d.eq(E((-eps_theta / sp.sqrt(1 - ab) + eps / sp.sqrt(1 - ab)) ** 2, qjoint),
         "$s_\\theta = -\\epsilon_\\theta/\\sqrt{1-\\bar\\alpha_t}$ and the kernel's score")
    d.eq(times(1 / (1 - ab), E((eps - eps_theta) ** 2, qjoint)), "take out the factor")
