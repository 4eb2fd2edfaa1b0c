"""The ODE that diffusion_core.samplers.sample_heun (and heun_sample) solve, named by its docstring (docs/api.md)."""
import sympy as sp

from diffusion_core.derivations import derivation
from diffusion_core.derivations.score.solvers import PF_X0, ab, frac, t, x, x0_hat


@derivation("heun_sample: the probability-flow ODE in EDM's variables", models=[PF_X0])
def edm_ode(d):
    # xbar = x / sqrt(alphabar) and sigma = sqrt((1 - alphabar)/alphabar) along the solution x(t); D = xhat_0
    d.start(frac(sp.Derivative(x / sp.sqrt(ab), t), sp.Derivative(sp.sqrt((1 - ab) / ab), t)))
    d.eq(frac(x / sp.sqrt(ab) - x0_hat, sp.sqrt((1 - ab) / ab)),
         "the probability-flow ODE, its $\\epsilon$ written with the data prediction $\\hat x_0$")
