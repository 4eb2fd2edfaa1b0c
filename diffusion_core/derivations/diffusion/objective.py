"""Derivations for docs/diffusion/training-objective.md."""
import sympy as sp

from diffusion_core.derivations import (KL, Check, E, GaussPdf, Model, Pdf, StepFailure, definition, derivation,
                                        ordered, times, uses)
from diffusion_core.derivations._notation import Notation, _as_tuple


class MarkovPdf(Pdf):
    """A forward-process density: a repeated condition counts once (q(x_1 | x_0, x_0) = q(x_1 | x_0))."""

    def __new__(cls, name, variables, given=()):
        return super().__new__(cls, name, variables, sp.Tuple(*dict.fromkeys(_as_tuple(given))))


class SqNorm(Notation):
    """``SqNorm(shown, value)``: printed as ||shown||^2, checked as ``value`` (a sum over coordinates)."""

    nargs = 2

    def unfold(self):
        return self.args[1]

    def _tex(self, printer):
        return rf"\left\lVert {printer._print(self.args[0])} \right\rVert^{{2}}"


def combine_exp(expr):
    """Merge products of exponentials and cancel inside each exponent."""
    expr = sp.powsimp(expr, combine="exp", deep=True)
    return expr.replace(lambda e: isinstance(e, sp.exp),
                        lambda e: sp.exp(sp.cancel(sp.together(sp.expand(e.args[0])))))


class Normalized(Check):
    """Both sides under every model, compared over a common denominator, then with the
    exponentials merged (ratios of Gaussian integrals need that)."""

    def verify(self, step, derivation):
        for model in derivation.models:
            diff = model.evaluate(step.lhs) - model.evaluate(step.rhs)
            if sp.expand(sp.together(diff)) == 0:
                continue
            for _ in range(3):
                diff = sp.simplify(combine_exp(diff), doit=False)
                if diff == 0:
                    break
            else:
                raise StepFailure(f"under model {model.label!r} the sides differ by {diff}")
        return ("both sides agree (over a common denominator, exponentials merged) under: "
                + "; ".join(m.label for m in derivation.models))


# ---- the bound, term by term (T is concrete in each model)
t, T = sp.symbols("t T", integer=True, positive=True)
xs = sp.IndexedBase("x", real=True)
x_0 = xs[0]


def q(x, *given):
    return MarkovPdf("q", x, given=given)


def p(x, *given):
    return Pdf("p_\\theta" if given else "p", x, given=given)


def steps(n):
    return Model(f"$T = {n}$, any densities", bind={T: n})


# ---- vectors in d dimensions, coordinate by coordinate
d_ = sp.Symbol("d", integer=True, positive=True)
i = sp.Symbol("i", integer=True, positive=True)
bold = {name: sp.Symbol(tex, real=True) for name, tex in [
    ("x0", r"\mathbf{x}_0"), ("x0h", r"\hat{\mathbf{x}}_0"), ("xt", r"\mathbf{x}_t"),
    ("xprev", r"\mathbf{x}_{t-1}"), ("eps", r"\boldsymbol{\epsilon}"),
    ("epsh", r"\hat{\boldsymbol{\epsilon}}"), ("eps_th", r"\boldsymbol{\epsilon}_\theta"),
    ("v", r"\mathbf{v}"), ("vh", r"\hat{\mathbf{v}}"), ("mut", r"\tilde{\boldsymbol{\mu}}_t"),
    ("muth", r"\boldsymbol{\mu}_\theta")]}
X0, X0h, Xt, Xprev, EPS, EPSh, EPSth, V, Vh, MUt, MUth = bold.values()
x0c, x0h, xt = (sp.IndexedBase(n, real=True) for n in ("x_0", r"\hat{x}_0", "x_t"))
e, eh, eth = (sp.IndexedBase(n, real=True) for n in (r"\epsilon", r"\hat{\epsilon}", r"\epsilon_\theta"))
v, vh = sp.IndexedBase("v", real=True), sp.IndexedBase(r"\hat{v}", real=True)
mut, muth = sp.IndexedBase(r"\tilde{\mu}", real=True), sp.IndexedBase(r"\mu_\theta", real=True)


