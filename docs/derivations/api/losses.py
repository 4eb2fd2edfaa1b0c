"""The formulas in diffusion_core.losses' docstrings, each checked and tied to the function (docs/api.md)."""
import sympy as sp

from derivations import KL, GaussPdf, Model, antiderivative, derivation, ordered, times

x, y = sp.symbols("x y", real=True)
mu, mu1, mu2 = sp.symbols("mu mu1 mu2", real=True)
sigma, sigma1, sigma2 = sp.symbols("sigma sigma1 sigma2", positive=True)
delta = sp.Symbol("delta", positive=True)           # half a bin: 1/(bins - 1)

EXACT = Model("normal densities, expectations as exact integrals")


def library_normal_kl():
    """diffusion_core.normal_kl(mu1, log sigma1^2, mu2, log sigma2^2) at the values below."""
    import math

    import torch

    from diffusion_core import normal_kl
    args = (0.3, math.log(1.2**2), -0.5, math.log(0.7**2))
    return normal_kl(*(torch.tensor(a, dtype=torch.float64) for a in args))


@derivation("normal_kl: the KL divergence between two normal densities", models=[EXACT])
def normal_kl(d):
    d.start(KL(GaussPdf(x, mu1, sigma1**2), GaussPdf(x, mu2, sigma2**2)))
    d.eq(times(sp.Rational(1, 2), ordered(sp.log(sigma2**2 / sigma1**2), (sigma1**2 + (mu1 - mu2)**2) / sigma2**2, -1)),
         "the log-ratio's Gaussian integral")
    d.numeric(library_normal_kl, at={mu1: 0.3, sigma1: 1.2, mu2: -0.5, sigma2: 0.7}, rtol=1e-12,
              label="diffusion_core.normal_kl")


def library_bin_probability():
    """exp(discretized_gaussian_log_likelihood) of an interior level, 256 bins."""
    import math

    import torch

    from diffusion_core import discretized_gaussian_log_likelihood
    x0 = torch.tensor([0.2], dtype=torch.float64)
    return discretized_gaussian_log_likelihood(x0, torch.tensor([0.21], dtype=torch.float64),
                                               torch.tensor([math.log(0.01)], dtype=torch.float64)).exp()


@derivation("discretized_gaussian_log_likelihood: the probability of an interior bin", models=[EXACT])
def bin_probability(d):
    d.start(sp.Integral(GaussPdf(y, mu, sigma**2), (y, x - delta, ordered(x, delta))))
    d.eq((sp.erf(ordered(x, delta, -mu) / (sp.sqrt(2) * sigma)) - sp.erf(ordered(x, -delta, -mu) / (sp.sqrt(2) * sigma))) / 2,
         "the normal density's antiderivative",
         by=antiderivative(sp.erf((y - mu) / (sp.sqrt(2) * sigma)) / 2))
    d.numeric(library_bin_probability, at={x: 0.2, mu: 0.21, sigma: 0.01, delta: sp.Rational(1, 255)},
              rtol=1e-9, label="diffusion_core.discretized_gaussian_log_likelihood (exponentiated)")
