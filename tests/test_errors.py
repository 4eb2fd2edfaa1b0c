"""Every bad input raises the documented ValueError or TypeError, and the message names the argument."""
import math

import pytest
import torch

from diffusion_core import (
    Diffusion,
    NoiseSchedule,
    Prediction,
    bits_per_dim,
    ddim_sample,
    ddpm_sample,
    spaced_timesteps,
    training_losses,
)
from diffusion_core.forward import q_mean_variance, q_sample, q_step_sample
from diffusion_core.losses import min_snr_weight
from diffusion_core.reverse import q_posterior
from diffusion_core.vlb import discretized_gaussian_log_likelihood

S = NoiseSchedule.linear(10)
D = Diffusion(S)
X = torch.zeros(4, 3)
T_OK = torch.tensor([0, 3, 5, 9])
PRED = Prediction(X, X, D.coefficients(T_OK, X))  # a denoiser's prediction at x_t = X


def zeros_model(x, t):
    return torch.zeros_like(x)


# ----------------------------------------------------------------------------- schedules
@pytest.mark.parametrize(
    "betas",
    [[0.1, 1.5], [0.0, 0.1], [-0.1, 0.2], [0.5, 1.0, 0.2], [0.1, 1.0 + 1e-9]],
    ids=["above-1", "zero", "negative", "one-not-last", "last-above-1"],
)
def test_betas_outside_unit_interval(betas):
    with pytest.raises(ValueError, match=r"betas must lie in \(0, 1\)"):
        NoiseSchedule(betas)


def test_beta_one_allowed_only_last():
    assert NoiseSchedule([0.1, 1.0]).alphas_cumprod[-1].item() == 0.0  # zero terminal SNR


@pytest.mark.parametrize("betas", [[[0.1, 0.2]], 0.1], ids=["2-D", "0-D"])
def test_betas_not_1d(betas):
    with pytest.raises(ValueError, match="betas must be 1-D"):
        NoiseSchedule(betas)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_betas_not_finite(bad):
    with pytest.raises(ValueError, match="betas must be finite"):
        NoiseSchedule([0.1, bad, 0.2])


def test_betas_empty():
    with pytest.raises(ValueError, match=r"betas must hold at least one step \(T >= 1\)"):
        NoiseSchedule([])
    with pytest.raises(ValueError, match="betas must hold at least one step"):
        NoiseSchedule.from_betas(torch.empty(0))


@pytest.mark.parametrize("kind", ["linear", "cosine", "quadratic", "sigmoid"])
def test_constructors_reject_T_below_1(kind):
    for T in (0, -5):
        with pytest.raises(ValueError, match="T must be >= 1"):
            getattr(NoiseSchedule, kind)(T)
        with pytest.raises(ValueError, match="T must be >= 1"):
            NoiseSchedule.make(kind, T)
    for T in (10.0, "10", True):
        with pytest.raises(TypeError, match="T must be an int"):
            getattr(NoiseSchedule, kind)(T)


def test_schedule_options():
    with pytest.raises(ValueError, match="kind must be one of 'linear', 'cosine', 'quadratic', 'sigmoid'"):
        NoiseSchedule.make("exponential", 10)
    with pytest.raises(ValueError, match="s must be > 0"):
        NoiseSchedule.cosine(10, s=0.0)
    with pytest.raises(ValueError, match="betas must lie in"):
        NoiseSchedule.linear(10, beta_end=1.5)
    with pytest.raises(TypeError, match="dtype must be a floating-point dtype"):
        NoiseSchedule.linear(10, dtype=torch.int64)
    with pytest.raises(ValueError, match="timesteps must be an integer tensor of shape"):
        NoiseSchedule([0.1, 0.2], timesteps=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="timesteps must be an integer tensor"):
        NoiseSchedule([0.1, 0.2], timesteps=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="rescale_zero_terminal_snr needs T >= 2"):
        NoiseSchedule([0.1]).rescale_zero_terminal_snr()


