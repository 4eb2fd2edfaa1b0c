"""Derivations for docs/score/solvers.md."""
import sympy as sp

from diffusion_core.derivations import Check, Model, StepFailure, assumption, derivation, ordered, times


def time_function(name, latex, **assumptions):
    """A function of t shown without its argument: x rather than x(t)."""
    return type(name, (sp.Function,), {"_latex": lambda self, printer, exp=None: latex if exp is None
                                       else f"{{{latex}}}^{{{exp}}}", **{
                                           f"is_{k}": v for k, v in assumptions.items()}})


class frac(sp.Function):
    """a / b, displayed as written (a fraction bar); the models divide."""
    nargs = 2

    def _latex(self, printer, exp=None):
        return rf"\dfrac{{{printer._print(self.args[0])}}}{{{printer._print(self.args[1])}}}"

    def doit(self, **hints):
        a, b = (arg.doit(**hints) for arg in self.args)
        return a / b


class ddx(sp.Function):
    """d/dvar [expr], displayed with brackets; the models differentiate."""
    nargs = 2

    def _latex(self, printer, exp=None):
        body, var = (printer._print(arg) for arg in self.args)
        return rf"\frac{{d}}{{d{var}}}\Big[{body}\Big]"


def plain(expr):
    """Drop the display-only wrappers (ordered, times, frac, ddx)."""
    expr = sp.sympify(expr).replace(lambda n: isinstance(n, sp.UnevaluatedExpr), lambda n: n.args[0])
    expr = expr.replace(lambda n: isinstance(n, frac), lambda n: n.args[0] / n.args[1])
    return expr.replace(lambda n: isinstance(n, ddx), lambda n: sp.Derivative(*n.args))


# --- the probability-flow ODE in time: x(t), alphabar(t) = 1/(1 + rho(t)), rho the noise-to-signal ratio
t = sp.Symbol("t", real=True)
x = time_function("x", "x", real=True)(t)
ab = time_function("alphabar", r"\bar\alpha", positive=True)(t)
beta = time_function("beta", r"\beta", positive=True)(t)
rho = time_function("rho", r"\rho", positive=True)(t)
rho_dot = sp.Symbol("rhodot", positive=True)            # d rho / dt > 0: noise grows with t
eps, x0_hat = sp.symbols("epsilon xhat_0", real=True)    # the network's eps and x0 at (x(t), t)

# --- one step between two schedule points: alphabar_{t-1} = 1/(1+rho), alphabar_t = 1/(1+rho+delta)
x_t, eps_hat, x0_h = sp.symbols("x_t epsilonhat xhat_0", real=True)
ab_t, ab_prev = sp.symbols("alphabar_t alphabar_t-1", positive=True)
xbar_t, sb_t, sb_prev = sp.symbols("xbar_t sigmabar_t sigmabar_t-1", real=True)
r_, delta = sp.symbols("rho delta", positive=True)

# --- log-SNR lambda = log(alpha/sigma), alpha = sqrt(alphabar), sigma = sqrt(1 - alphabar)
lam, lam_s, lam_t, lam_p, u = sp.symbols("lambda lambda_s lambda_t lambda_p u", real=True)
h, r = sp.symbols("h r", positive=True)
x_s, x0_prev = sp.symbols("x_s xhat_0^prev", real=True)
alpha_f, sigma_f = sp.Function("alpha", positive=True), sp.Function("sigma", positive=True)
x0_f = sp.Function("xhat_0", real=True)                 # x0_hat along the ODE's solution, a function of lambda
alpha_s, alpha_t, sigma_s, sigma_t = sp.symbols("alpha_s alpha_t sigma_s sigma_t", positive=True)
# Taylor coefficients of xhat_0 along the path: its k-th derivatives in lambda at lambda_s
c0, c1, c2, c3 = sp.symbols("xhat_0^(0) xhat_0^(1) xhat_0^(2) xhat_0^(3)", real=True)


def vp_alpha(l):
    """alpha as a function of lambda (variance preserving: alpha^2 + sigma^2 = 1, lambda = log(alpha/sigma))."""
    return 1 / sp.sqrt(1 + sp.exp(-2 * l))


