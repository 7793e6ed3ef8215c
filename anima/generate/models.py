"""The Animate Anyone parts that diffusers does not have: the Pose Guider, reference attention as
attention processors, and per-frame normalisation for the motion modules (no fork of diffusers'
UNets).

* :class:`PoseGuider` turns rendered skeleton frames into features the size of the denoising
  UNet's first feature map; :func:`pose_features_after_conv_in` adds them right after ``conv_in``
  through a forward hook, so the UNet's code and weight names stay diffusers' own.
* The ReferenceNet (a ``UNet2DConditionModel``) runs once per video with
  :class:`ReferenceWriteProcessor` on every spatial self-attention: each stores its input tokens
  in a :class:`ReferenceBank`. The denoising ``UNetMotionModel`` reads them through
  :class:`ReferenceReadProcessor`: queries from its own tokens, keys and values from
  ``[own tokens ; reference tokens]``. As in the published Animate Anyone weights, the
  classifier-free-guidance branch without conditioning attends to its own tokens only.
  diffusers' attention switches replace processors; :func:`attach_reference_attention` puts the
  reference ones back with the replaced processor's fused-QKV / slicing setting, and
  :func:`missing_reference_attention` finds layers where nobody did.
* :class:`FrameGroupNorm` (through :func:`set_motion_norm`) makes diffusers'
  ``AnimateDiffTransformer3D`` normalise each frame on its own, as the original AnimateDiff motion
  modules (and so Moore-AnimateAnyone's weights) do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, UNet2DConditionModel, UNetMotionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0, SlicedAttnProcessor
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn


class PoseGuider(ModelMixin, ConfigMixin):
    """Small conv net from a skeleton image to UNet features at 1/8 resolution.

    Args:
        conditioning_embedding_channels: channels of the UNet's first feature map (320 for SD-1.5).
        conditioning_channels: channels of the conditioning image (3: the skeleton, RGB in [0, 1];
            warp-guided models add the limb warp and its coverage).
        block_out_channels: widths of the stages; each but the last is followed by a stride-2 conv.
        latent_channels: when > 0, the guider also reads a latent-resolution input (the limb warp's
            VAE latent), so the network gets the warp's appearance in the space it predicts in
            instead of having to learn the VAE's encoder; 0 for the published checkpoints.
    """

    @register_to_config
    def __init__(
        self,
        conditioning_embedding_channels: int = 320,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 96, 256),
        latent_channels: int = 0,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList()
        for channels_in, channels_out in pairwise(block_out_channels):
            self.blocks.append(nn.Conv2d(channels_in, channels_in, kernel_size=3, padding=1))
            self.blocks.append(nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(block_out_channels[-1], conditioning_embedding_channels, 3, padding=1)
        if latent_channels:
            self.latent_in = nn.Conv2d(latent_channels, block_out_channels[-1], kernel_size=3, padding=1)
        # Zero output at initialisation: a fresh guider leaves the UNet exactly as it was.
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downscale_factor(self) -> int:
        return 2 ** (len(self.blocks) // 2)

    def forward(self, conditioning: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] (and, with ``latent_channels``, (N, L, H/8, W/8) latents)
        -> (N, C', H/8, W/8) features."""
        embedding = F.silu(self.conv_in(conditioning))
        for block in self.blocks:
            embedding = F.silu(block(embedding))
        if self.config.latent_channels:
            if latents is None:
                raise ValueError("this pose guider also reads latents (the limb warp's); none were given")
            embedding = embedding + self.latent_in(latents.to(embedding.dtype))
        return self.conv_out(embedding)


@dataclass
class ReferenceBank:
    """Reference tokens per attention layer, written by the ReferenceNet, read by the denoiser.

    ``unconditional_rows`` is how many leading rows of the denoiser's batch belong to the
    unconditional guidance branch (they must not see the reference).
    """

    tokens: dict[str, torch.Tensor] = field(default_factory=dict)
    unconditional_rows: int = 0

    def clear(self) -> None:
        self.tokens.clear()
        self.unconditional_rows = 0


