"""The architecture of the default model, ``anima-puppets``: Animate Anyone at a size a CPU trains
in hours — a VAE that downscales by 4 (a compact latent at 128 px), attention only at the two lower
resolutions with few heads, a warp-guided Pose Guider (skeleton + limb warp + coverage), and
Moore-AnimateAnyone's scheduler (v-prediction, zero terminal SNR)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, UNetMotionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from anima.generate.configs import assemble_pipeline
from anima.generate.models import PoseGuider
from anima.generate.pipeline import WARP_GUIDED_CHANNELS, AnimationPipeline


@dataclass(frozen=True)
class PuppetArchitecture:
    """Sizes of every component (the defaults are the shipped model's)."""

    size: int = 128
    latent_channels: int = 8
    vae_channels: tuple[int, ...] = (32, 64, 64)
    unet_channels: tuple[int, ...] = (64, 96, 128)
    attention_heads: int = 4
    clip_width: int = 64
    clip_image_size: int = 64
    motion_frames: int = 24
    default_steps: int = 10
    default_strength: float = 0.6

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.vae_channels) - 1)


def puppet_vae(arch: PuppetArchitecture) -> AutoencoderKL:
    levels = len(arch.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=arch.latent_channels,
        norm_num_groups=16,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=arch.vae_channels,
        layers_per_block=1,
        sample_size=arch.size,
        mid_block_add_attention=False,
    )


def _unet_config(arch: PuppetArchitecture) -> dict:
    levels = len(arch.unet_channels)
    # Attention (and so reference attention) at every level but the finest.
    down = ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (levels - 1)
    up = ["CrossAttnUpBlock2D"] * (levels - 1) + ["UpBlock2D"]
    return {
        "sample_size": arch.size // arch.downscale,
        "in_channels": arch.latent_channels,
        "out_channels": arch.latent_channels,
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": list(arch.unet_channels),
        "layers_per_block": 1,
        "norm_num_groups": 16,
        "cross_attention_dim": arch.clip_width,
        "attention_head_dim": arch.attention_heads,
    }


def zero_motion_outputs(unet: UNetMotionModel) -> None:
    """Motion modules start as the identity (as in AnimateDiff), so stage 1 trains the 2D part alone."""
    for name, module in unet.named_modules():
        if name.endswith("proj_out") and ".motion_modules." in f".{name}":
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)


def puppet_pipeline(arch: PuppetArchitecture, vae: AutoencoderKL, seed: int = 0) -> AnimationPipeline:
    """A fresh (untrained but for ``vae``) warp-guided pipeline of the given sizes."""
    torch.manual_seed(seed)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=arch.clip_width,
            intermediate_size=arch.clip_width * 2,
            num_hidden_layers=2,
            num_attention_heads=arch.attention_heads,
            image_size=arch.clip_image_size,
            patch_size=8,
            projection_dim=arch.clip_width,
        )
    )
    pose_guider = PoseGuider(
        conditioning_embedding_channels=arch.unet_channels[0],
        conditioning_channels=WARP_GUIDED_CHANNELS,
        block_out_channels=(32, 64, 96)[: len(arch.vae_channels)],
        latent_channels=arch.latent_channels,
    )
    pipe = assemble_pipeline(
        _unet_config(arch),
        vae,
        image_encoder,
        pose_guider,
        motion_heads=arch.attention_heads,
        motion_max_seq_length=arch.motion_frames,
        default_steps=arch.default_steps,
        default_guidance=1.0,
        default_strength=arch.default_strength,
    )
    zero_motion_outputs(pipe.denoising_unet)
    return pipe
