"""Derivations for docs/diffusion/introduction.md."""
import math

import sympy as sp

from diffusion_core.derivations import (KL, GaussPdf, Model, Pdf, definition, derivation, ordered, ratio_is_one,
                                        times, uses)
from diffusion_core.derivations._notation import Notation
from diffusion_core.derivations.background.kl import mu1, mu2, sigma1, sigma2
from diffusion_core.derivations.score.solvers import FactoredRoots  # also factors inside square roots

x_T, x0 = sp.symbols("x_T x_0", real=True)
abar_T = sp.Symbol("alphabar_T", positive=True)

EXACT = Model("exact integrals over the normal densities")


# ---- the two chains, one coordinate; T is concrete in each model (2 and 3 steps)
t, T = sp.symbols("t T", integer=True, positive=True)
xs = sp.IndexedBase("x", real=True)
betas, sigmas = sp.IndexedBase("beta", positive=True), sp.IndexedBase("sigma", positive=True)
mu_theta = sp.Function("mu_theta")                       # the network: any function at all


class IntegrateOut(Notation):
    """``IntegrateOut(f, a, b)``: printed as the integral of f over x_a, ..., x_b; checked as
    that many nested integrals over the real line once T is a number (x_a innermost)."""

    nargs = 3

    def unfold(self):
        f, a, b = self.args
        if not (a.is_Integer and b.is_Integer):
            raise ValueError("IntegrateOut needs a concrete number of steps")
        return sp.Integral(f, *[(xs[k], -sp.oo, sp.oo) for k in range(int(a), int(b) + 1)])

    def _tex(self, printer):
        f, a, b = (printer._print(e) for e in self.args)
        return rf"\int {f}\, dx_{{{a}:{b}}}"


q_step = Pdf("q", xs[t], given=xs[t - 1])
q_chain = Pdf("q", sp.Symbol("x_{1:T}"), given=xs[0])
forward_kernel = GaussPdf(xs[t], sp.sqrt(1 - betas[t]) * xs[t - 1], betas[t])
abar_T_product = sp.Product(1 - betas[t], (t, 1, T))
p_step, p_prior = Pdf("p_\\theta", xs[t - 1], given=xs[t]), Pdf("p", xs[T])
p_chain = Pdf("p_\\theta", sp.Symbol("x_{0:T}"))
reverse_kernel = GaussPdf(xs[t - 1], mu_theta(xs[t], t), sigmas[t] ** 2)


r = sp.IndexedBase("r", positive=True)   # every beta in (0, 1) is 1 - 1/(1 + r)^2 for some r > 0


def forward_steps(n):
    return FactoredRoots(f"$T = {n}$, any $\\beta_t$ in $(0, 1)$, written $1 - 1/(1 + r_t)^2$ with "
                         "$r_t > 0$, exact integrals",
                         bind={T: n, q_chain: sp.Product(q_step, (t, 1, T)), q_step: forward_kernel,
                               betas[t]: 1 - 1 / (1 + r[t]) ** 2})


class AnyNetwork(Model):
    """Integrates x_a, then x_{a+1}, ... one at a time. While integrating over x_k, each network output
    mu_theta(x_j, j) with j != k is a constant (a placeholder symbol); one that depends on x_k must be
    gone by then (integrated out with x_{k-1}), or the check refuses."""

    def _visit(self, node):
        if not isinstance(node, IntegrateOut):
            return super()._visit(node)
        body, a, b = node.args
        for k in range(int(a), int(b) + 1):
            calls = [c for c in body.atoms(sp.core.function.AppliedUndef) if c.func == mu_theta]
            if any(c.has(xs[k]) for c in calls):
                raise ValueError(f"cannot integrate over {xs[k]}: the network's output still depends on it")
            constants = {c: sp.Symbol(f"m_{i}", real=True) for i, c in enumerate(calls)}
            body = self.evaluate(sp.Integral(body.xreplace(constants), (xs[k], -sp.oo, sp.oo)))
            body = body.xreplace({v: c for c, v in constants.items()})
        return body


def reverse_steps(n):
    return AnyNetwork(f"$T = {n}$, any network $\\mu_\\theta$, exact integrals",
                      bind={T: n, p_chain: p_prior * sp.Product(p_step, (t, 1, T)),
                            p_prior: GaussPdf(xs[T], 0, 1), p_step: reverse_kernel})


def ho_alphabar_T():
    """alphabar_T for Ho et al.'s linear schedule (beta from 1e-4 to 0.02, T = 1000), by hand."""
    return math.prod(1 - (1e-4 + (s - 1) * (0.02 - 1e-4) / 999) for s in range(1, 1001))


def library_prior_kl():
    """The same KL from diffusion_core: q_mean_variance at the last index, then normal_kl."""
    import torch
    from diffusion_core import NoiseSchedule
    from diffusion_core.forward import q_mean_variance
    from diffusion_core.vlb import normal_kl

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
              label="`diffusion_core.vlb.normal_kl` of `diffusion_core.forward.q_mean_variance` at the last step "
                    "(linear schedule, $T = 1000$)")


@derivation("The forward chain ends at a known Gaussian", models=[forward_steps(2)])
def forward_chain(d):
    d.start(IntegrateOut(q_chain, 1, T - 1))
    d.eq(IntegrateOut(sp.Product(q_step, (t, 1, T)), 1, T - 1), "the chain: one step after another",
         by=definition("of the forward chain"))
    d.eq(IntegrateOut(sp.Product(forward_kernel, (t, 1, T)), 1, T - 1),
         "each step shrinks $x_{t-1}$ and adds noise of variance $\\beta_t$", by=definition("of a forward step"))
    d.eq(GaussPdf(xs[T], sp.sqrt(abar_T_product) * xs[0], 1 - abar_T_product),
         "Gaussian integrals over $x_1$, then $x_2$, ...", by=ratio_is_one())


@derivation("The reverse chain starts from pure noise", models=[reverse_steps(2), reverse_steps(3)])
def reverse_chain(d):
    d.start(IntegrateOut(p_chain, 0, T - 1))
    d.eq(IntegrateOut(times(p_prior, sp.Product(p_step, (t, 1, T))), 0, T - 1),
         "start at $p(x_T)$, then one learned step after another", by=definition("of the reverse chain"))
    d.eq(IntegrateOut(times(GaussPdf(xs[T], 0, 1), sp.Product(reverse_kernel, (t, 1, T))), 0, T - 1),
         "pure noise, then Gaussian steps around the network's mean", by=definition("of the prior and the steps"))
    d.eq(GaussPdf(xs[T], 0, 1), "integrate $x_0$, then $x_1$, ...: each step integrates to one, "
         "whatever $\\mu_\\theta$ is")
