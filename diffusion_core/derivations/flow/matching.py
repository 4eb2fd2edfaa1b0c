"""Derivations for docs/flow/flow-matching.md.

Time runs from the data (t = 0) to the noise, as everywhere on the site: x_t = alpha_t x_0 + sigma_t eps.
"""
import sympy as sp

from diffusion_core.derivations import E, Model, derivation, discrete, ordered, random_variables, times, under


def time_function(name, latex):
    """A function of t shown as ``latex`` (alpha_t rather than alpha(t))."""
    return type(name, (sp.Function,), {"is_real": True, "_latex": lambda self, printer, exp=None: latex
                                       if exp is None else f"{{{latex}}}^{{{exp}}}"})


class ddt(sp.Function):
    """d/dt [expr], displayed with brackets; the models differentiate."""
    nargs = 1

    def _latex(self, printer, exp=None):
        return rf"\frac{{d}}{{dt}}\Big[{printer._print(self.args[0])}\Big]"


class frac(sp.Function):
    """a / b, displayed as a fraction bar; the models divide."""
    nargs = 2

    def _latex(self, printer, exp=None):
        a, b = (printer._print(arg) for arg in self.args)
        return rf"\dfrac{{{a}}}{{{b}}}"


class Given(sp.Function):
    """E[g | x_t], the average of g over the data and noise that are consistent with x_t."""
    nargs = 1

    def _latex(self, printer, exp=None):
        out = rf"\mathbb{{E}}\left[{printer._print(self.args[0])} \,\middle|\, x_t\right]"
        return out if exp is None else f"{out}^{{{exp}}}"


t, s_ = sp.symbols("t s", real=True)
alpha, sigma = time_function("alpha", r"\alpha_t")(t), time_function("sigma", r"\sigma_t")(t)
da, ds = time_function("alphadot", r"\dot\alpha_t")(t), time_function("sigmadot", r"\dot\sigma_t")(t)
x0, eps, xt = sp.symbols("x_0 epsilon x_t", real=True)
x = time_function("x", "x_t")(t)                       # a solution of the ODE, as a function of t
dx = time_function("xdot", r"\dot x_t")(t)
x0h, epsh = sp.symbols(r"\hat{x}_0 \hat\epsilon", real=True)   # the predictions E[x_0 | x_t], E[eps | x_t]
beta = time_function("beta", r"\beta_t")(t)
score = sp.Symbol(r"\nabla_{x}\log p_t(x_t)", real=True)

# data on three points c_k with probabilities w_k: any such distribution
c1, c2, c3 = sp.symbols("c_1 c_2 c_3", real=True)
w1, w2 = sp.symbols("w_1 w_2", positive=True)
POINTS = [(c1, w1), (c2, w2), (c3, 1 - w1 - w2)]
R = sp.symbols("r_1 r_2 r_3", positive=True)            # posterior weights of the points given x_t


def posterior_average(g, bayes):
    """E[g | x_t] for data on POINTS: weights by Bayes' rule with the likelihood N(x_t; alpha c_k, sigma^2) when
    ``bayes``, else any positive posterior weights r_k; given x_0 and x_t, the noise is (x_t - alpha x_0)/sigma."""
    weights = [w * sp.exp(-(xt - alpha * c) ** 2 / (2 * sigma**2)) for c, w in POINTS] if bayes else R
    values = [g.xreplace({eps: (xt - alpha * c) / sigma}).xreplace({x0: c}) for c, _ in POINTS]
    return sum(wk * v for wk, v in zip(weights, values)) / sum(weights)


def log_marginal():
    """log p_t(x_t) for data on POINTS, up to the constant -log(sqrt(2 pi) sigma_t)."""
    return sp.log(sum(w * sp.exp(-(xt - alpha * c) ** 2 / (2 * sigma**2)) for c, w in POINTS))


