"""The training configuration: one frozen dataclass, validated once, saved into every checkpoint."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .._validation import (check_bool, check_choice, check_device_name, check_fits_memory, check_int, check_number,
                           check_path, check_seed)
from ..diffusion import Diffusion
from ..losses import LossType
from ..targets import Target
from ..reverse import Clip, VarianceType
from ..schedule import SCHEDULE_BYTES_PER_STEP, NoiseSchedule, ScheduleKind
from ..errors import InvalidInput, InvalidInputType
from ..nn import list_presets

__all__ = ["Dataset", "Precision", "TrainConfig", "DEFAULT_MODEL"]


class Dataset(str, Enum):
    """Built-in data (nothing is downloaded) or a folder of the user's images."""

    DIGITS = "digits"  # scikit-learn's bundled 8x8 digits, 1,797 images
    SWISS_ROLL = "swiss-roll"
    TWO_MOONS = "two-moons"
    EIGHT_GAUSSIANS = "8-gaussians"
    CHECKERBOARD = "checkerboard"
    FOLDER = "folder"  # PNG/JPEG files under data_dir

    @property
    def is_toy(self) -> bool:
        return self not in (Dataset.DIGITS, Dataset.FOLDER)


class Precision(str, Enum):
    """Autocast dtype: bf16 needs no loss scaling; fp16 gets a GradScaler; fp32 runs without autocast."""

    AUTO = "auto"  # bf16 on a GPU that supports it, else fp32
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


# The model a dataset trains when none is named: the only kind that fits the 2-D sets, the digits' own U-Net, and
# for a folder the narrow CIFAR-sized U-Net (RGB, 32x32; --model and --image-size choose others).
DEFAULT_MODEL = {d: "mlp" for d in Dataset if d.is_toy} | {Dataset.DIGITS: "digits-8", Dataset.FOLDER: "tiny-32"}
DEFAULT_P_UNCOND = 0.1  # Ho & Salimans 2022
DEFAULT_WARMUP = 200  # linear warmup steps of a run of 1,000 steps or more; a fifth of a shorter run

