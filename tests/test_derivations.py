"""Every derivation in diffusion_core/derivations/ holds, and a wrong one is caught.

The same checks run when the site is built (docs/hooks/derivation_hook.py);
here they run without MkDocs, one test per derivation.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import sympy as sp

DOCS = Path(__file__).resolve().parents[1] / "docs"

from diffusion_core.derivations import (E, KL, Derivation, DerivationError, GaussPdf, Model, Pdf, Pr, Var,
                                        antiderivative, derivation, discover, jensen, normal, random_variables,
                                        ratio_is_one, uses)
from diffusion_core.derivations._render import render_markdown
from diffusion_core.derivations._spaces import gaussian_integral

SPECS = discover()
MARKER = re.compile(r'\{\{\s*derivation\(\s*"([^"]+)"\s*\)\s*\}\}')

X = random_variables("X")
a, b = sp.symbols("a b", real=True)


@pytest.mark.parametrize("ref", sorted(SPECS))
def test_derivation_holds(ref):
    report = SPECS[ref].check()
    assert report.steps, f"{ref} has no steps"
    assert all(step.verified for step in report.steps)


def test_derivations_were_found():
    assert len(SPECS) >= 20
    assert "background.kl:nonnegativity" in SPECS


def test_wrong_step_names_the_step_and_both_sides():
    d = Derivation("deliberately wrong", ref="tests:wrong_affine")
    d.start(Var(a * X + b))
    d.eq(a**2 * Var(X), "variance of an affine map")
    d.eq(a * Var(X), "forgot the square")
    with pytest.raises(DerivationError) as info:
        d.check()
    err, message = info.value, str(info.value)
    assert err.step == 2
    assert "tests:wrong_affine" in message
    assert "step 2 (forgot the square)" in message
    assert "left side:  a**2*Var(X)" in message
    assert "right side: a*Var(X)" in message


def test_wrong_step_fails_under_a_concrete_distribution_too():
    mu = sp.Symbol("mu", real=True)
    d = Derivation("wrong mean", [Model(bind={X: normal(mu, 1)})], ref="tests:wrong_mean")
    d.start(E(X**2)).eq(mu**2, "forgot the variance")
    with pytest.raises(DerivationError, match=r"step 1 .*\n.*E\(X\*\*2\)|Expectation\(X\*\*2\)"):
        d.check()


def test_inequality_sympy_cannot_decide_is_an_error_not_a_skip():
    u = sp.Symbol("u", positive=True)
    x = sp.Symbol("x", real=True)
    q, p = Pdf("q", x), Pdf("p", x)
    d = Derivation("unjustified Jensen", ref="tests:no_justification")
    d.start(E(sp.log(p / q), q)).le(sp.log(E(p / q, q)), "Jensen, but no by=")
    with pytest.raises(DerivationError, match="cannot show"):
        d.check()
    # the same step with its justification passes
    d = Derivation("justified Jensen", ref="tests:jensen")
    d.start(E(sp.log(p / q), q)).le(sp.log(E(p / q, q)), by=jensen(sp.log(u), u))
    d.check()


def test_jensen_rejects_the_wrong_direction():
    u = sp.Symbol("u", positive=True)
    x = sp.Symbol("x", real=True)
    q, p = Pdf("q", x), Pdf("p", x)
    d = Derivation("exp is convex, not concave", ref="tests:jensen_exp")
    d.start(E(sp.exp(p / q), q)).le(sp.exp(E(p / q, q)), by=jensen(sp.exp(u), u))
    with pytest.raises(DerivationError, match="not concave"):
        d.check()


def test_uses_rejects_a_gap_that_does_not_match():
    x = sp.Symbol("x", real=True)
    q, p = Pdf("q", x), Pdf("p", x)
    d = Derivation("KL >= 0 does not give this", ref="tests:uses")
    d.start(2 * KL(q, p)).ge(0, by=uses("background.kl:nonnegativity"))
    with pytest.raises(DerivationError, match="is not the gap"):
        d.check()


def test_antiderivative_checks_the_derivative_and_both_limits():
    y = sp.Symbol("y", real=True)
    ok = Derivation("ok").start(sp.Integral(y**2, (y, a, b))).eq(b**3 / 3 - a**3 / 3, by=antiderivative(y**3 / 3))
    assert ok.check().steps[0].verified.startswith("the fundamental theorem of calculus")
    wrong_f = Derivation("f").start(sp.Integral(y**2, (y, a, b))).eq(b**3 / 2 - a**3 / 2, by=antiderivative(y**3 / 2))
    with pytest.raises(DerivationError, match="not y\\*\\*2"):
        wrong_f.check()
    wrong_limits = Derivation("limits").start(sp.Integral(y**2, (y, a, b))).eq(b**3 / 3, by=antiderivative(y**3 / 3))
    with pytest.raises(DerivationError, match="not F"):
        wrong_limits.check()


def test_ratio_is_one_accepts_equal_densities_and_rejects_a_wrong_variance():
    y = sp.Symbol("y", real=True)
    v = sp.Symbol("v", positive=True)
    # N(y; 0, v) N(y; 0, v) / N(y; 0, v/2) is the constant 1/sqrt(4 pi v): a density times that constant
    same = Derivation("same").start(GaussPdf(y, 0, v) ** 2).eq(
        GaussPdf(y, 0, v / 2) / (2 * sp.sqrt(sp.pi * v)), by=ratio_is_one())
    assert "simplifies to 1" in same.check().steps[0].verified
    wrong = Derivation("wrong").start(GaussPdf(y, 0, v) ** 2).eq(
        GaussPdf(y, 0, v) / (2 * sp.sqrt(sp.pi * v)), by=ratio_is_one())
    with pytest.raises(DerivationError, match="not 1"):
        wrong.check()
    # the sign of exp(u) and of a square root, with a variance SymPy cannot sign before bringing it over
    # one denominator: 1 - 1/(1 + r)^2 for r > 0
    r = sp.Symbol("r", positive=True)
    v = 1 - 1 / (1 + r) ** 2
    written_out = sp.exp(-y**2 / (2 * v)) / sp.sqrt(2 * sp.pi * v)
    assert "simplifies to 1" in Derivation("signs").start(GaussPdf(y, 0, v)).eq(
        written_out, by=ratio_is_one()).check().steps[0].verified
    unsigned = Derivation("sign").start(a).eq(a, by=ratio_is_one())
    with pytest.raises(DerivationError, match="positive"):
        unsigned.check()


def test_pr_solves_for_the_noise_and_refuses_an_unknown_sign():
    eps = sp.Symbol("epsilon", real=True)
    t, c = sp.Symbol("t", real=True), sp.Symbol("c", real=True)
    s_ = sp.Symbol("s", real=True)
    # Pr[1 - 2 eps <= t] = Pr[eps >= (1 - t)/2]: a negative coefficient flips the event
    upper = Pr(1 - 2 * eps, t, eps).unfold()
    assert upper == sp.Integral(GaussPdf(s_, 0, 1), (s_, (1 - t) / 2, sp.oo))
    flipped_wrong = Derivation("flip").start(Pr(1 - 2 * eps, t, eps)).eq(Pr(eps, (t - 1) / -2, eps))
    with pytest.raises(DerivationError):
        flipped_wrong.check()
    with pytest.raises(ValueError, match="sign of c is unknown"):
        Pr(c * eps, t, eps).unfold()


def test_numeric_check_failure_is_reported():
    mu = sp.Symbol("mu", real=True)
    d = Derivation("mean", [Model(bind={X: normal(mu, 1)})], ref="tests:numeric")
    d.start(E(X)).eq(mu).numeric(lambda: 0.25, at={mu: 0.2}, rtol=1e-6, label="a wrong number")
    with pytest.raises(DerivationError, match="a wrong number"):
        d.check()


def test_gaussian_fast_path_agrees_with_sympy_integrate():
    u, m = sp.Symbol("u", real=True), sp.Symbol("m", real=True)
    v = sp.Symbol("v", positive=True)
    for expr in (sp.exp(-u**2 / 2), u**3 * sp.exp(-(u - m) ** 2 / (2 * v)),
                 u**2 * sp.exp(-u**2 / v + m * u)):
        exact = sp.integrate(expr, (u, -sp.oo, sp.oo), conds="none")
        assert sp.simplify(gaussian_integral(expr, u) - exact) == 0


def test_latex_is_generated_from_the_checked_expressions():
    d = SPECS["background.kl:gaussian"].build()
    latex = d.to_latex()
    assert latex.startswith("\\begin{aligned}")
    assert "D_{\\mathrm{KL}}" in latex and "\\mathcal{N}" in latex
    assert latex.count("\\\\") == len(d.steps) - 1


def test_subtracted_ordered_sum_keeps_its_parentheses():
    from diffusion_core.derivations import ordered, tex

    x, a, b = sp.symbols("x a b")
    assert tex(x - ordered(a, b)) == r"x - \left(a + b\right)"
    assert tex(-ordered(a, -b)) == r"- \left(a - b\right)"
    assert tex(x + ordered(a, b)) == "x + a + b"  # an added group needs none


def test_rendered_block_has_math_reasons_badge_and_code():
    spec = SPECS["background.reparameterization:gradient"]
    built = spec.build()
    text = render_markdown(spec, built, built.check())
    assert "$$\n\\begin{aligned}" in text
    assert '??? success "Checked by SymPy: 4 steps, 1 numeric check"' in text
    assert "    ```python" in text and "def gradient(d):" in text
    assert "gradient.check()" in text
    assert "(1) the distribution of" in text


def test_every_marker_in_the_pages_names_a_derivation():
    pages = [p for p in DOCS.rglob("*.md")
             if p.relative_to(DOCS).parts[0] != "hooks"]
    refs = {ref for page in pages for ref in MARKER.findall(page.read_text())}
    assert refs, "no page embeds a derivation"
    assert refs <= set(SPECS), f"unknown derivations: {refs - set(SPECS)}"


def test_build_hook_reports_page_step_and_sides(monkeypatch):
    PluginError = pytest.importorskip("mkdocs.exceptions").PluginError  # noqa: N806

    path = DOCS / "hooks" / "derivation_hook.py"
    spec = importlib.util.spec_from_file_location("derivation_hook_under_test", path)
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    hook.on_config(SimpleNamespace(config_file_path=str(DOCS.parent / "mkdocs.yml")))

    @derivation("deliberately wrong")
    def wrong(d):
        d.start(Var(a * X + b)).eq(a * Var(X), "forgot the square")

    from diffusion_core import derivations
    monkeypatch.setattr(derivations, "resolve", lambda ref: wrong)
    page = SimpleNamespace(file=SimpleNamespace(src_uri="background/example.md"))
    markdown = 'Text.\n\n{{ derivation("background.example:wrong") }}\n'
    with pytest.raises(PluginError) as info:
        hook.on_page_markdown(markdown, page, None, None)
    message = str(info.value)
    assert "background/example.md" in message
    assert "step 1 (forgot the square)" in message
    assert "Var(X*a + b)" in message and "a*Var(X)" in message

    with pytest.raises(PluginError, match="must stand alone"):
        hook.on_page_markdown('inline {{ derivation("x:y") }} marker', page, None, None)


def test_gauss_pdf_unfolds_to_the_normal_density():
    x, m = sp.symbols("x m", real=True)
    v = sp.Symbol("v", positive=True)
    explicit = sp.exp(-(x - m) ** 2 / (2 * v)) / sp.sqrt(2 * sp.pi * v)
    assert sp.simplify(GaussPdf(x, m, v).unfold() - explicit) == 0


def test_a_joint_density_integrates_out_only_the_variables_a_term_lacks():
    """int int f(y) p(x, y | c) dx dy = int f(y) p(y | c) dy, and averaging over the wrong marginal fails."""
    x, y, c = sp.symbols("x y c", real=True)
    joint = Pdf("q", (x, y), given=c)
    right = Derivation("ok", [Model()])
    right.start(E(sp.log(Pdf("q", y, given=c) / Pdf("p", y)), joint))
    right.eq(KL(Pdf("q", y, given=c), Pdf("p", y)))
    right.check()
    wrong = Derivation("wrong", [Model()])
    wrong.start(E(sp.log(Pdf("q", y, given=(x, c)) / Pdf("p", y, given=x)), joint))
    wrong.eq(E(KL(Pdf("q", y, given=(x, c)), Pdf("p", y, given=x)), Pdf("q", y, given=c)))  # should be q(x | c)
    with pytest.raises(DerivationError):
        wrong.check()


def test_derivatives_of_abstract_functions_and_densities_stay_symbolic():
    """The chain rule through an undefined function or an abstract density is checked, not looped on
    (a Derivative that doit() leaves unchanged used to be walked again forever)."""
    x = sp.Symbol("x", real=True)
    f, q = sp.Function("f"), Pdf("q", x)
    chain = Derivation("chain", [Model()])
    chain.start(sp.Derivative(sp.log(q) + f(x) ** 2, x))
    chain.eq(sp.Derivative(q, x) / q + 2 * f(x) * sp.Derivative(f(x), x))
    chain.check()
    wrong = Derivation("wrong", [Model()])
    wrong.start(sp.Derivative(f(x) ** 2, x))
    wrong.eq(f(x) * sp.Derivative(f(x), x))
    with pytest.raises(DerivationError):
        wrong.check()


def test_gaussian_conditioning_fails_with_a_wrong_coefficient():
    """The Gaussian-conditioning page's central step fails when the posterior variance loses its sigma^2 (the
    observation's noise), or when the gain's k is dropped."""
    import sympy as sp

    from diffusion_core.derivations import DerivationError, GaussPdf
    from diffusion_core.derivations.background import gaussian as g

    wrong = {"variance": (g.post_mean, g.tau**2 / (g.k**2 * g.tau**2 + g.sig**2)),
             "gain": (g.mu + g.tau**2 / (g.k**2 * g.tau**2 + g.sig**2) * (g.y - g.k * g.mu), g.post_var)}
    for name, (mean, var) in wrong.items():
        spec = g.conditioning

        def build(d, mean=mean, var=var):
            d.start(GaussPdf(g.x, g.mu, g.tau**2) * GaussPdf(g.y, g.k * g.x, g.sig**2)
                    / GaussPdf(g.y, g.k * g.mu, g.k**2 * g.tau**2 + g.sig**2))
            d.eq(GaussPdf(g.x, mean, var), "complete the square in $x$", by=g.ratio_is_one())
        mutated = type(spec)(build, spec.title, spec.models)
        with pytest.raises(DerivationError):
            mutated.check()
        assert sp.simplify(var - g.post_var) != 0 or sp.simplify(mean - g.post_mean) != 0, name
    assert g.conditioning.check().steps  # the right coefficients pass


def test_the_likelihood_page_fails_with_a_wrong_coefficient():
    """The likelihood page's derivations fail when a coefficient changes: the continuity equation with the wrong
    sign, the slope of the normal-data velocity without its (1 - t), Rademacher's variance with E[z^4] = 3 (the
    normal probe's), and the bits-per-dimension offset with the wrong sign."""
    import sympy as sp

    from diffusion_core.derivations import DerivationError, antiderivative, ordered, under
    from diffusion_core.derivations.quality import likelihood as L
    from diffusion_core.derivations.score.sde import Calculus, Dx

    backwards = Calculus("the continuity equation with the sign flipped",
                         after={sp.Derivative(L.p, L.t): sp.Derivative(L.p * L.v, L.x)})

    def flow(d):
        d.start(ordered(sp.Derivative(sp.log(L.p), L.t), L.v * Dx(sp.log(L.p))))
        d.eq(ordered(sp.Derivative(L.p, L.t), L.v * Dx(L.p)) / L.p, "", by=under(L.ANY_FLOW))
        d.eq(ordered(-Dx(L.p * L.v), L.v * Dx(L.p)) / L.p, "", by=under(backwards))

    def slope(d):
        gain = (L.t - L.s**2) / L.var_t
        d.start(sp.Integral(gain, (L.t, L.t0, L.t1)))
        d.eq(sp.log(L.var_t.subs(L.t, L.t1) / L.var_t.subs(L.t, L.t0)) / 2, "",
             by=antiderivative(sp.log(L.var_t) / 2))

    def rademacher(d):
        d.start(L.Var(L.symmetric))
        d.eq(4 * L.b**2, "")

    def offset(d):
        d.start(-sp.log(L.p_x * sp.Integer(128) ** (-L.D), 2) / L.D)
        d.eq(ordered(-sp.log(L.p_x) / (L.D * sp.log(2)), -7), "")

    cases = [(flow, L.log_density_along.models), (slope, [L.NORMAL_DATA]), (rademacher, [L.NORMAL_PROBES]),
             (offset, [L.INTEGERS])]
    for build, models in cases:
        mutated = type(L.bits_per_dim)(build, "mutated", models)
        with pytest.raises(DerivationError):
            mutated.check()
    for right in (L.log_density_along, L.normal_delta, L.rademacher_variance, L.bits_per_dim):
        assert right.check().steps


