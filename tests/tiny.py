"""The Animate Anyone pipeline at toy size for tests: real diffusers parts, random weights, fast
on a CPU; and random pictures to feed it. Import it from a test module as
``from tiny import tiny_pipeline`` (pytest puts tests/ on the import path: the folder has no
``__init__.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from anima.generate.configs import assemble_pipeline
from anima.generate.models import PoseGuider
from anima.generate.pipeline import WARP_GUIDED_CHANNELS, AnimationPipeline

TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
}


def tiny_vae() -> AutoencoderKL:
    """SD's VAE shape (four levels: 1/8 resolution, 4 latent channels) at toy width."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
    )


def tiny_image_encoder(projection_dim: int) -> CLIPVisionModelWithProjection:
    """A CLIP vision tower (32 px input) projecting to the UNet's cross-attention width."""
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=projection_dim,
    )
    return CLIPVisionModelWithProjection(config)


def tiny_pipeline(
    seed: int = 0, unet_config: dict[str, Any] | None = None, warp_guided: bool = False, **settings: Any
) -> AnimationPipeline:
    """A randomly initialised pipeline of the real architecture at toy size, without a progress bar;
    with ``warp_guided`` its Pose Guider also reads the limb warp; ``settings`` go to the pipeline's
    config."""
    torch.manual_seed(seed)
    unet_config = dict(unet_config or TINY_UNET_CONFIG)
    vae = tiny_vae()
    pose_guider = PoseGuider(
        conditioning_embedding_channels=unet_config["block_out_channels"][0],
        conditioning_channels=WARP_GUIDED_CHANNELS if warp_guided else 3,
        block_out_channels=(8, 16, 16, 32),
        latent_channels=vae.config.latent_channels if warp_guided else 0,
    )
    for parameter in pose_guider.conv_out.parameters():  # non-zero, so that pose matters in tests
        torch.nn.init.normal_(parameter, std=0.2)
    image_encoder = tiny_image_encoder(unet_config["cross_attention_dim"])
    pipe = assemble_pipeline(unet_config, vae, image_encoder, pose_guider, motion_heads=2, **settings)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def random_image(seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    """Uniform RGB noise, uint8 (H, W, 3)."""
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