def vp_sigma(l):
    return 1 / sp.sqrt(1 + sp.exp(2 * l))


class TimeODE(Model):
    """x(t) solves the probability-flow ODE dx/dt = -beta/2 (x + grad log p_t) with grad log p_t = -eps/sqrt(1-alphabar)
    (Song et al. 2021, eq. 13 for the VP SDE), beta = -alphabar'/alphabar, alphabar = 1/(1 + rho(t)) for any
    increasing positive rho; derivatives are taken before the framework walks the expression."""

    def __init__(self, label, extra=None):
        super().__init__(label)
        self.extra = dict(extra or {})

    def evaluate(self, expr):
        e = plain(expr).doit()
        e = e.subs(sp.Derivative(x, t), -beta / 2 * (x - eps / sp.sqrt(1 - ab)))
        e = e.subs(self.extra)
        e = e.subs(beta, -sp.Derivative(ab, t) / ab).subs(ab, 1 / (1 + rho)).doit()
        return super().evaluate(e.subs(sp.Derivative(rho, t), rho_dot))


PF_TEXT = ("$x(t)$ solves the probability-flow ODE $\\frac{dx}{dt} = -\\frac{\\beta(t)}{2}\\big(x - "
           "\\epsilon/\\sqrt{1-\\bar\\alpha(t)}\\big)$ with $\\beta = -\\bar\\alpha'/\\bar\\alpha$, for any schedule "
           "$\\bar\\alpha(t) = 1/(1+\\rho(t))$ with $\\rho > 0$ increasing")
PF = TimeODE(PF_TEXT)
PF_X0 = TimeODE(PF_TEXT + "; $\\epsilon = (x - \\sqrt{\\bar\\alpha}\\,\\hat x_0)/\\sqrt{1-\\bar\\alpha}$",
                extra={eps: (x - sp.sqrt(ab) * x0_hat) / sp.sqrt(1 - ab)})


class FactoredRoots(Model):
    """Also factors inside square roots, so sqrt((1+rho)^2 rho) = (1+rho) sqrt(rho)."""

    def evaluate(self, expr):
        return super().evaluate(plain(expr)).replace(
            lambda e: e.is_Pow and e.exp.is_Rational and e.exp.q == 2,
            lambda e: sp.factor(e.base) ** e.exp)


STEP_BIND = {ab_prev: 1 / (1 + r_), ab_t: 1 / (1 + r_ + delta)}
EULER = FactoredRoots(
    "$\\bar\\alpha_{t-1} = \\frac{1}{1+\\rho}$, $\\bar\\alpha_t = \\frac{1}{1+\\rho+\\delta}$ for any "
    "$\\rho, \\delta > 0$ (every step of every schedule); $\\bar x_t = x_t/\\sqrt{\\bar\\alpha_t}$, "
    "$\\bar\\sigma = \\sqrt{(1-\\bar\\alpha)/\\bar\\alpha}$, "
    "$\\hat x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\epsilon)/\\sqrt{\\bar\\alpha_t}$",
    bind={**STEP_BIND, xbar_t: x_t / sp.sqrt(ab_t), sb_t: sp.sqrt((1 - ab_t) / ab_t),
          sb_prev: sp.sqrt((1 - ab_prev) / ab_prev), x0_h: (x_t - sp.sqrt(1 - ab_t) * eps_hat) / sp.sqrt(ab_t)})


class LambdaModel(Model):
    """alpha, sigma as functions of lambda (VP); integrals over finite ranges carried out (doit) first."""

    def __init__(self, label, bind=None, functions=None):
        super().__init__(label, bind=bind)
        self.functions = dict(functions or {})

    def evaluate(self, expr):
        e = plain(expr).subs(self.subs)
        for head, body in {alpha_f: sp.Lambda(u, vp_alpha(u)), sigma_f: sp.Lambda(u, vp_sigma(u)),
                           **self.functions}.items():
            e = e.replace(head, body)
        return super().evaluate(e.doit())


