"""Derivations for docs/score/guidance.md."""
import sympy as sp

from diffusion_core.derivations import GaussPdf, Model, Pdf, derivation, ordered, times
from diffusion_core.derivations._evaluate import _canonical_pdfs, conditional_to_joint

x = sp.Symbol("x", real=True)                      # the noisy sample x_t (one coordinate)
c = sp.Symbol("c")                                 # a class label
w = sp.Symbol("w", nonnegative=True)               # Ho & Salimans' guidance weight
s = sp.Symbol("s", positive=True)                  # the library's scale (diffusers' guidance_scale)
sigma, a = sp.symbols("sigma_t alpha_t", positive=True)
eps_c, eps_u = sp.symbols("epsilon_c epsilon_u", real=True)   # noise predictions with / without c

p_x_c, p_c_x, p_x, p_c = Pdf("p_t", x, given=c), Pdf("p_t", c, given=x), Pdf("p_t", x), Pdf("p_t", c)


class grad_log(sp.Function):
    """nabla_x log(density), displayed as such; the models differentiate."""
    nargs = 1

    def _latex(self, printer, exp=None):
        inner = printer._print(sp.log(self.args[0]))
        return rf"\nabla_x {inner}" if exp is None else rf"\left(\nabla_x {inner}\right)^{{{exp}}}"


class Scores(Model):
    """Abstract densities of one joint law p_t(x, c): conditionals become joint / marginal (the definition,
    so Bayes' rule holds), logs are split, and d/dx of an abstract density stays an opaque atom (only its
    identity matters). Normal densities are written out before differentiating."""

    def evaluate(self, expr):
        e = sp.sympify(expr).replace(lambda n: isinstance(n, sp.UnevaluatedExpr), lambda n: n.args[0])
        for _ in range(4):                 # bindings may refer to bound symbols
            e = e.xreplace(self.subs)
        e = e.replace(lambda n: isinstance(n, grad_log), lambda n: sp.Derivative(sp.log(n.args[0]), x))
        e = e.replace(lambda n: isinstance(n, GaussPdf), lambda n: n.unfold())
        e = _canonical_pdfs(conditional_to_joint(e))
        e = sp.expand_log(e, force=True)
        atoms = {}

        def grad(n):
            body, (var, count) = n.args[0], n.variable_count[0]
            if isinstance(body, Pdf):
                return atoms.setdefault(n, sp.Symbol(f"d{count}_{var}[{body}]", real=True))
            return n
        e = e.replace(lambda n: isinstance(n, sp.Derivative), lambda n: n.doit())
        e = e.replace(lambda n: isinstance(n, sp.Derivative), grad)
        return sp.expand(e.xreplace(self.facts)) if self.facts else e


ANY = Scores("any joint law $p_t(x, c)$ with positive densities (abstract)")
# The noise predictions of the optimal networks are the scaled scores (Tweedie; see the Scores page).
EPS = Scores("any joint law $p_t(x, c)$; $\\epsilon(x, c) = -\\sigma_t \\nabla_x \\log p_t(x \\mid c)$, "
             "$\\epsilon(x) = -\\sigma_t \\nabla_x \\log p_t(x)$; $s = 1 + w$",
             bind={eps_c: -sigma * grad_log(p_x_c), eps_u: -sigma * grad_log(p_x),
                   s: 1 + w})


