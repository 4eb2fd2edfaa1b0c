"""Training: config, data, EMA, checkpoints, DDP through torchrun, and the loop.

Where things are (each module's docstring says more):

* ``config``: :class:`TrainConfig`, every option declared once (default, check, help, resume policy);
* ``data``: the datasets, each declared once (:class:`Dataset`); ``images``: image files in and out;
  ``folder_cache``: an image folder decoded once into a memory-mapped cache; ``data_source``: a run's batches;
* ``models``: the network a config names; ``step``: one optimizer step, its learning rate and the EMA;
* ``runtime``: device, precision, torchrun's processes, stop requests; ``trainer``: :func:`train`, the loop;
* ``run_dir``: the run's folder; ``run_log``: ``metrics.jsonl`` and ``loss.png``; ``checkpoint``: the file;
  ``resume``: what a resumed run checks and restores; ``init_from``: the weights a fine-tuning run starts from;
* ``diffusers_format``: checkpoints out to diffusers' ``DDPMPipeline`` folder and diffusers folders in, with
  ``diffusers_names`` (the weight-name table), ``diffusers_unet_config`` and ``diffusers_scheduler`` (the configs).
"""
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import Dataset, Precision, TrainConfig
from .data import digits, toy_data
from .data_source import folder_batches
from .diffusers_format import DiffusersModel, ExportResult, export_diffusers, load_diffusers
from .folder_cache import PreparedFolder, prepare_image_folder
from .images import image_grid, save_image_grid, save_scatter
from .models import build_model, load_model, model_config_for
from .runtime import autocast_dtype, resolve_device
from .step import EMA
from .trainer import NonFiniteLossError, TrainingInterrupted, TrainResult, train

__all__ = [
    "Checkpoint", "Dataset", "DiffusersModel", "EMA", "ExportResult", "PreparedFolder", "NonFiniteLossError", "Precision", "TrainConfig", "TrainResult",
    "TrainingInterrupted", "autocast_dtype", "build_model", "digits", "export_diffusers", "folder_batches", "image_grid", "load_checkpoint",
    "load_diffusers", "load_model", "model_config_for", "prepare_image_folder", "resolve_device", "save_checkpoint", "save_image_grid",
    "save_scatter", "toy_data", "train",
]
