"""Derivations for docs/flow/edm.md: EDM's preconditioning (Karras et al. 2022, appendix B.6), its loss weight,
its sigma grid and its training density.

In EDM's variables the noisy input is x = y + n, y the data (mean m, variance sigma_d^2), n = sigma eps; on any
Gaussian path x = x_t/alpha_t and sigma = sigma_t/alpha_t. D(x; sigma) = c_skip x + c_out F(c_in x; c_noise).
"""
import sympy as sp

from diffusion_core.derivations import (E, Check, GaussPdf, Model, Pr, StepFailure, Var, are_equal, derivation,
                                        ordered, random_variables, times, under)

Y, eps = random_variables("y epsilon")
sigma, sd = sp.symbols(r"sigma sigma_d", positive=True)
m = sp.Symbol("m", real=True)
c_skip, c_out, lam = sp.symbols(r"c_\mathrm{skip} c_\mathrm{out} lambda(sigma)", real=True)
y, e, F = sp.symbols(r"y epsilon F", real=True)

DATA = Model("$y$ and $\\epsilon$ independent; $\\mathbb{E}[y] = m$, $\\operatorname{Var}[y] = \\sigma_d^2$ (any "
             "distribution), $\\mathbb{E}[\\epsilon] = 0$, $\\mathbb{E}[\\epsilon^2] = 1$",
             independent=[(Y, eps)], facts={E(Y): m, E(Y**2): sd**2 + m**2, E(eps): 0, E(eps**2): 1})

C_SKIP = sd**2 / (sigma**2 + sd**2)                     # the closed forms, Karras et al. 2022, table 1
C_OUT = sigma * sd / sp.sqrt(sigma**2 + sd**2)
C_IN = 1 / sp.sqrt(sigma**2 + sd**2)
LAMBDA = (sigma**2 + sd**2) / (sigma * sd) ** 2
SIGMA, SIGMA_D = sp.Rational(13, 10), sp.Rational(1, 2)   # where the ties evaluate them


def library_coefficients():
    """c_in, c_skip and c_out as diffusion_core.denoiser.Denoiser(target="edm") applies them on VarianceExploding()
    at sigma = 1.3: c_in is what the network receives for x = 1, c_noise the time it receives, c_skip is D at x = 1 when the network outputs 0,
    c_out is D at x = 0 when it outputs 1."""
    import torch
    from diffusion_core import Denoiser, VarianceExploding
    seen = {}

    def network(x_in, t_in):
        seen["input"], seen["time"] = x_in.clone(), t_in.clone()
        return torch.full_like(x_in, seen["output"])
    denoiser = Denoiser(network, VarianceExploding(), "edm", sigma_data=0.5)
    t = torch.tensor([1.3], dtype=torch.float64)

    def call(x_value, output):
        seen["output"] = output
        return denoiser(torch.tensor([[x_value]], dtype=torch.float64), t).x0.item()
    c_skip_value = call(1.0, 0.0)
    c_in_value, c_noise_value = seen["input"].item(), seen["time"].item()
    return {"c_in": c_in_value, "c_noise": c_noise_value, "c_skip": c_skip_value, "c_out": call(0.0, 1.0)}


def library_edm_loss():
    """diffusion_core.losses.denoising_loss with weighting.edm(0.5) for Denoiser(target="edm") on VarianceExploding()
    at sigma = 1.3, data y = 0.3, noise -0.8, and a network that outputs F = 0.25."""
    import torch
    from diffusion_core import Denoiser, VarianceExploding
    from diffusion_core.losses import denoising_loss
    from diffusion_core.weighting import edm
    f64 = torch.float64
    denoiser = Denoiser(lambda x_in, t_in: torch.full_like(x_in, 0.25), VarianceExploding(), "edm", sigma_data=0.5)
    return denoising_loss(denoiser, torch.tensor([[0.3]], dtype=f64), torch.tensor([1.3], dtype=f64),
                          torch.tensor([[-0.8]], dtype=f64), weighting=edm(0.5))


@derivation("The input scaling c_in gives the network unit variance", models=[DATA])
def input_scaling(d):
    d.start(Var(times(C_IN, ordered(Y, times(sigma, eps)))))
    d.eq(times(1 / (sigma**2 + sd**2), ordered(Var(Y), sigma**2 * Var(eps))), "$y$ and $\\epsilon$ independent")
    d.eq(times(1 / (sigma**2 + sd**2), ordered(sd**2, sigma**2)), "$\\operatorname{Var}[y] = \\sigma_d^2$, "
         "$\\operatorname{Var}[\\epsilon] = 1$")
    d.eq(1, "the fraction cancels")
    at = {sigma: SIGMA, sd: SIGMA_D}
    d.numeric(lambda: library_coefficients()["c_in"], at=at, expr=C_IN, rtol=1e-12,
              label="$c_\\mathrm{in}$: what Denoiser(target=\"edm\") feeds its network for $x = 1$ at "
                    "$\\sigma = 1.3$, $\\sigma_d = 0.5$")
    d.numeric(lambda: library_coefficients()["c_noise"], at=at, expr=sp.log(sigma) / 4, rtol=1e-12,
              label="$c_\\mathrm{noise} = \\tfrac14\\ln\\sigma$: the time input the same network receives")


