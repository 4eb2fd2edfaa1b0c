"""Part 5 (flow matching, EDM): a wrong coefficient in each page's central derivation is caught.

The marginal velocity u_t(x_t) = (sigma'/sigma) x_t + (alpha' - alpha sigma'/sigma) E[x_0 | x_t] is derived on
docs/flow/flow-matching.md and checked under data on three points; flipping the sign of sigma' in its last line
must make the check fail (the unchanged derivation passes in test_derivations.py).
"""
from __future__ import annotations

import pytest

from diffusion_core.derivations import Derivation, DerivationError, discover
from diffusion_core.derivations.flow import matching


def mutated(spec, line, change):
    """``spec``'s derivation with ``change`` applied to its line ``line``; every step keeps its check."""
    good = spec.build()
    lines = list(good.lines)
    lines[line] = change(lines[line])
    bad = Derivation(spec.title, spec.models, ref=f"{spec.ref} (mutated)")
    bad.start(lines[0])
    for step, expr in zip(good.steps, lines[1:]):
        bad._add(step.relation, expr, step.why, step.by)
    return bad


def test_a_wrong_sign_in_the_marginal_velocity_fails():
    spec = discover()["flow.matching:marginal_velocity"]
    bad = mutated(spec, -1, lambda e: e.xreplace({matching.ds: -matching.ds}))
    assert bad.lines[-1] != spec.build().lines[-1]
    with pytest.raises(DerivationError, match="step 2"):
        bad.check()


def test_a_wrong_skip_scaling_in_edm_fails():
    """EDM's preconditioning (docs/flow/edm.md): completing the square in c_skip puts its minimum at
    sigma_d^2/(sigma^2 + sigma_d^2); with sigma^2 in the numerator instead, the step must fail."""
    from diffusion_core.derivations.flow import edm

    spec = discover()["flow.edm:skip_scaling"]
    wrong = edm.sigma**2 / (edm.sigma**2 + edm.sd**2)
    bad = mutated(spec, 1, lambda e: e.xreplace({edm.c_skip - edm.C_SKIP: edm.c_skip - wrong}))
    assert bad.lines[1] != spec.build().lines[1]
    with pytest.raises(DerivationError, match="step 1"):
        bad.check()


def test_churn_with_the_wrong_added_variance_fails():
    """EDM's churn: noise of variance sigma_hat^2 (not sigma_hat^2 - sigma^2) would overshoot the level."""
    from diffusion_core.derivations import ordered
    from diffusion_core.derivations.flow import edm as M

    def build(d):
        d.start(M.Var(ordered(M.Y, M.sigma * M.e1, M.sigma_hat * M.e2)))
        d.eq(ordered(M.sd**2, M.sigma_hat**2), "")

    with pytest.raises(DerivationError):
        type(M.churn)(build, "mutated", [M.CHURN]).check()
    assert M.churn.check().steps  # the right variance passes