class PathModel(Model):
    """alpha_t, sigma_t (any differentiable functions unless bound); the dots are time derivatives; E[. | x_t]
    by Bayes' rule for data on three points when ``points``; an ODE for x(t) when ``ode``."""

    def __init__(self, label, alpha_of=None, sigma_of=None, points=False, ode=False, extra=None, dots=True):
        super().__init__(label)
        self.alpha_of, self.sigma_of, self.points, self.ode = alpha_of, sigma_of, points, ode
        self.extra, self.dots = dict(extra or {}), dots

    def evaluate(self, expr):
        e = sp.sympify(expr).replace(lambda n: isinstance(n, sp.UnevaluatedExpr), lambda n: n.args[0])
        e = e.replace(lambda n: isinstance(n, frac), lambda n: n.args[0] / n.args[1])
        e = e.xreplace({score: sp.Derivative(log_marginal(), xt)}) if self.points == "bayes" else e
        if self.points:
            e = e.replace(lambda n: isinstance(n, Given), lambda n: posterior_average(n.args[0], self.points == "bayes"))
        e = e.replace(lambda n: isinstance(n, ddt), lambda n: sp.Derivative(n.args[0], t))
        if self.dots:
            e = e.xreplace({da: sp.Derivative(alpha, t), ds: sp.Derivative(sigma, t), dx: sp.Derivative(x, t)})
        e = e.xreplace(self.extra).doit()
        if self.ode:   # x(t) solves dx/dt = alpha' x0_hat + sigma' eps_hat, with x = alpha x0_hat + sigma eps_hat
            e = e.subs(sp.Derivative(x, t), sp.Derivative(alpha, t) * x0h + sp.Derivative(sigma, t) * epsh)
            e = e.subs(x, alpha * x0h + sigma * epsh)
        if self.alpha_of is not None:
            e = e.subs({alpha: self.alpha_of, sigma: self.sigma_of}).doit()
        return super().evaluate(e)


COS_S = sp.Rational(8, 1000)
ALPHA_COS = sp.cos((t + COS_S) / (1 + COS_S) * sp.pi / 2) / sp.cos(COS_S / (1 + COS_S) * sp.pi / 2)
ALPHA_LIN = sp.exp(-sp.Rational(1, 10) * t / 2 - (20 - sp.Rational(1, 10)) * t**2 / 4)
ANY = PathModel("any differentiable $\\alpha_t, \\sigma_t$")
COSINE = PathModel("the cosine path: $\\alpha_t = \\cos\\big(\\frac{t+s}{1+s}\\frac{\\pi}{2}\\big)/"
                   "\\cos\\big(\\frac{s}{1+s}\\frac{\\pi}{2}\\big)$, $s = 0.008$, $\\sigma_t = \\sqrt{1-\\alpha_t^2}$",
                   ALPHA_COS, sp.sqrt(1 - ALPHA_COS**2))
LINEAR = PathModel("the linear VP path: $\\alpha_t = e^{-\\frac12\\int_0^t \\beta}$, "
                   "$\\beta(t) = 0.1 + 19.9\\,t$, $\\sigma_t = \\sqrt{1-\\alpha_t^2}$",
                   ALPHA_LIN, sp.sqrt(1 - ALPHA_LIN**2))
RECTIFIED = PathModel("rectified flow: $\\alpha_t = 1 - t$, $\\sigma_t = t$", 1 - t, t)
THREE_POINTS = PathModel("any $\\alpha_t, \\sigma_t$; given $x_t$, $x_0$ is one of three points $c_k$ with any "
                         "probabilities $r_k$", points="any")
BAYES = PathModel("any $\\alpha_t, \\sigma_t$; data on three points $c_k$ with any probabilities $w_k$; $p_t$ and "
                  "$\\mathbb{E}[\\,\\cdot \\mid x_t]$ from them by Bayes' rule", points="bayes")