def test_spacing_and_respacing():
    with pytest.raises(ValueError, match="steps must be at most T=10"):
        spaced_timesteps(10, 11)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        spaced_timesteps(10, 0)
    with pytest.raises(TypeError, match="steps must be an int"):
        spaced_timesteps(10, 2.5)
    with pytest.raises(ValueError, match="spacing must be one of 'linspace', 'leading', 'trailing'"):
        spaced_timesteps(10, 5, "uniform")
    with pytest.raises(ValueError, match="steps must be at most T=10"):
        S.spaced(20)
    with pytest.raises(ValueError, match=r"keep indices must lie in \[0, 9\]"):
        S.respace([0, 10])
    with pytest.raises(ValueError, match="keep indices must lie in"):
        S.respace([-1, 3])
    with pytest.raises(ValueError, match="keep indices must be strictly increasing"):
        S.respace([0, 5, 5])
    with pytest.raises(ValueError, match="keep must be a non-empty 1-D integer tensor"):
        S.respace([0.0, 5.0])
    with pytest.raises(ValueError, match="keep must be a non-empty 1-D integer tensor"):
        S.respace(torch.empty(0, dtype=torch.long))


# ----------------------------------------------------------------------------- timesteps
TIMESTEP_CALLS = {
    "q_sample": lambda t: q_sample(S, X, t),
    "q_mean_variance": lambda t: q_mean_variance(S, X, t),
    "q_step_sample": lambda t: q_step_sample(S, X, t),
    "q_posterior": lambda t: q_posterior(S, X, X, t),
    "p_mean_variance": lambda t: D.p_mean_variance(PRED, X, t),
    "training_losses": lambda t: training_losses(zeros_model, D, X, t),
}


@pytest.mark.parametrize("fn", list(TIMESTEP_CALLS), ids=list(TIMESTEP_CALLS))
def test_timesteps_out_of_range(fn):
    call = TIMESTEP_CALLS[fn]
    with pytest.raises(ValueError, match=r"t must lie in \[0, 9\] for a schedule of T=10 steps"):
        call(torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 9\]"):
        call(torch.tensor([-1, 1, 2, 3]))