# --- two classes in 1-D: p(c) = pi_c, p(x_0 | c) = N(mu_c, sd^2); x_t = alpha_t x_0 + sigma_t eps
pi0, sd = sp.symbols("pi_0 tau", positive=True)
mu0, mu1 = sp.symbols("mu_0 mu_1", real=True)
v, r0, r1 = sp.symbols("v r_0 r_1", positive=True)
N0, N1 = GaussPdf(x, a * mu0, v), GaussPdf(x, a * mu1, v)
eps_1 = sp.Symbol("epsilon_1", real=True)
MIXTURE = Scores(
    "two classes, $p(c) = \\pi_c$ ($\\pi_1 = 1 - \\pi_0$), $p(x_0 \\mid c) = \\mathcal{N}(\\mu_c, \\tau^2)$, so "
    "$p_t(x \\mid c) = \\mathcal{N}(x; \\alpha_t\\mu_c, v)$ with $v = \\alpha_t^2 \\tau^2 + \\sigma_t^2$; "
    "$r_c = \\pi_c \\mathcal{N}(x; \\alpha_t\\mu_c, v)/p_t(x) = p_t(c \\mid x)$; "
    "$\\epsilon_1 = -\\sigma_t \\nabla_x \\log \\mathcal{N}(x; \\alpha_t\\mu_1, v)$, "
    "$\\epsilon_u = -\\sigma_t \\nabla_x \\log\\big(\\pi_0 \\mathcal{N}(x; \\alpha_t\\mu_0, v) + "
    "\\pi_1 \\mathcal{N}(x; \\alpha_t\\mu_1, v)\\big)$",
    bind={v: a**2 * sd**2 + sigma**2, eps_1: -sigma * grad_log(N1),
          eps_u: -sigma * grad_log(pi0 * N0 + (1 - pi0) * N1),
          r0: pi0 * N0 / (pi0 * N0 + (1 - pi0) * N1), r1: (1 - pi0) * N1 / (pi0 * N0 + (1 - pi0) * N1)})


# --- centred Gaussians: p(x_0 | c) = N(0, v_c), p(x_0) = N(0, v_u); tilting and noising both stay Gaussian
v_c, v_u = sp.symbols("v_c v_u", positive=True)


def tilted_variance(vc, vu):
    """Variance of p(x | c)^s p(x)^(1-s) for centred normal densities (precisions add with weights s, 1 - s)."""
    return 1 / (s / vc + (1 - s) / vu)


class ExactMixtureNet:
    """The exact noise "network" of the two-class mixture, as ClassifierFreeGuidance calls it:
    ``net(x_t, t, labels)``, label 2 the null label (the whole mixture). ``t`` indexes ``schedule``. Its
    predictions are the library's exact mixture predictions (``diffusion_core.mixture``), E[eps | x_t] for one
    class's component or for the whole mixture, not the formulas of this page."""

    def __init__(self, schedule, pi=(0.4, 0.6), mu=(-0.5, 0.5), sd_=0.5):
        import types

        import torch
        from diffusion_core.mixture import GaussianMixture

        self.config = types.SimpleNamespace(num_classes=2)
        self.ab = schedule.alphas_cumprod.to(torch.float64)
        self.classes = [GaussianMixture([1.0], [m], [sd_]) for m in mu]
        self.whole = GaussianMixture(pi, mu, [sd_] * len(mu))

    def __call__(self, x_t, t, labels):
        import torch

        ab_ = self.ab[t].reshape(-1, 1)
        a_, sig = ab_.sqrt(), (1 - ab_).sqrt()
        preds = [c.eps(x_t, a_, sig) for c in self.classes] + [self.whole.eps(x_t, a_, sig)]
        return torch.stack(preds, -1).gather(-1, labels.reshape(-1, 1, 1).expand(*x_t.shape, 1)).squeeze(-1)


def library_guided_eps(scale, x_value, index):
    """ClassifierFreeGuidance(net, scale)'s eps for class 1 at x_t = x_value, cosine schedule (T = 1000)."""
    import torch
    from diffusion_core import ClassifierFreeGuidance, Denoiser, DiscreteVP, NoiseSchedule

    schedule = NoiseSchedule.cosine(1000, dtype=torch.float64)
    guided = ClassifierFreeGuidance(Denoiser(ExactMixtureNet(schedule), DiscreteVP(schedule)), scale)
    # a DiscreteVP's time is the paper's step, the schedule's index + 1; the network gets the index
    pred = guided(torch.tensor([[x_value]], dtype=torch.float64), torch.tensor([index + 1]),
                  labels=torch.tensor([1]))
    return pred.eps