VP = PathModel("variance preserving: any $\\alpha_t$, $\\sigma_t = \\sqrt{1-\\alpha_t^2}$, "
               "$\\beta_t = -2\\dot\\alpha_t/\\alpha_t$", extra={beta: -2 * sp.Derivative(alpha, t) / alpha, sigma: sp.sqrt(1 - alpha**2)})
NUMBERS = PathModel("the values below", dots=False)
ODE = PathModel("any $\\alpha_t, \\sigma_t$; $x_t$ solves $\\dot x_t = \\dot\\alpha_t\\hat x_0 + \\dot\\sigma_t\\hat\\epsilon$, "
                "with $x_t = \\alpha_t\\hat x_0 + \\sigma_t\\hat\\epsilon$", ode=True)

# ---- independent numbers for the ties: closed forms by SymPy, posterior means by quadrature
MIXTURE = ([0.3, 0.7], [-1.0, 0.8], [0.3, 0.4])        # weights, means, standard deviations of the data


def quadrature(x_value, a, s, noise=False):
    """E[x_0 | x_t] (or E[eps | x_t]) for the MIXTURE data, by the trapezoidal rule over x_0 in [-8, 8]."""
    import math

    import torch
    grid = torch.linspace(-8.0, 8.0, 320001, dtype=torch.float64)
    prior = sum(w / (sd * math.sqrt(2 * math.pi)) * torch.exp(-((grid - m) ** 2) / (2 * sd**2))
                for w, m, sd in zip(*MIXTURE))
    joint = prior * torch.exp(-((x_value - a * grid) ** 2) / (2 * s**2))
    g = (x_value - a * grid) / s if noise else grid
    return float(torch.trapezoid(g * joint, grid) / torch.trapezoid(joint, grid))


def path_values(alpha_expr, at_t):
    """alpha, sigma and their derivatives at t from the closed form (variance preserving unless rectified)."""
    sigma_expr = t if alpha_expr == 1 - t else sp.sqrt(1 - alpha_expr**2)
    return {alpha: float(alpha_expr.subs(t, at_t)), sigma: float(sigma_expr.subs(t, at_t)),
            da: float(sp.diff(alpha_expr, t).subs(t, at_t)), ds: float(sp.diff(sigma_expr, t).subs(t, at_t))}


def mixture_network(path, target):
    """The exact prediction of diffusion_core.mixture.GaussianMixture as a network on a continuous path."""
    from diffusion_core.mixture import GaussianMixture
    mix = GaussianMixture(*MIXTURE)

    def network(x_in, t_in):
        t_ = t_in / 1000                                 # the network's time input is 1000 t
        a, s = path.alpha(t_).reshape(-1, 1), path.sigma(t_).reshape(-1, 1)
        return mix.x0(x_in, a, s) if target == "x0" else mix.eps(x_in, a, s)
    return network


def library_velocity(path_name, target, x_value, t_value):
    """The library's velocity on a path: a Denoiser over the exact mixture prediction, Prediction.as_target."""
    def call():
        import torch
        from diffusion_core import ContinuousVP, Denoiser, RectifiedFlow
        path = {"cosine": ContinuousVP.cosine(), "linear": ContinuousVP.linear(), "rectified": RectifiedFlow()}[path_name]
        prediction = Denoiser(mixture_network(path, target), path, target)(
            torch.tensor([[x_value]], dtype=torch.float64), torch.tensor([t_value], dtype=torch.float64))
        return prediction.as_target("velocity")
    return call


def library_velocity_target(path_name, x0_value, eps_value, t_value):
    """diffusion_core.targets.target_of for the velocity, with the path's alpha, sigma and derivatives."""
    def call():
        import torch
        from diffusion_core import ContinuousVP, RectifiedFlow
        from diffusion_core.targets import Coefficients, Target, target_of
        path = {"cosine": ContinuousVP.cosine(), "linear": ContinuousVP.linear(), "rectified": RectifiedFlow()}[path_name]
        tt = torch.tensor([t_value], dtype=torch.float64)
        c = Coefficients(path.alpha(tt), path.sigma(tt), *path.derivatives(tt))
        f64 = torch.float64
        return target_of(Target.VELOCITY, torch.tensor([x0_value], dtype=f64), torch.tensor([eps_value], dtype=f64), c)
    return call


