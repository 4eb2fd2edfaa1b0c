"""Derivations for docs/diffusion/ddpm-in-practice.md."""
import sympy as sp

from diffusion_core.derivations import GaussPdf, Model, definition, derivation, times

j = sp.Symbol("j", integer=True, positive=True)
n_kept = sp.Symbol("i", integer=True, positive=True)
ks = sp.IndexedBase("k", integer=True)
abars, betas_new = sp.IndexedBase(r"\bar{\alpha}", positive=True), sp.IndexedBase(r"\beta'", positive=True)

beta, alpha, b = sp.symbols(r"\beta_t \alpha_t b", positive=True)
x_prev, x_t = sp.symbols("x_{t-1} x_t", real=True)


def kept(n):
    return Model(f"$i = {n}$ kept steps; "
                 "$\\beta'_j = 1 - \\bar\\alpha_{k_j} / \\bar\\alpha_{k_{j-1}}$, "
                 "$\\bar\\alpha_{k_0} = 1$, otherwise any values",
                 bind={n_kept: n, betas_new[j]: 1 - abars[ks[j]] / abars[ks[j - 1]]},
                 facts={abars[ks[0]]: 1})


RESPACED = Model("$\\beta'_i = 1 - \\bar\\alpha_{k_i} / \\bar\\alpha_{k_{i-1}}$",
                 bind={betas_new[n_kept]: 1 - abars[ks[n_kept]] / abars[ks[n_kept - 1]]})
ONE_STEP = Model("exact integrals; $\\alpha_t = 1 - \\beta_t$ with $\\beta_t = b/(1+b)$, $b > 0$",
                 bind={alpha: 1 - beta, beta: b / (1 + b)})


def respaced_betas():
    """The first four betas of NoiseSchedule.linear(1000).spaced(10), by symbol."""
    import torch
    from diffusion_core import NoiseSchedule
    spaced = NoiseSchedule.linear(1000, dtype=torch.float64).spaced(10)
    return {betas_new[m + 1]: spaced.betas[m].item() for m in range(4)}


def linear_abar_at_kept():
    """alpha-bar of Ho et al.'s linear schedule (beta from 1e-4 to 0.02, T = 1000) at the 10 kept indices
    round(linspace(0, 999, 10)), by hand in NumPy: apart from the library the values are compared with."""
    import numpy as np

    keep = np.linspace(0, 999, 10).round().astype(int)
    return np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[keep]


def kept_alpha_bars(i):
    """alpha-bar of the full linear schedule at the kept steps k_{i-1} and k_i (i counts from 1)."""
    ac = linear_abar_at_kept()
    return {abars[ks[n_kept - 1]]: float(ac[i - 2]), abars[ks[n_kept]]: float(ac[i - 1])}


def library_respaced_variance():
    """posterior_variance of NoiseSchedule.linear(1000).spaced(10) at new index 3."""
    import torch
    from diffusion_core import NoiseSchedule
    return NoiseSchedule.linear(1000, dtype=torch.float64).spaced(10).posterior_variance[3]


def alpha_bar_at_fourth_kept():
    """alpha-bar of the full linear schedule at the fourth kept index, by hand (``linear_abar_at_kept``)."""
    return float(linear_abar_at_kept()[3])


@derivation("Respacing keeps alpha-bar at the kept steps (improved DDPM, section 4)",
            models=[kept(1), kept(2), kept(3), kept(4)])
def respacing(d):
    d.start(sp.Product(1 - betas_new[j], (j, 1, n_kept)))
    d.eq(sp.Product(abars[ks[j]] / abars[ks[j - 1]], (j, 1, n_kept)),
         "$\\beta'_j = 1 - \\bar\\alpha_{k_j} / \\bar\\alpha_{k_{j-1}}$", by=definition("of the respaced $\\beta'_j$"))
    d.eq(abars[ks[n_kept]] / abars[ks[0]], "the product telescopes")
    d.eq(abars[ks[n_kept]], "$\\bar\\alpha_{k_0} = 1$: nothing before the first kept step")
    d.numeric(alpha_bar_at_fourth_kept, expr=sp.Product(1 - betas_new[j], (j, 1, 4)),
              model=Model(), at=respaced_betas(), rtol=1e-12,
              label="alpha-bar of the linear schedule at the 4th kept index, computed by hand in NumPy, against "
                    "the product of the first 4 betas of NoiseSchedule.linear(1000).spaced(10)")


@derivation("For standard normal data the true reverse step has variance beta", models=[ONE_STEP])
def normal_data_reverse(d):
    d.start(times(GaussPdf(x_prev, 0, 1), GaussPdf(x_t, sp.sqrt(alpha) * x_prev, beta)) / GaussPdf(x_t, 0, 1))
    d.eq(GaussPdf(x_prev, sp.sqrt(alpha) * x_t, beta), "complete the square in $x_{t-1}$")


@derivation("The posterior variance of the respaced chain", models=[RESPACED])
def respaced_variance(d):
    d.start((1 - abars[ks[n_kept - 1]]) / (1 - abars[ks[n_kept]]) * betas_new[n_kept])
    d.eq(times((1 - abars[ks[n_kept - 1]]) / (1 - abars[ks[n_kept]]),
               1 - abars[ks[n_kept]] / abars[ks[n_kept - 1]]),
         "$\\beta'_i = 1 - \\bar\\alpha_{k_i} / \\bar\\alpha_{k_{i-1}}$", by=definition("of the respaced $\\beta'_i$"))
    d.numeric(library_respaced_variance, model=Model(), rtol=1e-12, at=kept_alpha_bars(4),
              label="posterior_variance of NoiseSchedule.linear(1000).spaced(10) at new index 3")