def sqnorm(shown, coordinate):
    return SqNorm(shown, sp.Sum(coordinate**2, (i, 1, d_)))


beta, alpha, sigma, btilde = sp.symbols(r"\beta_t \alpha_t \sigma_t \tilde{\beta}_t", positive=True)
abar, abar_prev = sp.symbols(r"\bar{\alpha}_t \bar{\alpha}_{t-1}", positive=True)
a, a_prev, s, gamma = sp.symbols("a_t a_{t-1} s_t gamma", positive=True)
snr = sp.Symbol(r"\mathrm{SNR}_t", positive=True)

# The posterior q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) and the model N(mu_theta, sigma_t^2 I)
q_post = Pdf("q", Xprev, given=(Xt, X0))
p_model = Pdf("p_\\theta", Xprev, given=Xt)
qi, pi_ = GaussPdf(xs[i], mut[i], btilde), GaussPdf(xs[i], muth[i], sigma**2)


def gaussians(n):
    return Model(f"$d = {n}$", bind={d_: n, q_post: sp.Product(qi, (i, 1, d_)),
                                     p_model: sp.Product(pi_, (i, 1, d_))})


def forward(n):
    """x_t from x_0 and the noise; alpha_t and beta_t from the alpha-bars (written as squares)."""
    return Model(f"$d = {n}$; $\\mathbf{{x}}_t = \\sqrt{{\\bar\\alpha_t}}\\mathbf{{x}}_0 + "
                 f"\\sqrt{{1-\\bar\\alpha_t}}\\boldsymbol{{\\epsilon}}$, "
                 f"$\\alpha_t = \\bar\\alpha_t / \\bar\\alpha_{{t-1}} = 1 - \\beta_t$, "
                 f"with $\\bar\\alpha_t = a_t^2$, $\\bar\\alpha_{{t-1}} = a_{{t-1}}^2$",
                 bind={d_: n, xt[i]: a * x0c[i] + sp.sqrt(1 - a**2) * e[i], abar: a**2,
                       abar_prev: a_prev**2, alpha: a**2 / a_prev**2, beta: 1 - a**2 / a_prev**2})


CONVERT = Model("$\\mathbf{x}_t = a_t\\mathbf{x}_0 + s_t\\boldsymbol{\\epsilon}$, "
                "$\\mathbf{v} = a_t\\boldsymbol{\\epsilon} - s_t\\mathbf{x}_0$, $a_t^2 + s_t^2 = 1$ "
                "(coordinate by coordinate)",
                bind={Xt: a * X0 + s * EPS, V: a * EPS - s * X0, s: sp.sqrt(1 - a**2)})


def parameterizations(n):
    """Truth and prediction both satisfy x_t = a x_0 + s eps, with v = a eps - s x_0."""
    return Model(f"$d = {n}$; $\\mathbf{{x}}_t = a_t\\mathbf{{x}}_0 + s_t\\boldsymbol{{\\epsilon}}"
                 f" = a_t\\hat{{\\mathbf{{x}}}}_0 + s_t\\hat{{\\boldsymbol{{\\epsilon}}}}$, "
                 f"$\\mathbf{{v}} = a_t\\boldsymbol{{\\epsilon}} - s_t\\mathbf{{x}}_0$ (the same for "
                 f"the hats), $a_t^2 + s_t^2 = 1$, $\\mathrm{{SNR}}_t = a_t^2/s_t^2$",
                 bind={d_: n, e[i]: (xt[i] - a * x0c[i]) / s, eh[i]: (xt[i] - a * x0h[i]) / s,
                       v[i]: a * e[i] - s * x0c[i], vh[i]: a * eh[i] - s * x0h[i],
                       snr: a**2 / s**2, s: sp.sqrt(1 - a**2)})