VP_TEXT = ("$\\alpha = (1+e^{-2\\lambda})^{-1/2}$, $\\sigma = (1+e^{2\\lambda})^{-1/2}$ (variance preserving, "
           "$\\lambda = \\log(\\alpha/\\sigma)$)")
VP = LambdaModel(VP_TEXT)
STEP_TEXT = VP_TEXT + " at $\\lambda_s$ and $\\lambda_t$; $h = \\lambda_t - \\lambda_s$"
STEP_VP = {alpha_s: vp_alpha(lam_s), sigma_s: vp_sigma(lam_s), alpha_t: vp_alpha(lam_t),
           sigma_t: vp_sigma(lam_t), h: lam_t - lam_s}
ONE_STEP = LambdaModel(STEP_TEXT, bind=STEP_VP)
TWO_M = LambdaModel(STEP_TEXT + "; $r = (\\lambda_s - \\lambda_p)/h$", bind={**STEP_VP, r: (lam_s - lam_p) / (lam_t - lam_s)})
TAYLOR = LambdaModel(
    "$\\hat x_0(\\lambda_s + u) = \\hat x_0^{(0)} + \\hat x_0^{(1)} u + \\hat x_0^{(2)} u^2/2 + \\hat x_0^{(3)} u^3/6$ "
    "(Taylor's formula; the remainder adds $O(h^4)$), any $\\hat x_0^{(k)}$, any $r > 0$",
    functions={x0_f: sp.Lambda(u, c0 + c1 * u + c2 * u**2 / 2 + c3 * u**3 / 6)})


class Series(Check):
    """``lhs = main + O(var^n)``: the series of lhs - main in ``var`` about 0 vanishes below order n."""

    def __init__(self, var):
        self.var = var

    def verify(self, step, derivation):
        rhs = plain(step.rhs)
        order = rhs.getO()
        if order is None or step.relation != "=":
            raise StepFailure("a series step needs '=' and a right side with an O(...) term")
        n = sp.degree(order.expr, self.var)
        for model in derivation.models:
            lhs = model.evaluate(step.lhs)
            main = model.evaluate(rhs.removeO())
            rest = sp.series(lhs - main, self.var, 0, n).removeO()
            if sp.simplify(rest) != 0:
                raise StepFailure(f"under {model.label!r}, left side minus the main terms has the terms {rest} "
                                  f"below {order}")
        return (f"series in ${sp.latex(self.var)}$ to order {n} (SymPy): the left side minus the shown terms "
                f"has no term below ${sp.latex(order.expr)}$, under " + "; ".join(m.label for m in derivation.models))


# --- Gaussian data N(m, s^2): EDM's ODE d xbar / d sigmabar = (xbar - D)/sigmabar has a closed-form solution
m = sp.Symbol("m", real=True)
s2 = sp.Symbol("s", positive=True)
sb, y0, dsb = sp.symbols("sigmabar xbar_0 Delta", real=True)
sb0 = sp.Symbol("sigmabar_0", positive=True)
x_heun, x_euler = sp.symbols("xbar_1^Heun xbar_1^Euler", real=True)
sbp = sp.Symbol("sigmabar", positive=True)
xb_f = sp.Function("xbar", real=True)
D_f = sp.Function("D", real=True)


def gauss_D(xb, level):
    """E[x0 | xbar] for x0 ~ N(m, s^2), xbar = x0 + sigmabar * eps: the posterior mean."""
    return m + s2**2 / (s2**2 + level**2) * (xb - m)


def gauss_f(level, xb):
    """EDM's right side (xbar - D(xbar; sigmabar)) / sigmabar for Gaussian data."""
    return (xb - gauss_D(xb, level)) / level


def gauss_exact(level, start_level, start):
    return m + (start - m) * sp.sqrt((s2**2 + level**2) / (s2**2 + start_level**2))


GAUSS_ODE = LambdaModel(
    "data $x_0 \\sim \\mathcal{N}(m, s^2)$: $D(\\bar x; \\bar\\sigma) = m + \\frac{s^2}{s^2+\\bar\\sigma^2}(\\bar x - m)$",
    functions={xb_f: sp.Lambda(sbp, gauss_exact(sbp, sb0, y0)), D_f: sp.Lambda((u, sbp), gauss_D(u, sbp))})


