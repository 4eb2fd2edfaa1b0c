r"""diffusion_core: diffusion models on Gaussian paths (DDPM, continuous VP, EDM, rectified flow), small and checked.

Every model here is a path :math:`x_t = \alpha_t x_0 + \sigma_t\epsilon` (:mod:`diffusion_core.paths`), a
:class:`Denoiser` that reads a network trained on it, and plain sampler and loss functions over the denoiser.
A DDPM is a :class:`Diffusion` (a discrete :class:`NoiseSchedule` with its modelling choices), whose entry points
``ddpm_sample(model, diffusion, x_T)`` etc. take schedule indices.

Notation (code name → paper symbol; Ho et al. 2020, Nichol & Dhariwal 2021, Song et al. 2021, Kingma & Gao 2023):

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
``path.alpha(t)``, ``sigma(t)``  :math:`\alpha_t, \sigma_t` of a path (:math:`\sqrt{\bar\alpha_t}, \sqrt{1-\bar\alpha_t}` for a DDPM)
``path.log_snr(t)``             :math:`\lambda_t = \log(\alpha_t^2/\sigma_t^2)`, the full log-SNR (DPM-Solver uses half)
``velocity``                    :math:`u = dx_t/dt` (:math:`\epsilon - x_0` on rectified flow, as diffusers)
==============================  ==========================================================

Everything else is importable from its submodule: the forward process and posterior (``forward``, ``reverse``),
the targets and their conversions (``targets``), loss weightings and training-time densities (``weighting``,
``time_sampling``), the variational bound (``vlb``), the sampling loop (``sampling``), CPU thread sharing
(``cpu_threads``), networks (``nn``) and training (``train``).
"""

from .ddpm_samplers import ddim_sample, ddpm_sample, dpmpp_2m_sample, heun_sample
from .denoiser import Denoiser
from .diffusion import Diffusion
from .errors import InvalidInput, NonFiniteError
from .grids import time_grid
from .guidance import ClassifierFreeGuidance
from .likelihood import LogLikelihood, ode_log_likelihood
from .losses import denoising_loss, training_losses
from .paths import ContinuousVP, DiscreteVP, GaussianPath, RectifiedFlow, VarianceExploding
from .samplers import sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_edm, sample_euler, sample_heun
from .sampling import SampleResult
from .schedule import NoiseSchedule, spaced_timesteps
from .targets import Prediction, Target
from ._version import __version__
from .vlb import bits_per_dim

__all__ = [
    # paths and models
    "GaussianPath", "DiscreteVP", "ContinuousVP", "VarianceExploding", "RectifiedFlow",
    "NoiseSchedule", "Diffusion", "spaced_timesteps", "time_grid",
    "Denoiser", "ClassifierFreeGuidance", "Prediction", "Target",
    # sampling
    "sample_ddpm", "sample_ddim", "sample_euler", "sample_heun", "sample_dpmpp_2m", "sample_edm", "SampleResult",
    "ddpm_sample", "ddim_sample", "dpmpp_2m_sample", "heun_sample",
    # training and evaluation
    "denoising_loss", "training_losses", "bits_per_dim", "ode_log_likelihood", "LogLikelihood",
    "InvalidInput", "NonFiniteError", "__version__",
]
