"""Loss weightings as w(lambda) on the eps error (diffusion_core.weighting), against each paper's own form."""
from __future__ import annotations

import pytest
import torch

from diffusion_core import weighting
from diffusion_core.paths import ContinuousVP, RectifiedFlow, VarianceExploding
from diffusion_core.targets import Coefficients, Target, target_of

F64 = torch.float64


def _coefficients(path, n=32):
    t = torch.linspace(0.02, path.t_max * 0.98, n, dtype=F64)
    return Coefficients(path.alpha(t), path.sigma(t), *path.derivatives(t)), path.log_snr(t)


@pytest.mark.parametrize("target", list(Target))
@pytest.mark.parametrize("path", [ContinuousVP.cosine(), RectifiedFlow(), VarianceExploding()], ids=repr)
def test_target_error_scale_is_the_ratio_of_squared_errors(target, path):
    """Perturb eps_hat by delta at fixed x_t; the target's error, through the conversions, scales by c_y."""
    c, _ = _coefficients(path)
    g = torch.Generator().manual_seed(1)
    x0, eps, delta = (torch.randn(32, generator=g, dtype=F64) for _ in range(3))
    x_t = c.alpha * x0 + c.sigma * eps
    eps_hat = eps + delta
    x0_hat = (x_t - c.sigma * eps_hat) / c.alpha
    err = target_of(target, x0_hat, eps_hat, c, 0.5) - target_of(target, x0, eps, c, 0.5)
    torch.testing.assert_close(err**2 / delta**2, weighting.target_error_scale(target, c, 0.5), rtol=1e-8, atol=0)


def test_min_snr_is_hang_et_al_for_every_target():
    """min(SNR, gamma) on the x0 error; diffusers' forms min(SNR, gamma)/SNR (eps), /(SNR + 1) (v)."""
    c, lam = _coefficients(ContinuousVP.cosine())
    snr, gamma = torch.exp(lam), 5.0
    w = weighting.min_snr(gamma)(lam)
    for target, want in [(Target.EPS, torch.minimum(snr, torch.full_like(snr, gamma)) / snr),
                         (Target.X0, torch.minimum(snr, torch.full_like(snr, gamma))),
                         (Target.V, torch.minimum(snr, torch.full_like(snr, gamma)) / (snr + 1))]:
        torch.testing.assert_close(w / weighting.target_error_scale(target, c), want, rtol=1e-10, atol=0)
    assert bool((w < 1).any()) and bool((w == 1).any())  # the grid spans both sides of SNR = gamma


def test_edm_weighting_leaves_the_preconditioned_output_unweighted():
    """Karras et al. chose lambda(sigma) = 1 / c_out^2: unit weight on F's error (their eq. 8 and sec. 5)."""
    c, lam = _coefficients(VarianceExploding())
    w = weighting.edm(0.5)(lam) / weighting.target_error_scale(Target.EDM, c, 0.5)
    torch.testing.assert_close(w, torch.ones_like(w), rtol=1e-10, atol=0)


def test_uniform_and_sigmoid():
    lam = torch.linspace(-10, 10, 21, dtype=F64)
    assert torch.equal(weighting.uniform(lam), torch.ones_like(lam))
    torch.testing.assert_close(weighting.sigmoid(1.5)(lam), 1 / (1 + torch.exp(lam - 1.5)), rtol=1e-12, atol=0)


def test_arguments_are_checked():
    from diffusion_core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="min_snr_gamma must be > 0"):
        weighting.min_snr(0)
    with pytest.raises(InvalidInput, match="sigma_data must be > 0"):
        weighting.edm(-1)
