"""Derivations for docs/flow/objective.md: every loss as a weighting w(lambda) of the noise error and a density
p(lambda) of the log-SNR (Kingma & Gao 2023): the velocity error on any path, the densities that uniform times on
the cosine path, EDM's log-normal sigma and SD3's logit-normal times induce, and the time shift as a log-SNR shift."""
import sympy as sp

from diffusion_core.derivations import E, Model, Var, definition, derivation, ordered, random_variables, times

lam = sp.Symbol("lambda", real=True)
t = sp.Symbol("t", positive=True)
alpha, sigma = sp.symbols("alpha sigma", positive=True)
d_alpha, d_sigma = sp.symbols(r"\dot\alpha \dot\sigma", real=True)
e, e_hat, x_t = sp.symbols(r"epsilon \hat\epsilon x_t", real=True)
u = sp.Symbol("u", real=True)
m, P_mean = sp.symbols(r"m P_\mathrm{mean}", real=True)
s, P_std, shift = sp.symbols(r"s P_\mathrm{std} k", positive=True)
z = random_variables("z")

ANY_PATH = Model("any Gaussian path $x_t = \\alpha x_0 + \\sigma\\epsilon$ at one time, "
                 "$\\alpha, \\sigma > 0$, any $\\dot\\alpha, \\dot\\sigma$")
RF = Model("rectified flow at $0 < t < 1$: $\\alpha = 1 - t$, $\\sigma = t$, $\\lambda = 2\\log((1 - t)/t)$",
           bind={alpha: 1 - t, sigma: t, d_alpha: -1, d_sigma: 1, lam: 2 * sp.log((1 - t) / t)})
STANDARD_NORMAL = Model("$z \\sim \\mathcal{N}(0, 1)$: $\\mathbb{E}[z] = 0$, $\\mathbb{E}[z^2] = 1$",
                        facts={E(z): 0, E(z**2): 1})
UNIT = Model("$0 < t < 1$ any, $u$ real")
CALCULUS = Model("$\\lambda$ real")

x0_of = (x_t - sigma * e) / alpha            # the data x_t implies given a noise, at fixed x_t
velocity_error = ordered(d_alpha * x0_of, d_sigma * e) - ordered(d_alpha * (x_t - sigma * e_hat) / alpha,
                                                                  d_sigma * e_hat)


def library_velocity_scale():
    """diffusion_core.weighting.target_error_scale for the velocity target on RectifiedFlow at t = 0.3."""
    import torch
    from diffusion_core import RectifiedFlow, Target
    from diffusion_core.targets import Coefficients
    from diffusion_core.weighting import target_error_scale

    path, tt = RectifiedFlow(), torch.tensor([0.3], dtype=torch.float64)
    return target_error_scale(Target.VELOCITY, Coefficients(path.alpha(tt), path.sigma(tt), *path.derivatives(tt)))


def library_lambda_moments(sampler: str):
    """Mean and variance of the log-SNR of 400,000 seeded training times: time_sampling.LogNormalSigma() on
    VarianceExploding(1e4) (so that the cap at t_max almost never bites) or LogitNormalTime(0.5, 1.0) on
    RectifiedFlow()."""
    import torch
    from diffusion_core import RectifiedFlow, VarianceExploding
    from diffusion_core.time_sampling import LogitNormalTime, LogNormalSigma

    path, draw = ((VarianceExploding(1e4), LogNormalSigma()) if sampler == "edm"
                  else (RectifiedFlow(), LogitNormalTime(0.5, 1.0)))
    lam_samples = path.log_snr(draw(path, 400_000, generator=torch.Generator().manual_seed(0)))
    return lam_samples.mean(), lam_samples.var()


def library_cosine_share():
    """The share of 400,000 seeded uniform training times on ContinuousVP.cosine(s=1e-4, t_max=0.9999) whose
    log-SNR is at most 2."""
    import torch
    from diffusion_core import ContinuousVP
    from diffusion_core.time_sampling import UniformTime

    path = ContinuousVP.cosine(s=1e-4, t_max=0.9999)
    times_drawn = UniformTime()(path, 400_000, generator=torch.Generator().manual_seed(0))
    return (path.log_snr(times_drawn) <= 2).double().mean()


@derivation("A velocity error is a noise error times a factor", models=[ANY_PATH])
def velocity(d):
    d.start(velocity_error**2)
    d.eq(times(ordered(d_sigma, -d_alpha * sigma / alpha) ** 2, (e - e_hat) ** 2),
         "$\\hat x_0 = (x_t - \\sigma\\hat\\epsilon)/\\alpha$ at the same $x_t$: $x_t$ cancels")