@derivation("The variance of the network's training target", models=[DATA])
def target_variance(d):
    target = ordered(Y, -times(c_skip, ordered(Y, times(sigma, eps)))) / c_out
    d.start(Var(target))
    d.eq(times(1 / c_out**2, ordered((1 - c_skip) ** 2 * Var(Y), c_skip**2 * sigma**2 * Var(eps))),
         "collect $y$; $y$ and $\\epsilon$ independent")
    d.eq(times(1 / c_out**2, ordered((1 - c_skip) ** 2 * sd**2, c_skip**2 * sigma**2)),
         "$\\operatorname{Var}[y] = \\sigma_d^2$, $\\operatorname{Var}[\\epsilon] = 1$")


@derivation("The skip scaling that makes c_out smallest", models=[Model("any real $c_\\mathrm{skip}$; "
                                                                        "$\\sigma, \\sigma_d > 0$")])
def skip_scaling(d):
    d.start(ordered((1 - c_skip) ** 2 * sd**2, c_skip**2 * sigma**2))
    d.eq(ordered(times(sigma**2 + sd**2, (c_skip - C_SKIP) ** 2), sigma**2 * sd**2 / (sigma**2 + sd**2)),
         "complete the square in $c_\\mathrm{skip}$")
    d.ge(sigma**2 * sd**2 / (sigma**2 + sd**2), "a square is never negative; equal at "
         "$c_\\mathrm{skip} = \\sigma_d^2/(\\sigma^2 + \\sigma_d^2)$")
    for name, closed in (("c_skip", C_SKIP), ("c_out", C_OUT)):
        d.numeric(lambda name=name: library_coefficients()[name], at={sigma: SIGMA, sd: SIGMA_D}, expr=closed,
                  rtol=1e-12, label=f"$c_\\mathrm{{{name[2:]}}}$ as Denoiser(target=\"edm\") applies it at "
                                    "$\\sigma = 1.3$, $\\sigma_d = 0.5$")


EDM = Model("EDM's $c_\\mathrm{skip}$, $c_\\mathrm{out}$ and $\\lambda(\\sigma) = (\\sigma^2 + \\sigma_d^2)/"
            "(\\sigma\\sigma_d)^2$", bind={c_skip: C_SKIP, c_out: C_OUT, lam: LAMBDA})


@derivation("With EDM's coefficients the target has unit variance", models=[DATA])
def unit_target(d):
    target = ordered(Y, -times(C_SKIP, ordered(Y, times(sigma, eps)))) / C_OUT
    d.start(Var(target))
    d.eq(times(1 / C_OUT**2, ordered((1 - C_SKIP) ** 2 * sd**2, C_SKIP**2 * sigma**2)),
         "the variance of the target, above")
    d.eq(times((sigma**2 + sd**2) / (sigma**2 * sd**2), sigma**2 * sd**2 / (sigma**2 + sd**2)),
         "the minimum, above")
    d.eq(1, "the fractions cancel")


@derivation("EDM's loss weight is one on the network's output", models=[Model("any $\\lambda, c_\\mathrm{skip}, "
                                                                              "c_\\mathrm{out} \\ne 0$"), EDM])
def loss_weight(d):
    x = ordered(y, times(sigma, e))
    d.start(lam * ordered(c_skip * x, c_out * F, -y) ** 2)
    d.eq(times(lam * c_out**2, ordered(F, -ordered(y, -c_skip * x) / c_out) ** 2), "take $c_\\mathrm{out}$ out")
    d.eq(ordered(F, -ordered(y, -c_skip * x) / c_out) ** 2, "$\\lambda(\\sigma)\\,c_\\mathrm{out}^2 = 1$",
         by=under(EDM))
    d.numeric(library_edm_loss, at={sigma: SIGMA, sd: SIGMA_D, y: sp.Rational(3, 10), e: -sp.Rational(8, 10),
                                    F: sp.Rational(1, 4)}, expr=d.lines[0], model=EDM, rtol=1e-6,
              label="diffusion_core.losses.denoising_loss(weighting=edm(0.5)) for Denoiser(target=\"edm\") on "
                    "VarianceExploding() at $\\sigma = 1.3$, $y = 0.3$, $\\epsilon = -0.8$, network output "
                    "$F = 0.25$ (its distance is computed in float32)")