@derivation("The conditional velocity: differentiate the path", models=[ANY, COSINE, LINEAR])
def conditional_velocity(d):
    d.start(ddt(ordered(times(alpha, x0), times(sigma, eps))))
    d.eq(ordered(times(da, x0), times(ds, eps)), "$x_0$ and $\\epsilon$ do not change with $t$")
    for name, model, at_t in (("cosine", COSINE, 0.3), ("linear", LINEAR, 0.6)):
        d.numeric(library_velocity_target(name, 0.7, -0.4, at_t), at={t: at_t, x0: 0.7, eps: -0.4}, model=model,
                  rtol=1e-12, label=f"diffusion_core.targets.target_of(\"velocity\") on ContinuousVP.{name}() at "
                                    f"$t = {at_t}$ (the path's own derivatives), against SymPy's derivative of "
                                    "the closed form")


@derivation("Rectified flow: the velocity is the noise minus the data", models=[RECTIFIED])
def rectified_velocity(d):
    d.start(ordered(times(da, x0), times(ds, eps)))
    d.eq(ordered(eps, -x0), "$\\dot\\alpha_t = -1$, $\\dot\\sigma_t = 1$")
    d.numeric(library_velocity_target("rectified", 0.7, -0.4, 0.25), at={t: 0.25, x0: 0.7, eps: -0.4}, rtol=1e-15,
              label="diffusion_core.targets.target_of(\"velocity\") on RectifiedFlow() at $t = 0.25$")


@derivation("The marginal velocity is the conditional one averaged given x_t", models=[THREE_POINTS])
def marginal_velocity(d):
    d.start(Given(ordered(times(da, x0), times(ds, eps))))
    d.eq(Given(ordered(times(da, x0), times(ds, frac(ordered(xt, -times(alpha, x0)), sigma)))),
         "given $x_0$ and $x_t$, $\\epsilon = (x_t - \\alpha_t x_0)/\\sigma_t$")
    d.eq(ordered(times(frac(ds, sigma), xt), times(ordered(da, -times(alpha, frac(ds, sigma))), Given(x0))),
         "linearity; $x_t$ is fixed given $x_t$")
    at_t, x_value = 0.4, 0.3
    values = path_values(ALPHA_COS, at_t)
    d.numeric(library_velocity("cosine", "x0", x_value, at_t), model=NUMBERS, rtol=1e-9,
              at={**values, xt: x_value, Given(x0): quadrature(x_value, values[alpha], values[sigma])},
              label="the velocity of diffusion_core's exact mixture prediction (GaussianMixture.x0 in a Denoiser, "
                    "Prediction.as_target(\"velocity\")) on ContinuousVP.cosine() at $t = 0.4$, $x_t = 0.3$; "
                    "here $\\mathbb{E}[x_0 \\mid x_t]$ by quadrature, $\\alpha_t, \\sigma_t$ and the dots from the "
                    "closed form")


@derivation("Rectified flow: the marginal velocity", models=[RECTIFIED])
def rectified_marginal(d):
    d.start(ordered(times(frac(ds, sigma), xt), times(ordered(da, -times(alpha, frac(ds, sigma))), Given(x0))))
    d.eq(frac(ordered(xt, -Given(x0)), t), "$\\alpha_t = 1 - t$, $\\sigma_t = t$")
    at_t, x_value = 0.6, -0.5
    d.numeric(library_velocity("rectified", "x0", x_value, at_t), rtol=1e-9,
              at={t: at_t, xt: x_value, Given(x0): quadrature(x_value, 1 - at_t, at_t)},
              label="the velocity of the exact mixture prediction on RectifiedFlow() at $t = 0.6$, $x_t = -0.5$, "
                    "against $\\mathbb{E}[x_0 \\mid x_t]$ by quadrature")


