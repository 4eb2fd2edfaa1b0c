r"""Fast ODE samplers: DPM-Solver++(2M) and EDM's Heun sampler, plain functions over ``model(x_t, t)``.

Both solve the probability-flow ODE of the (variance-preserving) schedule, the ODE that DDIM with
:math:`\eta = 0` discretizes with Euler steps, in the schedule's own variables: :math:`\alpha_t = \sqrt{\bar\alpha_t}`,
:math:`\sigma_t = \sqrt{1-\bar\alpha_t}`, the log-SNR :math:`\lambda_t = \log(\alpha_t/\sigma_t)` (DPM-Solver++)
and EDM's :math:`\sigma^{\mathrm{edm}}_t = \sigma_t/\alpha_t` with the state :math:`x/\alpha` (Heun).

**Which noise levels are evaluated.** The network is trained at the schedule's integer timesteps only, so
the solvers evaluate it there and nowhere else, as diffusers' DPM-Solver does: they walk a decreasing
sequence of the (possibly respaced) schedule's indices, ``steps`` of them chosen by ``spacing`` (which
includes ``"log-snr"`` and ``"karras"``, rounded to integer timesteps, see :func:`spaced_timesteps`), and
call the model with exactly those indices' time inputs (``schedule.timesteps``; Heun's second evaluation of
a step is at the next visited index). Every coefficient is computed from :math:`\bar\alpha` at visited
indices. The last step goes from the lowest visited index to clean data, :math:`\bar\alpha = 1`
(:math:`\sigma = 0`, :math:`\lambda = +\infty`), which both solvers take exactly as the last
:math:`\hat x_0` prediction, as DDIM's last step does; that step is necessarily first order (a second-order
term's coefficient grows like :math:`h_i \to \infty` there).

We do not feed the network a fractional time input to reach noise levels between the trained ones (as
k-diffusion's wrapper of discrete-time models does by interpolating the timestep): the model's contract
here is an integer ``t`` (a timestep embedding table cannot take 2.5, and a sinusoidal one was never trained
between integers, so its output there is an untested extrapolation, not the trained denoiser); a trained
schedule defines :math:`\bar\alpha` only at integers, so the noise level a fractional ``t`` stands for would
be a choice of interpolation on top; and staying on the grid keeps these solvers' noise levels the same
set that DDPM and DDIM use. The price: the step sequence is quantized (a Karras or log-SNR sequence is
rounded to the nearest timesteps, and cannot be finer than the schedule), and a solver cannot stop at a
noise level below the schedule's first index except by the final :math:`\hat x_0` step.

Each step is a pure tensor function ``step(x, t, prev) -> (x_next, x0_hat)`` with every coefficient gathered
on the device by the index tensor ``t`` from tables built before the loop (in float64, then cast), so the
loop never reads a value back to the host; ``compile=True`` compiles the step (network and update) into one
graph, one CUDA graph replay per step on CUDA, exactly as for :func:`ddim_sample`.
"""
from __future__ import annotations

import torch

from ._progress import progress_bar
from ._validation import check_choice
from .diffusion import Diffusion
from .cpu_threads import AdaptiveThreads
from .errors import InvalidInput, InvalidInputType
from .forward import extract
from .denoiser import as_denoiser
from .reverse import Clip
from .samplers import (Model, SampleResult, _check_compile, _check_start, _compiled, _labels_for, _schedule_for,
                       check_result)
from .schedule import TimestepSpacing

__all__ = ["dpmpp_2m_sample", "heun_sample"]


_COST = {"dpmpp_2m_sample": "one network call per step", "heun_sample": "N steps cost 2N - 1 network calls"}


