"""The errata page (docs/errata.md): each commonly printed wrong form is rejected by the checker.

For every entry, the correct derivation in diffusion_core/derivations/errata/slips.py (or on a
background page) is rebuilt with the wrong form written into one line. The checker must then
raise ``DerivationError`` at the step that introduces it, with the difference of the two
sides "not zero". Each wrong form is also shown to be false at concrete numbers, so the
rejection is a counterexample and not merely something SymPy failed to prove.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import sympy as sp

DOCS = Path(__file__).resolve().parents[1] / "docs"

from diffusion_core.derivations import (E, Derivation, DerivationError, GaussPdf, Model, Var, discover, normal,
                                        ordered, under)
from diffusion_core.derivations._checks import ModelCheck
from diffusion_core.derivations.errata import slips as m

SPECS = discover()
ERRATA = sorted(ref for ref in SPECS if ref.startswith("errata."))


def with_wrong_line(ref, line, wrong, first=None, models=None):
    """Derivation ``ref`` with line ``line`` (0 = the first) replaced by ``wrong``.

    ``first`` is a model checked before the others (a quick concrete counterexample);
    ``models`` replaces the derivation's models altogether.
    """
    built = SPECS[ref].build()
    chosen = list(models or built.models)
    if first is not None:
        chosen = [first] + [model for model in chosen if model is not first]
    d = Derivation(built.title, chosen, ref=f"{ref} (wrong form)")
    lines = list(built.lines)
    lines[line] = wrong
    d.start(lines[0])
    for step, expr in zip(built.steps, lines[1:]):
        by = step.by
        if first is not None and isinstance(by, ModelCheck) and by.models:
            by = under(first, *[model for model in by.models if model is not first])
        {"=": d.eq, "<=": d.le, ">=": d.ge}[step.relation](expr, step.why, by)
    return d


def rejected(d, step):
    with pytest.raises(DerivationError) as info:
        d.check()
    assert info.value.step == step, str(info.value)
    assert "is not zero" in info.value.reason, info.value.reason
    return info.value


def differ(model, lhs, rhs, at):
    """Both sides evaluated under ``model`` at the numbers ``at`` are different numbers."""
    left, right = (float(model.evaluate(side).subs(at).evalf()) for side in (lhs, rhs))
    assert abs(left - right) > 1e-6 * max(1.0, abs(left)), (left, right)


POINT = {m.x0: 0.8, m.xt: -0.5, m.y: 0.3}


@pytest.mark.parametrize("ref", ERRATA)
def test_the_correct_forms_hold(ref):
    SPECS[ref].check()


def test_errata_derivations_are_embedded_in_the_page():
    page = (DOCS / "errata.md").read_text(encoding="utf-8")
    missing = [ref for ref in ERRATA if f'derivation("{ref}")' not in page]
    assert not missing, missing


# ------------------------------------------------------------ the posterior of a forward step
def test_posterior_variance_is_not_beta():
    wrong = -2 * sp.log(GaussPdf(m.y, m.mt, m.beta))
    rejected(with_wrong_line("errata.slips:posterior", 3, wrong, first=m.EXAMPLE), step=3)
    right = -2 * sp.log(GaussPdf(m.y, m.mt, m.bt))
    differ(m.EXAMPLE, wrong, right, POINT)


@pytest.mark.parametrize("wrong_mean", [
    # sqrt(alphabar_t) instead of sqrt(alphabar_{t-1}) in front of x_0 (off by one)
    ordered(sp.sqrt(m.ab) * m.beta / (1 - m.ab) * m.x0,
            sp.sqrt(m.alpha) * (1 - m.ab_prev) / (1 - m.ab) * m.xt),
    # sqrt(alphabar_t) instead of sqrt(alpha_t) in front of x_t (cumulative for one step)
    ordered(sp.sqrt(m.ab_prev) * m.beta / (1 - m.ab) * m.x0,
            sp.sqrt(m.ab) * (1 - m.ab_prev) / (1 - m.ab) * m.xt),
], ids=["x0-coefficient-off-by-one", "xt-coefficient-alphabar"])
def test_posterior_mean_coefficients(wrong_mean):
    wrong = -2 * sp.log(GaussPdf(m.y, wrong_mean, m.bt))
    rejected(with_wrong_line("errata.slips:posterior", 3, wrong, first=m.EXAMPLE), step=3)
    differ(m.EXAMPLE, wrong_mean, m.mu_tilde, POINT)


@pytest.mark.parametrize("wrong", [
    (m.xt - m.beta / sp.sqrt(1 - m.ab) * m.eps) / sp.sqrt(m.ab),      # divides by sqrt(alphabar_t)
    (m.xt - m.beta / (1 - m.ab) * m.eps) / sp.sqrt(m.alpha),          # drops the square root
], ids=["divides-by-sqrt-alphabar", "no-square-root"])
def test_posterior_mean_in_terms_of_noise(wrong):
    rejected(with_wrong_line("errata.slips:posterior_mean_eps", 1, wrong, first=m.EXAMPLE), step=1)
    right = SPECS["errata.slips:posterior_mean_eps"].build().lines[1]
    differ(m.EXAMPLE, wrong, right, {m.xt: -0.5, m.eps: 0.7})


# ------------------------------------------------------------ KL between normal distributions
KL_POINT = {m.mu1: 0.3, m.sigma1: 1.2, m.mu2: -0.5, m.sigma2: 0.7}


@pytest.mark.parametrize("wrong", [
    sp.log(m.sigma2 / m.sigma1) + (m.sigma1**2 + (m.mu1 - m.mu2) ** 2) / (2 * m.sigma2**2),
    sp.log(m.sigma1 / m.sigma2) + (m.sigma1**2 + (m.mu1 - m.mu2) ** 2) / (2 * m.sigma2**2)
    - sp.Rational(1, 2),
], ids=["missing-minus-one-half", "ratio-inverted"])
def test_gaussian_kl(wrong):
    rejected(with_wrong_line("errata.slips:gaussian_kl", 1, wrong), step=1)
    right = SPECS["errata.slips:gaussian_kl"].build().lines[1]
    differ(m.EXACT, wrong, right, KL_POINT)


def test_kl_without_the_half_is_not_zero_for_equal_distributions():
    q = GaussPdf(m.u, m.mu1, m.sigma1**2)
    missing_half = sp.log(m.sigma1 / m.sigma1) + m.sigma1**2 / (2 * m.sigma1**2)
    assert m.EXACT.evaluate(missing_half) == sp.Rational(1, 2)
    assert sp.simplify(m.EXACT.evaluate(m.KL(q, q))) == 0


# ------------------------------------------------------------ variances
a, b = sp.symbols("a b", real=True)


def test_variance_of_an_affine_map_scales_by_the_square():
    wrong = with_wrong_line("background.expectation:variance_affine", 5, a * Var(m.X))
    rejected(wrong, step=5)
    differ(Model(bind={m.X: normal(0, 1)}), Var(a * m.X + b), a * Var(m.X), {a: 3, b: 1})


def test_forward_variance_factors_come_out_squared():
    wrong = ordered(sp.sqrt(m.ab) * Var(m.X), sp.sqrt(1 - m.ab) * Var(m.eps))
    rejected(with_wrong_line("errata.slips:forward_variance", 1, wrong), step=1)
    right = SPECS["errata.slips:forward_variance"].build().lines[0]
    differ(m.DATA_AND_NOISE, wrong, right, {m.ab: 0.25, E(m.X**2): 2, E(m.X): 1})


def test_variance_of_a_sum_needs_independence():
    wrong = Var(m.X) + Var(m.Y)
    for model in (m.GENERAL, m.CORRELATED):
        rejected(with_wrong_line("errata.slips:variance_of_sum", 1, wrong, models=[model]), step=1)
    differ(m.CORRELATED, Var(m.X + m.Y), wrong, {m.c: 0.5})
    # with independence the same line holds: the slip is dropping the assumption
    independent = Model(bind={m.X: normal(0, 1), m.Y: normal(0, 1)})
    with_wrong_line("errata.slips:variance_of_sum", 1, wrong, models=[independent]).check()


def test_reusing_the_noise_in_two_steps():
    reused = Var(ordered(sp.sqrt(m.alpha2) * ordered(sp.sqrt(m.alpha1) * m.x0,
                                                     sp.sqrt(m.beta1) * m.eps1),
                         sp.sqrt(m.beta2) * m.eps1))
    rejected(with_wrong_line("errata.slips:two_steps", 0, reused), step=1)
    differ(m.FRESH_NOISE, reused, 1 - m.alpha1 * m.alpha2, {m.alpha1: 0.9, m.alpha2: 0.8})


# ------------------------------------------------------------ q(x_t | x_0): variance, not scale
@pytest.mark.parametrize("wrong", [
    GaussPdf(m.u, sp.sqrt(m.ab) * m.x0, sp.sqrt(1 - m.ab)),   # standard deviation as the variance
    GaussPdf(m.u, m.ab * m.x0, 1 - m.ab),                     # mean without the square root
], ids=["std-as-variance", "mean-without-root"])
def test_forward_density(wrong):
    rejected(with_wrong_line("errata.slips:forward_density", 2, wrong), step=2)
    right = GaussPdf(m.u, sp.sqrt(m.ab) * m.x0, 1 - m.ab)
    differ(m.STANDARD_NOISE, wrong, right, {m.u: 0.4, m.x0: 1.0, m.ab: 0.5})


def test_forward_variance_is_not_the_standard_deviation():
    wrong = ordered(m.ab * Var(m.X), sp.sqrt(1 - m.ab))
    rejected(with_wrong_line("errata.slips:forward_variance", 2, wrong), step=2)


def test_every_test_the_page_names_exists():
    page = (DOCS / "errata.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(test_\w+)`", page))
    assert named, "the page names no tests"
    assert named <= set(globals()), named - set(globals())