# ---- the two losses: x_t and the conditional velocity u on any finite joint table
X, U = random_variables("x_t u")
xi1, xi2 = sp.symbols("xi_1 xi_2", real=True)
u1, u2, u3 = sp.symbols("u_1 u_2 u_3", real=True)
p = {(xv, uv): sp.Symbol(f"p_{i}{j}", positive=True) for i, xv in enumerate((xi1, xi2), 1)
     for j, uv in enumerate((u1, u2, u3), 1)}
net = sp.Function(r"\hat{u}_\theta", real=True)


class MarginalU(sp.Function):
    """E[u | x_t] on the table p: the average of u over the row of x_t."""
    nargs = 1

    @classmethod
    def eval(cls, value):
        row = {uv: pr for (xv, uv), pr in p.items() if xv == value}
        if row:
            return sum(uv * pr for uv, pr in row.items()) / sum(row.values())
        return None

    def _latex(self, printer, exp=None):
        out = rf"\mathbb{{E}}\left[u \,\middle|\, {printer._print(self.args[0])}\right]"
        return out if exp is None else f"{out}^{{{exp}}}"


TABLE = Model("$(x_t, u)$ on a joint table of $2 \\times 3$ points with any probabilities $p_{ij}$; "
              "any network values $\\hat u_\\theta(\\xi_i)$", bind={(X, U): discrete(p)})


@derivation("The conditional loss is the marginal loss plus a constant", models=[TABLE])
def cfm_equals_fm(d):
    m = MarginalU(X)
    d.start(E((net(X) - U) ** 2))
    d.eq(ordered(E(net(X) ** 2), -2 * E(net(X) * U), E(U**2)), "expand the square")
    d.eq(ordered(E(net(X) ** 2), -2 * E(net(X) * m), E(U**2)),
         "tower rule: $\\mathbb{E}[\\hat u_\\theta u] = \\mathbb{E}[\\hat u_\\theta\\,\\mathbb{E}[u \\mid x_t]]$")
    d.eq(ordered(E((net(X) - m) ** 2), E(U**2), -E(m**2)), "complete the square")


@derivation("The probability-flow ODE of the VP SDE is the flow of the path", models=[VP])
def pf_ode_is_velocity(d):
    d.start(ordered(-times(frac(beta, 2), xt), -times(frac(beta, 2), score)))
    d.eq(ordered(-times(frac(beta, 2), xt), -times(frac(beta, 2), frac(ordered(times(alpha, Given(x0)), -xt), sigma**2))),
         "Tweedie: $\\nabla_x\\log p_t(x_t) = (\\alpha_t\\mathbb{E}[x_0 \\mid x_t] - x_t)/\\sigma_t^2$",
         by=under(BAYES))
    d.eq(times(frac(beta, 2 * sigma**2), ordered(times(alpha**2, xt), -times(alpha, Given(x0)))),
         "collect; $1 - \\sigma_t^2 = \\alpha_t^2$")
    d.eq(ordered(times(frac(ds, sigma), xt), times(ordered(da, -times(alpha, frac(ds, sigma))), Given(x0))),
         "$\\beta_t = -2\\dot\\alpha_t/\\alpha_t$ and $\\sigma_t\\dot\\sigma_t = -\\alpha_t\\dot\\alpha_t$")
    at_t, x_value = 0.5, 0.9
    d.numeric(library_velocity("linear", "eps", x_value, at_t), expr=d.lines[0], model=NUMBERS, rtol=1e-9,
              at={beta: 0.1 + 19.9 * at_t, xt: x_value, score: autograd_score(x_value, at_t)},
              label="the velocity of diffusion_core's exact mixture prediction (GaussianMixture.eps, "
                    "Prediction.as_target(\"velocity\")) on ContinuousVP.linear() at $t = 0.5$, against the "
                    "probability-flow drift with $\\beta(t) = 0.1 + 19.9\\,t$ and the score by torch autograd")


