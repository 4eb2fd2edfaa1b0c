"""Denoising networks: the DDPM U-Net, an MLP for toy data, their configs and presets."""
from .config import MLPConfig, UNetConfig
from .embedding import LabelEmbedding, timestep_embedding
from .mlp import MLPBlock, MLPDenoiser
from .presets import PRESETS, build_mlp, build_unet, count_parameters, get_preset, list_presets
from .unet import AttentionBlock, Downsample, GroupNorm32, ResBlock, UNet, Upsample

__all__ = [
    "UNetConfig", "MLPConfig",
    "timestep_embedding", "LabelEmbedding",
    "UNet", "ResBlock", "AttentionBlock", "Downsample", "Upsample", "GroupNorm32",
    "MLPDenoiser", "MLPBlock",
    "PRESETS", "get_preset", "list_presets", "build_unet", "build_mlp", "count_parameters",
]