@pytest.mark.parametrize("fn", list(TIMESTEP_CALLS), ids=list(TIMESTEP_CALLS))
def test_timesteps_wrong_type_or_shape(fn):
    call = TIMESTEP_CALLS[fn]
    with pytest.raises(TypeError, match="t must have an integer dtype"):
        call(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        call([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        call(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        call(torch.zeros(4, 1, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16])
@pytest.mark.parametrize("fn", list(TIMESTEP_CALLS), ids=list(TIMESTEP_CALLS))
def test_small_integer_timesteps_are_rejected_up_front(fn, dtype):
    # the tables are gathered with index_select, which takes int64/int32 only: a narrower integer dtype
    # must be a TypeError naming t, not a RuntimeError from deep inside
    with pytest.raises(TypeError, match="t must have an integer dtype, torch.int64 or torch.int32"):
        TIMESTEP_CALLS[fn](T_OK.to(dtype))


def test_int32_timesteps_work():
    for call in TIMESTEP_CALLS.values():
        call(T_OK.int())
    min_snr_weight(D, T_OK.int(), 5.0)


def test_min_snr_weight_checks_t():
    with pytest.raises(ValueError, match=r"t must lie in \[0, 9\]"):
        min_snr_weight(D, torch.tensor([0, 10]), 5.0)
    with pytest.raises(TypeError, match="t must have an integer dtype"):
        min_snr_weight(D, torch.tensor([0.0, 1.0]), 5.0)


def test_min_snr_gamma_must_be_positive():
    with pytest.raises(ValueError, match="min_snr_gamma must be > 0"):
        min_snr_weight(D, T_OK, 0.0)
    with pytest.raises(ValueError, match="min_snr_gamma must be > 0"):
        training_losses(zeros_model, D, X, T_OK, min_snr_gamma=-1.0)


# ----------------------------------------------------------------------------- shapes
def test_noise_of_wrong_shape():
    bad = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"noise must have the same shape as x \(4, 3\)"):
        q_sample(S, X, T_OK, noise=bad)
    with pytest.raises(ValueError, match="noise must have the same shape as x"):
        q_step_sample(S, X, T_OK, noise=bad)
    with pytest.raises(ValueError, match=r"noise must have the same shape as x0 \(4, 3\)"):
        training_losses(zeros_model, D, X, T_OK, bad)
    with pytest.raises(ValueError, match=r"x0 must have the same shape as x_t"):
        q_posterior(S, bad, X, T_OK)
    with pytest.raises(ValueError, match="mean must have the same shape as x"):
        discretized_gaussian_log_likelihood(X, bad, torch.tensor(0.0))


def test_data_without_channel_dimension():
    with pytest.raises(ValueError, match=r"x0 must be batch-first with a channel dimension"):
        training_losses(zeros_model, D, torch.zeros(4), T_OK)
    with pytest.raises(ValueError, match=r"x0 must be batch-first with a channel dimension"):
        bits_per_dim(zeros_model, D, torch.zeros(4), progress=False)


def _bad_output_models():
    return {
        "extra channel": lambda x, t: torch.zeros(x.shape[0], x.shape[1] + 1),
        "missing batch": lambda x, t: torch.zeros(1, x.shape[1]),
        "flattened": lambda x, t: torch.zeros(x.numel()),
    }


@pytest.mark.parametrize("name", list(_bad_output_models()))
def test_model_output_of_wrong_shape(name):
    model = _bad_output_models()[name]
    x_T = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"model output must have shape \(4, 3\)"):
        training_losses(model, D, X, T_OK)
    with pytest.raises(ValueError, match=r"model output must have shape \(4, 3\)"):
        ddpm_sample(model, D, x_T, progress=False)
    with pytest.raises(ValueError, match=r"model output must have shape \(4, 3\)"):
        ddim_sample(model, D, x_T, steps=5, progress=False)


def test_learned_variance_needs_twice_the_channels():
    d = Diffusion(S, variance="learned_range")
    assert d.output_channels(3) == 6
    with pytest.raises(ValueError, match=r"model output must have shape \(4, 6\).*\(mean and variance channels\)"):
        training_losses(zeros_model, d, X, T_OK, vlb_weight=0.001)
    with pytest.raises(ValueError, match=r"model output must have shape \(4, 6\)"):
        ddim_sample(zeros_model, d, X, steps=5, progress=False)


# ----------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_more_sampling_steps_than_T(sampler):
    with pytest.raises(ValueError, match=r"steps must be an int in \[1, 10\], got 11"):
        sampler(zeros_model, D, X, steps=11, progress=False)
    with pytest.raises(ValueError, match=r"steps must be an int in \[1, 10\], got 0"):
        sampler(zeros_model, D, X, steps=0, progress=False)
    with pytest.raises(ValueError, match="spacing must be one of"):
        sampler(zeros_model, D, X, steps=5, spacing="uniform", progress=False)


def test_ddim_default_steps_exceed_a_short_schedule():
    # ddim_sample's default is 50 steps: on a 10-step schedule that must be an error, not a silent clip
    with pytest.raises(ValueError, match=r"steps must be an int in \[1, 10\], got 50"):
        ddim_sample(zeros_model, D, X, progress=False)


@pytest.mark.parametrize("eta,match", [(-0.1, r"eta must lie in \[0, 1\]"), (1.5, r"eta must lie in \[0, 1\]"),
                                       (math.nan, "eta must be a finite number, got nan")])
def test_ddim_eta_outside_unit_interval(eta, match):
    with pytest.raises(ValueError, match=match):
        ddim_sample(zeros_model, D, X, steps=5, eta=eta, progress=False)


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_bad_starting_noise(sampler):
    with pytest.raises(TypeError, match="x_T must be a floating-point torch.Tensor"):
        sampler(zeros_model, D, torch.zeros(4, 3, dtype=torch.long), steps=5, progress=False)
    with pytest.raises(ValueError, match="x_T must be batch-first with at least 2 dimensions"):
        sampler(zeros_model, D, torch.zeros(4), steps=5, progress=False)


# ----------------------------------------------------------------------------- option names
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(parameterization="foo"), "parameterization must be one of 'eps', 'x0', 'v'"),
        (dict(variance="learned"), "variance must be one of 'fixed_large', 'fixed_small', 'learned_range'"),
        (dict(clip="hard"), "clip must be one of 'none', 'static', 'dynamic'"),
        (dict(dynamic_percentile=0.0), r"dynamic_percentile must lie in \(0, 1\]"),
        (dict(dynamic_percentile=1.5), r"dynamic_percentile must lie in \(0, 1\]"),
    ],
)
def test_unknown_diffusion_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Diffusion(S, **kwargs)


def test_diffusion_needs_a_schedule():
    with pytest.raises(TypeError, match="schedule must be a NoiseSchedule"):
        Diffusion(S.betas)


def test_training_loss_options():
    with pytest.raises(ValueError, match="loss_type must be one of 'mse', 'l1', 'huber'"):
        training_losses(zeros_model, D, X, T_OK, loss_type="l2")
    with pytest.raises(ValueError, match="vlb_weight must be >= 0"):
        training_losses(zeros_model, D, X, T_OK, vlb_weight=-1.0)
    d = Diffusion(S, variance="learned_range")
    with pytest.raises(ValueError, match="needs vlb_weight > 0"):
        training_losses(lambda x, t: torch.zeros(4, 6), d, X, T_OK)