# One schedule for the numeric checks: betas 0.1, 0.2, 0.3; index 2 is the paper's step t = 3.
BETAS = [sp.Rational(1, 10), sp.Rational(2, 10), sp.Rational(3, 10)]
AT_STEP3 = {a: sp.sqrt(sp.Rational(504, 1000)), a_prev: sp.sqrt(sp.Rational(72, 100))}
BTILDE3 = (1 - sp.Rational(72, 100)) / (1 - sp.Rational(504, 1000)) * sp.Rational(3, 10)
AT_INDEX2 = {a: sp.sqrt(sp.Rational(504, 1000)), s: sp.sqrt(sp.Rational(496, 1000))}
SNR_BY_INDEX = {0: sp.Rational(9), 2: sp.Rational(504, 496)}
NOISE, NOISE_TH = [0.3, -0.2, 1.1], [0.1, 0.4, 0.9]
MU_T, MU_TH = [0.5, -1.0, 0.25], [0.2, -0.7, 1.0]


def library_schedule():
    import torch
    from diffusion_core import NoiseSchedule
    return NoiseSchedule.from_betas([float(b) for b in BETAS], dtype=torch.float64)


def library_kl():
    """diffusion_core.vlb.normal_kl summed over 3 coordinates, variances beta~_3 and 0.04."""
    import math

    import torch
    from diffusion_core.vlb import normal_kl
    f64 = torch.float64
    kl = normal_kl(torch.tensor(MU_T, dtype=f64), torch.tensor(math.log(float(BTILDE3)), dtype=f64),
                   torch.tensor(MU_TH, dtype=f64), torch.tensor(math.log(0.04), dtype=f64))
    return kl.sum()


def library_vlb_term():
    """diffusion_core.vlb.vlb_term at index 2 (fixed_small variance, eps), from bits/dim to nats."""
    import math

    import torch
    from diffusion_core import Denoiser, Diffusion
    from diffusion_core.vlb import vlb_term
    diffusion = Diffusion(library_schedule(), "eps", "fixed_small")
    t = torch.tensor([2])                      # the schedule's index 2: the paper's step t = 3
    x0 = torch.tensor([[0.7, -0.4, 0.1]], dtype=torch.float64)
    x_t = diffusion.q_sample(x0, t, torch.tensor([NOISE], dtype=torch.float64))

    def network(x, step):                      # a "network" that predicts the noise NOISE_TH
        return torch.tensor([NOISE_TH], dtype=torch.float64)

    # the denoiser's time is its path's, the paper's step t = index + 1
    prediction = Denoiser(network, diffusion.path, "eps")(x_t, t + 1)
    return vlb_term(diffusion, prediction, x0, x_t, t) * 3 * math.log(2)


def library_from_v():
    """diffusion_core.targets.to_x0_eps for the v target at index 2 (alpha-bar = 0.504), x_t = 0.3, v = -1.2:
    the pair (x0_hat, eps_hat)."""
    import torch
    from diffusion_core import Diffusion, Target
    from diffusion_core.targets import to_x0_eps
    x_t = torch.tensor([[0.3]], dtype=torch.float64)
    # a_t = sqrt(alpha-bar) and s_t = sqrt(1 - alpha-bar) at the schedule's index 2
    coefficients = Diffusion(library_schedule()).coefficients(torch.tensor([2]), x_t)
    return to_x0_eps(Target.V, torch.tensor([[-1.2]], dtype=torch.float64), x_t, coefficients)


def library_min_snr(parameterization, index):
    """diffusion_core.losses.min_snr_weight with gamma = 5."""
    def call():
        import torch
        from diffusion_core import Diffusion
        from diffusion_core.losses import min_snr_weight
        return min_snr_weight(Diffusion(library_schedule(), parameterization), torch.tensor([index]), 5.0)
    return call


@derivation("The bound splits into one term per step (Ho et al. 2020, eq. 5)",
            models=[steps(2), steps(3), steps(5)])
