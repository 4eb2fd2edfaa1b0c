"""Training: config, data, EMA, checkpoints, DDP through torchrun, and the loop."""
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import Dataset, Precision, TrainConfig
from .data import digits, toy_data
from .ema import EMA
from .folder_data import PreparedFolder, folder_batches, prepare_image_folder
from .models import build_model, load_model, model_config_for
from .device import autocast_dtype, resolve_device
from .trainer import NonFiniteLossError, TrainingInterrupted, TrainResult, train

__all__ = [
    "Checkpoint", "Dataset", "EMA", "PreparedFolder", "NonFiniteLossError", "Precision", "TrainConfig", "TrainResult", "TrainingInterrupted",
    "autocast_dtype", "build_model", "digits", "folder_batches", "load_checkpoint", "load_model",
    "model_config_for", "prepare_image_folder", "resolve_device", "save_checkpoint", "toy_data", "train",
]
