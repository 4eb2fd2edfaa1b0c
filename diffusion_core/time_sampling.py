r"""Where training spends its examples: the density :math:`p(t)` of the training times, for any path.

* :class:`UniformTime`: :math:`t \sim U(0, t_{\max}]`; on a DDPM path a uniform integer step in :math:`1..T`
  (Ho et al. 2020, algorithm 1), drawn exactly as the DDPM trainer always drew it.
* :class:`LogNormalSigma`: EDM's :math:`\ln(\sigma/\alpha) \sim \mathcal N(P_\mathrm{mean}, P_\mathrm{std}^2)`,
  :math:`P_\mathrm{mean} = -1.2`, :math:`P_\mathrm{std} = 1.2` (Karras et al. 2022, table 1).
* :class:`LogitNormalTime`: Stable Diffusion 3's :math:`t = \mathrm{sigmoid}(u)`, :math:`u \sim \mathcal N(m, s^2)`,
  :math:`m = 0`, :math:`s = 1` (Esser et al. 2024, sec. 3.1), on :math:`[0, 1]` (scaled to ``t_max``).

On a DDPM path the last two are rounded to the nearest integer step in :math:`1..T`.
Each returns float64 times of shape ``(n,)`` on ``device``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InvalidInput
from .paths import DiscreteVP, GaussianPath

__all__ = ["UniformTime", "LogNormalSigma", "LogitNormalTime"]


@dataclass(frozen=True)
class UniformTime:
    """:math:`t \\sim U(0, t_{\\max}]`; on a DDPM path ``randint(0, T) + 1``."""

    def __call__(self, path: GaussianPath, n: int, generator=None, device=None) -> torch.Tensor:
        if isinstance(path, DiscreteVP):
            return torch.randint(0, path.T, (n,), generator=generator, device=device).to(torch.float64) + 1
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        return (1 - u) * path.t_max  # in (0, t_max]: t = 0 (clean data) carries no noise to predict


@dataclass(frozen=True)
class LogNormalSigma:
    """EDM: :math:`\\ln(\\sigma/\\alpha) \\sim \\mathcal N(P_\\mathrm{mean}, P_\\mathrm{std}^2)`, capped at the
    path's ``t_max``."""

    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self):
        if not self.p_std > 0:
            raise InvalidInput(f"p_std must be > 0, got {self.p_std}")

    def __call__(self, path: GaussianPath, n: int, generator=None, device=None) -> torch.Tensor:
        log_sigma = self.p_mean + self.p_std * torch.randn(n, generator=generator, device=device, dtype=torch.float64)
        t = path.t_of_log_snr(-2 * log_sigma).clamp(max=path.t_max)
        return t.round().clamp(1, path.T) if isinstance(path, DiscreteVP) else t


@dataclass(frozen=True)
class LogitNormalTime:
    """SD3: :math:`t = t_{\\max}\\,\\mathrm{sigmoid}(m + s\\,z)`, :math:`z \\sim \\mathcal N(0, 1)`."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self):
        if not self.std > 0:
            raise InvalidInput(f"std must be > 0, got {self.std}")

    def __call__(self, path: GaussianPath, n: int, generator=None, device=None) -> torch.Tensor:
        z = torch.randn(n, generator=generator, device=device, dtype=torch.float64)
        t = path.t_max * torch.sigmoid(self.mean + self.std * z)
        return t.round().clamp(1, path.T) if isinstance(path, DiscreteVP) else t