def test_the_objective_page_fails_with_a_wrong_coefficient():
    """The one-objective page's derivations fail when a coefficient changes: the rectified-flow velocity factor
    with a minus sign, the cosine density without its 1/pi, the time shift with the wrong sign, and the variance of
    EDM's log-SNR with 2 P_std^2."""
    import sympy as sp

    from diffusion_core.derivations import DerivationError, ordered
    from diffusion_core.derivations.flow import objective as O

    def velocity(d):
        d.start(ordered(O.d_sigma, -O.d_alpha * O.sigma / O.alpha) ** 2)
        d.eq(ordered(1, -sp.exp(-O.lam / 2)) ** 2, "")

    def cosine(d):
        d.start(-sp.Derivative(2 / sp.pi * sp.atan(sp.exp(-O.lam / 2)), O.lam))
        d.eq(sp.exp(-O.lam / 2) / ordered(1, sp.exp(-O.lam)), "")

    def shift(d):
        shifted = O.shift * O.t / ordered(1, (O.shift - 1) * O.t)
        d.start(2 * sp.log((1 - shifted) / shifted))
        d.eq(ordered(2 * sp.log((1 - O.t) / O.t), 2 * sp.log(O.shift)), "")

    def variance(d):
        d.start(O.Var(-2 * ordered(O.P_mean, O.P_std * O.z)))
        d.eq(2 * O.P_std**2, "")

    for build, models in [(velocity, [O.RF]), (cosine, [O.CALCULUS]), (shift, [O.UNIT]),
                          (variance, [O.STANDARD_NORMAL])]:
        with pytest.raises(DerivationError):
            type(O.time_shift)(build, "mutated", models).check()
    for right in (O.velocity_on_rectified_flow, O.cosine_density, O.time_shift, O.lognormal_lambda_variance):
        assert right.check().steps