def autograd_score(x_value, at_t):
    """d/dx log p_t(x) for the MIXTURE data on the linear VP path, by torch autograd of the density written out."""
    import math

    import torch
    a = math.exp(-0.05 * at_t - 19.9 * at_t**2 / 4)
    xx = torch.tensor(x_value, dtype=torch.float64, requires_grad=True)
    density = sum(w * torch.exp(-((xx - a * m) ** 2) / (2 * (a**2 * sd**2 + 1 - a**2)))
                  / math.sqrt(2 * math.pi * (a**2 * sd**2 + 1 - a**2)) for w, m, sd in zip(*MIXTURE))
    (grad,) = torch.autograd.grad(torch.log(density), xx)
    return float(grad)


@derivation("In x/alpha against sigma/alpha the ODE's slope is the noise prediction", models=[ODE])
def scaled_ode(d):
    d.start(frac(ddt(x / alpha), ddt(sigma / alpha)))
    d.eq(frac(ordered(alpha * dx, -da * x), ordered(alpha * ds, -da * sigma)), "quotient rule; $\\alpha_t^2$ cancels")
    d.eq(frac(ordered(alpha * ordered(da * x0h, ds * epsh), -da * ordered(alpha * x0h, sigma * epsh)),
              ordered(alpha * ds, -da * sigma)),
         "$\\dot x_t = \\dot\\alpha_t\\hat x_0 + \\dot\\sigma_t\\hat\\epsilon$, $x_t = \\alpha_t\\hat x_0 + \\sigma_t\\hat\\epsilon$")
    d.eq(epsh, "the $\\hat x_0$ terms cancel")


# ---- one Euler step from time t to time s < t, at any two points of any path
a_t, s_t, a_s, s_s = sp.symbols(r"alpha_t sigma_t alpha_s sigma_s", positive=True)
EULER = PathModel("any $\\alpha, \\sigma > 0$ at the two times; $\\hat x_0 = (x_t - \\sigma_t\\hat\\epsilon)/\\alpha_t$",
                  extra={x0h: (xt - s_t * epsh) / a_t})
T_FROM, T_TO = 500, 400                                    # the DDPM steps of the tie's first step


def linear_alphabar(step):
    """alphabar at a DDPM step of the linear schedule (betas from 1e-4 to 0.02 over 1000 steps), in plain Python."""
    out = 1.0
    for i in range(step):
        out *= 1 - (1e-4 + i * (0.02 - 1e-4) / 999)
    return out


def euler_values():
    import math
    ab_t, ab_s = linear_alphabar(T_FROM), linear_alphabar(T_TO)
    a, s = math.sqrt(ab_t), math.sqrt(1 - ab_t)
    return {a_t: a, s_t: s, a_s: math.sqrt(ab_s), s_s: math.sqrt(1 - ab_s), xt: 0.7,
            epsh: quadrature(0.7, a, s, noise=True)}


def library_ddim_step():
    """sample_ddim(eta=0) on DiscreteVP(linear schedule) with the exact mixture noise prediction: the state after
    its first step, from step 500 to 400 of the grid 500, 400, ..., 100, 0."""
    import torch
    from diffusion_core import Denoiser, DiscreteVP, NoiseSchedule, sample_ddim
    from diffusion_core.mixture import GaussianMixture
    path, mix = DiscreteVP(NoiseSchedule.linear(1000, dtype=torch.float64)), GaussianMixture(*MIXTURE)

    def network(x_in, index):                           # the schedule's index is the step minus 1
        return mix.eps(x_in, path.alpha(index + 1).reshape(-1, 1), path.sigma(index + 1).reshape(-1, 1))
    ts = torch.tensor([500.0, 400.0, 300.0, 200.0, 100.0, 0.0], dtype=torch.float64)
    out = sample_ddim(Denoiser(network, path, "eps"), torch.tensor([[0.7]], dtype=torch.float64), ts, eta=0.0,
                      progress=False, return_trajectory=True)
    return out.trajectory[1]


