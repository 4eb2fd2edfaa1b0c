r"""Closed-form oracles for the tests: the exact denoiser of a 1-D (elementwise) Gaussian mixture, usable as a
"network" on any DDPM schedule or Gaussian path, with class-conditional variants, and the data law's CDF, density
and moments. Imported as ``from oracles import ...`` (pytest puts ``tests/`` on the path).

The exact predictions are the library's :class:`diffusion_core.mixture.GaussianMixture` (the formulas, written
once, are in its docstring; ``tests/test_mixture.py`` checks them against quadrature). In EDM's variables
(:math:`\tilde x = x_t/a = x_0 + \tilde\sigma\epsilon`, :math:`\tilde\sigma = s/a`) the denoiser is
:math:`D(\tilde x; \tilde\sigma) = \sum_k r_k (\mu_k + \frac{s_k^2}{s_k^2 + \tilde\sigma^2}(\tilde x - \mu_k))`,
:math:`r_k \propto w_k\mathcal N(\tilde x; \mu_k, s_k^2 + \tilde\sigma^2)`: :meth:`Mixture.denoise` writes it
so, independently, in numpy, for reference solutions.

As a network (:meth:`Mixture.network`), the oracle reads only what a network reads: ``net(x_in, t_in)``, with
``t_in`` the time input the path gives its network (a DDPM schedule's ORIGINAL step, also on a respaced schedule;
``1000 t`` on a continuous VP path or rectified flow; EDM's :math:`c_\mathrm{noise} = \frac14\ln\tilde\sigma` on a
variance-exploding path or for the ``"edm"`` target, whose input is :math:`c_\mathrm{in}\tilde x`), and outputs the
chosen target of the exact prediction. Everything is computed in float64 and returned in the input's dtype.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch
from scipy import integrate, stats

from diffusion_core import Diffusion, NoiseSchedule
from diffusion_core.mixture import GaussianMixture
from diffusion_core.paths import DiscreteVP, GaussianPath, VarianceExploding

__all__ = ["Mixture", "ConditionalMixture", "OracleNetwork", "stratified_normal", "assert_moments",
           "GAUSS", "BIMODAL", "GAUSS_WIDE", "BIMODAL_WIDE"]

F64 = torch.float64
TARGETS = ("eps", "x0", "v", "velocity", "edm")
EDM_SIGMA_DATA = 0.5  # Karras et al. 2022, table 1


def _f64(v) -> torch.Tensor:
    return torch.as_tensor(v, dtype=F64)


class Mixture(GaussianMixture):
    """The library's :class:`~diffusion_core.mixture.GaussianMixture` (its exact posterior predictions at any
    :math:`(\\alpha, \\sigma)`), as a network on any schedule or path, and its law for the tests' statistics."""

    w = property(lambda self: self.weights)
    mu = property(lambda self: self.means)
    sd = property(lambda self: self.sds)

    @property
    def K(self) -> int:
        return len(self.w)

    def __repr__(self) -> str:
        return f"Mixture(weights={self.w.tolist()}, means={self.mu.tolist()}, sds={self.sd.tolist()})"

    def shifted(self, delta: float) -> Mixture:
        """The same mixture with every component moved by ``delta``."""
        return Mixture(self.w.tolist(), (self.mu + delta).tolist(), self.sd.tolist())

    def denoise(self, xb, sig: float) -> np.ndarray:
        """EDM's :math:`D(\\tilde x; \\tilde\\sigma) = \\mathbb E[x_0 \\mid x_0 + \\tilde\\sigma\\epsilon = \\tilde x]`
        in numpy, written in those variables (see the module docstring), for a 1-D array ``xb``."""
        w, mu, sd = self.w.numpy(), self.mu.numpy(), self.sd.numpy()
        xb = np.asarray(xb, dtype=np.float64)[:, None]
        var = sd**2 + sig**2
        log_r = np.log(w) - 0.5 * np.log(var) - 0.5 * (xb - mu) ** 2 / var
        r = np.exp(log_r - log_r.max(axis=1, keepdims=True))
        r /= r.sum(axis=1, keepdims=True)
        return (r * (mu + sd**2 / var * (xb - mu))).sum(axis=1)

    # ------------------------------------------------------------------ as a network
    def network(self, on: Diffusion | NoiseSchedule | GaussianPath, target: str | None = None, *,
                calls: list | None = None) -> OracleNetwork:
        """``net(x_in, t_in)``: this mixture's exact ``target`` on ``on`` (see :class:`OracleNetwork`)."""
        return OracleNetwork([self], on, target, calls=calls)

    def eps_model(self, schedule: NoiseSchedule, calls: list | None = None) -> OracleNetwork:
        """The exact noise predictor on ``schedule`` (``network(schedule, "eps")``)."""
        return self.network(schedule, "eps", calls=calls)

    # ------------------------------------------------------------------ the law of x0 (numpy)
    def pdf(self, x) -> np.ndarray | float:
        x = np.asarray(x, dtype=np.float64)
        out = (self.w.numpy() * stats.norm.pdf(x[..., None], self.mu.numpy(), self.sd.numpy())).sum(-1)
        return float(out) if out.ndim == 0 else out

    def logpdf(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)[..., None]
        return np.logaddexp.reduce(np.log(self.w.numpy()) + stats.norm.logpdf(x, self.mu.numpy(), self.sd.numpy()),
                                   axis=-1)

    def cdf(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)[..., None]
        return (self.w.numpy() * stats.norm.cdf(x, self.mu.numpy(), self.sd.numpy())).sum(-1)

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def central_moment4(self) -> float:
        """:math:`\\mathbb E[(x_0 - \\mathbb E x_0)^4]`, by quadrature (for the standard error of a sample std)."""
        m = self.mean
        lo, hi = float((self.mu - 12 * self.sd).min()), float((self.mu + 12 * self.sd).max())
        return integrate.quad(lambda x: (x - m) ** 4 * self.pdf(x), lo, hi, limit=200)[0]


