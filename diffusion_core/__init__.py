r"""diffusion_core: DDPM and DDIM, small and checked.

Notation (code name → paper symbol; Ho et al. 2020, Nichol & Dhariwal 2021, Song et al. 2021):

==============================  ==========================================================
``T`` / ``num_timesteps``       :math:`T`, the number of diffusion steps
index ``t`` in ``0..T-1``       the paper's step :math:`t+1` (index 0 is the step next to the data)
``betas``                       :math:`\beta_t`, the variance added at step :math:`t`
``alphas``                      :math:`\alpha_t = 1 - \beta_t`
``alphas_cumprod``              :math:`\bar\alpha_t = \prod_{s\le t}\alpha_s`
``alphas_cumprod_prev``         :math:`\bar\alpha_{t-1}` (:math:`\bar\alpha_0 = 1`)
``posterior_variance``          :math:`\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t`
``posterior_mean_coef1/2``      coefficients of :math:`x_0` and :math:`x_t` in :math:`\tilde\mu_t`
``snr``                         :math:`\bar\alpha_t/(1-\bar\alpha_t)`
``x0``, ``x_t``                 :math:`x_0`, :math:`x_t`
``noise`` / ``eps``             :math:`\epsilon \sim \mathcal N(0, I)`
``v``                           :math:`v = \sqrt{\bar\alpha_t}\epsilon - \sqrt{1-\bar\alpha_t}x_0`
``eta``                         DDIM's :math:`\eta`
``labels`` / ``num_classes``    class :math:`c \in 0..K-1`; label :math:`K` is the null class :math:`\varnothing`
``scale`` (guidance)            diffusers' :math:`s`; Ho & Salimans' :math:`w = s - 1`
``lambda`` (solvers)            :math:`\lambda_t = \log(\alpha_t/\sigma_t)`, half the log-SNR (DPM-Solver)
==============================  ==========================================================

The network is a :class:`Denoiser` (or a guided one) or any callable ``model(x_t, t) -> output`` with ``t`` an
integer tensor of shape ``(B,)``.
"""
from .denoiser import BaseDenoiser, Denoiser, Prediction, as_denoiser
from .diffusion import Diffusion, ReverseStep
from .errors import InvalidInput, InvalidInputType
from .guidance import ClassifierFreeGuidance, drop_labels
from .forward import Gaussian, q_mean_variance, q_sample, q_step_mean_variance, q_step_sample
from .losses import (
    LossTerms,
    LossType,
    VLBResult,
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    min_snr_weight,
    normal_kl,
    prior_bpd,
    training_losses,
    vlb_term,
)
from .parameterization import Parameterization, eps_from_v, eps_from_x0, v_from_eps_x0, x0_from_eps, x0_from_v
from .reverse import Clip, VarianceType, q_posterior, threshold_x0
from .samplers import SampleResult, compile_for_sampling, ddim_sample, ddpm_sample
from .schedule import NoiseSchedule, ScheduleKind, TimestepSpacing, spaced_timesteps
from .solvers import dpmpp_2m_sample, heun_sample

__version__ = "0.1.0"

__all__ = [
    "BaseDenoiser",
    "ClassifierFreeGuidance",
    "Clip",
    "Denoiser",
    "Diffusion",
    "Gaussian",
    "InvalidInput",
    "InvalidInputType",
    "LossTerms",
    "LossType",
    "NoiseSchedule",
    "Parameterization",
    "Prediction",
    "ReverseStep",
    "SampleResult",
    "ScheduleKind",
    "TimestepSpacing",
    "VLBResult",
    "VarianceType",
    "bits_per_dim",
    "as_denoiser",
    "compile_for_sampling",
    "ddim_sample",
    "ddpm_sample",
    "discretized_gaussian_log_likelihood",
    "drop_labels",
    "dpmpp_2m_sample",
    "eps_from_v",
    "eps_from_x0",
    "heun_sample",
    "min_snr_weight",
    "normal_kl",
    "prior_bpd",
    "q_mean_variance",
    "q_posterior",
    "q_sample",
    "q_step_mean_variance",
    "q_step_sample",
    "spaced_timesteps",
    "threshold_x0",
    "training_losses",
    "v_from_eps_x0",
    "vlb_term",
    "x0_from_eps",
    "x0_from_v",
]
