"""Component configurations: the published SD-1.5 / Moore-AnimateAnyone shapes, and tiny ones of
the same architecture for tests, benchmarks and small default models."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNetMotionModel
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from anima.generate.models import PoseGuider
from anima.generate.pipeline import WARP_GUIDED_CHANNELS, AnimationPipeline

# Moore-AnimateAnyone's inference scheduler (zero-terminal-SNR, v-prediction, trailing timesteps).
MOORE_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}

# The 2D UNet keys that UNetMotionModel shares with UNet2DConditionModel map one to one;
# these are the arguments that make the motion UNet's 2D part an SD-1.5 UNet.
MOTION_UNET_FROM_2D = (
    "sample_size",
    "in_channels",
    "out_channels",
    "block_out_channels",
    "layers_per_block",
    "norm_num_groups",
    "cross_attention_dim",
    "use_linear_projection",
)


def motion_block_types(down_block_types: list[str], up_block_types: list[str]) -> tuple[tuple, tuple]:
    """The UNetMotionModel block names matching a UNet2DConditionModel's."""
    down = tuple(
        "CrossAttnDownBlockMotion" if "CrossAttn" in name else "DownBlockMotion" for name in down_block_types
    )
    up = tuple(
        "CrossAttnUpBlockMotion" if "CrossAttn" in name else "UpBlockMotion" for name in up_block_types
    )
    return down, up


def motion_unet_config(
    unet_2d_config: dict[str, Any], motion_heads: int = 8, motion_max_seq_length: int = 32
) -> dict[str, Any]:
    """UNetMotionModel arguments for the 2D UNet described by ``unet_2d_config`` plus motion modules."""
    down, up = motion_block_types(
        list(unet_2d_config["down_block_types"]), list(unet_2d_config["up_block_types"])
    )
    heads = unet_2d_config.get("attention_head_dim", 8)  # diffusers' legacy name for the head count
    return {
        **{key: unet_2d_config[key] for key in MOTION_UNET_FROM_2D if key in unet_2d_config},
        "down_block_types": down,
        "up_block_types": up,
        "num_attention_heads": heads,
        "motion_num_attention_heads": motion_heads,
        "motion_max_seq_length": motion_max_seq_length,
        "use_motion_mid_block": True,
    }


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
    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=projection_dim,
        )
    )


def tiny_pipeline(
    seed: int = 0, unet_config: dict[str, Any] | None = None, warp_guided: bool = False
) -> AnimationPipeline:
    """A randomly initialised pipeline of the real architecture at toy size (fast on a CPU); with
    ``warp_guided`` its Pose Guider also reads the limb warp."""
    torch.manual_seed(seed)
    unet_config = dict(unet_config or TINY_UNET_CONFIG)
    width = unet_config["block_out_channels"][0]
    clip_dim = unet_config["cross_attention_dim"]
    vae = tiny_vae()
    image_encoder = tiny_image_encoder(clip_dim)
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    reference_unet = UNet2DConditionModel(**unet_config)
    denoising_unet = UNetMotionModel(**motion_unet_config(unet_config, motion_heads=2))
    # Start the denoiser's 2D part from the reference UNet, as Animate Anyone training does.
    denoising_unet.load_state_dict(reference_unet.state_dict(), strict=False)
    pose_guider = PoseGuider(
        conditioning_embedding_channels=width,
        conditioning_channels=WARP_GUIDED_CHANNELS if warp_guided else 3,
        block_out_channels=(8, 16, 16, 32),
        latent_channels=vae.config.latent_channels if warp_guided else 0,
    )
    for parameter in pose_guider.conv_out.parameters():  # non-zero, so that pose matters in tests
        torch.nn.init.normal_(parameter, std=0.2)
    scheduler = DDIMScheduler(**MOORE_SCHEDULER_CONFIG)
    return AnimationPipeline(
        vae=vae,
        image_encoder=image_encoder,
        reference_unet=reference_unet,
        denoising_unet=denoising_unet,
        pose_guider=pose_guider,
        scheduler=scheduler,
        feature_extractor=feature_extractor,
    )