def heun_step(level, step, start):
    """One step of Heun's method (EDM Algorithm 1, their deterministic sampler) on d xbar/d sigmabar = gauss_f."""
    d0 = gauss_f(level, start)
    euler = start + step * d0
    return start + step * (d0 + gauss_f(level + step, euler)) / 2


HEUN_TEXT = ("data $x_0 \\sim \\mathcal{N}(m, s^2)$, one step from $\\bar\\sigma_0 > 0$ of length $\\Delta$; "
             "$\\bar x^{\\mathrm{Heun}}_1$, $\\bar x^{\\mathrm{Euler}}_1$ the formulas above")


@derivation("The probability-flow ODE in the scaled variables is d xbar / d sigmabar = eps", models=[PF])
def pf_ode_sigma(d):
    d.start(frac(sp.Derivative(x / sp.sqrt(ab), t), sp.Derivative(sp.sqrt((1 - ab) / ab), t)))
    d.eq(frac(ordered(sp.Derivative(x, t) / sp.sqrt(ab), -x * sp.Derivative(ab, t) / (2 * ab ** sp.Rational(3, 2))),
              frac(-sp.Derivative(ab, t), 2 * ab ** sp.Rational(3, 2) * sp.sqrt(1 - ab))), "quotient and chain rules")
    d.eq(frac(ordered(times(-beta / 2, ordered(x, -eps / sp.sqrt(1 - ab))), beta * x / 2) / sp.sqrt(ab),
              frac(beta, 2 * sp.sqrt(ab) * sp.sqrt(1 - ab))),
         "insert the ODE and $\\bar\\alpha' = -\\beta\\bar\\alpha$",
         by=assumption("$x$ solves the probability-flow ODE"))
    d.eq(eps, "the $x$ terms cancel")


@derivation("The probability-flow ODE in the log-SNR, with the data prediction", models=[PF_X0])
def lambda_ode(d):
    d.start(frac(sp.Derivative(x, t), sp.Derivative(sp.log(sp.sqrt(ab) / sp.sqrt(1 - ab)), t)))
    d.eq(frac(times(-beta / 2, ordered(x, -eps / sp.sqrt(1 - ab))), frac(-beta, 2 * (1 - ab))),
         "the ODE; $\\frac{d\\lambda}{dt} = \\frac{\\bar\\alpha'}{2\\bar\\alpha(1-\\bar\\alpha)} = "
         "-\\frac{\\beta}{2(1-\\bar\\alpha)}$")
    d.eq(ordered((1 - ab) * x, -sp.sqrt(1 - ab) * eps))
    d.eq(ordered(-ab * x, sp.sqrt(ab) * x0_hat),
         "$\\epsilon = (x - \\sqrt{\\bar\\alpha}\\,\\hat x_0)/\\sqrt{1-\\bar\\alpha}$")

EULER_AT = FactoredRoots("the same, at the schedule's values",
                         bind={k: v for k, v in EULER.subs.items() if k not in STEP_BIND})
HEUN = LambdaModel(HEUN_TEXT, bind={x_heun: heun_step(sb0, dsb, y0), x_euler: y0 + dsb * gauss_f(sb0, y0)},
                   functions={xb_f: sp.Lambda(sbp, gauss_exact(sbp, sb0, y0))})


# --- numbers from the library
def _gaussian_eps(schedule, m0=0.5, sd=0.4):
    """The exact noise predictor E[eps | x_t] for data x_0 ~ N(m0, sd^2) (t: the original index)."""
    def model(x_in, t_in):
        a = schedule.alphas_cumprod[t_in].to(x_in.dtype).view(-1, 1)
        return (1 - a).sqrt() * (x_in - a.sqrt() * m0) / (a * sd**2 + 1 - a)
    return model


def _ten_steps():
    import torch
    from diffusion_core import NoiseSchedule

    full = NoiseSchedule.linear(1000, dtype=torch.float64)
    return full, full.spaced(10)