def elbo_terms(d):
    d.start(-sp.log(p(xs[T])) - sp.Sum(sp.log(p(xs[t - 1], xs[t]) / q(xs[t], xs[t - 1], x_0)), (t, 1, T)))
    d.eq(ordered(-sp.log(p(xs[T])),
                 -sp.Sum(sp.log(p(xs[t - 1], xs[t]) / q(xs[t], xs[t - 1], x_0)), (t, 2, T)),
                 -sp.log(p(x_0, xs[1]) / q(xs[1], x_0))), "take the step $t = 1$ out of the sum")
    d.eq(ordered(-sp.log(p(xs[T])),
                 -sp.Sum(sp.log(times(p(xs[t - 1], xs[t]) / q(xs[t - 1], xs[t], x_0),
                                      q(xs[t - 1], x_0) / q(xs[t], x_0))), (t, 2, T)),
                 -sp.log(p(x_0, xs[1]) / q(xs[1], x_0))),
         "Bayes' rule for $q(x_t \\mid x_{t-1}, x_0)$")
    d.eq(ordered(-sp.log(p(xs[T])),
                 -sp.Sum(sp.log(p(xs[t - 1], xs[t]) / q(xs[t - 1], xs[t], x_0)), (t, 2, T)),
                 -sp.Sum(sp.log(q(xs[t - 1], x_0) / q(xs[t], x_0)), (t, 2, T)),
                 -sp.log(p(x_0, xs[1]) / q(xs[1], x_0))), "the log of a product is a sum")
    d.eq(ordered(-sp.log(p(xs[T])),
                 -sp.Sum(sp.log(p(xs[t - 1], xs[t]) / q(xs[t - 1], xs[t], x_0)), (t, 2, T)),
                 -sp.log(q(xs[1], x_0) / q(xs[T], x_0)),
                 -sp.log(p(x_0, xs[1]) / q(xs[1], x_0))), "the second sum telescopes")
    d.eq(ordered(sp.log(q(xs[T], x_0) / p(xs[T])),
                 sp.Sum(sp.log(q(xs[t - 1], xs[t], x_0) / p(xs[t - 1], xs[t])), (t, 2, T)),
                 -sp.log(p(x_0, xs[1]))), "collect; $q(x_1 \\mid x_0)$ cancels")


@derivation("A KL term between the two Gaussians of step t",
            models=[gaussians(1), gaussians(2), gaussians(3)])
def kl_term(d):
    d.start(KL(q_post, p_model))
    d.eq(sp.Sum(KL(qi, pi_), (i, 1, d_)), "both densities are products over coordinates")
    d.eq(sp.Sum(ordered(sp.log(sigma / sp.sqrt(btilde)), (btilde + (mut[i] - muth[i]) ** 2) / (2 * sigma**2),
                        -sp.Rational(1, 2)), (i, 1, d_)),
         "KL between two normal distributions",
         by=uses("background.kl:gaussian", subs={
             sp.Symbol("mu1", real=True): mut[i], sp.Symbol("mu2", real=True): muth[i],
             sp.Symbol("sigma1", positive=True): sp.sqrt(btilde), sp.Symbol("sigma2", positive=True): sigma}))
    d.eq(ordered(times(d_ / 2, ordered(btilde / sigma**2, -1, -sp.log(btilde / sigma**2))),
                 sqnorm(MUt - MUth, mut[i] - muth[i]) / (2 * sigma**2)),
         "collect the terms that do not depend on $i$")
    d.numeric(library_kl, model=gaussians(3), rtol=1e-12, label="diffusion_core.vlb.normal_kl, summed",
              at={btilde: BTILDE3, sigma: sp.Rational(1, 5),
                  **{mut[k + 1]: MU_T[k] for k in range(3)}, **{muth[k + 1]: MU_TH[k] for k in range(3)}})


@derivation("The mean error is a noise error (Ho et al. 2020, eq. 12)",
            models=[forward(1), forward(2), forward(3)])