def _check_steps(fn: str, steps, T: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise InvalidInputType(f"steps must be an int (the number of timesteps {fn} visits), got {type(steps).__name__}")
    if not 1 <= steps <= T:
        raise InvalidInput(f"steps must lie in [1, T={T}] for {fn}: the schedule's timesteps it visits, "
                           f"{_COST[fn]}; got {steps}")
    return steps


def _setup(fn: str, diffusion: Diffusion, x_T: torch.Tensor, steps, spacing, compile) -> tuple[Diffusion, bool]:
    _check_start(x_T)
    compile = _check_compile(compile)
    if not isinstance(diffusion, Diffusion):
        raise InvalidInputType(f"diffusion must be a Diffusion, got {type(diffusion).__name__}")
    steps = _check_steps(fn, steps, diffusion.num_timesteps)
    spacing = check_choice("spacing", spacing, TimestepSpacing)  # checked even when steps == T uses every index
    return _schedule_for(diffusion, steps, spacing, x_T.device), compile


def _denoiser(model, d: Diffusion, labels: torch.Tensor | None, clip):
    r"""``x0_hat(x, t)`` at index tensor ``t`` of ``d``: the :class:`~diffusion_core.denoiser.Denoiser`'s
    :math:`\hat x_0` (a plain network is wrapped; a guided one works as is), clipped by ``clip`` (default:
    ``d``'s clip rule).

    The solvers keep :math:`\hat x_0` across network calls (2M's previous prediction, Heun's two calls per
    step). A network compiled alone with CUDA graphs (:func:`compile_for_sampling`) returns buffers that its
    next call overwrites, and with the x0 parameterization :math:`\hat x_0` is that very tensor: then it is
    copied (outside torch.compile; a compiled step is one graph, whose outputs the loop copies anyway)."""
    denoiser, clip = as_denoiser(model), d.resolve_clip(clip)

    def x0_hat(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pred = denoiser(x, t, d, labels=labels)
        x0 = d.apply_clip(pred.eps, pred.x0, x, t, clip)[1]
        if not torch.compiler.is_compiling() and x0.untyped_storage().data_ptr() == pred.x0.untyped_storage().data_ptr():
            x0 = x0.clone()
        return x0

    return x0_hat


def _walk(step, last, d: Diffusion, x_T: torch.Tensor, *, compiled: bool, progress: bool,
          return_trajectory: bool, desc: str) -> SampleResult:
    """Walk ``d`` from index T-1 down to 0: ``step(x, t, prev)`` at every index but 0, ``last`` at index 0 (the
    step to clean data). ``prev`` is the previous step's :math:`\\hat x_0` (zeros before the first step).

    The same rules as samplers.py's loop for compiled graphs: one ``cudagraph_mark_step_begin()`` per step,
    and nothing a graph returned is kept or fed back: ``x`` and ``prev`` are copied at once into tensors of
    our own (with ``x_T``'s layout, so the graph sees the same strides every step), the trajectory's
    :math:`\\hat x_0` is cloned."""
    B, n = x_T.shape[0], d.num_timesteps
    own = (lambda y: torch.empty_like(x_T).copy_(y)) if compiled else (lambda y: y)
    x, prev = own(x_T), torch.zeros_like(x_T)
    states, preds = ([x_T], []) if return_trajectory else (None, None)
    with AdaptiveThreads.for_device(x.device) as threads:  # on the CPU: the cores others leave free
        for i in progress_bar(range(n - 1, -1, -1), disable=not progress, desc=desc, leave=False):
            threads.update()
            t = torch.full((B,), i, dtype=torch.long, device=x.device)
            if compiled:
                torch.compiler.cudagraph_mark_step_begin()
            x_next, x0 = (step if i > 0 else last)(x, t, prev)
            x, prev = own(x_next), own(x0)
            if return_trajectory:
                states.append(x)
                preds.append(x0.clone())
    if not return_trajectory:
        return SampleResult(x, None, None)
    return SampleResult(x, torch.stack(states), torch.stack(preds))


def _vp_tables(d: Diffusion) -> dict[str, torch.Tensor]:
    """Float64 (CPU) :math:`\\alpha, \\sigma, \\lambda` at each index ``i`` of ``d`` and at its step's target
    (index ``i-1``, or clean data for ``i = 0``: :math:`\\alpha = 1, \\sigma = 0, \\lambda = +\\infty`)."""
    s = d.schedule.to("cpu", torch.float64)
    ab, ab_next = s.alphas_cumprod, s.alphas_cumprod_prev
    a, sig = ab.sqrt(), s.sqrt_one_minus_alphas_cumprod
    a_next, sig_next = ab_next.sqrt(), (1 - ab_next).sqrt()
    lam, lam_next = a.log() - sig.log(), a_next.log() - sig_next.log()  # +inf where sigma = 0, -inf where alpha = 0
    return dict(a=a, sig=sig, lam=lam, a_next=a_next, sig_next=sig_next, lam_next=lam_next)


LOWER_ORDER_FINAL_BELOW = 15  # diffusers' DPMSolverMultistepScheduler: lower_order_final for fewer than 15 steps


def _dpmpp_2m_coefficients(d: Diffusion, lower_order_final: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Per index ``i`` (a step from :math:`t_{i}` to :math:`t_{i-1}` in samplers' index order), the update
    :math:`x_{next} = c_x x + c_0 \hat x_0 + c_1 (\hat x_0 - \hat x_0^{prev})`, in float64."""
    v = _vp_tables(d)
    n = d.num_timesteps
    h = v["lam_next"] - v["lam"]  # this step's log-SNR increment, +inf for the step to clean data
    cx = v["sig_next"] / v["sig"]
    c0 = v["a_next"] * -torch.expm1(-h)  # -alpha_next (e^{-h} - 1); = alpha_next where h = +inf
    # previous step's increment: it ended at index i, coming from index i+1 (visited just before)
    h_prev = torch.cat([v["lam"][:-1] - v["lam"][1:], h.new_full((1,), float("nan"))])
    # second-order term c0 / (2 r), r = h_prev / h; absent at the first step (index n-1: no previous x0), at
    # the last one (index 0: h = inf, the coefficient would be infinite), and with lower_order_final and few
    # steps at the step into the lowest visited timestep (index 1). With zero terminal SNR, h_prev = inf at the
    # second step and the term vanishes (c1 = 0) by itself.
    c1 = c0 * h / (2 * h_prev)
    first_order = torch.zeros(n, dtype=torch.bool)
    first_order[[0, n - 1]] = True
    if lower_order_final and n < LOWER_ORDER_FINAL_BELOW:
        first_order[min(1, n - 1)] = True
    c1 = torch.where(first_order, torch.zeros_like(c1), c1)
    return cx, c0, c1


@torch.no_grad()
def dpmpp_2m_sample(
    model: Model,
    diffusion: Diffusion,
    x_T: torch.Tensor,
    *,
    steps: int = 20,
    spacing: TimestepSpacing | str = TimestepSpacing.LINSPACE,
    generator: torch.Generator | None = None,
    progress: bool = True,
    return_trajectory: bool = False,
    compile: bool = False,
    labels: torch.Tensor | None = None,
    clip: Clip | str | None = None,
    lower_order_final: bool = True,
) -> SampleResult:
    r"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", sec. 4 and Algorithm 2): the multistep second-order
    solver of the probability-flow ODE with the data prediction :math:`x_\theta = \hat x_0`, one network call
    per step (``steps`` calls in all).

    With :math:`\lambda_t = \log(\alpha_t/\sigma_t)`, the exact solution from :math:`s` to :math:`t` in data
    prediction (their sec. 4.1) is
    :math:`x_t = \frac{\sigma_t}{\sigma_s} x_s + \sigma_t \int_{\lambda_s}^{\lambda_t} e^{\lambda}
    \hat x_0(\lambda)\,d\lambda`, with :math:`\hat x_0(\lambda) = x_\theta(\hat x_\lambda, \lambda)` along the
    solution: it equals :math:`x_s` at :math:`\lambda_s`, and it solves the ODE
    :math:`dx/d\lambda = -\alpha^2 x + \alpha\,\hat x_0` (variance preserving, so
    :math:`d\sigma/d\lambda = -\alpha^2\sigma`):

    .. math::
        :checked-by: score.solvers:exact_solution

        \frac{d}{d\lambda}\Big[\sigma{\left(\lambda \right)} \left(\dfrac{x_{s}}{\sigma{\left(\lambda_{s} \right)}}
            + \int\limits_{\lambda_{s}}^{\lambda} \hat{x}_{0}{\left(u \right)} e^{u}\, du\right)\Big]
        = - \alpha^{2}{\left(\lambda \right)} \sigma{\left(\lambda \right)} \left(\dfrac{x_{s}}{\sigma{\left(\lambda_{s} \right)}}
            + \int\limits_{\lambda_{s}}^{\lambda} \hat{x}_{0}{\left(u \right)} e^{u}\, du\right)
          + \alpha{\left(\lambda \right)} \hat{x}_{0}{\left(\lambda \right)}

    (checked on the solvers page, ``diffusion_core/derivations/score/solvers.py``).

    Over visited timesteps :math:`t_0 > t_1 > \dots` (``steps`` of the schedule's indices, then clean data),
    with :math:`h_i = \lambda_{t_i} - \lambda_{t_{i-1}}`, the first-order step (DPM-Solver++1) from
    :math:`s = t_{i-1}` to :math:`t = t_i` holds :math:`\hat x_0 = x_\theta(\tilde x_{t_{i-1}}, t_{i-1})` fixed in
    the integral, which makes it DDIM:

    .. math::
        :checked-by: score.solvers:first_order_is_ddim

        x_{s} \dfrac{\sigma_{t}}{\sigma_{s}} + \sigma_{t} \int\limits_{\lambda_{s}}^{\lambda_{t}} \hat{x}_{0} e^{u}\, du
        = \alpha_{t} \hat{x}_{0} + \sigma_{t} \dfrac{x_{s} - \alpha_{s} \hat{x}_{0}}{\sigma_{s}}

    (checked on the solvers page, ``diffusion_core/derivations/score/solvers.py``); the code's form is
    :math:`\tilde x_{t_i} = \frac{\sigma_{t_i}}{\sigma_{t_{i-1}}}\tilde x_{t_{i-1}} - \alpha_{t_i}(e^{-h_i} - 1)\,\hat x_0`,

    and the 2M step (Algorithm 2) replaces :math:`x_\theta` by
    :math:`D_i = (1 + \frac{1}{2r_i})\,x_\theta(\tilde x_{t_{i-1}}, t_{i-1}) - \frac{1}{2r_i}\,x_\theta(\tilde x_{t_{i-2}}, t_{i-2})`,
    :math:`r_i = h_{i-1}/h_i`, reusing the previous step's prediction.

    Which steps are first order: the first (there is no previous prediction), and the last, from the lowest
    visited timestep :math:`t_{N-1}` to clean data (:math:`\sigma = 0`, :math:`\lambda = +\infty`,
    :math:`h = \infty`), where the update reduces to :math:`\tilde x = x_\theta(\tilde x_{t_{N-1}}, t_{N-1})`,
    the final :math:`\hat x_0` (the second-order coefficient :math:`h_i/(2h_{i-1})` is infinite there). That
    final step plays the part of DPM-Solver's optional "denoise to zero": the ODE solve itself ends at
    :math:`t_{N-1}`, and with ``lower_order_final`` (default) and fewer than 15 steps, the step into
    :math:`t_{N-1}` is first order too: the paper's lower-order final step for few steps, as in diffusers'
    ``DPMSolverMultistepScheduler(lower_order_final=True)`` with ``final_sigmas_type="sigma_min"``, whose solve
    ends at the smallest noise level with a first-order step. It matters most when that last interval is long
    in :math:`\lambda`, as with ``"linspace"``, which ends at index 0: the extrapolation over it has a large
    :math:`1/(2r_i)`. (Measured on the 1-D mixture of the tests, linear schedule, 10 steps of ``"linspace"``:
    RMS error 0.38 with that step second order, 0.083 first order, DDIM 0.15.) With
    ``lower_order_final=False`` only the first and the final steps are first order, which is diffusers'
    ``final_sigmas_type="zero"`` on the same visited timesteps.

    The network is called only at the schedule's integer timesteps (see the module docstring). ``steps``
    must lie in ``[1, T]``; one step is DDIM's one step, :math:`\hat x_0(x_T)`. ``spacing`` as for
    :func:`ddim_sample`, including ``"log-snr"`` (the paper's uniform-:math:`\lambda` steps) and ``"karras"``.
    Thresholding (the paper's sec. 4.3) is ``clip`` (default: ``diffusion``'s clip rule), applied to every
    :math:`x_\theta`. ``model`` is a denoiser (guided or not) or a plain network; ``labels`` as for
    :func:`ddim_sample`.
    The solver is deterministic: ``generator`` is accepted for a uniform signature and never used.
    ``return_trajectory`` and ``compile`` as for :func:`ddim_sample` (two graphs: the step and the final step).
    """
    d, compile = _setup("dpmpp_2m_sample", diffusion, x_T, steps, spacing, compile)
    x0_hat = _denoiser(model, d, _labels_for(labels, x_T), clip)
    if not isinstance(lower_order_final, bool):
        raise InvalidInputType(f"lower_order_final must be a bool, got {type(lower_order_final).__name__}")
    cx, c0, c1 = (c.to(device=x_T.device, dtype=x_T.dtype) for c in _dpmpp_2m_coefficients(d, lower_order_final))

    def step(x: torch.Tensor, t: torch.Tensor, prev: torch.Tensor):
        x0 = x0_hat(x, t)
        # the second-order correction is c1 (x0 - x0_prev) = c0 (D_i - x0); c1 = 0 exactly at the first-order steps
        x_next = extract(cx, t, x.ndim) * x + extract(c0, t, x.ndim) * x0 + extract(c1, t, x.ndim) * (x0 - prev)
        return x_next, x0

    def last(x: torch.Tensor, t: torch.Tensor, prev: torch.Tensor):
        x0 = x0_hat(x, t)  # sigma_next = 0, alpha_next = 1: the update is exactly x0
        return x0, x0

    return check_result(_walk(_compiled(step, x_T, compile), _compiled(last, x_T, compile), d, x_T, compiled=compile,
                              progress=progress, return_trajectory=return_trajectory,
                              desc=f"DPM++2M-{d.num_timesteps}"), x_T, "dpmpp_2m_sample")


@torch.no_grad()
def heun_sample(
    model: Model,
    diffusion: Diffusion,
    x_T: torch.Tensor,
    *,
    steps: int = 18,
    spacing: TimestepSpacing | str = TimestepSpacing.LOG_SNR,
    generator: torch.Generator | None = None,
    progress: bool = True,
    return_trajectory: bool = False,
    compile: bool = False,
    labels: torch.Tensor | None = None,
    clip: Clip | str | None = None,
) -> SampleResult:
    r"""EDM's deterministic sampler (Karras et al. 2022, Algorithm 1; their stochastic Algorithm 2 with :math:`S_\mathrm{churn} = 0` reduces to it):
    Heun's second-order method on the probability-flow ODE, written in EDM's variables.

    With :math:`\alpha_t = \sqrt{\bar\alpha_t}` and :math:`\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}` (EDM's
    noise level of the scaled state :math:`\bar x = x/\alpha`), the ODE (EDM eq. 1 with :math:`\sigma(t) = t`
    and the score of eq. 3) is :math:`d\bar x/d\sigma = (\bar x - D(\bar x; \sigma))/\sigma` with the denoiser
    :math:`D(\bar x; \sigma_t) = \hat x_0(\alpha_t \bar x,\ t)`, the network's :math:`\hat x_0` at the VP input
    :math:`x_t = \alpha_t \bar x`. Written out in :math:`x` and :math:`\bar\alpha`, that is the probability-flow ODE:

    .. math::
        :checked-by: api.solvers:edm_ode

        \dfrac{\frac{d}{d t} \frac{x}{\sqrt{\bar\alpha}}}{\frac{d}{d t} \frac{\sqrt{1 - \bar\alpha}}{\sqrt{\bar\alpha}}}
        = \dfrac{\frac{x}{\sqrt{\bar\alpha}} - \hat{x}_{0}}{\frac{\sqrt{1 - \bar\alpha}}{\sqrt{\bar\alpha}}}

    (checked in ``diffusion_core/derivations/api/solvers.py``). DDIM
    (:math:`\eta = 0`) is exactly Euler's method on this ODE (Song et al. 2021, sec. 4.3). Over visited
    timesteps with noise levels :math:`\sigma_0 > \dots > \sigma_{N-1} > \sigma_N = 0`, each step is

    .. math:: d_i = \frac{\bar x_i - D(\bar x_i; \sigma_i)}{\sigma_i}, \quad
              \bar x' = \bar x_i + (\sigma_{i+1} - \sigma_i)\,d_i, \quad
              \bar x_{i+1} = \bar x_i + (\sigma_{i+1} - \sigma_i)\,\tfrac12\Big(d_i + \frac{\bar x' - D(\bar x'; \sigma_{i+1})}{\sigma_{i+1}}\Big),

    the Euler predictor then the trapezoidal corrector, except the last step, to :math:`\sigma_N = 0`, which
    is Euler only and gives :math:`\bar x_N = D(\bar x_{N-1}; \sigma_{N-1})`. So ``steps = N`` costs
    :math:`2N - 1` network calls. The corrector's evaluation is at the next visited timestep, so the network
    is called only at the schedule's integer timesteps (see the module docstring). ``spacing`` defaults to
    ``"log-snr"``, not EDM's eq. 5 (``"karras"``, :math:`\rho = 7`): EDM pairs that spacing with
    :math:`\sigma_{\max} = 80`, while the cosine schedule's top index has :math:`\sigma/\alpha \approx 2\times10^4`,
    so Karras' steps crowd into the top few indices and the trapezoidal corrector across the following long step
    multiplies the denoiser's error by the ratio of the noise levels. Measured on the class-conditional digits
    model (cosine schedule, 1,000 samples, FD over the split-half floor): 9 NFE ``"karras"`` 198, ``"log-snr"`` 26;
    19 NFE 8.1 and 2.1 (DDIM-10: 1.2). Heun stays weak at low NFE on that schedule. States are reported as VP states
    :math:`x_t = \alpha_t \bar x` (``trajectory[k]`` after ``k`` steps, as for :func:`ddim_sample`).

    ``steps`` must lie in ``[1, T]``; one step is DDIM's one step. The first visited index must have
    :math:`\bar\alpha > 0` (:math:`\bar x = x/\alpha` is undefined at zero terminal SNR; use
    :func:`dpmpp_2m_sample` there). Deterministic: ``generator`` is never used. ``return_trajectory`` and
    ``compile`` as for :func:`ddim_sample` (two graphs: the Heun step and the final Euler step). ``model``,
    ``labels`` and ``clip`` as for :func:`dpmpp_2m_sample`.
    """
    d, compile = _setup("heun_sample", diffusion, x_T, steps, spacing, compile)
    if d.num_timesteps > 1 and not d.schedule._betas64[-1] < 1:  # alpha_bar = 0 at the first visited index
        raise InvalidInput("heun_sample needs alphas_cumprod > 0 at the first step: EDM's state x/alpha is undefined "
                           "at a zero-terminal-SNR schedule's last index; use dpmpp_2m_sample there")
    x0_hat = _denoiser(model, d, _labels_for(labels, x_T), clip)
    v = _vp_tables(d)
    a, a_next = (v[k].to(device=x_T.device, dtype=x_T.dtype) for k in ("a", "a_next"))
    sig = (v["sig"] / v["a"]).to(device=x_T.device, dtype=x_T.dtype)
    sig_next = (v["sig_next"] / v["a_next"]).to(device=x_T.device, dtype=x_T.dtype)

    def step(x: torch.Tensor, t: torch.Tensor, prev: torch.Tensor):
        n = x.ndim
        a_t, a_s, s_t, s_s = extract(a, t, n), extract(a_next, t, n), extract(sig, t, n), extract(sig_next, t, n)
        xb = x / a_t
        x0 = x0_hat(x, t)
        d_cur = (xb - x0) / s_t
        xb_euler = xb + (s_s - s_t) * d_cur
        # the next visited index is t - 1 (t > 0 here: the step to clean data is `last`)
        d_next = (xb_euler - x0_hat(a_s * xb_euler, t - 1)) / s_s
        return a_s * (xb + (s_s - s_t) * (0.5 * d_cur + 0.5 * d_next)), x0

    def last(x: torch.Tensor, t: torch.Tensor, prev: torch.Tensor):
        x0 = x0_hat(x, t)  # Euler to sigma = 0: xb + (0 - s)(xb - D)/s = D, and alpha = 1 there
        return x0, x0

    return check_result(_walk(_compiled(step, x_T, compile), _compiled(last, x_T, compile), d, x_T, compiled=compile,
                              progress=progress, return_trajectory=return_trajectory,
                              desc=f"Heun-{d.num_timesteps}"), x_T, "heun_sample")