class ConditionalMixture:
    """A class-conditional mixture: label ``c`` in ``0..K-1`` has the law ``classes[c]``; the null label ``K``
    has ``null``, by default the marginal :math:`\\sum_c \\pi_c\\,p(x_0 \\mid c)` (what a network trained with
    label dropout learns for it). ``config.num_classes = K``, as our networks have, for guidance to find the null
    label."""

    def __init__(self, classes: Sequence[Mixture], class_weights: Sequence[float] | None = None,
                 null: Mixture | None = None):
        self.classes = list(classes)
        K = len(self.classes)
        self.pi = np.full(K, 1 / K) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
        if self.pi.shape != (K,) or abs(self.pi.sum() - 1) > 1e-12:
            raise ValueError("class_weights must hold one weight per class, summing to 1")
        if null is None:
            null = Mixture(np.concatenate([p * m.w.numpy() for p, m in zip(self.pi, self.classes)]).tolist(),
                           torch.cat([m.mu for m in self.classes]).tolist(),
                           torch.cat([m.sd for m in self.classes]).tolist())
        self.null = null
        self.config = SimpleNamespace(num_classes=K)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_posterior(self, x) -> np.ndarray:
        """:math:`p(c \\mid x_0 = x)` of the data, shape ``(*x.shape, K)``."""
        lp = np.stack([np.log(p) + m.logpdf(x) for p, m in zip(self.pi, self.classes)], axis=-1)
        return np.exp(lp - np.logaddexp.reduce(lp, axis=-1, keepdims=True))

    def network(self, on: Diffusion | NoiseSchedule | GaussianPath, target: str | None = None, *,
                calls: list | None = None) -> OracleNetwork:
        """``net(x_in, t_in, labels)``: the exact ``target`` of each row's label's law (see :class:`OracleNetwork`)."""
        return OracleNetwork(self.classes + [self.null], on, target, calls=calls, config=self.config)


