"""Component configurations (the published SD-1.5 / Moore-AnimateAnyone shapes and settings) and
:func:`assemble_pipeline`, the one place an :class:`AnimationPipeline` is put together from parts."""

from __future__ import annotations

from typing import Any

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNetMotionModel
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from anima.generate.models import PoseGuider
from anima.generate.pipeline import AnimationPipeline

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

# How Moore-AnimateAnyone runs its weights (scripts/pose2vid.py and pipeline_pose2vid_long.py):
# 30 DDIM steps at guidance 3.5; 24-frame windows overlapping by 4 that wrap around to the first
# frames; AnimateDiff's motion modules, which normalise each frame on its own; the reference squashed
# to CLIP's 224 x 224 without a crop; reference and poses resized with Lanczos (VaeImageProcessor);
# 512 x 784 pixels (pose2vid.py's -W and -H; Animate Anyone's subjects stand in portrait).
MOORE_PIPELINE_CONFIG: dict[str, Any] = {
    "default_steps": 30,
    "default_guidance": 3.5,
    "default_context_frames": 24,
    "default_context_overlap": 4,
    "default_context_wrap": True,
    "motion_norm": "per_frame",
    "clip_input": "resize",
    "resample": "lanczos",
    "default_width": 512,
    "default_height": 784,
}

# SD-1.5's UNet (stable-diffusion-v1-5/unet/config.json), the ReferenceNet of the published weights.
SD15_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "norm_num_groups": 32,
}

# SD's VAE (sd-vae-ft-mse) and the CLIP ViT-L/14 vision tower of sd-image-variations-diffusers,
# the published weights' other components (AutoencoderKL and CLIPVisionConfig arguments).
SD_VAE_CONFIG: dict[str, Any] = {
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
}
SD_IMAGE_ENCODER_CONFIG: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
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


def assemble_pipeline(
    unet_config: dict[str, Any],
    vae: AutoencoderKL,
    image_encoder: CLIPVisionModelWithProjection,
    pose_guider: PoseGuider,
    reference_unet: UNet2DConditionModel | None = None,
    motion_heads: int = 8,
    motion_max_seq_length: int = 32,
    **settings: Any,
) -> AnimationPipeline:
    """An Animate Anyone pipeline around the given VAE, image encoder and Pose Guider.

    The ReferenceNet is ``reference_unet`` or a fresh ``UNet2DConditionModel(**unet_config)``; the
    denoising UNet is the same 2D UNet plus motion modules, its 2D weights copied from the
    ReferenceNet (Animate Anyone starts both from one SD UNet). Moore-AnimateAnyone's DDIM scheduler,
    CLIP preprocessing at the image encoder's input size.

    Args:
        unet_config (`dict`): ``UNet2DConditionModel`` arguments of both UNets' 2D part.
        vae, image_encoder, pose_guider: the other components, as built or loaded by the caller.
        reference_unet (`UNet2DConditionModel`, optional): a built (e.g. loaded) ReferenceNet.
        motion_heads, motion_max_seq_length (`int`, defaults to 8 and 32): the motion modules' heads
            and longest window.
        settings: the pipeline's config (`default_steps`, `motion_norm`, ... see
            :class:`AnimationPipeline`).

    Example:
        >>> guider = PoseGuider(conditioning_embedding_channels=320)
        >>> pipe = assemble_pipeline(SD15_UNET_CONFIG, vae, image_encoder, guider, **MOORE_PIPELINE_CONFIG)
    """
    reference_unet = reference_unet or UNet2DConditionModel(**unet_config)
    denoising_unet = UNetMotionModel(**motion_unet_config(unet_config, motion_heads, motion_max_seq_length))
    denoising_unet.load_state_dict(reference_unet.state_dict(), strict=False)
    side = image_encoder.config.image_size
    return AnimationPipeline(
        vae=vae,
        image_encoder=image_encoder,
        reference_unet=reference_unet,
        denoising_unet=denoising_unet,
        pose_guider=pose_guider,
        scheduler=DDIMScheduler(**MOORE_SCHEDULER_CONFIG),
        feature_extractor=CLIPImageProcessor(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        ),
        **settings,
    )
