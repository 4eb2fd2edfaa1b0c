"""Training: config, data, EMA, checkpoints, DDP through torchrun, and the loop."""
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import Dataset, Precision, TrainConfig
from .data import digits, image_folder, load_dataset, toy_data
from .ema import EMA
from .models import build_model, load_model, model_config_for
from .trainer import NonFiniteLossError, TrainResult, autocast_dtype, resolve_device, train

__all__ = [
    "Checkpoint", "Dataset", "EMA", "NonFiniteLossError", "Precision", "TrainConfig", "TrainResult",
    "autocast_dtype", "build_model", "digits", "image_folder", "load_checkpoint", "load_dataset", "load_model",
    "model_config_for", "resolve_device", "save_checkpoint", "toy_data", "train",
]