def ddim_step_values():
    """alphabar of the first DDIM step (10 of 1000 linear steps), x_T = 0.7, and the exact eps there."""
    import torch

    full, short = _ten_steps()
    x_T = torch.tensor([[0.7]], dtype=torch.float64)
    e = _gaussian_eps(full)(x_T, short.timesteps[-1:]).item()
    return {ab_t: float(short.alphas_cumprod[-1]), ab_prev: float(short.alphas_cumprod[-2]), x_t: 0.7, eps_hat: e}


def ddim_first_step():
    import torch
    from diffusion_core import Diffusion, ddim_sample

    full, _ = _ten_steps()
    x_T = torch.tensor([[0.7]], dtype=torch.float64)
    out = ddim_sample(_gaussian_eps(full), Diffusion(full), x_T, steps=10, eta=0.0, progress=False,
                      return_trajectory=True)
    return out.trajectory[1]


def _cosine():
    import torch
    from diffusion_core import NoiseSchedule

    return NoiseSchedule.cosine(1000, dtype=torch.float64)


def dpmpp_2m_run():
    """dpmpp_2m_sample over 20 log-SNR-spaced steps of the cosine schedule, on N(0.5, 0.4^2) data from
    x_T = 0.7, with its trajectory: trajectory[k] is the state after k steps."""
    import torch
    from diffusion_core import Diffusion, dpmpp_2m_sample

    x_T = torch.tensor([[0.7]], dtype=torch.float64)
    return dpmpp_2m_sample(_gaussian_eps(_cosine()), Diffusion(_cosine()), x_T, steps=20, spacing="log-snr",
                           progress=False, return_trajectory=True).trajectory


def step_values(i):
    """The 2M step from the i-th of the 20 visited indices (counted from the lowest, as in
    NoiseSchedule.spaced(20, "log-snr")): lambda = log(sqrt(alphabar)/sqrt(1 - alphabar)) at i (s), i-1 (t)
    and i+1 (p) from the schedule's alphas_cumprod, the state x_s there, and the exact x0 predictions of
    the data N(0.5, 0.4^2) at s and at p, the previous step's."""
    import math

    ab_ = _cosine().spaced(20, "log-snr").alphas_cumprod
    lam_of = lambda k: 0.5 * math.log(float(ab_[k]) / (1 - float(ab_[k])))  # noqa: E731
    trajectory = dpmpp_2m_run()
    k = 19 - i                                     # the run visits the indices from the top: step k leaves i

    def x0_exact(x, a):                            # E[x_0 | x_t] for N(0.5, 0.4^2) data at alphabar a
        return 0.5 + 0.16 * math.sqrt(a) * (x - math.sqrt(a) * 0.5) / (a * 0.16 + 1 - a)

    x_now, x_before = float(trajectory[k]), float(trajectory[k - 1])
    return {lam_s: lam_of(i), lam_t: lam_of(i - 1), lam_p: lam_of(i + 1), x_s: x_now,
            x0_h: x0_exact(x_now, float(ab_[i])), x0_prev: x0_exact(x_before, float(ab_[i + 1]))}


def library_2m_step(i):
    """The state after dpmpp_2m_sample's step from the i-th visited index (see step_values)."""
    return dpmpp_2m_run()[19 - i + 1]


def heun_values():
    """One Heun step of heun_sample (linear schedule, 10 log-SNR steps) on N(0.5, 0.4^2) data from x_T = 0.7:
    its sigmabar at the first two visited indices and xbar = x_T / sqrt(alphabar)."""
    import math

    full, _ = _ten_steps()
    short = full.spaced(10, "log-snr")
    a0, a1 = float(short.alphas_cumprod[-1]), float(short.alphas_cumprod[-2])
    sig0, sig1 = math.sqrt((1 - a0) / a0), math.sqrt((1 - a1) / a1)
    return {m: 0.5, s2: 0.4, sb0: sig0, dsb: sig1 - sig0, y0: 0.7 / math.sqrt(a0)}, a1


