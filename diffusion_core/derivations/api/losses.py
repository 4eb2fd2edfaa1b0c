"""The bin probability in diffusion_core.vlb's docstrings, checked and tied to the function (docs/api.md)."""
import sympy as sp

from diffusion_core.derivations import GaussPdf, Model, antiderivative, derivation, ordered

x, y = sp.symbols("x y", real=True)
mu = sp.Symbol("mu", real=True)
sigma = sp.Symbol("sigma", positive=True)
delta = sp.Symbol("delta", positive=True)           # half a bin: 1/(bins - 1)

EXACT = Model("the normal density, exact integrals")


def library_bin_probability():
    """exp(discretized_gaussian_log_likelihood) of an interior level, 256 bins."""
    import math

    import torch

    from diffusion_core.vlb import discretized_gaussian_log_likelihood
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
              rtol=1e-9, label="diffusion_core.vlb.discretized_gaussian_log_likelihood (exponentiated)")
