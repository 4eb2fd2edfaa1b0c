"""Derivations for docs/diffusion/introduction.md."""
import math

import sympy as sp

from derivations import KL, GaussPdf, Model, derivation, ordered, times, uses
from derivations.background.kl import mu1, mu2, sigma1, sigma2

x_T, x0 = sp.symbols("x_T x_0", real=True)
abar_T = sp.Symbol("alphabar_T", positive=True)

EXACT = Model("exact integrals over the normal densities")


def ho_alphabar_T():
    """alphabar_T for Ho et al.'s linear schedule (beta from 1e-4 to 0.02, T = 1000), by hand."""
    return math.prod(1 - (1e-4 + (s - 1) * (0.02 - 1e-4) / 999) for s in range(1, 1001))


def library_prior_kl():
    """The same KL from diffusion_core: q_mean_variance at the last index, then normal_kl."""
    import torch
    from diffusion_core import NoiseSchedule, normal_kl, q_mean_variance

    schedule = NoiseSchedule.linear(1000, dtype=torch.float64)
    x0_t = torch.ones(1, 1, dtype=torch.float64)  # a pixel at the edge of the data range
    mean, _, log_var = q_mean_variance(schedule, x0_t, torch.tensor([999]))
    return normal_kl(mean, log_var, torch.zeros_like(mean), torch.zeros_like(log_var))


@derivation("How far the end of the forward process is from pure noise", models=[EXACT])
def prior_gap(d):
    d.start(KL(GaussPdf(x_T, sp.sqrt(abar_T) * x0, 1 - abar_T), GaussPdf(x_T, 0, 1)))
    d.eq(ordered(sp.log(1 / sp.sqrt(1 - abar_T)), ordered(1 - abar_T, abar_T * x0**2) / 2,
                 -sp.Rational(1, 2)),
         "the KL divergence between two normal distributions (Part 1)",
         by=uses("background.kl:gaussian",
                 subs={mu1: sp.sqrt(abar_T) * x0, sigma1: sp.sqrt(1 - abar_T), mu2: 0, sigma2: 1}))
    d.eq(times(sp.Rational(1, 2), ordered(abar_T * (x0**2 - 1), -sp.log(1 - abar_T))),
         "collect the terms")
    d.numeric(library_prior_kl, at={abar_T: ho_alphabar_T(), x0: 1.0}, rtol=1e-9,
              label="`diffusion_core.normal_kl` of `q_mean_variance` at the last step "
                    "(linear schedule, $T = 1000$)")