def heun_first_step():
    """xbar after heun_sample's first step: its VP state divided by sqrt(alphabar) there. The grid is
    10 log-SNR-spaced steps from the schedule's top step (heun_sample's default is EDM's grid, which starts
    where sigmabar = 80: spacing="karras", sigma_max=80)."""
    import math

    import torch
    from diffusion_core import Diffusion, heun_sample

    full, _ = _ten_steps()
    out = heun_sample(_gaussian_eps(full), Diffusion(full), torch.tensor([[0.7]], dtype=torch.float64), steps=10,
                      spacing="log-snr", sigma_max=None, progress=False, return_trajectory=True)
    return out.trajectory[1] / math.sqrt(heun_values()[1])


@derivation("Deterministic DDIM is an Euler step of d xbar / d sigmabar = eps", models=[EULER])
def ddim_is_euler(d):
    d.start(sp.sqrt(ab_prev) * ordered(xbar_t, times(sb_prev - sb_t, eps_hat)))
    d.eq(sp.sqrt(ab_prev) * ordered(frac(x_t, sp.sqrt(ab_t)),
                                    times(sp.sqrt(1 - ab_prev) / sp.sqrt(ab_prev) - sp.sqrt(1 - ab_t) / sp.sqrt(ab_t),
                                          eps_hat)),
         "$\\bar x_t = x_t/\\sqrt{\\bar\\alpha_t}$, $\\bar\\sigma = \\sqrt{1-\\bar\\alpha}/\\sqrt{\\bar\\alpha}$")
    d.eq(ordered(sp.sqrt(ab_prev) * frac(ordered(x_t, -sp.sqrt(1 - ab_t) * eps_hat), sp.sqrt(ab_t)),
                 sp.sqrt(1 - ab_prev) * eps_hat), "multiply out, collect $x_t$ with its $\\hat\\epsilon$ term")
    d.eq(ordered(sp.sqrt(ab_prev) * x0_h, sp.sqrt(1 - ab_prev) * eps_hat),
         "$\\hat x_0 = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\epsilon)/\\sqrt{\\bar\\alpha_t}$: the DDIM update, $\\eta = 0$")
    d.numeric(ddim_first_step, at=ddim_step_values(), expr=d.lines[0], model=EULER_AT, rtol=1e-12,
              label="ddim_sample(eta=0, steps=10): first step from $x_T = 0.7$, data $\\mathcal{N}(0.5, 0.4^2)$")


@derivation("Variation of constants: the exact solution solves the ODE", models=[VP])
def exact_solution(d):
    inner = ordered(frac(x_s, sigma_f(lam_s)), sp.Integral(sp.exp(u) * x0_f(u), (u, lam_s, lam)))
    d.start(ddx(sigma_f(lam) * inner, lam))
    d.eq(ordered(times(ddx(sigma_f(lam), lam), inner), sigma_f(lam) * sp.exp(lam) * x0_f(lam)),
         "product rule; fundamental theorem of calculus")
    d.eq(ordered(-alpha_f(lam) ** 2 * sigma_f(lam) * inner, alpha_f(lam) * x0_f(lam)),
         "$\\frac{d\\sigma}{d\\lambda} = -\\alpha^2\\sigma$ and $\\sigma e^{\\lambda} = \\alpha$")


@derivation("First order: hold the data prediction fixed, and get DDIM", models=[ONE_STEP])
def first_order_is_ddim(d):
    d.start(ordered(frac(sigma_t, sigma_s) * x_s, sigma_t * sp.Integral(sp.exp(u) * x0_h, (u, lam_s, lam_t))))
    d.eq(ordered(frac(sigma_t, sigma_s) * x_s, sigma_t * (sp.exp(lam_t) - sp.exp(lam_s)) * x0_h),
         "$\\hat x_0$ held at its value at $\\lambda_s$")
    d.eq(ordered(frac(sigma_t, sigma_s) * x_s, alpha_t * (1 - sp.exp(-h)) * x0_h),
         "$\\sigma_t e^{\\lambda_t} = \\alpha_t$, $h = \\lambda_t - \\lambda_s$")
    d.eq(ordered(alpha_t * x0_h, sigma_t * frac(ordered(x_s, -alpha_s * x0_h), sigma_s)),
         "$e^{-h} = \\alpha_s\\sigma_t/(\\sigma_s\\alpha_t)$: DDIM's $\\alpha_t\\hat x_0 + \\sigma_t\\hat\\epsilon$")