def eps_weight(d):
    mu_tilde = (sp.sqrt(abar_prev) * beta / (1 - abar) * x0c[i]              # Ho et al. eq. 7
                + sp.sqrt(alpha) * (1 - abar_prev) / (1 - abar) * xt[i])

    def mu_eps(noise_):
        return (xt[i] - beta / sp.sqrt(1 - abar) * noise_) / sp.sqrt(alpha)

    scale = beta / (sp.sqrt(alpha) * sp.sqrt(1 - abar))
    d.start(sqnorm(MUt - MUth, mu_tilde - mu_eps(eth[i])) / (2 * sigma**2))
    d.eq(sqnorm(times(scale, ordered(EPSth, -EPS)), scale * (eth[i] - e[i])) / (2 * sigma**2),
         "$\\tilde{\\boldsymbol{\\mu}}_t$ with $\\mathbf{x}_0$ written through $\\mathbf{x}_t$ and "
         "$\\boldsymbol{\\epsilon}$, $\\boldsymbol{\\mu}_\\theta$ in the same form: "
         "$\\mathbf{x}_t$ cancels", by=Normalized())
    d.eq(beta**2 / (2 * sigma**2 * alpha * (1 - abar)) * sqnorm(EPS - EPSth, e[i] - eth[i]),
         "take the factor out of the norm")
    d.numeric(library_vlb_term, model=forward(3), rtol=1e-9,
              label="diffusion_core.vlb.vlb_term (fixed_small variance), converted to nats",
              at={**AT_STEP3, sigma: sp.sqrt(BTILDE3), **{e[k + 1]: NOISE[k] for k in range(3)},
                  **{eth[k + 1]: NOISE_TH[k] for k in range(3)}})


@derivation("Clean data from v", models=[CONVERT])
def x0_from_v(d):
    d.start(ordered(times(a, Xt), -times(s, V)))
    d.eq(ordered(times(a, ordered(times(a, X0), times(s, EPS))),
                 -times(s, ordered(times(a, EPS), -times(s, X0)))),
         "definitions of $\\mathbf{x}_t$ and $\\mathbf{v}$", by=definition("of $\\mathbf{x}_t$ and $\\mathbf{v}$"))
    d.eq(times(ordered(a**2, s**2), X0), "the $\\boldsymbol{\\epsilon}$ terms cancel")
    d.eq(X0, "$a_t^2 + s_t^2 = 1$")
    d.numeric(lambda: library_from_v()[0], expr=a * Xt - s * V, model=Model(), rtol=1e-12,
              label="$\\hat x_0$ of diffusion_core.targets.to_x0_eps for the $v$ target",
              at={**AT_INDEX2, Xt: sp.Rational(3, 10), V: -sp.Rational(12, 10)})


@derivation("Noise from v", models=[CONVERT])
def eps_from_v(d):
    d.start(ordered(times(s, Xt), times(a, V)))
    d.eq(ordered(times(s, ordered(times(a, X0), times(s, EPS))),
                 times(a, ordered(times(a, EPS), -times(s, X0)))),
         "definitions of $\\mathbf{x}_t$ and $\\mathbf{v}$", by=definition("of $\\mathbf{x}_t$ and $\\mathbf{v}$"))
    d.eq(times(ordered(a**2, s**2), EPS), "the $\\mathbf{x}_0$ terms cancel")
    d.eq(EPS, "$a_t^2 + s_t^2 = 1$")
    d.numeric(lambda: library_from_v()[1], expr=s * Xt + a * V, model=Model(), rtol=1e-12,
              label="$\\hat\\epsilon$ of diffusion_core.targets.to_x0_eps for the $v$ target",
              at={**AT_INDEX2, Xt: sp.Rational(3, 10), V: -sp.Rational(12, 10)})


@derivation("A noise error is an error on the clean data, times the SNR",
            models=[parameterizations(1), parameterizations(2), parameterizations(3)])
def eps_error(d):
    d.start(sqnorm(EPS - EPSh, e[i] - eh[i]))
    d.eq(sqnorm(ordered(ordered(Xt, -times(a, X0)) / s, -ordered(Xt, -times(a, X0h)) / s),
                (xt[i] - a * x0c[i]) / s - (xt[i] - a * x0h[i]) / s),
         "solve $\\mathbf{x}_t = a_t\\mathbf{x}_0 + s_t\\boldsymbol{\\epsilon}$ for the noise")
    d.eq(a**2 / s**2 * sqnorm(X0 - X0h, x0c[i] - x0h[i]), "$\\mathbf{x}_t$ cancels")
    d.eq(snr * sqnorm(X0 - X0h, x0c[i] - x0h[i]), "$\\mathrm{SNR}_t = a_t^2 / s_t^2$")


