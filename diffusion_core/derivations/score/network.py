"""Derivations for docs/score/network.md."""
import sympy as sp

from diffusion_core.derivations import E, Cov, Model, Var, derivation, normal, ordered, random_variables

# ---- the sinusoidal time embedding (Vaswani et al. 2017; Ho et al. 2020)
t, k = sp.symbols("t k", real=True)
i, h = sp.symbols("i h", integer=True, nonnegative=True)
P = sp.Symbol("P", positive=True)                    # max_period, 10000 in the library
f = sp.Symbol("f_i", positive=True)                  # the i-th frequency

FREQUENCY = sp.exp(-i * sp.log(P) / (h - 1))         # timestep_embedding: exp(-i log(P) / (half - 1))


def library_embedding_entry():
    """diffusion_core's timestep_embedding(t = 42, dim = 64), the sine of frequency index 3."""
    import torch
    from diffusion_core.nn.embedding import timestep_embedding

    return timestep_embedding(torch.tensor([42]), 64)[0, 3].double()


def library_frequency():
    """The frequency of feature 5 of diffusion_core's timestep_embedding(dim = 64): its sine at t = 1."""
    import torch
    from diffusion_core.nn.embedding import timestep_embedding

    return torch.asin(timestep_embedding(torch.tensor([1]), 64)[0, 5].double())


class PowersAsExponentials(Model):
    """Compares both sides with every power written as an exponential, P^a = exp(a log P)."""

    def evaluate(self, expr):
        return super().evaluate(expr).rewrite(sp.exp)


@derivation("The frequencies are powers of 1/P",
            models=[PowersAsExponentials("any $P > 0$, $h \\ge 2$, powers compared as exponentials")])
def frequencies(d):
    d.start(FREQUENCY)
    d.eq(P ** (-i / (h - 1)), "$e^{a \\log P} = P^a$")
    d.numeric(library_frequency, at={P: 10000, h: 32, i: 5}, rtol=1e-6,
              label="$\\arcsin$ of `timestep_embedding(1, 64)[5]`, the library's sine of frequency 5 at "
                    "$t = 1$ (float32)")


ROTATION = Model("$f_i$ any frequency")


@derivation("A shift in time is a rotation of each sine-cosine pair", models=[ROTATION])
def shift_is_rotation(d):
    d.start(sp.sin((t + k) * f))
    d.eq(ordered(sp.cos(k * f) * sp.sin(t * f), sp.sin(k * f) * sp.cos(t * f)),
         "the sine of a sum")
    d.numeric(library_embedding_entry, at={t: 37, k: 5, f: sp.exp(-3 * sp.log(10000) / 31)},
              rtol=2e-6, label="`diffusion_core.nn.embedding.timestep_embedding` at $t = 42$, dim 64, "
                               "entry 3 (float32)")


# ---- why the network needs t: the best noise predictor for unit-normal data
X, eps = random_variables("x_0 epsilon")
ab = sp.Symbol("alphabar_t", positive=True)
x_t = sp.sqrt(ab) * X + sp.sqrt(1 - ab) * eps
UNIT = Model("$x_0$ and $\\epsilon$ independent, mean 0, variance 1",
             independent=[(X, eps)], facts={E(X): 0, E(X**2): 1, E(eps): 0, E(eps**2): 1})
UNIT_NORMAL = Model(bind={X: normal(0, 1), eps: normal(0, 1)})


def regression_slope():
    """Least-squares slope of eps on x_t from 400 000 draws of q_sample (cosine schedule, index 499)."""
    import torch
    from diffusion_core import NoiseSchedule
    from diffusion_core.forward import q_sample

    g = torch.Generator().manual_seed(0)
    s = NoiseSchedule.cosine(1000, dtype=torch.float64)
    x0 = torch.randn(400_000, 1, generator=g, dtype=torch.float64)
    noise = torch.randn(400_000, 1, generator=g, dtype=torch.float64)
    xt = q_sample(s, x0, torch.full((400_000,), 499), noise)
    return (xt * noise).mean() / (xt * xt).mean()


def cosine_abar():
    import torch
    from diffusion_core import NoiseSchedule

    return float(NoiseSchedule.cosine(1000, dtype=torch.float64).alphas_cumprod[499])


@derivation("The best linear noise predictor for unit-normal data depends on t",
            models=[UNIT, UNIT_NORMAL])
def needs_t(d):
    d.start(Cov(eps, x_t) / Var(x_t))
    d.eq(sp.sqrt(1 - ab), "independence, unit variances, and $\\bar\\alpha_t + (1 - \\bar\\alpha_t) = 1$")
    # standard error of the slope: sqrt(Var(eps | x_t) / (n Var(x_t))) = sqrt(abar / n), about 0.0011
    d.numeric(regression_slope, at={ab: cosine_abar()}, rtol=0, atol=0.006,
              label="the least-squares slope of $\\epsilon$ on $x_t$ over 400 000 draws of "
                    "`diffusion_core.forward.q_sample` (cosine schedule, index 499; tolerance about 5 standard errors)")


# ---- parameters of one residual block
c_in, c_out, e = sp.symbols("c_in c_out e", positive=True, integer=True)


def resblock_parameters():
    """count_parameters of the library's ResBlock(64 -> 128 channels, embedding width 512)."""
    from diffusion_core.nn.presets import count_parameters
    from diffusion_core.nn.unet import ResBlock

    return count_parameters(ResBlock(64, 128, 512, 0.0, 8))


@derivation("Parameters of a residual block that changes the width",
            models=[Model("$c_\\mathrm{in} \\ne c_\\mathrm{out}$, so the skip is a $1 \\times 1$ convolution")])
def resblock_count(d):
    d.start(ordered(2 * c_in, 9 * c_in * c_out + c_out, e * c_out + c_out, 2 * c_out,
                    9 * c_out**2 + c_out, c_in * c_out + c_out))
    d.eq(ordered(9 * c_out**2, 10 * c_in * c_out, e * c_out, 2 * c_in, 6 * c_out),
         "collect: norm, conv, time projection, norm, conv, skip")
    d.numeric(resblock_parameters, at={c_in: 64, c_out: 128, e: 512}, rtol=0,
              label="`count_parameters` of the library's `ResBlock(64, 128, 512)`")
