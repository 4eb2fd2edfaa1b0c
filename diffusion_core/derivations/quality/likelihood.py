"""Derivations for docs/quality/likelihood.md: the instantaneous change of variables along the probability-flow
ODE, its closed form for normal data on rectified flow (tied to diffusion_core.likelihood), Hutchinson's trace
estimate and its variance with Rademacher and normal probes, and bits per dimension of 8-bit images."""
import sympy as sp

from diffusion_core.derivations import E, Model, Var, antiderivative, derivation, ordered, random_variables, under
from diffusion_core.derivations.score.sde import Calculus, Dx

x = sp.Symbol("x", real=True)
t = sp.Symbol("t", positive=True)
p = sp.Function("p")(x, t)                          # the density of x_t
v = sp.Function("v")(x, t)                          # the ODE's velocity field
m = sp.Symbol("m", real=True)                       # the data's mean
s = sp.Symbol("s", positive=True)                   # the data's standard deviation
t0, t1 = sp.symbols("t_0 t_1", positive=True)
var_t = ordered((1 - t) ** 2 * s**2, t**2)          # Var[x_t] on rectified flow: x_t = (1 - t) x_0 + t eps
centred = x - (1 - t) * m                           # x_t less its mean
velocity = t * centred / var_t - ordered(m, (1 - t) * s**2 * centred / var_t)   # E[eps | x_t] - E[x_0 | x_t]
velocity_gain = (t - (1 - t) * s**2) / var_t        # its slope in x

ANY_FLOW = Calculus("$p(x, t) > 0$ and $v(x, t)$ any differentiable functions")
CONTINUITY = Calculus("$p$ solves the continuity equation of the flow, "
                      "$\\partial_t p = -\\partial_x (p\\,v)$ (the probability-flow ODE's marginals do)",
                      after={sp.Derivative(p, t): -sp.Derivative(p * v, x)})
NORMAL_DATA = Model("$x_0 \\sim \\mathcal{N}(m, s^2)$ on rectified flow, $0 < t_0 < t_1 < 1$")


def library_delta(t_min: float = 1e-3, t_max: float = 0.999, s_data: float = 0.5, m_data: float = 0.3):
    """The integrated divergence of diffusion_core.ode_log_likelihood (exact divergence, 100 RK4 steps) for
    one-dimensional normal data on rectified flow from x = 1.2, its network the exact noise prediction of
    diffusion_core.mixture for a one-component mixture."""
    import torch

    from diffusion_core import Denoiser, RectifiedFlow, ode_log_likelihood
    from diffusion_core.mixture import GaussianMixture

    data, path = GaussianMixture([1.0], [m_data], [s_data]), RectifiedFlow()

    def network(x_in, t_in):
        tt = t_in / 1000
        return data.eps(x_in, path.alpha(tt).reshape(-1, 1), path.sigma(tt).reshape(-1, 1))

    x_point = torch.tensor([[1.2]], dtype=torch.float64)
    return ode_log_likelihood(Denoiser(network, path, "eps"), x_point, t_min=t_min, t_max=t_max, steps=100).delta[0]


@derivation("Along a solution of the ODE the log-density changes by minus the divergence",
            models=[ANY_FLOW, CONTINUITY])
def log_density_along(d):
    d.start(ordered(sp.Derivative(sp.log(p), t), v * Dx(sp.log(p))))
    d.eq(ordered(sp.Derivative(p, t), v * Dx(p)) / p, "$\\partial \\log p = \\partial p / p$", by=under(ANY_FLOW))
    d.eq(ordered(-Dx(p * v), v * Dx(p)) / p, "the continuity equation", by=under(CONTINUITY))
    d.eq(-Dx(v), "the product rule: $\\partial_x(p\\,v) = v\\,\\partial_x p + p\\,\\partial_x v$",
         by=under(ANY_FLOW))


@derivation("Normal data on rectified flow: the integrated divergence", models=[NORMAL_DATA])
def normal_delta(d):
    d.start(sp.Integral(Dx(velocity), (t, t0, t1)))
    d.eq(sp.Integral(velocity_gain, (t, t0, t1)), "the velocity is linear in $x$: its slope")
    d.eq(sp.log(var_t.subs(t, t1) / var_t.subs(t, t0)) / 2,
         "the integrand is half the derivative of $\\log \\operatorname{Var}[x_t]$",
         by=antiderivative(sp.log(var_t) / 2))
    d.numeric(library_delta, at={t0: sp.Rational(1, 1000), t1: sp.Rational(999, 1000), s: sp.Rational(1, 2)},
              rtol=1e-6, label="`diffusion_core.ode_log_likelihood(...).delta` (100 RK4 steps, exact divergence) "
                               "from $x = 1.2$, normal data $m = 0.3$, $s = 0.5$")


z1, z2 = random_variables("z_1 z_2")
a11, a12, a21, a22 = sp.symbols("a_11 a_12 a_21 a_22", real=True)
b = sp.Symbol("b", real=True)                      # the off-diagonal entry of a symmetric matrix
PROBES = Model("$z_1, z_2$ independent, mean 0, variance 1; $A$ any $2 \\times 2$ matrix",
               independent=[(z1, z2)], facts={E(z1): 0, E(z2): 0, E(z1**2): 1, E(z2**2): 1})
