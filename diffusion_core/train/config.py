"""The training configuration: one frozen dataclass, validated once, saved into every checkpoint.

Each option is declared once, as a field made by :func:`option`: its default, its check, the help of its
``diffusion-core train`` option, and what ``--resume`` allows for it (:class:`OnResume`). The command line builds
every ``train`` option from these fields, and resuming reads its policy from them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any, Callable

from .._validation import (check_bool, check_choice, check_device_name, check_fits_memory, check_int, check_number,
                           check_path, check_seed, check_str)
from ..denoiser import EDM_SIGMA_DATA
from ..diffusion import Diffusion
from ..errors import InvalidInput
from ..losses import LossType
from ..nn import list_presets
from ..reverse import VarianceType
from ..schedule import SCHEDULE_BYTES_PER_STEP, NoiseSchedule, ScheduleKind
from ..grids import EDM_SIGMA_MAX
from ..paths import GaussianPath, RectifiedFlow, VarianceExploding
from ..targets import Target
from ..time_sampling import LogitNormalTime, LogNormalSigma, UniformTime
from .data import Dataset

__all__ = ["Dataset", "OnResume", "Precision", "TimeSampling", "TrainConfig", "TrainPath", "option", "options_on_resume"]

DEFAULT_P_UNCOND = 0.1  # one of the values Ho & Salimans 2022 compared (0.1, 0.2, 0.5)
DEFAULT_WARMUP = 200  # linear warmup steps of a run of 1,000 steps or more; a fifth of a shorter run
MIN_EVAL_SAMPLES = 10  # precision/recall's 3-NN balls and KID's subsets need a few samples


class Precision(str, Enum):
    """Autocast dtype: bf16 needs no loss scaling; fp16 gets a GradScaler; fp32 runs without autocast."""

    AUTO = "auto"  # bf16 on a GPU that supports it, else fp32
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class TrainPath(str, Enum):
    """The Gaussian path a run trains on (:mod:`diffusion_core.paths`)."""

    VP = "vp"  # DDPM's discrete variance-preserving schedule (--schedule, --num-timesteps): a DiscreteVP
    RECTIFIED_FLOW = "rectified-flow"  # x_t = (1 - t) x_0 + t eps (Liu et al. 2022; SD3)
    EDM = "edm"  # x_t = x_0 + sigma eps, sigma up to 80 (Karras et al. 2022)


class TimeSampling(str, Enum):
    """The density of the training times (:mod:`diffusion_core.time_sampling`)."""

    UNIFORM = "uniform"  # t ~ U(0, t_max]; on vp a uniform step 1..T (Ho et al.)
    LOGIT_NORMAL = "logit-normal"  # SD3: t = sigmoid(z), z ~ N(0, 1) (Esser et al. 2024)
    LOG_NORMAL = "log-normal"  # EDM: ln sigma ~ N(-1.2, 1.2^2) (Karras et al. 2022)


# Each path's defaults: the target its paper trains, and its time density.
PATH_DEFAULTS = {TrainPath.VP: (Target.V, TimeSampling.UNIFORM),
                 TrainPath.RECTIFIED_FLOW: (Target.VELOCITY, TimeSampling.UNIFORM),
                 TrainPath.EDM: (Target.EDM, TimeSampling.LOG_NORMAL)}


class OnResume(str, Enum):
    """What a resumed run may do with an option."""

    RUN_CONTROL = "run control"  # change it: it changes how the run goes (length, folder, device), not what it learns
    OPTIMIZER = "optimizer setting"  # change it, with a notice: how it goes on learning (lower lr after a divergence)
    FIXED = "fixed"  # nothing: a different model, data, schedule, loss, precision or seed is another experiment


Check = Callable[[str, Any], Any]  # check(name, value) -> the value (normalised), or raises InvalidInput


def option(default: Any, help: str, check: Check, on_resume: OnResume = OnResume.FIXED) -> Any:
    """A :class:`TrainConfig` field: its ``default``, the ``help`` of its command-line option, the ``check`` its
    value passes (:mod:`diffusion_core._validation`) and what ``--resume`` allows for it."""
    if not isinstance(help, str) or len(help.split()) < 2:
        raise TypeError(f"an option needs its help text, got {help!r}")
    return dataclasses.field(default=default, metadata={"help": help, "check": check, "on_resume": OnResume(on_resume)})


def _declared(cls: type) -> type:
    """Refuse, when the module is imported, a field not made by :func:`option` (it would have no help and no check)."""
    bare = [f.name for f in dataclasses.fields(cls) if "help" not in f.metadata]
    if bare:
        raise TypeError(f"{cls.__name__} fields {bare} are not declared with option(default, help, check)")
    return cls


def options_on_resume(policy: OnResume) -> frozenset[str]:
    """The names of the options whose resume policy is ``policy``."""
    return frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["on_resume"] is policy)


# The checks the options use: check(name, value) -> value.
def _int(minimum: int, optional: bool = False) -> Check:
    return partial(check_int, minimum=minimum, optional=optional)


def _number(optional: bool = False, **bounds: Any) -> Check:
    return partial(check_number, optional=optional, **bounds)


def _choice(enum: type[Enum]) -> Check:
    return lambda name, value: check_choice(name, value, enum)


def _optional_choice(enum: type[Enum]) -> Check:
    return lambda name, value: None if value is None else check_choice(name, value, enum)


def _timesteps(name: str, value: Any) -> int:
    """A positive int whose schedule tables fit in memory: no machine holds T = 1e12 (a checkpoint may claim it)."""
    return check_fits_memory(name, check_int(name, value, minimum=1), SCHEDULE_BYTES_PER_STEP, "the schedule's tables")


def _device(name: str, value: Any) -> str:
    return check_device_name(check_str(name, value, what="'auto', 'cpu', 'cuda' or 'cuda:N'"))


_OPTIONAL_BOOL = partial(check_bool, optional=True)
_OPTIONAL_PATH = partial(check_path, optional=True)
_RUN, _OPT = OnResume.RUN_CONTROL, OnResume.OPTIMIZER


@_declared
@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs. ``model`` is a U-Net preset name (see ``diffusion_core.nn.list_presets``)
    or ``"mlp"`` for the 2-D toy sets; ``None`` picks the dataset's (its ``spec.default_model``). Defaults train the
    digits model on a CPU in a few minutes."""

    dataset: Dataset = option(Dataset.DIGITS, "training data: built-in digits or 2-D toy sets, or 'folder' with "
                              "--data-dir", _choice(Dataset))
    data_dir: str | None = option(None, "folder of PNG/JPEG images (with --dataset folder; subfolders that hold a run "
                                  "are skipped)", _OPTIONAL_PATH)
    image_size: int | None = option(None, "resize folder images to this size (--dataset folder; default: the "
                                    "preset's)", _int(1, optional=True))
    model: str | None = option(None, "U-Net preset (ddpm-cifar10, digits-8, mnist-28, tiny-32, tiny) or 'mlp' for the "
                               "2-D toy sets (default: mlp for the toy sets, digits-8 for digits, tiny-32 for a folder)",
                               partial(check_str, what="a U-Net preset or 'mlp'", optional=True))
    path: TrainPath = option(TrainPath.VP, "the Gaussian path: vp (DDPM's discrete schedule), rectified-flow "
                             "(x_t = (1-t) x0 + t eps, as SD3) or edm (x_t = x0 + sigma eps, Karras et al. 2022)",
                             _choice(TrainPath))
    time_sampling: TimeSampling | None = option(None, "density of the training times: uniform, logit-normal (SD3) or "
                                                "log-normal (EDM) (default: log-normal on edm, else uniform)",
                                                _optional_choice(TimeSampling))
    sigma_data: float = option(EDM_SIGMA_DATA, "the data's standard deviation in EDM's preconditioning and weighting "
                               "(path or target edm): Karras et al.'s 0.5, or your data's own standard deviation",
                               _number(low=0, low_open=True))
    schedule: ScheduleKind = option(ScheduleKind.COSINE, "noise schedule of the betas (vp)", _choice(ScheduleKind))
    num_timesteps: int = option(1000, "number of diffusion steps T", _timesteps)
    # v (Salimans & Ho 2022) rather than DDPM's eps: with the cosine schedule's alpha_bar_T ~ 2e-9, x0 recovered
    # from eps divides the network's error by sqrt(alpha_bar_T) at the first sampling step; from v it does not.
    # (The README's training section gives the swiss-roll measurement behind this default.)
    parameterization: Target | None = option(None, "what the network predicts (default: v on vp, velocity on "
                                             "rectified-flow, edm on edm)", _optional_choice(Target))
    variance: VarianceType = option(VarianceType.FIXED_LARGE, "variance of the reverse step; learned_range needs "
                                    "--vlb-weight > 0", _choice(VarianceType))
    loss_type: LossType = option(LossType.MSE, "distance in the simple loss", _choice(LossType))
    min_snr_gamma: float | None = option(None, "min-SNR-gamma loss weighting (Hang et al. 2023), e.g. 5 (default: off)",
                                         _number(optional=True, low=0, low_open=True))
    # improved DDPM's lambda; must be > 0 with the learned variance
    vlb_weight: float = option(0.0, "lambda of the hybrid loss (improved DDPM uses 0.001)", _number(low=0))
    steps: int = option(1000, "optimizer steps in total (a resumed run continues up to this)", _int(1), _RUN)
    batch_size: int = option(128, "global batch size (split over torchrun processes)", _int(1))
    # AdamW moves each weight by about lr per step: above 1 is a typo, not a setting
    lr: float = option(2e-3, "peak learning rate of AdamW", _number(low=0, high=1, low_open=True), _OPT)
    # None: 200 steps, or a fifth of a run shorter than 1,000 steps (on resume: the checkpoint's); train() sets it.
    # A warmup longer than the run gets a warning naming the learning rate it ends at (a resume finishes it).
    warmup_steps: int | None = option(None, "linear learning-rate warmup steps (default: 200, or a fifth of a run "
                                      "shorter than 1,000 steps; on --resume the checkpoint's)", _int(0, optional=True),
                                      _OPT)
    weight_decay: float = option(0.0, "AdamW weight decay", _number(low=0), _OPT)
    grad_clip: float = option(1.0, "clip the global gradient norm to this", _number(low=0, low_open=True), _OPT)
    ema_decay: float = option(0.999, "decay of the weights' exponential moving average",
                              _number(low=0, high=1, high_open=True), _OPT)
    precision: Precision = option(Precision.AUTO, "autocast precision (auto: bf16 where the hardware has it, else "
                                  "fp32)", _choice(Precision))
    # None: on for CUDA, off for the CPU (compiling costs a minute there)
    compile: bool | None = option(None, "torch.compile the network (default: on for CUDA)", _OPTIONAL_BOOL, _RUN)
    # None: on for image models (faster on CUDA and on the CPU alike)
    channels_last: bool | None = option(None, "channels_last memory format for image models (default: on; faster on "
                                        "CUDA and the CPU)", _OPTIONAL_BOOL, _RUN)
    class_cond: bool = option(False, "class-conditional model (labels: digits 0-9, two-moons, 8-gaussians, or one "
                              "subfolder per class)", check_bool)
    p_uncond: float | None = option(None, "with --class-cond: probability of training with the null label, for "
                                    "classifier-free guidance (default: 0.1)", _number(optional=True))
    # None: on where the dataset declares flips (image folders, as DDPM's CIFAR-10 runs), off otherwise
    hflip: bool | None = option(None, "random horizontal flips (default: on for --dataset folder, off otherwise)",
                                _OPTIONAL_BOOL)
    # None: 2 on CUDA, 0 on the CPU, where the training threads need the cores and reading the prepared uint8 cache
    # is thousands of times faster than a training step anyway
    workers: int | None = option(None, "DataLoader worker processes streaming an image folder (default: 2 on CUDA, 0 "
                                 "on the CPU)", _int(0, optional=True), _RUN)
    seed: int = option(0, "random seed of weights, data order and noise", check_seed)
    out_dir: str | None = option(None, "folder for checkpoint.safetensors, config.json, metrics.jsonl and PNGs "
                                 "(default: runs/<dataset>, or the --resume checkpoint's folder)", _OPTIONAL_PATH, _RUN)
    log_every: int = option(50, "log to metrics.jsonl and the progress bar (and check the loss for NaN/Inf) every "
                            "this many steps", _int(1), _RUN)
    checkpoint_every: int = option(500, "write the checkpoint every this many steps (also at the end and on Ctrl-C)",
                                   _int(1), _RUN)
    checkpoint_minutes: float = option(10.0, "also write it when this many minutes passed since the last one (0: off)",
                                       _number(low=0), _RUN)
    preview_every: int = option(0, "write a preview grid every this many steps (0: only at the end)", _int(0), _RUN)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", _device, _RUN)
    # 0: off. Sampled with the path's default sampler and measured by diffusion_core.evaluation against the
    # built-in reference (a folder has none: refused); rank 0 only, at a host sync point, the training RNG untouched
    eval_every: int = option(0, "every this many steps (and at the end) sample --eval-samples examples and log their "
                             "FD, KID, precision/recall (2-D sets: also sliced Wasserstein) against the built-in data "
                             "to metrics.jsonl and TensorBoard (0: off; built-in datasets only)", _int(0), _RUN)
    eval_samples: int = option(1000, "samples drawn for each --eval-every evaluation (its cost grows with them; "
                               "the seconds it takes are logged)", _int(MIN_EVAL_SAMPLES), _RUN)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))
        self._check_class_cond()
        self._check_data_and_model()
        self._check_path()
        if self.eval_every and self.dataset.spec.kind == "folder":
            raise InvalidInput("eval_every measures samples against a built-in dataset's reference, "
                               "and dataset='folder' has none: evaluate saved samples with diffusion-core eval "
                               "--reference FOLDER")
        if self.variance is VarianceType.LEARNED_RANGE and self.vlb_weight <= 0:
            raise InvalidInput("variance='learned_range' needs vlb_weight > 0 (improved DDPM uses 0.001)")

    def _check_path(self) -> None:
        """Fill in the path's defaults; the DDPM-only options (the learned variance, the VLB) belong to vp."""
        target, times = PATH_DEFAULTS[self.path]
        if self.parameterization is None:
            object.__setattr__(self, "parameterization", target)
        if self.time_sampling is None:
            object.__setattr__(self, "time_sampling", times)
        if self.sigma_data != EDM_SIGMA_DATA and TrainPath.EDM is not self.path and self.parameterization is not Target.EDM:
            raise InvalidInput(f"sigma_data is EDM's (path='edm' or parameterization='edm'), got sigma_data="
                               f"{self.sigma_data} with path={self.path.value!r}, parameterization="
                               f"{self.parameterization.value!r}")
        if self.path is TrainPath.VP:
            return
        if self.vlb_weight > 0 or self.variance is not VarianceType.FIXED_LARGE:
            raise InvalidInput(f"variance and vlb_weight are DDPM's (path='vp'), got path={self.path.value!r}")

    def _check_class_cond(self) -> None:
        if self.p_uncond is not None and not self.class_cond:
            raise InvalidInput(f"p_uncond is the label dropout of a class-conditional run; got p_uncond={self.p_uncond} "
                               "without class_cond")
        if self.class_cond:
            p = DEFAULT_P_UNCOND if self.p_uncond is None else self.p_uncond
            object.__setattr__(self, "p_uncond", check_number("p_uncond", p, low=0, high=1, high_open=True))

    def _check_data_and_model(self) -> None:
        """The rules each dataset declares (:class:`~.data.DatasetSpec`): flips, data_dir and image_size for folders
        only, and the kind of model the data fits (its default when none is named)."""
        ds, spec = self.dataset, self.dataset.spec
        if self.hflip and not spec.hflip:
            raise InvalidInput("hflip is for image folders only (flipped digits or 2-D points are other data), got "
                               f"dataset={ds.value!r}")
        if spec.kind == "folder" and not self.data_dir:
            raise InvalidInput("dataset='folder' needs data_dir, the folder of PNG/JPEG images")
        if spec.kind != "folder" and self.data_dir:
            raise InvalidInput(f"data_dir is only used with dataset='folder', got dataset={ds.value!r}")
        if spec.kind != "folder" and self.image_size is not None:
            size = (f"the {ds.value} are {spec.shape[-2]}x{spec.shape[-1]}" if spec.kind == "images"
                    else f"{spec.shape[0]}-D points have no size")
            raise InvalidInput(f"image_size is for dataset='folder' ({size}), got image_size={self.image_size}")
        if self.model is None:
            object.__setattr__(self, "model", spec.default_model)
        presets = list_presets()
        if self.model != "mlp" and self.model not in presets:
            raise InvalidInput(f"unknown model {self.model!r}; allowed: 'mlp' (2-D toy sets) or a U-Net preset: "
                               f"{', '.join(presets)}")
        if spec.model_kind == "mlp" and self.model != "mlp":
            raise InvalidInput(f"the 2-D toy sets train model='mlp', got model={self.model!r} for dataset={ds.value!r} "
                               "(leave the model out to get mlp)")
        if spec.model_kind == "unet" and self.model == "mlp":
            raise InvalidInput(f"model='mlp' is for the 2-D toy sets; dataset={ds.value!r} needs a U-Net preset "
                               f"({', '.join(presets)}; default {spec.default_model})")

    @property
    def uses_channels_last(self) -> bool:
        """``channels_last`` resolved: on unless set to False (it applies to image models and image data only)."""
        return self.channels_last is not False

    @property
    def run_dir(self) -> str:
        """The output folder: ``out_dir``, or ``runs/<dataset>`` when it is not set."""
        return self.out_dir or f"runs/{self.dataset.value}"

    def gaussian_path(self) -> GaussianPath:
        """The path this run trains on: the schedule's :class:`DiscreteVP` on vp."""
        if self.path is TrainPath.VP:
            return self.diffusion().path
        return RectifiedFlow() if self.path is TrainPath.RECTIFIED_FLOW else VarianceExploding(EDM_SIGMA_MAX)

    def time_sampler(self) -> Callable[..., Any]:
        """The density of the training times, ``sampler(path, n, generator, device)``."""
        return {TimeSampling.UNIFORM: UniformTime(), TimeSampling.LOGIT_NORMAL: LogitNormalTime(),
                TimeSampling.LOG_NORMAL: LogNormalSigma()}[self.time_sampling]

    def diffusion(self) -> Diffusion:
        """The :class:`Diffusion` this run trains (rebuilt from the config: schedules are not stored)."""
        schedule = NoiseSchedule.make(self.schedule, self.num_timesteps)
        # The dataset's clip: image data lives in [-1, 1], so the predicted x0 is clipped there when sampling.
        # Without it the first DDIM step from the cosine schedule's alpha_bar_T = 2.4e-9 multiplies the
        # noise-prediction error by sqrt(alpha_bar_next / alpha_bar_T) (about 630 for DDIM-50) and samples blow up.
        return Diffusion(schedule, self.parameterization, self.variance, self.dataset.spec.clip)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (v.value if isinstance(v, Enum) else v) for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    def resolved_warmup(self, saved: int | None = None) -> "TrainConfig":
        """This config with ``warmup_steps`` set: kept when given, else ``saved`` (a resumed run's), else
        ``DEFAULT_WARMUP`` or a fifth of a shorter run."""
        if self.warmup_steps is not None:
            return self
        return self.replace(warmup_steps=saved if saved is not None else min(DEFAULT_WARMUP, self.steps // 5))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """The config of a ``to_dict`` (a checkpoint's, a config.json's). Settings that older versions stored
        although they had no effect (``p_uncond`` of an unconditional run, ``image_size`` of built-in data) are
        dropped rather than refused, so their checkpoints still load."""
        if isinstance(d, dict):
            d = dict(d)
            if not d.get("class_cond"):
                d.pop("p_uncond", None)
            if d.get("dataset") != Dataset.FOLDER.value:
                d.pop("image_size", None)
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise InvalidInput(f"unknown TrainConfig keys {unknown}; allowed: {', '.join(sorted(allowed))}")
        try:
            return cls(**d)
        except TypeError as e:  # a value of the wrong type that a comparison tripped over
            raise InvalidInput(f"TrainConfig: {e}") from None