D_hat = sp.Symbol("D", real=True)


def library_edm_weight():
    """diffusion_core.weighting.edm(0.5), a weight on the noise error, at lambda = log(1/1.3^2) (sigma = 1.3)."""
    import math

    import torch
    from diffusion_core.weighting import edm
    return edm(0.5)(torch.tensor([-2 * math.log(1.3)], dtype=torch.float64))


@derivation("The same weight on the noise error", models=[Model("$x = y + \\sigma\\epsilon$, "
                                                                "$\\hat\\epsilon = (x - D)/\\sigma$")])
def weight_on_noise(d):
    x = ordered(y, times(sigma, e))
    d.start(times(1 + sigma**2 / sd**2, ordered(ordered(x, -D_hat) / sigma, -e) ** 2))
    d.eq(times(1 + sigma**2 / sd**2, ordered(y, -D_hat) ** 2 / sigma**2), "the noise cancels")
    d.eq(times(LAMBDA, ordered(D_hat, -y) ** 2), "$(1 + \\sigma^2/\\sigma_d^2)/\\sigma^2 = \\lambda(\\sigma)$")
    d.numeric(library_edm_weight, at={sigma: SIGMA, sd: SIGMA_D}, expr=1 + sigma**2 / sd**2, rtol=1e-12,
              label="diffusion_core.weighting.edm(0.5) at $\\lambda = -2\\ln 1.3$, the log-SNR of "
                    "$\\sigma = 1.3$")


rho, s_min, s_max, f = sp.symbols(r"rho sigma_min sigma_max f", positive=True)
N_STEPS, INDEX = 18, 5


class LimitTaken(Check):
    """The step is ``Limit(...) = value``: SymPy evaluates the limit and compares."""

    def verify(self, step, derivation):
        if not isinstance(step.lhs, sp.Limit):
            raise StepFailure("the left side is not a limit")
        value = step.lhs.doit()
        if isinstance(value, sp.Limit) or not are_equal(value, step.rhs):
            raise StepFailure(f"SymPy's limit is {value}, not {step.rhs}")
        return f"SymPy's limit: ${sp.latex(value)}$"


def library_grid(spacing):
    """EDM_SIGMA_MAX = 80 down to EDM_SIGMA_MIN = 0.002 in 18 steps on VarianceExploding() (t is sigma): the
    entry at index 5."""
    from diffusion_core import VarianceExploding
    from diffusion_core.grids import time_grid
    return time_grid(VarianceExploding(), N_STEPS, spacing)[INDEX]


@derivation("Large rho gives steps even in log sigma", models=[Model("$\\rho, \\sigma_{\\min}, \\sigma_{\\max} > 0$, "
                                                                       "$0 \\le f \\le 1$")])
def grid_limit(d):
    root = ordered(s_max ** (1 / rho), times(f, ordered(s_min ** (1 / rho), -s_max ** (1 / rho))))
    d.start(sp.Limit(root**rho, rho, sp.oo))
    d.eq(s_max ** (1 - f) * s_min**f, "$\\rho \\to \\infty$", by=LimitTaken())
    at = {s_max: 80, s_min: sp.Rational(2, 1000), f: sp.Rational(INDEX, N_STEPS - 1)}
    d.numeric(lambda: library_grid("karras"), at={**at, rho: 7}, expr=root ** rho, rtol=1e-10,
              label="time_grid(VarianceExploding(), 18, \"karras\")[5]: $\\sigma_5$ with $\\rho = 7$")
    d.numeric(lambda: library_grid("log-snr"), at=at, expr=d.lines[-1], rtol=1e-10,
              label="time_grid(VarianceExploding(), 18, \"log-snr\")[5]: the limit's $\\sigma_5$")


P_mean = sp.Symbol(r"P_\mathrm{mean}", real=True)
P_std, s = sp.symbols(r"P_\mathrm{std} s", positive=True)
u = sp.Symbol("u", real=True)
PM, PS = -sp.Rational(6, 5), sp.Rational(6, 5)          # Karras et al. 2022, table 1


def library_fraction_below_sigma_data():
    """The share of 400,000 draws of time_sampling.LogNormalSigma() on VarianceExploding() (t is sigma) at or below
    sigma_d = 0.5; seeded."""
    import torch
    from diffusion_core import VarianceExploding
    from diffusion_core.time_sampling import LogNormalSigma
    t = LogNormalSigma()(VarianceExploding(), 400_000, generator=torch.Generator().manual_seed(0))
    return (t <= 0.5).double().mean()