def cosine_at(index):
    import torch
    from diffusion_core import NoiseSchedule

    ab_ = float(NoiseSchedule.cosine(1000, dtype=torch.float64).alphas_cumprod[index])
    return {a: sp.sqrt(sp.Float(ab_, 30)), sigma: sp.sqrt(1 - sp.Float(ab_, 30))}


@derivation("Bayes' rule for scores", models=[ANY])
def bayes_scores(d):
    d.start(grad_log(p_x_c))
    d.eq(grad_log(p_c_x * p_x / p_c), "Bayes' rule")
    d.eq(ordered(grad_log(p_x), grad_log(p_c_x)), "the log of a product; $p_t(c)$ does not depend on $x$")


@derivation("The guided score, and the implicit classifier", models=[ANY])
def guided_score(d):
    d.start(grad_log(p_x * p_c_x ** (1 + w)))
    d.eq(ordered(grad_log(p_x), (1 + w) * grad_log(p_c_x)), "the log of a product")
    d.eq(ordered(grad_log(p_x_c), w * grad_log(p_c_x)), "Bayes' rule for scores")
    d.eq(ordered((1 + w) * grad_log(p_x_c), -w * grad_log(p_x)),
         "the implicit classifier: $\\nabla_x \\log p_t(c \\mid x) = \\nabla_x \\log p_t(x \\mid c) - "
         "\\nabla_x \\log p_t(x)$")


@derivation("Classifier-free guidance in noise predictions", models=[EPS])
def cfg_eps(d):
    d.start(ordered(eps_u, s * ordered(eps_c, -eps_u)))
    d.eq(ordered((1 + w) * eps_c, -w * eps_u), "$s = 1 + w$")
    d.eq(-sigma * ordered((1 + w) * grad_log(p_x_c), -w * grad_log(p_x)),
         "$\\epsilon = -\\sigma_t \\nabla_x \\log p_t$, with and without $c$")
    d.eq(-sigma * grad_log(p_x * p_c_x**s), "the guided score above")


@derivation("Two Gaussian classes: the guided noise prediction in closed form", models=[MIXTURE])
def mixture_guided_eps(d):
    d.start(ordered((1 + w) * eps_1, -w * eps_u))
    d.eq(ordered(times(1 + w, sigma * (x - a * mu1) / v),
                 -times(w, sigma * ordered(r0 * (x - a * mu0), r1 * (x - a * mu1)) / v)),
         "differentiate the logs: $\\epsilon_1$, and $\\epsilon_u$ weighted by $r_0, r_1$")
    d.eq(ordered(sigma * (x - a * mu1) / v, times(w, sigma * a * r0 * (mu0 - mu1) / v)), "$r_0 + r_1 = 1$")
    d.numeric(lambda: library_guided_eps(3.0, 0.2, 500),
              at={**cosine_at(500), x: sp.Rational(1, 5), w: 2, pi0: sp.Rational(2, 5), mu0: -sp.Rational(1, 2),
                  mu1: sp.Rational(1, 2), sd: sp.Rational(1, 2)}, rtol=1e-12,
              label="ClassifierFreeGuidance(exact mixture network, scale=3), class 1, $x_t = 0.2$, "
                    "cosine schedule index 500")


@derivation("Centred Gaussians: the guided variance is not the noised tilted variance", models=[Model()])
def gaussian_not_tilted(d):
    d.start(ordered(tilted_variance(a**2 * v_c + sigma**2, a**2 * v_u + sigma**2),
                    -ordered(a**2 * tilted_variance(v_c, v_u), sigma**2)))
    d.eq(-a**2 * sigma**2 * s * (s - 1) * (v_u - v_c) ** 2
         / ((s * v_u - (s - 1) * v_c) * (a**2 * (s * v_u - (s - 1) * v_c) + sigma**2)),
         "common denominator; factor")
