"""Derivations for docs/background/expectation-variance.md."""
import sympy as sp
import sympy.stats as stats

from diffusion_core.derivations import (E, Cov, Model, Pdf, Var, density, derivation, discrete, from_stats,
                                        normal, ordered, random_variables, times)

X, Y = random_variables("X Y")
a, b, mu, mu_x, mu_y = sp.symbols("a b mu mu_X mu_Y", real=True)
sigma, sigma_x, sigma_y, lam = sp.symbols("sigma sigma_X sigma_Y lambda", positive=True)
x1, x2, x3, y1, y2 = sp.symbols("x1 x2 x3 y1 y2", real=True)
p1, p2, p11, p12, p21, r1 = sp.symbols("p1 p2 p11 p12 p21 r1", positive=True)
f = sp.Function("f")
s = sp.Symbol("s", real=True)

# A distribution on three points with symbolic values and probabilities.
THREE_POINTS = Model(bind={X: discrete({x1: p1, x2: p2, x3: 1 - p1 - p2})})
# Any continuous distribution: an unspecified density f.
ANY_DENSITY = Model(bind={X: density(f, s)})
NORMAL = Model(bind={X: normal(mu, sigma**2)})
EXPONENTIAL = Model(bind={X: from_stats(stats.Exponential("L", lam))})
# E as a linear operator, nothing else assumed: X and Y may depend on each other.
GENERAL = Model()
# Two dependent variables: a joint distribution on four points.
JOINT = Model(bind={(X, Y): discrete({(x1, y1): p11, (x1, y2): p12,
                                      (x2, y1): p21, (x2, y2): 1 - p11 - p12 - p21})})
# Two independent variables: the joint table is the product of the marginals.
PRODUCT = Model(bind={(X, Y): discrete({(x1, y1): p1 * r1, (x1, y2): p1 * (1 - r1),
                                        (x2, y1): (1 - p1) * r1, (x2, y2): (1 - p1) * (1 - r1)})})
INDEPENDENT = Model(independent=[(X, Y)])
INDEPENDENT_NORMALS = Model(bind={X: normal(mu_x, sigma_x**2), Y: normal(mu_y, sigma_y**2)})


# The definition, written out. X takes the values x_1, ..., x_n with probabilities p_1, ..., p_n
# (checked for n = 3, probabilities adding up to one), or has a density p(x).
n, i = sp.symbols("n i", integer=True, positive=True)
xs, ps = sp.IndexedBase("x", real=True), sp.IndexedBase("p", positive=True)
x = sp.Symbol("x", real=True)
p = Pdf("p", x)


class ThreePoints(Model):
    """n = 3 outcomes; the last probability is what the first two leave."""

    def __init__(self):
        super().__init__("$n = 3$: $X$ takes $x_1, x_2, x_3$ with probabilities $p_1, p_2$, "
                         "$p_3 = 1 - p_1 - p_2$",
                         bind={n: 3, X: discrete({xs[1]: ps[1], xs[2]: ps[2],
                                                  xs[3]: 1 - ps[1] - ps[2]})})

    def evaluate(self, expr):
        return super().evaluate(expr).xreplace({ps[3]: 1 - ps[1] - ps[2]})


class LinearIntegrals(Model):
    """Any density: integrals of sums are split and constants taken out (linearity)."""

    def evaluate(self, expr):
        def split(integral):
            terms = sp.Add.make_args(sp.expand(integral.function))
            return sp.Add(*(c * sp.Integral(rest, *integral.limits) if rest != 1 else
                            c * sp.Integral(1, *integral.limits)
                            for c, rest in (t.as_independent(*integral.variables, as_Add=False)
                                            for t in terms)))
        out = super().evaluate(expr)
        return super().evaluate(out.replace(lambda e: isinstance(e, sp.Integral), split))


ANY_PDF = LinearIntegrals("$X$ with any density $p(x)$", bind={X: density(lambda v: p, x)})


@derivation("Deviations from the mean average to zero: discrete X", models=[ThreePoints()])
def centred_discrete(d):
    d.start(E(X - E(X)))
    d.eq(sp.Sum(times(ordered(xs[i], -E(X)), ps[i]), (i, 1, n)),
         "definition: each value times its probability")
    d.eq(ordered(sp.Sum(times(xs[i], ps[i]), (i, 1, n)), -times(E(X), sp.Sum(ps[i], (i, 1, n)))),
         "split the sum")
    d.eq(ordered(E(X), -E(X)), "$\\sum_i x_i p_i$ is $\\mathbb{E}[X]$; the probabilities add up to one")
    d.eq(0)