def _attend(
    attn: Attention,
    hidden_states: torch.Tensor,
    extra: torch.Tensor | None,
    fused: bool,
    slice_size: int | None,
) -> torch.Tensor:
    """Multi-head self-attention of ``hidden_states`` whose keys and values also cover ``extra`` tokens.

    ``fused``: project through the layer's fused ``to_qkv`` (after ``fuse_qkv_projections``);
    ``slice_size``: attend that many (row, head) pairs at a time (attention slicing, less memory).
    """
    batch = hidden_states.shape[0]
    if fused:
        query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
    else:
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
    if extra is not None:
        if fused:
            inner = query.shape[-1]
            bias = None if attn.to_qkv.bias is None else attn.to_qkv.bias[inner:]
            extra_key, extra_value = F.linear(extra, attn.to_qkv.weight[inner:], bias).chunk(2, dim=-1)
        else:
            extra_key, extra_value = attn.to_k(extra), attn.to_v(extra)
        key, value = torch.cat([key, extra_key], dim=1), torch.cat([value, extra_value], dim=1)
    head_dim = key.shape[-1] // attn.heads
    scale = None if attn.scale_qk else attn.scale  # None: SDPA's own 1/sqrt(head_dim), as attn.scale
    query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
    if slice_size is None:
        out = F.scaled_dot_product_attention(query, key, value, scale=scale)
    else:
        query, key, value = (t.flatten(0, 1) for t in (query, key, value))
        out = torch.cat(
            [
                F.scaled_dot_product_attention(
                    query[i : i + slice_size],
                    key[i : i + slice_size],
                    value[i : i + slice_size],
                    scale=scale,
                )
                for i in range(0, query.shape[0], slice_size)
            ]
        ).view(batch, attn.heads, -1, head_dim)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


class _ReferenceProcessor:
    """An attention processor bound to one layer's slot in a :class:`ReferenceBank`.

    It carries the settings of the processor it replaced: ``fused`` (diffusers' fused-QKV
    processor was there) and ``slice_size`` (a sliced-attention processor was there), so that the
    pipeline's ``fuse_qkv_projections`` and ``enable_attention_slicing`` keep reference attention.
    """

    def __init__(self, bank: ReferenceBank, name: str, fused: bool = False, slice_size: int | None = None):
        self.bank, self.name, self.fused, self.slice_size = bank, name, fused, slice_size

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        **kwargs,
    ) -> torch.Tensor:
        return self.attend(attn, hidden_states)

    def self_attention(self, attn: Attention, hidden_states: torch.Tensor, extra=None) -> torch.Tensor:
        return _attend(attn, hidden_states, extra, self.fused, self.slice_size)


class ReferenceWriteProcessor(_ReferenceProcessor):
    """Self-attention that also stores its input tokens in the bank under its layer name."""

    def attend(self, attn: Attention, hidden_states: torch.Tensor) -> torch.Tensor:
        self.bank.tokens[self.name] = hidden_states  # kept in the graph: training learns through it
        return self.self_attention(attn, hidden_states)


class ReferenceReadProcessor(_ReferenceProcessor):
    """Self-attention whose keys and values also cover the stored reference tokens."""

    def attend(self, attn: Attention, hidden_states: torch.Tensor) -> torch.Tensor:
        reference = self.bank.tokens.get(self.name)
        if reference is None:
            return self.self_attention(attn, hidden_states)
        skip = self.bank.unconditional_rows
        plain, guided = hidden_states[:skip], hidden_states[skip:]
        if guided.shape[0] % reference.shape[0]:
            raise ValueError(
                f"{self.name}: {guided.shape[0]} rows do not split over {reference.shape[0]} reference images"
            )
        per_reference = guided.shape[0] // reference.shape[0]  # the frames of one video
        out = self.self_attention(
            attn, guided, reference.to(guided.dtype).repeat_interleave(per_reference, 0)
        )
        if skip:
            out = torch.cat([self.self_attention(attn, plain), out], dim=0)
        return out


def _spatial_self_attention_names(unet: nn.Module) -> list[str]:
    """Processor names of the spatial transformer blocks' self-attention (not the motion modules)."""
    return [
        name for name in unet.attn_processors if ".attentions." in name and name.endswith("attn1.processor")
    ]


def _settings_of(processor: object) -> dict:
    """The fused-QKV and slicing settings a reference processor takes over from ``processor``."""
    if isinstance(processor, _ReferenceProcessor):
        return {"fused": processor.fused, "slice_size": processor.slice_size}
    sliced = isinstance(processor, SlicedAttnProcessor)
    return {
        "fused": isinstance(processor, FusedAttnProcessor2_0),
        "slice_size": processor.slice_size if sliced else None,
    }


