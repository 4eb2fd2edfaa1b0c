r"""Samplers in k-diffusion's shape: ``sample_*(denoiser, x, ts, ...)``, each a small function over a
:class:`~diffusion_core.denoiser.Denoiser` (which owns the path and the network) and a time grid ``ts``
(:func:`~diffusion_core.grids.time_grid`: decreasing, ending at 0), run by the one loop of
:mod:`diffusion_core.sampling`. They work on every path: on a DDPM path they are DDPM's, DDIM's, DPM-Solver++'s
and EDM's samplers exactly; on rectified flow ``sample_euler`` is the flow-matching Euler step.

Each step gathers :math:`\alpha, \sigma` of its grid point and the next from float64 tables (cast to the
state's dtype) by the step's index tensor, so the loop never reads back to the host and one compiled graph
serves every step. ``clip`` (``"none"``, ``"static"``, ``"dynamic"``) is applied to every :math:`\hat x_0`.
With :math:`\lambda = \log(\alpha^2/\sigma^2)` and :math:`\tilde\sigma = \sigma/\alpha` (EDM's noise level of
:math:`\tilde x = x/\alpha`), every path is the same ODE in :math:`(\tilde x, \tilde\sigma)` (Karras et al.
2022, eq. 4), which is why one implementation serves all.
"""
from __future__ import annotations

import math

import torch

from ._validation import check_choice, check_number
from .denoiser import BaseDenoiser
from .errors import InvalidInput, InvalidInputType
from .paths import DiscreteVP
from .reverse import Clip, VarianceType, clip_prediction
from .sampling import SampleResult, run
from .step_grid import StepGrid

__all__ = ["sample_ddpm", "sample_ddim", "sample_euler", "sample_heun", "sample_dpmpp_2m", "sample_edm",
           "LOWER_ORDER_FINAL_BELOW"]

LOWER_ORDER_FINAL_BELOW = 15  # diffusers' DPMSolverMultistepScheduler: lower_order_final for fewer than 15 steps


def _predictor(denoiser: BaseDenoiser, grid: StepGrid, labels, clip, percentile: float):
    """``pred(x, k)``: the denoiser's prediction at grid time ``k`` (or at the times ``t=`` off the grid),
    :math:`\\hat x_0` clipped by ``clip``. ``keep=True`` for an :math:`\\hat x_0` the sampler keeps across network
    calls or returns as the sample."""
    clip = check_choice("clip", clip, Clip)
    denoiser = denoiser.for_run()

    def pred(x: torch.Tensor, k: torch.Tensor | None = None, *, t: torch.Tensor | None = None, keep: bool = False):
        if t is None:
            raw = denoiser.predict(x, grid.time(k), grid.coefficients(k), grid.network_input_time(k), labels=labels)
        else:
            raw = denoiser(x, t, labels=labels)
        p = clip_prediction(raw, x, clip, percentile)
        # Unclipped, x0_hat can be the network's own output (the x0 target), which a network compiled alone with
        # CUDA graphs overwrites at its next call: a kept one is copied (outside torch.compile; a compiled step is
        # one graph, whose outputs the loop copies anyway).
        if keep and p is raw and not torch.compiler.is_compiling():
            p = p._replace(x0=p.x0.clone())
        return p

    return pred


