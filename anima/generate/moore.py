"""Import the Moore-AnimateAnyone checkpoints into an ``AnimationPipeline`` folder.

The layout users download (``pretrained_weights/``)::

    denoising_unet.pth   SD-1.5 UNet keys (diffusers names), 686 for SD-1.5; no motion keys
    reference_unet.pth   the same minus conv_norm_out.* and conv_out.* (the ReferenceNet's
                         output layers are never used)
    pose_guider.pth      conv_in, blocks.0-5, conv_out (16 keys)
    motion_module.pth    AnimateDiff-v2 names, 28 keys per module (21 modules for SD-1.5),
                         including attention_blocks.{0,1}.pos_encoder.pe buffers
    stable-diffusion-v1-5/unet/config.json
    sd-vae-ft-mse/       a diffusers AutoencoderKL folder
    image_encoder/       CLIPVisionModelWithProjection (from sd-image-variations-diffusers)

Every key is mapped or the import fails naming it: a silently dropped tensor would give a model
that runs and produces garbage. The saved model also records how Moore runs these weights
(:data:`~anima.generate.configs.MOORE_PIPELINE_CONFIG`: per-frame motion norm, closed-loop 24-frame
windows, 30 steps, the reference squashed for CLIP, Lanczos resizes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPVisionModelWithProjection

from anima.errors import BadInput
from anima.generate.configs import MOORE_PIPELINE_CONFIG, assemble_pipeline
from anima.generate.models import PoseGuider

UNET_CONFIG = Path("stable-diffusion-v1-5") / "unet" / "config.json"
REQUIRED = (
    "denoising_unet.pth",
    "reference_unet.pth",
    "pose_guider.pth",
    "motion_module.pth",
    str(UNET_CONFIG),
    "sd-vae-ft-mse",
    "image_encoder",
)
REFERENCE_UNUSED = ("conv_norm_out.", "conv_out.")
# AnimateDiff v2 motion-module names -> diffusers' UNetMotionModel names (applied in order).
MOTION_RENAMES = (
    (".temporal_transformer.", "."),
    (".attention_blocks.0.", ".attn1."),
    (".attention_blocks.1.", ".attn2."),
    (".norms.0.", ".norm1."),
    (".norms.1.", ".norm2."),
    (".ff_norm.", ".norm3."),
)
POSITION_BUFFER = re.compile(r"\.attention_blocks\.[01]\.pos_encoder\.pe$")


class ImportFailed(BadInput):
    """The weights folder is incomplete or holds keys that do not fit the architecture."""


@dataclass(frozen=True)
class ImportReport:
    """What went where: tensors loaded per component and buffers recomputed instead of loaded."""

    output: Path
    tensors: dict[str, int]
    recomputed_buffers: int


def motion_key_to_diffusers(key: str) -> str:
    for old, new in MOTION_RENAMES:
        key = key.replace(old, new)
    return key


def _load_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same here
        raise ImportFailed(f"{path}: not a readable PyTorch checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ImportFailed(f"{path}: expected a flat state dict of tensors")
    return state


def _fill(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: Path,
    allowed_missing: tuple[str, ...] = (),
) -> int:
    """Copy ``state`` into ``module``; fail on any unexpected, missing or mis-shaped key."""
    own = module.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(k for k in set(own) - set(state) if not k.startswith(allowed_missing))
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    for problem, keys in (("unexpected", unexpected), ("missing", missing), ("wrong-shaped", wrong)):
        if keys:
            raise ImportFailed(f"{source}: {len(keys)} {problem} key(s), e.g. {', '.join(keys[:3])}")
    module.load_state_dict(state, strict=False)
    return len(state)


def _fill_from(module: torch.nn.Module, path: Path, allowed_missing: tuple[str, ...] = ()) -> int:
    """:func:`_fill` with the state dict read from ``path``."""
    return _fill(module, _load_pth(path), path, allowed_missing)


def _pose_guider_from(state: dict[str, torch.Tensor], unet_channels: int, source: Path) -> PoseGuider:
    try:
        stages = [state["conv_in.weight"].shape[0]]
        stages += [
            state[f"blocks.{i}.weight"].shape[0] for i in range(1, 64, 2) if f"blocks.{i}.weight" in state
        ]
    except KeyError as exc:
        raise ImportFailed(f"{source}: missing key {exc.args[0]}") from None
    return PoseGuider(conditioning_embedding_channels=unet_channels, block_out_channels=tuple(stages))


def _fill_motion_modules(unet: torch.nn.Module, path: Path) -> tuple[int, int]:
    """Load AnimateDiff-v2 motion modules from ``path`` into ``unet`` under diffusers' names; the
    sinusoid tables are recomputed by diffusers, not loaded. Returns (tensors loaded, tables skipped)."""
    state = _load_pth(path)
    position_buffers = [k for k in state if POSITION_BUFFER.search(k)]
    renamed = {motion_key_to_diffusers(k): v for k, v in state.items() if k not in position_buffers}
    own = {k for k in unet.state_dict() if ".motion_modules." in k and not k.endswith(".pos_embed.pe")}
    unmatched = sorted(set(renamed) - own)
    absent = sorted(own - set(renamed))
    if unmatched or absent:
        keys = unmatched or absent
        raise ImportFailed(
            f"{path}: {len(keys)} {'unmapped' if unmatched else 'missing'} key(s), e.g. {', '.join(keys[:3])}"
        )
    others = tuple(k for k in unet.state_dict() if k not in own)
    return _fill(unet, renamed, path, allowed_missing=others), len(position_buffers)


def import_moore(weights_dir: Path, output_dir: Path, half: bool = False) -> ImportReport:
    """Read the Moore-AnimateAnyone layout from ``weights_dir`` and save a pipeline folder."""
    weights_dir, output_dir = Path(weights_dir), Path(output_dir)
    missing = [name for name in REQUIRED if not (weights_dir / name).exists()]
    if missing:
        raise ImportFailed(
            f"{weights_dir}: missing {', '.join(missing)} (see `anima models import-moore --help`)"
        )
    try:
        unet_config = json.loads((weights_dir / UNET_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ImportFailed(f"{weights_dir / UNET_CONFIG}: not a UNet config ({exc})") from None

    tensors: dict[str, int] = {}
    reference_unet = UNet2DConditionModel.from_config(unet_config)
    tensors["reference_unet"] = _fill_from(
        reference_unet, weights_dir / "reference_unet.pth", allowed_missing=REFERENCE_UNUSED
    )
    pose_state = _load_pth(weights_dir / "pose_guider.pth")
    pose_guider = _pose_guider_from(
        pose_state, unet_config["block_out_channels"][0], weights_dir / "pose_guider.pth"
    )
    tensors["pose_guider"] = _fill(pose_guider, pose_state, weights_dir / "pose_guider.pth")
    try:
        vae = AutoencoderKL.from_pretrained(weights_dir / "sd-vae-ft-mse")
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(weights_dir / "image_encoder")
    except (OSError, ValueError) as exc:
        raise ImportFailed(f"cannot load the VAE or image encoder from {weights_dir}: {exc}") from None
    if image_encoder.config.projection_dim != unet_config["cross_attention_dim"]:
        raise ImportFailed(
            f"image encoder projects to {image_encoder.config.projection_dim} but the UNet "
            f"cross-attends to {unet_config['cross_attention_dim']}"
        )
    pipeline = assemble_pipeline(
        unet_config,
        vae,
        image_encoder,
        pose_guider,
        reference_unet=reference_unet,
        motion_heads=8,
        motion_max_seq_length=32,
        **MOORE_PIPELINE_CONFIG,
    )
    denoising_unet = pipeline.denoising_unet
    motion_keys = tuple(k for k in denoising_unet.state_dict() if ".motion_modules." in k)
    tensors["denoising_unet"] = _fill_from(
        denoising_unet, weights_dir / "denoising_unet.pth", allowed_missing=motion_keys
    )

    tensors["motion_modules"], recomputed = _fill_motion_modules(
        denoising_unet, weights_dir / "motion_module.pth"
    )
    if half:
        pipeline.to(torch.float16)
    output_dir.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(output_dir, safe_serialization=True)
    return ImportReport(output_dir, tensors, recomputed)
