"""Derivations for docs/quality/evaluation.md: the Fréchet distance of one-dimensional Gaussians, and why its
estimate from N samples is biased upwards, by how much, in closed form for normal data."""
import math

import sympy as sp

from diffusion_core.derivations import E, Model, Var, derivation, ordered, random_variables, times

X1, X2, X3, Y1, Y2, Y3 = random_variables("X_1 X_2 X_3 Y_1 Y_2 Y_3")
M_a, M_b, S_a, S_b = random_variables("M_a M_b S_a S_b")
mu = sp.Symbol("mu", real=True)
v, c = sp.symbols("v c", positive=True)            # the data's variance; E[S] = c sqrt(v)
m_a, m_b = sp.symbols("m_a m_b", real=True)
s_a, s_b = sp.symbols("s_a s_b", positive=True)
N = sp.Symbol("N", integer=True, positive=True)

SAMPLE = (X1, X2, X3, Y1, Y2, Y3)
IID = Model("$X_1, X_2, X_3, Y_1, Y_2, Y_3$ independent, each with mean $\\mu$ and variance $v$",
            independent=[(p, q) for i, p in enumerate(SAMPLE) for q in SAMPLE[i + 1:]],
            facts={**{E(z): mu for z in SAMPLE}, **{E(z**2): v + mu**2 for z in SAMPLE}})
MOMENTS = Model("two independent samples of $N$ normal values (mean $\\mu$, variance $v$): sample means "
                "$M_a, M_b$ with variance $v/N$ (above), sample standard deviations $S_a, S_b$ (divisor $N - 1$) "
                "with $\\mathbb{E}[S^2] = v$ and $\\mathbb{E}[S] = c\\sqrt{v}$; all four independent (for normal data a "
                "sample's mean and standard deviation are)",
                independent=[(M_a, M_b, S_a, S_b)],
                facts={E(M_a): mu, E(M_b): mu, E(M_a**2): mu**2 + v / N, E(M_b**2): mu**2 + v / N,
                       E(S_a**2): v, E(S_b**2): v, E(S_a): c * sp.sqrt(v), E(S_b): c * sp.sqrt(v)})

mean_a, mean_b = (X1 + X2 + X3) / 3, (Y1 + Y2 + Y3) / 3
fd_1d = ordered((m_a - m_b) ** 2, s_a**2, s_b**2, -2 * sp.sqrt(s_a**2 * s_b**2))
expected_fd = ordered(2 * v / N, times(2 * v, 1 - c**2))


def c4(n: int) -> float:
    """E[S] / sigma for n normal samples, S with divisor n - 1: sqrt(2/(n-1)) Gamma(n/2) / Gamma((n-1)/2)."""
    return math.sqrt(2 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


def library_mean_fd(n: int = 10, pairs: int = 10_000):
    """The mean of diffusion_core.evaluation.frechet_distance over ``pairs`` pairs of independent samples of ``n``
    standard normal values (1-D features), drawn from a seeded NumPy generator."""
    import numpy as np
    from diffusion_core.evaluation import frechet_distance

    rng = np.random.default_rng(0)
    draws = rng.standard_normal((pairs, 2, n, 1))
    return float(np.mean([frechet_distance(a, b) for a, b in draws]))


@derivation("In one dimension the Fréchet distance is the squared 2-Wasserstein distance", models=[Model(
    "$m_a, m_b$ any means, $s_a, s_b > 0$ any standard deviations")])
def one_dimension(d):
    d.start(fd_1d)
    d.eq(ordered((m_a - m_b) ** 2, s_a**2, s_b**2, -2 * s_a * s_b), "$\\sqrt{s_a^2 s_b^2} = s_a s_b$")
    d.eq(ordered((m_a - m_b) ** 2, (s_a - s_b) ** 2), "a square")


@derivation("A sample mean's variance shrinks like 1/N (N = 3)", models=[IID])
def mean_variance(d):
    d.start(Var(mean_a))
    d.eq((Var(X1) + Var(X2) + Var(X3)) / 9, "independent: the variances add; constants come out squared")
    d.eq(v / 3, "each has variance $v$")


@derivation("Two samples of the same data: their means still differ (N = 3)", models=[IID])
def mean_term(d):
    d.start(E((mean_a - mean_b) ** 2))
    d.eq(ordered(Var(mean_a), Var(mean_b)), "both means have mean $\\mu$; the two samples are independent")
    d.eq(2 * v / 3, "the variance of a sample mean, above")


@derivation("The expected Fréchet distance between two samples of the same normal data", models=[MOMENTS])
def expected_same(d):
    d.start(E(ordered((M_a - M_b) ** 2, (S_a - S_b) ** 2)))
    d.eq(ordered(E((M_a - M_b) ** 2), E((S_a - S_b) ** 2)), "linearity")
    d.eq(ordered(E(M_a**2), E(M_b**2), -2 * E(M_a) * E(M_b), E(S_a**2), E(S_b**2), -2 * E(S_a) * E(S_b)),
         "expand the squares; the two samples are independent")
    d.eq(expected_fd, "the moments")
    d.numeric(library_mean_fd, at={v: 1, N: 10, c: c4(10)}, rtol=0, atol=0.02,
              label="the mean of `diffusion_core.evaluation.frechet_distance` over 10,000 pairs of samples of 10 "
                    "standard normal values (Monte Carlo; standard error about 0.003)")