@derivation("One Euler step in x/alpha and sigma/alpha is DDIM's step", models=[EULER])
def ddim_is_euler(d):
    d.start(a_s * ordered(frac(xt, a_t), times(ordered(frac(s_s, a_s), -frac(s_t, a_t)), epsh)))
    d.eq(ordered(a_s * frac(ordered(xt, -s_t * epsh), a_t), s_s * epsh), "multiply out")
    d.eq(ordered(a_s * x0h, s_s * epsh), "$\\hat x_0 = (x_t - \\sigma_t\\hat\\epsilon)/\\alpha_t$: DDIM, $\\eta = 0$")
    d.numeric(library_ddim_step, at=euler_values(), expr=d.lines[0], model=NUMBERS, rtol=1e-9,
              label="sample_ddim(eta=0) on DiscreteVP(NoiseSchedule.linear(1000)), exact mixture $\\hat\\epsilon$: "
                    "the step from $t = 500$ to $400$ at $x_t = 0.7$; here $\\bar\\alpha$ from the betas in plain "
                    "Python and $\\hat\\epsilon$ by quadrature")


RECTIFIED_STEP = PathModel("rectified flow at times $t$ and $s$: $x_t = (1-t)\\hat x_0 + t\\hat\\epsilon$",
                           extra={xt: (1 - t) * x0h + t * epsh})


def rectified_step_values():
    t_value, s_value, x_value = 0.8, 0.5, 1.2
    return {t: t_value, s_: s_value, xt: x_value, x0h: quadrature(x_value, 1 - t_value, t_value),
            epsh: quadrature(x_value, 1 - t_value, t_value, noise=True)}


def library_euler_step():
    """sample_euler on RectifiedFlow() with the exact mixture x0 prediction: the state after the step from
    t = 0.8 to 0.5 (grid 0.8, 0.5, 0), from x = 1.2."""
    import torch
    from diffusion_core import Denoiser, RectifiedFlow, sample_euler
    path = RectifiedFlow()
    out = sample_euler(Denoiser(mixture_network(path, "x0"), path, "x0"), torch.tensor([[1.2]], dtype=torch.float64),
                       torch.tensor([0.8, 0.5, 0.0], dtype=torch.float64), progress=False, return_trajectory=True)
    return out.trajectory[1]


@derivation("Rectified flow: DDIM's step is the flow-matching Euler step", models=[RECTIFIED_STEP])
def rectified_euler(d):
    d.start(ordered((1 - s_) * x0h, s_ * epsh))
    d.eq(ordered(xt, times(s_ - t, ordered(epsh, -x0h))), "$x_t = (1-t)\\hat x_0 + t\\hat\\epsilon$")
    d.numeric(library_euler_step, at=rectified_step_values(), expr=d.lines[0], model=NUMBERS, rtol=1e-9,
              label="sample_euler on RectifiedFlow() with the exact mixture $\\hat x_0$, the step from $t = 0.8$ to "
                    "$0.5$ at $x_t = 1.2$; here $\\hat x_0$ and $\\hat\\epsilon$ by quadrature")


z0, z1 = sp.symbols("z_0 z_1", real=True)


@derivation("On a straight path one Euler step is exact", models=[PathModel("any $z_0, z_1$, $s$, $t$")])
def straight_euler(d):
    line = ordered((1 - t) * z0, t * z1)
    d.start(ordered(line, times(s_ - t, ddt(line))))
    d.eq(ordered(line, times(s_ - t, ordered(z1, -z0))), "the velocity of a straight path is constant")
    d.eq(ordered((1 - s_) * z0, s_ * z1), "the same line at time $s$")