def attach_reference_attention(
    reference_unet: UNet2DConditionModel, denoising_unet: UNetMotionModel, bank: ReferenceBank
) -> None:
    """Wire the two UNets through ``bank``; layers are paired by name, so the shapes must agree.

    Each reference processor keeps the fused-QKV / slicing setting of the processor it replaces, so
    calling this again after diffusers swapped the processors restores reference attention with the
    same memory trade-off. Other layers keep their processors.
    """
    writers = _spatial_self_attention_names(reference_unet)
    readers = _spatial_self_attention_names(denoising_unet)
    if set(writers) != set(readers):
        missing = sorted(set(writers) ^ set(readers))[:3]
        raise ValueError(f"reference and denoising UNets have different attention layers (e.g. {missing})")
    for unet, kind in ((reference_unet, ReferenceWriteProcessor), (denoising_unet, ReferenceReadProcessor)):
        unet.set_attn_processor(
            {
                name: kind(bank, name, **_settings_of(processor)) if name in writers else processor
                for name, processor in unet.attn_processors.items()
            }
        )


def missing_reference_attention(unets: dict[str, nn.Module], bank: ReferenceBank) -> list[str]:
    """``"unet: layer (processor)"`` for every spatial self-attention of ``unets`` ("reference_unet",
    "denoising_unet") that does not write to / read from ``bank``."""
    kinds = {"reference_unet": ReferenceWriteProcessor, "denoising_unet": ReferenceReadProcessor}
    missing = []
    for unet_name, unet in unets.items():
        processors = unet.attn_processors
        for name in _spatial_self_attention_names(unet):
            processor = processors[name]
            if not (isinstance(processor, kinds[unet_name]) and processor.bank is bank):
                missing.append(f"{unet_name}: {name} ({type(processor).__name__})")
    return missing


def slice_attention(unet: nn.Module, slice_size: str | int | None) -> None:
    """diffusers' sliced attention on every attention layer of ``unet`` (``UNetMotionModel`` has no
    ``set_attention_slice`` of its own): ``"auto"`` halves each layer's heads, ``"max"`` takes one
    at a time, an int that many, ``None`` turns slicing off."""
    if isinstance(slice_size, str) and slice_size not in ("auto", "max"):
        raise ValueError(f"`slice_size` must be 'auto', 'max', an int or None, got {slice_size!r}")
    for module in unet.modules():
        if isinstance(module, Attention):
            size = slice_size
            if slice_size == "auto":
                size = max(1, module.sliceable_head_dim // 2)
            elif slice_size == "max":
                size = 1
            module.set_attention_slice(size)


MOTION_NORMS = ("window", "per_frame")


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm of each frame on its own: (B, C, F, H, W) is normalised as (B*F, C, H, W).

    This is how the original AnimateDiff motion modules (and so Moore-AnimateAnyone's) normalise;
    diffusers' ``AnimateDiffTransformer3D`` normalises over all frames of the window at once.
    """

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.dim() != 5:
            return super().forward(hidden_states)
        batch, channels, frames, height, width = hidden_states.shape
        per_frame = hidden_states.transpose(1, 2).reshape(batch * frames, channels, height, width)
        out = super().forward(per_frame)
        return out.view(batch, frames, channels, height, width).transpose(1, 2)


def set_motion_norm(unet: UNetMotionModel, motion_norm: str) -> None:
    """Normalise the input of every motion module per frame (``"per_frame"``) or over the window
    (``"window"``, diffusers' own). The weights stay where they are, under the same names."""
    if motion_norm not in MOTION_NORMS:
        raise ValueError(f"`motion_norm` must be one of {MOTION_NORMS}, got {motion_norm!r}")
    norm_class = FrameGroupNorm if motion_norm == "per_frame" else nn.GroupNorm
    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D) and type(module.norm) is not norm_class:
            old = module.norm
            module.norm = norm_class(old.num_groups, old.num_channels, eps=old.eps, affine=old.affine)
            module.norm.weight, module.norm.bias = old.weight, old.bias


@contextmanager
def pose_features_after_conv_in(unet: nn.Module, features: torch.Tensor) -> Iterator[None]:
    """Add ``features`` to the output of ``unet.conv_in`` for calls inside this block."""

    def add(_module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if output.shape != features.shape:
            raise ValueError(
                f"pose features {tuple(features.shape)} do not match the UNet's "
                f"first feature map {tuple(output.shape)}"
            )
        return output + features.to(output.dtype)

    handle = unet.conv_in.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
