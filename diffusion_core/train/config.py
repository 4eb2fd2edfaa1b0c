"""The training configuration: one frozen dataclass, validated once, saved into every checkpoint."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .._validation import check_choice, check_device_name
from ..diffusion import Diffusion
from ..losses import LossType
from ..parameterization import Parameterization
from ..reverse import Clip, VarianceType
from ..schedule import NoiseSchedule, ScheduleKind
from ..errors import InvalidInput

__all__ = ["Dataset", "Precision", "TrainConfig"]


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


_ENUM_FIELDS = {
    "dataset": Dataset,
    "schedule": ScheduleKind,
    "parameterization": Parameterization,
    "variance": VarianceType,
    "loss_type": LossType,
    "precision": Precision,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs. ``model`` is a U-Net preset name (see ``diffusion_core.nn.list_presets``)
    or ``"mlp"`` for the 2-D toy sets. Defaults train the digits model on a CPU in a few minutes."""

    dataset: Dataset = Dataset.DIGITS
    data_dir: str | None = None
    image_size: int | None = None  # folder images are resized to this; default: the preset's size
    model: str = "digits-8"
    schedule: ScheduleKind = ScheduleKind.COSINE
    num_timesteps: int = 1000
    # v (Salimans & Ho 2022) rather than DDPM's eps: with the cosine schedule's alpha_bar_T ~ 2e-9, x0 recovered
    # from eps divides the network's error by sqrt(alpha_bar_T) at the first sampling step; from v it does not.
    # Measured on the swiss roll (3,000 steps): DDIM-50 sliced W1 at 33.6x the data-vs-data floor with eps, 1.07x with v.
    parameterization: Parameterization = Parameterization.V
    variance: VarianceType = VarianceType.FIXED_LARGE
    loss_type: LossType = LossType.MSE
    min_snr_gamma: float | None = None
    vlb_weight: float = 0.0  # improved DDPM's lambda; must be > 0 with the learned variance
    steps: int = 1000
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: Precision = Precision.AUTO
    compile: bool | None = None  # None: on for CUDA, off for the CPU (compiling costs a minute there)
    channels_last: bool | None = None  # None: on for image models (faster on CUDA and on the CPU alike)
    class_cond: bool = False  # class-conditional network (labels: digits 0-9, toy components, class subfolders)
    p_uncond: float = 0.1  # with class_cond: probability of training on the null label (Ho & Salimans 2022)
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
        for name in ("num_timesteps", "steps", "batch_size", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} must be a positive int, got {value!r}")
        for name in ("warmup_steps", "preview_every", "seed", "workers"):
            value = getattr(self, name)
            if name == "workers" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name} must be an int >= 0, got {value!r}")
        for name, value in (("lr", self.lr), ("weight_decay", self.weight_decay), ("grad_clip", self.grad_clip),
                            ("ema_decay", self.ema_decay), ("vlb_weight", self.vlb_weight),
                            ("checkpoint_minutes", self.checkpoint_minutes), ("min_snr_gamma", self.min_snr_gamma)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise InvalidInput(f"{name} must be a finite number, got {value!r}")
        if not 0 < self.lr <= 1:  # AdamW moves each weight by about lr per step: above 1 is a typo, not a setting
            raise InvalidInput(f"lr must lie in (0, 1], got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise InvalidInput(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not self.grad_clip > 0:
            raise InvalidInput(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.weight_decay < 0 or self.vlb_weight < 0 or self.checkpoint_minutes < 0:
            raise InvalidInput("weight_decay, vlb_weight and checkpoint_minutes must be >= 0, got "
                               f"{self.weight_decay}, {self.vlb_weight}, {self.checkpoint_minutes}")
        if not isinstance(self.p_uncond, (int, float)) or isinstance(self.p_uncond, bool) or not 0 <= self.p_uncond < 1:
            raise InvalidInput(f"p_uncond must lie in [0, 1), got {self.p_uncond!r}")
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise InvalidInput(f"min_snr_gamma must be > 0, got {self.min_snr_gamma}")
        if self.hflip and self.dataset is not Dataset.FOLDER:
            raise InvalidInput(f"hflip is for image folders only (flipped digits or 2-D points are other data), got dataset={self.dataset.value!r}")
        if self.dataset is Dataset.FOLDER and not self.data_dir:
            raise InvalidInput("dataset='folder' needs data_dir, the folder of PNG/JPEG images")
        if self.dataset is not Dataset.FOLDER and self.data_dir:
            raise InvalidInput(f"data_dir is only used with dataset='folder', got dataset={self.dataset.value!r}")
        if self.dataset.is_toy != (self.model == "mlp"):
            raise InvalidInput(f"model must be 'mlp' exactly for the 2-D toy sets; got model={self.model!r} for dataset={self.dataset.value!r}")
        if self.variance is VarianceType.LEARNED_RANGE and self.vlb_weight <= 0:
            raise InvalidInput("variance='learned_range' needs vlb_weight > 0 (improved DDPM uses 0.001)")
        check_device_name(self.device)

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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise InvalidInput(f"unknown TrainConfig keys {unknown}; allowed: {', '.join(sorted(allowed))}")
        try:
            return cls(**d)
        except TypeError as e:  # a value of the wrong type that a comparison tripped over
            raise InvalidInput(f"TrainConfig: {e}") from None