@derivation("DPM-Solver++(2M): the update, and a step of the library's sampler", models=[TWO_M])
def dpmpp_2m_update(d):
    d.start(ordered(frac(sigma_t, sigma_s) * x_s,
                    alpha_t * (1 - sp.exp(-h)) * ordered((1 + 1 / (2 * r)) * x0_h, -x0_prev / (2 * r))))
    d.eq(ordered(frac(sigma_t, sigma_s) * x_s, alpha_t * (1 - sp.exp(-h)) * x0_h,
                 frac(alpha_t * (1 - sp.exp(-h)), 2 * r) * ordered(x0_h, -x0_prev)),
         "as $c_x x_s + c_0 \\hat x_0 + c_1 (\\hat x_0 - \\hat x_0')$")
    for i in (10, 3):
        d.numeric(lambda i=i: library_2m_step(i), at=step_values(i), rtol=1e-12,
                  label=f"dpmpp_2m_sample(steps=20, spacing=\"log-snr\"), cosine schedule, data "
                        f"$\\mathcal{{N}}(0.5, 0.4^2)$: its state after the step from index {i} to {i - 1} of "
                        "`spaced(20, \"log-snr\")`, given its state there and the exact predictions")


def _taylor_error(prediction):
    return alpha_t * ordered(sp.Integral(sp.exp(u - h) * x0_f(u), (u, 0, h)), -(1 - sp.exp(-h)) * prediction)


@derivation("DDIM's local error is O(h^2)", models=[TAYLOR])
def ddim_local_error(d):
    d.start(_taylor_error(x0_f(0)))
    d.eq(ordered(alpha_t * c1 * h**2 / 2, sp.O(h**3)), "expand in $h$", by=Series(h))


@derivation("DPM-Solver++(2M)'s local error is O(h^3)", models=[TAYLOR])
def dpmpp_2m_local_error(d):
    d.start(_taylor_error(ordered((1 + 1 / (2 * r)) * x0_f(0), -x0_f(-r * h) / (2 * r))))
    d.eq(ordered(alpha_t * h**3 * (c1 + (2 + 3 * r) * c2) / 12, sp.O(h**4)), "expand in $h$", by=Series(h))


@derivation("Gaussian data: the exact solution of the ODE", models=[GAUSS_ODE])
def gaussian_exact(d):
    d.start(sp.Derivative(xb_f(sb), sb))
    d.eq(frac(sb * (xb_f(sb) - m), s2**2 + sb**2),
         "differentiate $\\bar x(\\bar\\sigma) = m + (\\bar x_0 - m)\\sqrt{(s^2+\\bar\\sigma^2)/(s^2+\\bar\\sigma_0^2)}$")
    d.eq(frac(xb_f(sb) - D_f(xb_f(sb), sb), sb), "$D(\\bar x; \\bar\\sigma) = m + \\frac{s^2}{s^2+\\bar\\sigma^2}(\\bar x - m)$")


@derivation("Euler's local error on Gaussian data is O(Delta^2)", models=[HEUN])
def euler_local_error(d):
    d.start(x_euler - xb_f(sb0 + dsb))
    d.eq(ordered(-dsb**2 * s2**2 * (y0 - m) / (2 * (s2**2 + sb0**2) ** 2), sp.O(dsb**3)), "expand in $\\Delta$", by=Series(dsb))


@derivation("Heun's local error on Gaussian data is O(Delta^3)", models=[HEUN])
def heun_local_error(d):
    d.start(x_heun - xb_f(sb0 + dsb))
    d.eq(ordered(-dsb**3 * s2**2 * sb0 * (y0 - m) / (2 * (s2**2 + sb0**2) ** 3), sp.O(dsb**4)), "expand in $\\Delta$",
         by=Series(dsb))
    d.numeric(heun_first_step, at=heun_values()[0], expr=x_heun, rtol=1e-12,
              label="heun_sample(steps=10, spacing=\"log-snr\", sigma_max=None): $\\bar x$ after the first step "
                    "from $x_T = 0.7$, data $\\mathcal{N}(0.5, 0.4^2)$")