_ENUM_FIELDS = {
    "dataset": Dataset,
    "schedule": ScheduleKind,
    "parameterization": Target,
    "variance": VarianceType,
    "loss_type": LossType,
    "precision": Precision,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs. ``model`` is a U-Net preset name (see ``diffusion_core.nn.list_presets``)
    or ``"mlp"`` for the 2-D toy sets; ``None`` picks the dataset's (``DEFAULT_MODEL``). Defaults train the
    digits model on a CPU in a few minutes."""

    dataset: Dataset = Dataset.DIGITS
    data_dir: str | None = None
    image_size: int | None = None  # folder images are resized to this; default: the preset's size
    model: str | None = None  # None: mlp for the 2-D toy sets, digits-8 for the digits, tiny-32 for a folder
    schedule: ScheduleKind = ScheduleKind.COSINE
    num_timesteps: int = 1000
    # v (Salimans & Ho 2022) rather than DDPM's eps: with the cosine schedule's alpha_bar_T ~ 2e-9, x0 recovered
    # from eps divides the network's error by sqrt(alpha_bar_T) at the first sampling step; from v it does not.
    # Measured on the swiss roll (3,000 steps): DDIM-50 sliced W1 at 33.6x the data-vs-data floor with eps, 1.07x with v.
    parameterization: Target = Target.V
    variance: VarianceType = VarianceType.FIXED_LARGE
    loss_type: LossType = LossType.MSE
    min_snr_gamma: float | None = None
    vlb_weight: float = 0.0  # improved DDPM's lambda; must be > 0 with the learned variance
    steps: int = 1000
    batch_size: int = 128
    lr: float = 2e-3
    # None: 200 steps, or a fifth of a run shorter than 1,000 steps (on resume: the checkpoint's); train() sets it.
    # A warmup longer than the run gets a warning naming the learning rate it ends at (a resume finishes it).
    warmup_steps: int | None = None
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: Precision = Precision.AUTO
    compile: bool | None = None  # None: on for CUDA, off for the CPU (compiling costs a minute there)
    channels_last: bool | None = None  # None: on for image models (faster on CUDA and on the CPU alike)
    class_cond: bool = False  # class-conditional network (labels: digits 0-9, toy components, class subfolders)
    p_uncond: float | None = None  # class_cond only: probability of training on the null label; None: 0.1
    hflip: bool | None = None  # random horizontal flips; None: on for image folders (as DDPM's CIFAR-10 runs), off otherwise
    # DataLoader worker processes for image folders; None: 2 on CUDA, 0 on the CPU, where the training threads need
    # the cores and reading the prepared uint8 cache is thousands of times faster than a training step anyway
    workers: int | None = None
    seed: int = 0
    out_dir: str | None = None  # None: runs/<dataset>, or the checkpoint's folder when resuming
    log_every: int = 50
    checkpoint_every: int = 500  # also at the end, on Ctrl-C and every checkpoint_minutes
    checkpoint_minutes: float = 10.0  # 0: only by step count
    preview_every: int = 0  # 0: a preview grid only at the end
    device: str = "auto"

    def __post_init__(self) -> None:
        for name, enum in _ENUM_FIELDS.items():
            object.__setattr__(self, name, check_choice(name, getattr(self, name), enum))
        self._check_types()
        self._check_ranges()
        self._check_data_and_model()
        if self.variance is VarianceType.LEARNED_RANGE and self.vlb_weight <= 0:
            raise InvalidInput("variance='learned_range' needs vlb_weight > 0 (improved DDPM uses 0.001)")

    def _check_types(self) -> None:
        for name in ("num_timesteps", "steps", "batch_size", "log_every", "checkpoint_every"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("warmup_steps", "preview_every", "workers", "image_size"):
            check_int(name, getattr(self, name), minimum=1 if name == "image_size" else 0,
                      optional=name in ("warmup_steps", "workers", "image_size"))
        check_seed("seed", self.seed)
        for name in ("lr", "weight_decay", "grad_clip", "ema_decay", "vlb_weight", "checkpoint_minutes",
                     "min_snr_gamma", "p_uncond"):
            check_number(name, getattr(self, name), optional=name in ("min_snr_gamma", "p_uncond"))
        for name in ("compile", "channels_last", "hflip", "class_cond"):
            check_bool(name, getattr(self, name), optional=name != "class_cond")
        for name in ("data_dir", "out_dir"):
            object.__setattr__(self, name, check_path(name, getattr(self, name), optional=True))
        if not isinstance(self.device, str):
            raise InvalidInputType(f"device must be a str ('auto', 'cpu', 'cuda' or 'cuda:N'), got {self.device!r}")
        check_device_name(self.device)
        # the schedule's tables: no machine holds T = 1e12 (a checkpoint's header may claim anything)
        check_fits_memory("num_timesteps", self.num_timesteps, SCHEDULE_BYTES_PER_STEP, "the schedule's tables")

    def _check_ranges(self) -> None:
        if not 0 < self.lr <= 1:  # AdamW moves each weight by about lr per step: above 1 is a typo, not a setting
            raise InvalidInput(f"lr must lie in (0, 1], got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise InvalidInput(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not self.grad_clip > 0:
            raise InvalidInput(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.weight_decay < 0 or self.vlb_weight < 0 or self.checkpoint_minutes < 0:
            raise InvalidInput("weight_decay, vlb_weight and checkpoint_minutes must be >= 0, got "
                               f"{self.weight_decay}, {self.vlb_weight}, {self.checkpoint_minutes}")
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise InvalidInput(f"min_snr_gamma must be > 0, got {self.min_snr_gamma}")
        if self.p_uncond is not None and not self.class_cond:
            raise InvalidInput(f"p_uncond is the label dropout of a class-conditional run; got p_uncond={self.p_uncond} "
                               "without class_cond")
        if self.class_cond:
            p = DEFAULT_P_UNCOND if self.p_uncond is None else self.p_uncond
            if not 0 <= p < 1:
                raise InvalidInput(f"p_uncond must lie in [0, 1), got {p!r}")
            object.__setattr__(self, "p_uncond", p)

    def _check_data_and_model(self) -> None:
        ds = self.dataset
        if self.hflip and ds is not Dataset.FOLDER:
            raise InvalidInput(f"hflip is for image folders only (flipped digits or 2-D points are other data), got dataset={ds.value!r}")
        if ds is Dataset.FOLDER and not self.data_dir:
            raise InvalidInput("dataset='folder' needs data_dir, the folder of PNG/JPEG images")
        if ds is not Dataset.FOLDER and self.data_dir:
            raise InvalidInput(f"data_dir is only used with dataset='folder', got dataset={ds.value!r}")
        if ds is not Dataset.FOLDER and self.image_size is not None:
            size = "the digits are 8x8" if ds is Dataset.DIGITS else "2-D points have no size"
            raise InvalidInput(f"image_size is for dataset='folder' ({size}), got image_size={self.image_size}")
        if self.model is None:
            object.__setattr__(self, "model", DEFAULT_MODEL[ds])
        if not isinstance(self.model, str):
            raise InvalidInputType(f"model must be a str (a U-Net preset or 'mlp'), got {self.model!r}")
        presets = list_presets()
        if self.model != "mlp" and self.model not in presets:
            raise InvalidInput(f"unknown model {self.model!r}; allowed: 'mlp' (2-D toy sets) or a U-Net preset: "
                               f"{', '.join(presets)}")
        if ds.is_toy and self.model != "mlp":
            raise InvalidInput(f"the 2-D toy sets train model='mlp', got model={self.model!r} for dataset={ds.value!r} "
                               "(leave the model out to get mlp)")
        if not ds.is_toy and self.model == "mlp":
            raise InvalidInput(f"model='mlp' is for the 2-D toy sets; dataset={ds.value!r} needs a U-Net preset "
                               f"({', '.join(presets)}; default {DEFAULT_MODEL[ds]})")

    @property
    def uses_channels_last(self) -> bool:
        """``channels_last`` resolved: on unless set to False (it applies to image models and image data only)."""
        return self.channels_last is not False

    @property
    def run_dir(self) -> str:
        """The output folder: ``out_dir``, or ``runs/<dataset>`` when it is not set."""
        return self.out_dir or f"runs/{self.dataset.value}"

    def diffusion(self) -> Diffusion:
        """The :class:`Diffusion` this run trains (rebuilt from the config: schedules are not stored)."""
        schedule = NoiseSchedule.make(self.schedule, self.num_timesteps)
        # Image data lives in [-1, 1]: clip the predicted x0 there when sampling. Without it the first DDIM
        # step from the cosine schedule's alpha_bar_T = 2.4e-9 multiplies the noise-prediction error by
        # sqrt(alpha_bar_next / alpha_bar_T) (about 630 for DDIM-50) and samples blow up.
        clip = Clip.NONE if self.dataset.is_toy else Clip.STATIC
        return Diffusion(schedule, self.parameterization, self.variance, clip)

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