@derivation("Deviations from the mean average to zero: continuous X", models=[ANY_PDF])
def centred_continuous(d):
    d.start(E(X - E(X)))
    d.eq(sp.Integral(times(ordered(x, -E(X)), p), (x, -sp.oo, sp.oo)),
         "definition: weight by the density")
    d.eq(ordered(sp.Integral(x * p, (x, -sp.oo, sp.oo)),
                 -times(E(X), sp.Integral(p, (x, -sp.oo, sp.oo)))), "split the integral")
    d.eq(ordered(E(X), -E(X)), "$\\int x\\,p(x)\\,dx$ is $\\mathbb{E}[X]$; a density integrates to one")
    d.eq(0)


@derivation("Linearity of expectation", models=[THREE_POINTS, ANY_DENSITY, NORMAL])
def linearity(d):
    d.start(E(a * X + b))
    d.eq(a * E(X) + b, "sum or integral of $a x + b$ against the distribution")


@derivation("Expectation of a sum", models=[JOINT, GENERAL])
def sum_of_two(d):
    d.start(E(X + Y))
    d.eq(E(X) + E(Y), "no independence needed")


@derivation("Variance: mean of the square minus square of the mean",
            models=[GENERAL, NORMAL, EXPONENTIAL])
def variance_shortcut(d):
    d.start(Var(X))
    d.eq(E((X - E(X)) ** 2), "definition")
    d.eq(E(ordered(X**2, -2 * E(X) * X, E(X) ** 2)), "expand the square")
    d.eq(ordered(E(X**2), -2 * E(X) * E(X), E(X) ** 2), "linearity; $\\mathbb{E}[X]$ is a constant")
    d.eq(E(X**2) - E(X) ** 2)


@derivation("Variance of an affine map", models=[GENERAL, NORMAL])
def variance_affine(d):
    d.start(Var(a * X + b))
    d.eq(E((a * X + b - E(a * X + b)) ** 2), "definition")
    d.eq(E(ordered(a * X, b, -a * E(X), -b) ** 2), "linearity")
    d.eq(E(a**2 * (X - E(X)) ** 2), "the shift $b$ cancels")
    d.eq(a**2 * E((X - E(X)) ** 2), "linearity")
    d.eq(a**2 * Var(X), "definition")


@derivation("Covariance: mean of the product minus product of the means", models=[GENERAL, JOINT])
def covariance_shortcut(d):
    d.start(Cov(X, Y))
    d.eq(E((X - E(X)) * (Y - E(Y))), "definition")
    d.eq(E(ordered(X * Y, -X * E(Y), -E(X) * Y, E(X) * E(Y))), "expand the product")
    d.eq(E(X * Y) - E(X) * E(Y), "linearity")


@derivation("Variance of a sum", models=[GENERAL, JOINT])
def variance_sum(d):
    d.start(Var(X + Y))
    d.eq(E((X + Y) ** 2) - E(X + Y) ** 2, "shortcut formula")
    d.eq(ordered(E(X**2), 2 * E(X * Y), E(Y**2), -(E(X) + E(Y)) ** 2), "linearity")
    d.eq(ordered(E(X**2) - E(X) ** 2, E(Y**2) - E(Y) ** 2, times(2, E(X * Y) - E(X) * E(Y))),
         "regroup")
    d.eq(ordered(Var(X), Var(Y), 2 * Cov(X, Y)), "shortcut formulas")


@derivation("Independent variables: the mean of a product factorizes", models=[PRODUCT])
def product_independent(d):
    d.start(E(X * Y))
    d.eq(E(X) * E(Y), "the joint probabilities are products")


@derivation("Variance of a sum of independent variables",
            models=[INDEPENDENT, INDEPENDENT_NORMALS])
def variance_sum_independent(d):
    d.start(Var(X + Y))
    d.eq(ordered(Var(X), Var(Y), 2 * Cov(X, Y)), "variance of a sum")
    d.eq(ordered(Var(X), Var(Y), times(2, E(X * Y) - E(X) * E(Y))), "covariance shortcut")
    d.eq(Var(X) + Var(Y), "independence: $\\mathbb{E}[XY] = \\mathbb{E}[X]\\,\\mathbb{E}[Y]$")