@derivation("On rectified flow the factor is (1 + e^(-lambda/2))^2", models=[RF])
def velocity_on_rectified_flow(d):
    d.start(ordered(d_sigma, -d_alpha * sigma / alpha) ** 2)
    d.eq(ordered(1, sigma / alpha) ** 2, "$\\dot\\alpha = -1$, $\\dot\\sigma = 1$",
         by=definition("rectified flow's derivatives"))
    d.eq(ordered(1, sp.exp(-lam / 2)) ** 2, "$\\sigma/\\alpha = e^{-\\lambda/2}$")
    d.numeric(library_velocity_scale, at={t: sp.Rational(3, 10)}, rtol=1e-12,
              label="`diffusion_core.weighting.target_error_scale(Target.VELOCITY, ...)` on `RectifiedFlow()` "
                    "at $t = 0.3$")


@derivation("Uniform times on the cosine path: the density of lambda", models=[CALCULUS])
def cosine_density(d):
    d.start(-sp.Derivative(2 / sp.pi * sp.atan(sp.exp(-lam / 2)), lam))
    d.eq(sp.exp(-lam / 2) / (sp.pi * ordered(1, sp.exp(-lam))), "the chain rule")
    d.eq(1 / (sp.pi * ordered(sp.exp(lam / 2), sp.exp(-lam / 2))), "divide by $e^{-\\lambda/2}$")
    share = 1 - 2 / sp.pi * sp.atan(sp.exp(-lam / 2))
    d.numeric(library_cosine_share, at={lam: 2}, expr=share, rtol=0, atol=0.004,
              label="the share of 400,000 uniform times on `ContinuousVP.cosine(s=1e-4)` with $\\lambda \\le 2$, "
                    "against $1 - t(2)$ (standard error 0.0007)")


@derivation("The v loss on the cosine path: the effective weight grows without bound", models=[CALCULUS])
def v_on_cosine(d):
    d.start(ordered(1, sp.exp(-lam)) / (sp.pi * ordered(sp.exp(lam / 2), sp.exp(-lam / 2))))
    d.eq(sp.exp(-lam / 2) / sp.pi, "$1 + e^{-\\lambda} = e^{-\\lambda/2}(e^{\\lambda/2} + e^{-\\lambda/2})$")


@derivation("EDM's log-normal sigma is a normal lambda", models=[STANDARD_NORMAL])
def lognormal_lambda(d):
    d.start(E(-2 * ordered(P_mean, P_std * z)))
    d.eq(-2 * P_mean, "linearity, $\\mathbb{E}[z] = 0$")
    d.numeric(lambda: library_lambda_moments("edm")[0], at={P_mean: -sp.Rational(6, 5)}, rtol=0, atol=0.01,
              label="the mean log-SNR of 400,000 seeded `LogNormalSigma()` times on `VarianceExploding(1e4)` "
                    "(standard error 0.004)")


@derivation("... with variance 4 P_std^2", models=[STANDARD_NORMAL])
def lognormal_lambda_variance(d):
    d.start(Var(-2 * ordered(P_mean, P_std * z)))
    d.eq(4 * P_std**2, "a constant shift does not change a variance; $\\operatorname{Var}[z] = 1$")
    d.numeric(lambda: library_lambda_moments("edm")[1], at={P_std: sp.Rational(6, 5)}, rtol=0.01,
              label="the variance of the same log-SNRs (relative standard error 0.002)")


@derivation("Logit-normal times on rectified flow: lambda is minus twice the logit", models=[UNIT])
def logit_normal_lambda(d):
    tu = 1 / ordered(1, sp.exp(-u))              # t = sigmoid(u)
    d.start(2 * sp.log((1 - tu) / tu))
    d.eq(2 * sp.log(sp.exp(-u)), "$1 - \\operatorname{sigmoid}(u) = e^{-u}\\operatorname{sigmoid}(u)$")
    d.eq(-2 * u, "the logarithm of an exponential")
    d.numeric(lambda: library_lambda_moments("logit")[0], at={u: sp.Rational(1, 2)}, rtol=0, atol=0.01,
              label="the mean log-SNR of 400,000 seeded `LogitNormalTime(0.5, 1.0)` times on `RectifiedFlow()`, "
                    "where $u = 0.5 + z$ has mean 0.5 (standard error 0.003)")


@derivation("Shifting the times is shifting the log-SNR", models=[UNIT])
def time_shift(d):
    shifted = shift * t / ordered(1, (shift - 1) * t)
    d.start(2 * sp.log((1 - shifted) / shifted))
    d.eq(2 * sp.log((1 - t) / (shift * t)), "$1 - t' = (1 - t)/(1 + (k - 1)t)$")
    d.eq(ordered(2 * sp.log((1 - t) / t), -2 * sp.log(shift)), "the logarithm of a quotient")