def test_the_random_walks_and_evaluation_pages_fail_with_a_wrong_coefficient():
    """Random walks: the stationary Ornstein-Uhlenbeck density fails the Fokker-Planck equation when the drift's
    theta is doubled. Evaluation: the expected FD of two samples of normal data fails with v/N for 2v/N."""
    import sympy as sp

    from diffusion_core.derivations import DerivationError, ordered, times
    from diffusion_core.derivations.background import random_walks as R
    from diffusion_core.derivations.quality import evaluation as Q
    from diffusion_core.derivations.score.scores import Agree
    from diffusion_core.derivations.score.sde import Dx

    def stationary(d):
        d.start(ordered(-Dx(-2 * R.theta * R.x * R.p), R.g**2 / 2 * Dx(R.p, 2)))
        d.eq(0, "", by=Agree())

    def expected(d):
        d.start(Q.E(ordered((Q.M_a - Q.M_b) ** 2, (Q.S_a - Q.S_b) ** 2)))
        d.eq(ordered(Q.v / Q.N, times(2 * Q.v, 1 - Q.c**2)), "")

    for build, spec in [(stationary, R.stationary), (expected, Q.expected_same)]:
        with pytest.raises(DerivationError):
            type(spec)(build, "mutated", spec.models).check()
        assert spec.check().steps
    assert sp.Symbol("x", real=True) == R.x  # sde.Dx differentiates in this x, so the mutation is seen