RADEMACHER = Model("$z_1, z_2$ independent signs, $\\pm 1$ with probability 1/2 each: "
                   "$\\mathbb{E}[z] = \\mathbb{E}[z^3] = 0$, $\\mathbb{E}[z^2] = \\mathbb{E}[z^4] = 1$",
                   independent=[(z1, z2)],
                   facts={E(z**k): {1: 0, 2: 1, 3: 0, 4: 1}[k] for z in (z1, z2) for k in (1, 2, 3, 4)})
NORMAL_PROBES = Model("$z_1, z_2$ independent standard normal: $\\mathbb{E}[z] = \\mathbb{E}[z^3] = 0$, "
                      "$\\mathbb{E}[z^2] = 1$, $\\mathbb{E}[z^4] = 3$",
                      independent=[(z1, z2)],
                      facts={E(z**k): {1: 0, 2: 1, 3: 0, 4: 3}[k] for z in (z1, z2) for k in (1, 2, 3, 4)})
quadratic = ordered(a11 * z1**2, (a12 + a21) * z1 * z2, a22 * z2**2)          # z^T A z
symmetric = ordered(a11 * z1**2, 2 * b * z1 * z2, a22 * z2**2)                 # z^T A z, A symmetric


@derivation("Hutchinson: a random quadratic form is unbiased for the trace", models=[PROBES])
def hutchinson(d):
    d.start(E(quadratic))
    d.eq(ordered(a11 * E(z1**2), (a12 + a21) * E(z1) * E(z2), a22 * E(z2**2)), "linearity; independence")
    d.eq(a11 + a22, "mean 0, variance 1: the trace of $A$")


@derivation("With sign probes only the off-diagonal entries cost variance", models=[RADEMACHER])
def rademacher_variance(d):
    d.start(Var(symmetric))
    d.eq(Var(ordered(a11, 2 * b * z1 * z2, a22)), "$z_1^2 = z_2^2 = 1$")
    d.eq(4 * b**2, "a constant has no variance; $\\mathbb{E}[(z_1 z_2)^2] = 1$")


@derivation("With normal probes the diagonal costs variance too", models=[NORMAL_PROBES])
def normal_variance(d):
    d.start(Var(symmetric))
    d.eq(2 * ordered(a11**2, 2 * b**2, a22**2), "$\\mathbb{E}[z^4] = 3$, the cross moments factor")


p_x = sp.Symbol("p_x", positive=True)               # the model's density of an image x in [-1, 1]^D
D = sp.Symbol("D", integer=True, positive=True)     # dimensions: pixels times channels
INTEGERS = Model("8-bit values $u \\in \\{0, \\dots, 255\\}$ plus uniform noise in $[0, 1)$, scaled to "
                 "$x = (u + \\text{noise})/128 - 1$ as in Song et al. (2021); $D$ dimensions")


POINT = (sp.Rational(-1), sp.Rational(4, 5))                  # a 2-D point, each coordinate of a mixture
MIXTURE = ((sp.Rational(3, 10), -1, sp.Rational(3, 10)), (sp.Rational(7, 10), sp.Rational(4, 5), sp.Rational(1, 2)))
T_MIN = sp.Rational(1, 1000)


def mixture_density_at_t_min():
    """The exact density at POINT of 2-D data whose coordinates are independent draws of the mixture
    0.3 N(-1, 0.3^2) + 0.7 N(0.8, 0.5^2), noised on rectified flow to t = 1e-3, in closed form."""
    a, s = 1 - T_MIN, T_MIN
    return sp.Mul(*[sum(w * sp.exp(-(x - a * mu) ** 2 / (2 * (a**2 * sd**2 + s**2)))
                        / sp.sqrt(2 * sp.pi * (a**2 * sd**2 + s**2)) for w, mu, sd in MIXTURE) for x in POINT])


def library_bits_per_dim():
    """diffusion_core.ode_log_likelihood(...).bits_per_dim at POINT (50 RK4 steps, exact divergence, the
    mixture's exact denoiser on RectifiedFlow), plus 7: the bits per dimension of 8-bit data."""
    import torch

    from diffusion_core import Denoiser, RectifiedFlow, ode_log_likelihood
    from diffusion_core.mixture import GaussianMixture

    data, path = GaussianMixture([0.3, 0.7], [-1.0, 0.8], [0.3, 0.5]), RectifiedFlow()

    def network(x_in, t_in):
        tt = t_in / 1000
        return data.eps(x_in, path.alpha(tt).reshape(-1, 1), path.sigma(tt).reshape(-1, 1))

    x = torch.tensor([[float(v) for v in POINT]], dtype=torch.float64)
    return ode_log_likelihood(Denoiser(network, path, "eps"), x, t_min=1e-3, steps=50).bits_per_dim[0] + 7


@derivation("Bits per dimension of 8-bit data from a density on [-1, 1]", models=[INTEGERS])
def bits_per_dim(d):
    d.start(-sp.log(p_x * sp.Integer(128) ** (-D), 2) / D)
    d.eq(ordered(-sp.log(p_x) / (D * sp.log(2)), 7), "$\\log_2 128 = 7$")
    d.numeric(library_bits_per_dim, at={p_x: mixture_density_at_t_min(), D: 2}, rtol=1e-4,
              label="`ode_log_likelihood(...).bits_per_dim + 7` at the 2-D point $(-1, 0.8)$ of a two-component "
                    "mixture on rectified flow (50 RK4 steps, the exact denoiser), against the closed-form density "
                    "at $t_{\\min} = 10^{-3}$")