@derivation("The density of sigma when ln sigma is normal",
            models=[Model("$\\epsilon \\sim \\mathcal{N}(0, 1)$, $P_\\mathrm{std} > 0$; $\\Pr$ from its "
                          "distribution function")])
def training_density(d):
    d.start(sp.Derivative(Pr(ordered(P_mean, P_std * eps), sp.log(s), eps), s))
    d.eq(sp.Derivative(sp.Integral(GaussPdf(u, 0, 1), (u, -sp.oo, (sp.log(s) - P_mean) / P_std)), s),
         "subtract $P_\\mathrm{mean}$, divide by $P_\\mathrm{std} > 0$; $\\epsilon \\sim \\mathcal{N}(0, 1)$")
    d.eq(GaussPdf((sp.log(s) - P_mean) / P_std, 0, 1) / (P_std * s), "fundamental theorem of calculus, chain rule")
    d.eq(GaussPdf(sp.log(s), P_mean, P_std**2) / s, "write out both densities")
    cdf = (1 + sp.erf((sp.log(s) - P_mean) / (P_std * sp.sqrt(2)))) / 2
    d.numeric(library_fraction_below_sigma_data, at={P_mean: PM, P_std: PS, s: sp.Rational(1, 2)}, expr=cdf,
              atol=0.004, rtol=0,
              label="share of 400,000 seeded draws of time_sampling.LogNormalSigma() at or below $\\sigma = 0.5$ "
                    "against $\\Phi((\\ln 0.5 - P_\\mathrm{mean})/P_\\mathrm{std})$ (standard error 0.0008)")


e1, e2 = random_variables("epsilon_1 epsilon_2")
gamma = sp.Symbol("gamma", nonnegative=True)
sigma_hat = sigma * (1 + gamma)
CHURN = Model("$y, \\epsilon_1, \\epsilon_2$ independent; $\\operatorname{Var}[y] = \\sigma_d^2$, "
              "$\\epsilon_1, \\epsilon_2$ mean 0, variance 1; $\\gamma \\ge 0$",
              independent=[(Y, e1, e2)],
              facts={E(Y): m, E(Y**2): sd**2 + m**2, E(e1): 0, E(e2): 0, E(e1**2): 1, E(e2**2): 1})
CHURN_AT = {sigma: 80, gamma: sp.Rational(1, 5)}


def library_churn_variance():
    """The variance of the first state the network sees in diffusion_core.sample_edm on VarianceExploding() (10
    Karras steps from sigma = 80, s_churn = 2, so gamma = 0.2), started from x = 0 (no data, no noise: what the
    network sees is the churn's noise alone), over 200,000 seeded values."""
    import torch
    from diffusion_core import Denoiser, VarianceExploding, sample_edm, time_grid

    seen = []

    def network(x_in, t_in):
        seen.append(x_in.clone())
        return torch.zeros_like(x_in)
    path = VarianceExploding()
    x = torch.zeros(100_000, 2, dtype=torch.float64)
    sample_edm(Denoiser(network, path, "eps"), x, time_grid(path, 10, "karras"), s_churn=2.0,
               generator=torch.Generator().manual_seed(0), progress=False)
    return seen[0].var()


@derivation("Churn raises the noise level from sigma to sigma-hat", models=[CHURN])
def churn(d):
    d.start(Var(ordered(Y, sigma * e1, sp.sqrt(sigma_hat**2 - sigma**2) * e2)))
    d.eq(ordered(Var(Y), sigma**2 * Var(e1), (sigma_hat**2 - sigma**2) * Var(e2)),
         "independent terms: the variances add")
    d.eq(ordered(sd**2, sigma_hat**2), "unit variances: the noise levels add up to $\\hat\\sigma^2$")
    d.numeric(library_churn_variance, at=CHURN_AT, expr=sigma_hat**2 - sigma**2, rtol=0.02,
              label="the variance of what `sample_edm(..., s_churn=2)` on `VarianceExploding()` hands the network "
                    "first, from $x = 0$ at $\\sigma = 80$ with 10 steps ($\\gamma = 0.2$), over 200,000 values "
                    "(relative standard error 0.003), against the added variance $\\hat\\sigma^2 - \\sigma^2$")


@derivation("The cap on gamma: churn at most doubles the noise variance",
            models=[Model("$\\sigma > 0$, $\\gamma = \\sqrt{2} - 1$")])
def churn_cap(d):
    d.start(sigma_hat.subs(gamma, sp.sqrt(2) - 1) ** 2 - sigma**2)
    d.eq(sigma**2, "$(1 + \\gamma)^2 = 2$")
