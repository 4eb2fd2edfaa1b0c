r"""The exact denoiser of a Gaussian mixture: data whose optimal predictions are known in closed form.

Data :math:`x_0 \sim \sum_k w_k\,\mathcal N(\mu_k, s_k^2)`, each coordinate independently, noised on any Gaussian
path as :math:`x_t = \alpha x_0 + \sigma\epsilon`. Given component :math:`k`,
:math:`x_t \sim \mathcal N(\alpha\mu_k, v_k)` with :math:`v_k = \alpha^2 s_k^2 + \sigma^2`, so

.. math::
    \begin{aligned}
    r_k(x_t) &= p(k \mid x_t) \propto w_k\,\mathcal N(x_t; \alpha\mu_k, v_k), \\
    \mathbb E[x_0 \mid x_t] &= \sum_k r_k \Big(\mu_k + \frac{\alpha s_k^2}{v_k}(x_t - \alpha\mu_k)\Big), \\
    \mathbb E[\epsilon \mid x_t] &= \sum_k r_k\,\frac{\sigma\,(x_t - \alpha\mu_k)}{v_k},
    \end{aligned}

the predictions a network trained to convergence on this data would make (the MSE minimizers), at any
:math:`(\alpha, \sigma)` of any path. Each is written from its own closed form, not one from the other, so that
neither loses digits to the cancellation in :math:`(x_t - \alpha\hat x_0)/\sigma` near the data. The score is
:math:`\nabla\log p_t(x_t) = -\mathbb E[\epsilon \mid x_t]/\sigma` (Tweedie). Everything is computed in float64.

Use it to test a sampler without training (its samples should follow the mixture), or as the "network" of a
toy example: ``GaussianMixture([0.3, 0.7], [-1.0, 0.8], [0.3, 0.4]).eps(x_t, alpha, sigma)``.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ._validation import check_positive_int
from .errors import InvalidInput

F64 = torch.float64


def _f64(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=F64)


class GaussianMixture:
    """An elementwise 1-D Gaussian mixture ``sum_k weights[k] N(means[k], sds[k]**2)``."""

    def __init__(self, weights: Sequence[float], means: Sequence[float], sds: Sequence[float]) -> None:
        try:
            w, mu, sd = (torch.tensor([float(v) for v in seq], dtype=F64) for seq in (weights, means, sds))
        except (TypeError, ValueError):
            raise InvalidInput("weights, means and sds must be sequences of numbers") from None
        if not (len(w) == len(mu) == len(sd) >= 1):
            raise InvalidInput(f"weights, means and sds must be equally long and not empty, got lengths "
                               f"{len(w)}, {len(mu)}, {len(sd)}")
        if not bool(torch.isfinite(torch.cat([w, mu, sd])).all()):
            raise InvalidInput("weights, means and sds must be finite")
        if bool((w <= 0).any()) or abs(w.sum().item() - 1) > 1e-12:
            raise InvalidInput(f"weights must be positive and sum to 1, got {w.tolist()}")
        if bool((sd <= 0).any()):
            raise InvalidInput(f"sds must be positive, got {sd.tolist()}")
        self.weights, self.means, self.sds = w, mu, sd

    def __repr__(self) -> str:
        return (f"GaussianMixture(weights={self.weights.tolist()}, means={self.means.tolist()}, "
                f"sds={self.sds.tolist()})")

    @property
    def mean(self) -> float:
        """:math:`\\mathbb E[x_0] = \\sum_k w_k\\mu_k`."""
        return float((self.weights * self.means).sum())

    @property
    def var(self) -> float:
        """:math:`\\operatorname{Var}[x_0] = \\sum_k w_k(s_k^2 + \\mu_k^2) - \\mathbb E[x_0]^2`."""
        return float((self.weights * (self.sds**2 + self.means**2)).sum()) - self.mean**2

    def sample(self, shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws of :math:`x_0`, float64, of the given shape: a component by its weight, then its normal."""
        shape = tuple(check_positive_int("shape entries", n) for n in shape)
        k = torch.multinomial(self.weights, max(1, int(torch.Size(shape).numel())), replacement=True,
                              generator=generator)
        z = torch.randn(k.shape, dtype=F64, generator=generator)
        return (self.means[k] + self.sds[k] * z).reshape(shape)

    def responsibilities(self, x_t, alpha, sigma) -> torch.Tensor:
        """:math:`r_k(x_t) = p(k \\mid x_t)`, shape ``(*x_t.shape, K)``; ``alpha``, ``sigma`` broadcast."""
        return self._posterior(x_t, alpha, sigma)[-1]

    def x0(self, x_t, alpha, sigma) -> torch.Tensor:
        """:math:`\\mathbb E[x_0 \\mid x_t]` at :math:`x_t = \\alpha x_0 + \\sigma\\epsilon`, float64."""
        x, a, _, var, r = self._posterior(x_t, alpha, sigma)
        return (r * (self.means + a * self.sds**2 * (x - a * self.means) / var)).sum(-1)

    def eps(self, x_t, alpha, sigma) -> torch.Tensor:
        """:math:`\\mathbb E[\\epsilon \\mid x_t]`, float64."""
        x, a, s, var, r = self._posterior(x_t, alpha, sigma)
        return (r * s * (x - a * self.means) / var).sum(-1)

    def score(self, x_t, alpha, sigma) -> torch.Tensor:
        """:math:`\\nabla_{x_t}\\log p_t(x_t)`, float64: minus the mean of the component scores
        :math:`(x_t - \\alpha\\mu_k)/v_k` under :math:`r_k` (written directly, so it holds at :math:`\\sigma = 0`)."""
        x, a, _, var, r = self._posterior(x_t, alpha, sigma)
        return -(r * (x - a * self.means) / var).sum(-1)

    def _posterior(self, x_t, alpha, sigma):
        x, a, s = _f64(x_t)[..., None], _f64(alpha)[..., None], _f64(sigma)[..., None]
        var = a * a * self.sds**2 + s * s
        log_r = torch.log(self.weights) - 0.5 * torch.log(var) - 0.5 * (x - a * self.means) ** 2 / var
        return x, a, s, var, torch.softmax(log_r, dim=-1)