@derivation("A v error is an error on the clean data, times SNR + 1",
            models=[parameterizations(1), parameterizations(2), parameterizations(3)])
def v_error(d):
    d.start(sqnorm(V - Vh, v[i] - vh[i]))
    d.eq(sqnorm(ordered(ordered(times(a, Xt), -X0) / s, -ordered(times(a, Xt), -X0h) / s),
                (a * xt[i] - x0c[i]) / s - (a * xt[i] - x0h[i]) / s),
         "$\\mathbf{v} = a_t\\boldsymbol{\\epsilon} - s_t\\mathbf{x}_0 "
         "= (a_t\\mathbf{x}_t - \\mathbf{x}_0)/s_t$")
    d.eq(sqnorm(X0 - X0h, x0c[i] - x0h[i]) / s**2, "$\\mathbf{x}_t$ cancels")
    d.eq((snr + 1) * sqnorm(X0 - X0h, x0c[i] - x0h[i]), "$1/s_t^2 = (a_t^2 + s_t^2)/s_t^2$")


@derivation("Min-SNR-gamma weights for the three targets (Hang et al. 2023)",
            models=[parameterizations(1), parameterizations(2), parameterizations(3)])
def min_snr(d):
    d.start(sp.Min(snr, gamma) * sqnorm(X0 - X0h, x0c[i] - x0h[i]))
    d.eq(sp.Min(snr, gamma) / snr * sqnorm(EPS - EPSh, e[i] - eh[i]), "the noise error above",
         by=Normalized())
    d.eq(sp.Min(snr, gamma) / (snr + 1) * sqnorm(V - Vh, v[i] - vh[i]), "the v error above",
         by=Normalized())
    for target, index, weight in [("eps", 0, sp.Min(snr, gamma) / snr),
                                  ("eps", 2, sp.Min(snr, gamma) / snr),
                                  ("v", 0, sp.Min(snr, gamma) / (snr + 1)),
                                  ("x0", 2, sp.Min(snr, gamma))]:
        d.numeric(library_min_snr(target, index), expr=weight, model=Model(), rtol=1e-6,
                  label=f"diffusion_core.losses.min_snr_weight for {target} at index {index}",
                  at={gamma: 5, snr: SNR_BY_INDEX[index]})


@derivation("Turning a forward step around with Bayes' rule",
            models=[Model("any joint density $q$ of $x_0, x_{t-1}, x_t$")])
def bayes_step(d):
    d.start(Pdf("q", xs[t], given=(xs[t - 1], x_0)))
    d.eq(Pdf("q", xs[t - 1], given=(xs[t], x_0)) * Pdf("q", xs[t], given=x_0)
         / Pdf("q", xs[t - 1], given=x_0),
         "Bayes' rule, with $x_0$ in every condition")


# ---- the expectation that turns the log-ratios into KL terms, with T = 3 written out
x1, x2, x3 = xs[1], xs[2], xs[3]


@derivation("Averaging over the forward chain gives KL terms (Ho et al. 2020, eq. 5), T = 3",
            models=[Model("$T = 3$, any densities")])
def kl_terms(d):
    chain = MarkovPdf("q", (x1, x2, x3), given=(x_0,))
    d.start(E(ordered(sp.log(q(x3, x_0) / p(x3)), sp.log(q(x2, x3, x_0) / p(x2, x3)),
                      sp.log(q(x1, x2, x_0) / p(x1, x2)), -sp.log(p(x_0, x1))), chain))
    d.eq(ordered(KL(q(x3, x_0), p(x3)), E(KL(q(x2, x3, x_0), p(x2, x3)), q(x3, x_0)),
                 E(KL(q(x1, x2, x_0), p(x1, x2)), q(x2, x_0)), -E(sp.log(p(x_0, x1)), q(x1, x_0))),
         "each term involves at most two of $x_1, x_2, x_3$: integrate the others out of "
         "$q(x_{1:3} \\mid x_0)$, then average the inner variable given the outer one")