@torch.no_grad()
def sample_ddim(denoiser: BaseDenoiser, x: torch.Tensor, ts: torch.Tensor, *, eta: float = 0.0,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                clip: Clip | str = Clip.NONE, percentile: float = 0.995, **loop) -> SampleResult:
    r"""DDIM (Song et al. 2021, eq. 12): from :math:`t` to the next grid time :math:`s`,
    :math:`x_s = \alpha_s\hat x_0 + \sqrt{\sigma_s^2 - c^2}\,\hat\epsilon + c\,z` with
    :math:`c = \eta\,\sigma_s\sqrt{1 - e^{\lambda_t - \lambda_s}}` (their eq. 16: :math:`\eta = 1` is the posterior
    :math:`q(x_s \mid x_t, \hat x_0)`'s standard deviation, DDPM's). :math:`\eta = 0` is deterministic and is
    Euler's method on the probability-flow ODE in :math:`(\tilde x, \tilde\sigma)`. ``loop``: ``compile``,
    ``progress``, ``return_trajectory`` (:func:`~diffusion_core.sampling.run`)."""
    eta = check_number("eta", eta)
    if not 0.0 <= eta <= 1.0:
        raise InvalidInput(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM's variance), got {eta}")
    g = StepGrid(denoiser, x, ts)
    pred = _predictor(denoiser, g, labels, clip, percentile)
    if eta > 0:
        lam = torch.log(g.alpha64) * 2 - torch.log(g.sigma64) * 2
        post_sd = g.sigma64[1:] * torch.sqrt((-torch.expm1(lam[:-1] - lam[1:])).clamp(min=0))
        c_noise = g.table(eta * post_sd, x)  # 0 at the step to the data

    def step(x, k, prev, z):
        p = pred(x, k)
        after = g.after(k)
        a_s, s_s = g.col(g.alpha, after), g.col(g.sigma, after)
        if eta == 0:  # a constant of the run: no noise term at all
            return a_s * p.x0 + s_s * p.eps, p.x0
        c = g.col(c_noise, k)
        return a_s * p.x0 + torch.sqrt((s_s**2 - c**2).clamp(min=0)) * p.eps + c * z, p.x0

    return run(step, x, g.steps, noisy=eta > 0, generator=generator, desc=f"DDIM-{g.steps}", name="sample_ddim", **loop)


def sample_euler(denoiser: BaseDenoiser, x: torch.Tensor, ts: torch.Tensor, **options) -> SampleResult:
    r"""Euler's method on the probability-flow ODE, :math:`d\tilde x/d\tilde\sigma = (\tilde x - \hat x_0)/\tilde\sigma`
    (Karras et al. 2022, eq. 4; k-diffusion's ``sample_euler``). A step to :math:`s` gives
    :math:`\tilde x_s = \hat x_0 + \tilde\sigma_s\hat\epsilon`, that is :math:`x_s = \alpha_s\hat x_0 + \sigma_s\hat\epsilon`:
    DDIM with :math:`\eta = 0` on every path (Song et al. 2021, sec. 4.3), and on rectified flow, where
    :math:`\alpha, \sigma` are linear in :math:`t`, the flow-matching step :math:`x + (s - t)\hat u`
    (diffusers' ``FlowMatchEulerDiscreteScheduler``). Options as for :func:`sample_ddim` without ``eta``.

    On a DDPM path, with :math:`\bar x = x/\sqrt{\bar\alpha}` and :math:`\bar\sigma = \sqrt{1-\bar\alpha}/\sqrt{\bar\alpha}`,
    Euler's step with the slope :math:`\hat\epsilon` is DDIM's update:

    .. math::
        :checked-by: score.solvers:ddim_is_euler
    """
    if "eta" in options:
        raise InvalidInput("eta is not an option of sample_euler (deterministic); use sample_ddim(eta=...)")
    return sample_ddim(denoiser, x, ts, **options)


@torch.no_grad()
def sample_ddpm(denoiser: BaseDenoiser, x: torch.Tensor, ts: torch.Tensor, *,
                variance: VarianceType | str = VarianceType.FIXED_SMALL, generator: torch.Generator | None = None,
                labels: torch.Tensor | None = None, clip: Clip | str = Clip.NONE, percentile: float = 0.995,
                **loop) -> SampleResult:
    r"""Ancestral sampling (Ho et al. 2020, algorithm 2): :math:`x_s \sim \mathcal N(\tilde\mu, \sigma^2 I)` with
    :math:`\tilde\mu` the mean of the path's posterior :math:`q(x_s \mid x_t, \hat x_0)`,

    :math:`\tilde\mu = \frac{\alpha_{t|s}\sigma_s^2}{\sigma_t^2} x_t + \frac{\alpha_s\sigma_{t|s}^2}{\sigma_t^2}\hat x_0`,
    :math:`\alpha_{t|s} = \alpha_t/\alpha_s`, :math:`\sigma_{t|s}^2 = \sigma_t^2 - \alpha_{t|s}^2\sigma_s^2`
    (Kingma et al. 2021, eq. 31-33; on neighbouring DDPM steps these are :math:`\tilde\mu_t` and
    :math:`\beta_t`), and ``variance`` :math:`\sigma^2`: ``"fixed_small"`` the posterior's
    :math:`\sigma_{t|s}^2\sigma_s^2/\sigma_t^2` (:math:`\tilde\beta`), ``"fixed_large"`` :math:`\sigma_{t|s}^2`
    (:math:`\beta`), ``"learned_range"`` between their logs by the network's variance channels (Nichol &
    Dhariwal eq. 15). No noise at the last step."""
    variance = check_choice("variance", variance, VarianceType)
    g = StepGrid(denoiser, x, ts)
    pred = _predictor(denoiser, g, labels, clip, percentile)
    a, s, a_s, s_s = g.alpha64[:-1], g.sigma64[:-1], g.alpha64[1:], g.sigma64[1:]
    s2_ts = s**2 - (a / a_s) ** 2 * s_s**2  # beta between the two steps
    coef_x0, coef_xt = g.table(a_s * s2_ts / s**2, x), g.table((a / a_s) * s_s**2 / s**2, x)
    # (the last entries, log 0 at the step to the data, are never read: that step adds no noise)
    log_large, log_small = g.table(torch.log(s2_ts), x), g.table(torch.log(s2_ts * s_s**2 / s**2), x)

    def step(x, k, prev, z):
        p = pred(x, k)
        mean = g.col(coef_x0, k) * p.x0 + g.col(coef_xt, k) * x
        if variance is VarianceType.FIXED_SMALL:
            log_var = g.col(log_small, k)
        elif variance is VarianceType.FIXED_LARGE:
            log_var = g.col(log_large, k)
        else:
            if p.var_output is None:
                raise InvalidInput("variance='learned_range' needs a denoiser with learned_variance=True")
            frac = (p.var_output + 1) / 2  # the network's v in [-1, 1] mapped to eq. 15's [0, 1]
            log_var = frac * g.col(log_large, k) + (1 - frac) * g.col(log_small, k)
        return mean + torch.exp(0.5 * log_var) * z, p.x0

    def last(x, k, prev, z):  # to the data: the posterior mean is x0_hat itself, and no noise
        p = pred(x, k, keep=True)
        return p.x0, p.x0

    return run(step, x, g.steps, last=last, noisy=True, generator=generator, desc=f"DDPM-{g.steps}", name="sample_ddpm", **loop)


def _edm_sigmas(g: StepGrid, fn: str) -> torch.Tensor:
    """:math:`\\tilde\\sigma = \\sigma/\\alpha` at the grid in float64, which must start where :math:`\\alpha > 0`
    (unless the only step is the last, to the data, which needs no :math:`x/\\alpha`)."""
    if g.steps > 1 and not bool(g.alpha64[0] > 0):
        raise InvalidInput(f"{fn} works in EDM's x/alpha, undefined where alpha = 0 (the grid's first time, zero "
                           "terminal SNR or t = 1 on rectified flow): start the grid below it (time_grid(..., "
                           "sigma_max=80)), or use sample_ddim / sample_dpmpp_2m")
    return g.sigma64 / g.alpha64


def _heun_coefficients(s: torch.Tensor, s_next: torch.Tensor, a_next: torch.Tensor) -> tuple[torch.Tensor, ...]:
    r"""Per step ``k`` from noise level ``s[k]`` to the grid's next (``s_next[k]``, ``a_next[k]``: its
    :math:`\tilde\sigma = \sigma/\alpha` and :math:`\alpha`), Algorithm 1's Euler predictor and trapezoidal
    corrector as sums of the state :math:`\tilde x = x/\alpha` and the two :math:`\hat x_0`, in float64. With
    :math:`s, s'` the two noise levels, :math:`a'` the next :math:`\alpha` and :math:`h = s' - s`: the Euler point
    :math:`a'(\tilde x + h d)`, :math:`d = (\tilde x - \hat x_0)/s`, is :math:`c_x\tilde x + c_e\hat x_0`; the
    corrected state :math:`a'(\tilde x + \tfrac h2(d + d'))`, :math:`d' = (\tilde x_{\text{Euler}} - \hat x_0')/s'`,
    is :math:`c_x\tilde x + c_0\hat x_0 + c_1\hat x_0'`, with :math:`c_x = a's'/s`, :math:`c_e = -a'h/s`,
    :math:`c_0 = -a'h(2s' - s)/(2ss')`, :math:`c_1 = -a'h/(2s')` (:math:`c_0 + c_1 = a'(1 - s'/s)`: a constant
    :math:`\hat x_0` is followed exactly). The last step, Euler to the data, has a zero row, never read."""
    s, s_next, a_next = s[:-1], s_next[:-1], a_next[:-1]
    h = s_next - s
    c = (a_next * s_next / s, -a_next * h / s, -a_next * h * (2 * s_next - s) / (2 * s * s_next),
         -a_next * h / (2 * s_next))
    return tuple(torch.cat([v, v.new_zeros(1)]) for v in c)


@torch.no_grad()
def sample_heun(denoiser: BaseDenoiser, x: torch.Tensor, ts: torch.Tensor, *, labels: torch.Tensor | None = None,
                clip: Clip | str = Clip.NONE, percentile: float = 0.995, **loop) -> SampleResult:
    r"""EDM's deterministic sampler (Karras et al. 2022, Algorithm 1): Heun's method on
    :math:`d\tilde x/d\tilde\sigma = (\tilde x - \hat x_0)/\tilde\sigma`, each step an Euler predictor and a
    trapezoidal corrector evaluated at the next grid time, except the last step, to :math:`\tilde\sigma = 0`,
    which is Euler only and gives :math:`\hat x_0`. ``N`` steps cost :math:`2N - 1` network calls; the corrector
    evaluates the network at grid times only (on a DDPM path, its integer steps).

    That ODE is the probability-flow ODE written in :math:`\tilde x = x/\alpha` and :math:`\tilde\sigma =
    \sigma/\alpha`; on a variance-preserving path (:math:`\alpha = \sqrt{\bar\alpha}`,
    :math:`\sigma = \sqrt{1-\bar\alpha}`):

    .. math::
        :checked-by: api.solvers:edm_ode
    """
    g = StepGrid(denoiser, x, ts)
    pred = _predictor(denoiser, g, labels, clip, percentile)
    sig = _edm_sigmas(g, "sample_heun")
    c_xb, c_euler, c_0, c_1 = _heun_coefficients(sig[:-1], sig[1:], g.alpha64[1:])
    # x/alpha folded into the state's coefficient
    c_x, c_euler, c_0, c_1 = (g.table(c, x) for c in (c_xb / g.alpha64[:-1], c_euler, c_0, c_1))

    def step(x, k, prev, z):
        u = g.col(c_x, k) * x
        x0 = pred(x, k, keep=True).x0
        x0_next = pred(torch.addcmul(u, g.col(c_euler, k), x0), g.after(k)).x0  # at the Euler point
        return torch.addcmul(torch.addcmul(u, g.col(c_0, k), x0), g.col(c_1, k), x0_next), x0

    def last(x, k, prev, z):  # Euler to sigma = 0: xb + (0 - s)(xb - D)/s = D, and alpha = 1 there
        x0 = pred(x, k, keep=True).x0
        return x0, x0

    return run(step, x, g.steps, last=last, desc=f"Heun-{g.steps}", name="sample_heun", **loop)


def _dpmpp_2m_coefficients(g: StepGrid, lower_order_final: bool) -> tuple[torch.Tensor, ...]:
    r"""Per step ``k`` (from grid time :math:`k` to :math:`k+1`), the update
    :math:`x_{k+1} = c_x x + c_0 \hat x_0 + c_1 (\hat x_0 - \hat x_0^{prev})`, in float64."""
    lam = torch.log(g.alpha64) - torch.log(g.sigma64)  # half the log-SNR: +inf at the data, -inf where alpha = 0
    h = lam[1:] - lam[:-1]  # this step's increment, +inf for the step to the data
    cx = g.sigma64[1:] / g.sigma64[:-1]
    c0 = g.alpha64[1:] * -torch.expm1(-h)  # -alpha_next (e^{-h} - 1); = alpha_next where h = +inf
    h_prev = torch.cat([h.new_full((1,), float("nan")), h[:-1]])
    # The second-order term c0 / (2 r), r = h_prev / h, is absent at the first step (no previous x0), at the last
    # (h = inf: its coefficient would be infinite), and with lower_order_final and few steps at the step into the
    # lowest visited time. At zero terminal SNR h_prev = inf at the second step and the term vanishes by itself.
    c1 = c0 * h / (2 * h_prev)
    n = g.steps
    first_order = torch.zeros(n, dtype=torch.bool)
    first_order[[0, n - 1]] = True
    if lower_order_final and n < LOWER_ORDER_FINAL_BELOW:
        first_order[max(n - 2, 0)] = True
    return cx, c0, torch.where(first_order, torch.zeros_like(c1), c1)


@torch.no_grad()
def sample_dpmpp_2m(denoiser: BaseDenoiser, x: torch.Tensor, ts: torch.Tensor, *, lower_order_final: bool = True,
                    labels: torch.Tensor | None = None, clip: Clip | str = Clip.NONE, percentile: float = 0.995,
                    **loop) -> SampleResult:
    r"""DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): the multistep second-order solver of the probability-flow
    ODE in the data prediction, one network call per step.

    In :math:`\lambda = \log(\alpha/\sigma)` (half the log-SNR, as in the paper) the ODE is
    :math:`dx/d\lambda = -\alpha^2 x + \alpha\hat x_0`, and variation of constants solves its linear part
    exactly: from :math:`x_s` at :math:`\lambda_s`,
    :math:`x(\lambda) = \sigma(\lambda)\big(x_s/\sigma(\lambda_s) + \int_{\lambda_s}^{\lambda} e^u\hat x_0(u)\,du\big)`,
    which solves the ODE (the variance-preserving case):

    .. math::
        :checked-by: score.solvers:exact_solution

    Holding :math:`\hat x_0` at its value at the start of the step gives the first-order step, which is DDIM:

    .. math::
        :checked-by: score.solvers:first_order_is_ddim

    With :math:`h_k = \lambda_{k+1} - \lambda_k`, that step is
    :math:`x_{k+1} = \frac{\sigma_{k+1}}{\sigma_k}x_k - \alpha_{k+1}(e^{-h_k} - 1)\hat x_0`, and 2M replaces
    :math:`\hat x_0` by :math:`(1 + \frac{1}{2r_k})\hat x_0 - \frac{1}{2r_k}\hat x_0^{prev}`, :math:`r_k = h_{k-1}/h_k`,
    which the code computes as :math:`c_x x + c_0\hat x_0 + c_1(\hat x_0 - \hat x_0^{prev})`:

    .. math::
        :checked-by: score.solvers:dpmpp_2m_update

    First order: the first step, the last (to the data, where it gives :math:`\hat x_0`), and with
    ``lower_order_final`` and fewer than 15 steps the step into the last grid time before the data (as diffusers'
    ``DPMSolverMultistepScheduler(lower_order_final=True)``)."""
    if not isinstance(lower_order_final, bool):
        raise InvalidInputType(f"lower_order_final must be a bool, got {type(lower_order_final).__name__}")
    g = StepGrid(denoiser, x, ts)
    pred = _predictor(denoiser, g, labels, clip, percentile)
    cx, c0, c1 = (g.table(c, x) for c in _dpmpp_2m_coefficients(g, lower_order_final))

    def step(x, k, prev, z):
        x0 = pred(x, k, keep=True).x0
        # the second-order correction c1 (x0 - prev) = c0 (D - x0); c1 = 0 exactly at the first-order steps
        return g.col(cx, k) * x + g.col(c0, k) * x0 + g.col(c1, k) * (x0 - prev), x0

    def last(x, k, prev, z):  # sigma_next = 0, alpha_next = 1: the update is exactly x0
        x0 = pred(x, k, keep=True).x0
        return x0, x0

    return run(step, x, g.steps, last=last, desc=f"DPM++2M-{g.steps}", name="sample_dpmpp_2m", **loop)


@torch.no_grad()
def sample_edm(denoiser: BaseDenoiser, x: torch.Tensor, ts: torch.Tensor, *, s_churn: float = 0.0,
               s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0,
               generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
               clip: Clip | str = Clip.NONE, percentile: float = 0.995, **loop) -> SampleResult:
    r"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): before each Heun step, where
    :math:`S_\mathrm{tmin} \le \tilde\sigma \le S_\mathrm{tmax}`, raise the noise level to
    :math:`\hat\sigma = \tilde\sigma(1 + \gamma)`, :math:`\gamma = \min(S_\mathrm{churn}/N, \sqrt2 - 1)`, by adding
    fresh noise of standard deviation :math:`S_\mathrm{noise}\sqrt{\hat\sigma^2 - \tilde\sigma^2}`; then the Heun
    step from :math:`\hat\sigma` as in :func:`sample_heun`. ``s_churn = 0`` is :func:`sample_heun`. The network is
    evaluated at :math:`\hat\sigma`, between grid times: a continuous path is needed for ``s_churn > 0``. No churn
    at the step to the data."""
    for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_noise", s_noise)):
        if not check_number(name, value) >= 0:
            raise InvalidInput(f"{name} must be >= 0, got {value}")
    check_number("s_tmax", s_tmax, finite=False)
    g = StepGrid(denoiser, x, ts)
    if s_churn > 0 and isinstance(denoiser.path, DiscreteVP):
        raise InvalidInput("s_churn > 0 evaluates the network between a DDPM schedule's integer steps; use a "
                           "continuous path, or sample_ddpm / sample_ddim(eta > 0) for stochastic DDPM sampling")
    pred = _predictor(denoiser, g, labels, clip, percentile)
    sig64 = _edm_sigmas(g, "sample_edm")
    gamma = torch.where((sig64[:-1] >= s_tmin) & (sig64[:-1] <= s_tmax),
                        torch.full_like(sig64[:-1], min(s_churn / g.steps, math.sqrt(2) - 1)), torch.zeros_like(sig64[:-1]))
    gamma[-1] = 0.0
    sig_hat64 = sig64[:-1] * (1 + gamma)
    t_hat64 = torch.where(gamma > 0, denoiser.path.t_of_log_snr(-2 * torch.log(sig_hat64)), g.ts.cpu()[:-1])
    a_hat, t_hat = g.table(denoiser.path.alpha(t_hat64), x), t_hat64.to(x.device)
    extra = g.table(s_noise * torch.sqrt(sig_hat64**2 - sig64[:-1] ** 2), x)

    c_xb, c_euler, c_0, c_1 = (g.table(c, x) for c in _heun_coefficients(sig_hat64, sig64[1:], g.alpha64[1:]))

    def step(x, k, prev, z):
        xb = x / g.col(g.alpha, k)
        if z is not None:  # raised to sigma-hat
            xb = xb + g.col(extra, k) * z
        u = g.col(c_xb, k) * xb
        x0 = pred(g.col(a_hat, k) * xb, t=t_hat.index_select(0, k).expand(g.batch), keep=True).x0
        x0_next = pred(torch.addcmul(u, g.col(c_euler, k), x0), g.after(k)).x0  # at the Euler point
        return torch.addcmul(torch.addcmul(u, g.col(c_0, k), x0), g.col(c_1, k), x0_next), x0

    def last(x, k, prev, z):
        x0 = pred(x, k, keep=True).x0
        return x0, x0

    return run(step, x, g.steps, last=last, noisy=s_churn > 0, generator=generator, desc=f"EDM-{g.steps}", name="sample_edm", **loop)