class OracleNetwork:
    """The exact prediction of a mixture (or of one mixture per label) as a network ``net(x_in, t_in[, labels])``.

    ``on`` says what ``t_in`` is and what :math:`\\alpha, \\sigma` are:

    * a :class:`Diffusion`, a :class:`NoiseSchedule` or a :class:`DiscreteVP`: ``t_in`` is one of the schedule's
      time inputs (``schedule.timesteps``: the original step, also on a respaced schedule; another schedule's
      respacing of this one gives the same inputs); :math:`a = \\sqrt{\\bar\\alpha}`, :math:`s = \\sqrt{1-\\bar\\alpha}`
      from the schedule's ``alphas_cumprod`` in float64, as the DDPM papers write them. The target defaults to the
      diffusion's parameterization (``"eps"`` otherwise).
    * any other :class:`GaussianPath`: ``t_in`` is ``path.network_time(t)`` (``1000 t``, or
      :math:`\\frac14\\ln\\sigma` on a variance-exploding path); :math:`a, s` are ``path.alpha(t), path.sigma(t)``.
    * target ``"edm"`` on any of them: the input is :math:`c_\\mathrm{in}\\tilde x` at
      :math:`c_\\mathrm{noise} = \\frac14\\ln\\tilde\\sigma` and the output :math:`F` with
      :math:`D = c_\\mathrm{skip}\\tilde x + c_\\mathrm{out}F` (Karras et al. 2022, table 1, ``sigma_data`` 0.5).

    Targets: ``eps``, ``x0``, ``v`` (:math:`a\\epsilon - s x_0`), ``velocity`` (:math:`\\dot a x_0 + \\dot s\\epsilon`,
    continuous paths), ``edm``. ``calls`` (a list) receives a copy of every ``t_in``. Data-dependent checks (a time
    input the schedule does not have, a label out of range) run eagerly only, so the network also traces whole
    under ``torch.compile(fullgraph=True)``.
    """

    def __init__(self, laws: list[Mixture], on, target: str | None = None, *, calls: list | None = None,
                 config: SimpleNamespace | None = None, sigma_data: float = EDM_SIGMA_DATA):
        if isinstance(on, Diffusion):
            target = on.parameterization.value if target is None else target
            on = on.schedule
        self.target = "eps" if target is None else getattr(target, "value", target)
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.calls, self.sigma_data = calls, sigma_data
        if config is not None:
            self.config = config
        self.conditional = config is not None
        if isinstance(on, DiscreteVP):
            on = on.schedule
        if isinstance(on, NoiseSchedule):
            self.path, ts = None, on.timesteps.cpu()
            self.index_of = torch.full((int(ts.max()) + 1,), -1, dtype=torch.long)
            self.index_of[ts] = torch.arange(len(ts))
            self.ab = on.alphas_cumprod.detach().cpu().to(F64)
        elif isinstance(on, GaussianPath):
            self.path = on
        else:
            raise TypeError(f"on must be a Diffusion, NoiseSchedule or GaussianPath, got {type(on).__name__}")
        if self.target == "velocity" and self.path is None:
            raise ValueError("the velocity target needs a continuous path (its time derivatives)")
        self.laws = laws

    def _coefficients(self, t_in: torch.Tensor, shape):
        """(a, s, t) at the time input: t is the path's time (None on a schedule)."""
        if self.path is None:
            t_in = t_in.cpu()
            if not torch.compiler.is_compiling():
                assert not t_in.is_floating_point(), f"a schedule's time input is an integer step, got {t_in.dtype}"
                assert bool((t_in >= 0).all()) and bool((t_in < len(self.index_of)).all()) and \
                    bool((self.index_of[t_in] >= 0).all()), f"time inputs not in the schedule: {t_in.tolist()}"
            ab = self.ab[self.index_of[t_in]].reshape(shape)
            return ab.sqrt(), (1 - ab).sqrt(), None
        t_in = t_in.to(F64).cpu()
        t = torch.exp(4 * t_in) if isinstance(self.path, VarianceExploding) else t_in / 1000
        return self.path.alpha(t).reshape(shape), self.path.sigma(t).reshape(shape), t

    def _predict(self, which: str, x, a, s, labels: torch.Tensor | None) -> torch.Tensor:
        """The library mixture's ``which`` ("x0" or "eps") for each row's law (row-wise by label)."""
        if labels is None:
            return getattr(self.laws[0], which)(x, a, s)
        labels = labels.cpu()
        if not torch.compiler.is_compiling():
            assert bool((labels >= 0).all()) and bool((labels < len(self.laws)).all()), labels.tolist()
        rows = labels.reshape(-1, *([1] * (x.ndim - 1)))
        out = torch.zeros_like(x)
        for c, law in enumerate(self.laws):
            out = torch.where(rows == c, getattr(law, which)(x, a, s), out)
        return out

    def __call__(self, x_in: torch.Tensor, t_in: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional and labels is None:
            raise TypeError("this oracle is class-conditional: call it with labels")
        if not self.conditional and labels is not None:
            raise TypeError("this oracle is unconditional: it takes no labels")
        if self.calls is not None and not torch.compiler.is_compiling():
            self.calls.append(t_in.clone())
        shape = (-1, *([1] * (x_in.ndim - 1)))
        xd = x_in.detach().cpu().to(F64)
        if self.target == "edm":
            sig = torch.exp(4 * t_in.detach().cpu().to(F64)).reshape(shape)  # c_noise = ln(sigma / alpha) / 4
            total = sig**2 + self.sigma_data**2
            xb = xd * total.sqrt()  # x_in = c_in xb, c_in = 1 / sqrt(sig^2 + sigma_data^2)
            x0 = self._predict("x0", xb, torch.ones_like(sig), sig, labels)
            c_skip, c_out = self.sigma_data**2 / total, sig * self.sigma_data / total.sqrt()
            return ((x0 - c_skip * xb) / c_out).to(device=x_in.device, dtype=x_in.dtype)
        a, s, t = self._coefficients(t_in.detach(), shape)
        if self.target in ("x0", "eps"):
            out = self._predict(self.target, xd, a, s, labels)
        else:
            x0, eps = self._predict("x0", xd, a, s, labels), self._predict("eps", xd, a, s, labels)
            if self.target == "v":
                out = a * eps - s * x0
            else:
                d_alpha, d_sigma = (v.reshape(shape) for v in self.path.derivatives(t))
                out = d_alpha * x0 + d_sigma * eps
        return out.to(device=x_in.device, dtype=x_in.dtype)


# ----------------------------------------------------------------------------- helpers for sample statistics
def stratified_normal(M: int) -> torch.Tensor:
    """The M quantiles Phi^-1((i + 1/2)/M) as a (M, 1) float32 batch: a deterministic stand-in for N(0, 1) draws."""
    u = (np.arange(M) + 0.5) / M
    return torch.tensor(stats.norm.ppf(u), dtype=torch.float32).reshape(-1, 1)


def assert_moments(x: np.ndarray, data: Mixture, n_se: float = 5.0) -> None:
    """Sample mean and std against the truth, within ``n_se`` standard errors.

    SE(mean) = sd/sqrt(N); SE(var) = sqrt((m4 - var^2)/N) (delta method; m4 the true 4th central moment,
    = 3 var^2 for a Gaussian) and SE(std) = SE(var)/(2 sd)."""
    N = x.size
    sd = data.std
    se_mean = sd / math.sqrt(N)
    se_std = math.sqrt((data.central_moment4() - data.var**2) / N) / (2 * sd)
    assert abs(x.mean() - data.mean) < n_se * se_mean, (x.mean(), data.mean, se_mean)
    assert abs(x.std() - sd) < n_se * se_std, (x.std(), sd, se_std)


# ----------------------------------------------------------------------------- the mixtures the tests share
GAUSS = Mixture([1.0], [0.5], [0.3])
BIMODAL = Mixture([0.3, 0.7], [-1.0, 0.8], [0.3, 0.4])
# for DDIM-50 (a first-order method, see test_samplers.test_ddim50_*): components no narrower than sd = 0.5
GAUSS_WIDE = Mixture([1.0], [0.5], [0.5])
BIMODAL_WIDE = Mixture([0.4, 0.6], [-1.0, 1.5], [0.5, 0.6])


class CorrectedNetwork(torch.nn.Module):
    """A student for the distillation tests: ``data``'s exact network for ``target`` on ``path`` plus a small MLP's
    correction that is zero at the start, so the student begins as the teacher and learns only the difference.
    For a :class:`ConditionalMixture` both take labels (the null label too) and ``config.num_classes`` is K."""

    def __init__(self, data: Mixture | ConditionalMixture, path, target: str) -> None:
        from diffusion_core.nn import MLPDenoiser

        super().__init__()
        self.exact = data.network(path, target)
        classes = data.num_classes if isinstance(data, ConditionalMixture) else 0
        self.correction = MLPDenoiser(dim=2, hidden=64, depth=2, time_embed_dim=32, num_classes=classes)
        if classes:
            self.config = SimpleNamespace(num_classes=classes)
        torch.nn.init.zeros_(self.correction.out.weight)
        torch.nn.init.zeros_(self.correction.out.bias)

    def forward(self, x, t, labels=None):
        if labels is None:
            return self.exact(x, t) + self.correction(x, t)
        return self.exact(x, t, labels) + self.correction(x, t, labels)


def progressive_rounds(net: torch.nn.Module, teacher, path, target: str, grid: torch.Tensor, iters: int,
                       draw, g: torch.Generator) -> dict:
    """Progressive distillation (Salimans & Ho 2022, Algorithm 2) of ``net`` from ``teacher`` (a denoiser) on
    ``grid``, halving to one step, ``iters`` Adam steps (lr 2e-3, batch 256) a round; ``draw(n, g)`` gives a batch
    ``(x, labels or None)``. Each round's student, frozen, with its grid, by step count; the next round's teacher
    and starting point are the last student."""
    import copy

    from diffusion_core.denoiser import Denoiser
    from diffusion_core.distillation import draw_step_times, halve_grid, progressive_distillation_loss

    students = {}
    while grid.numel() > 2:
        student, optimizer = Denoiser(net, path, target), torch.optim.Adam(net.parameters(), lr=2e-3)
        for _ in range(iters):
            (x, labels), noise = draw(256, g), torch.randn(256, 2, generator=g)
            loss = progressive_distillation_loss(student, teacher, x, *draw_step_times(grid, 256, generator=g), noise,
                                                 labels=labels)
            optimizer.zero_grad()
            loss.mean().backward()
            optimizer.step()
        grid = halve_grid(grid)
        teacher = Denoiser(copy.deepcopy(net).requires_grad_(False), path, target)
        students[grid.numel() - 1] = (teacher, grid)
    return students
