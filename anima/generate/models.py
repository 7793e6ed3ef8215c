"""The Animate Anyone parts that diffusers does not have: the Pose Guider, and reference attention
as attention processors (no fork of diffusers' UNets).

* :class:`PoseGuider` turns rendered skeleton frames into features the size of the denoising
  UNet's first feature map; :func:`pose_features_after_conv_in` adds them right after ``conv_in``
  through a forward hook, so the UNet's code and weight names stay diffusers' own.
* The ReferenceNet (a ``UNet2DConditionModel``) runs once per video with
  :class:`ReferenceWriteProcessor` on every spatial self-attention: each stores its input tokens
  in a :class:`ReferenceBank`. The denoising ``UNetMotionModel`` reads them through
  :class:`ReferenceReadProcessor`: queries from its own tokens, keys and values from
  ``[own tokens ; reference tokens]``. As in the published Animate Anyone weights, the
  classifier-free-guidance branch without conditioning attends to its own tokens only.
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
from diffusers.models.attention_processor import Attention
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


def _attend(attn: Attention, queries_from: torch.Tensor, keys_from: torch.Tensor) -> torch.Tensor:
    """Multi-head scaled-dot-product attention of ``queries_from`` over ``keys_from``."""
    batch = queries_from.shape[0]
    query = attn.to_q(queries_from)
    key = attn.to_k(keys_from)
    value = attn.to_v(keys_from)
    head_dim = key.shape[-1] // attn.heads
    query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
    out = F.scaled_dot_product_attention(query, key, value)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + queries_from
    return out / attn.rescale_output_factor


class _ReferenceProcessor:
    """An attention processor bound to one layer's slot in a :class:`ReferenceBank`."""

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        self.bank, self.name = bank, name


class ReferenceWriteProcessor(_ReferenceProcessor):
    """Self-attention that also stores its input tokens in the bank under its layer name."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        **kwargs,
    ) -> torch.Tensor:
        self.bank.tokens[self.name] = hidden_states  # kept in the graph: training learns through it
        return _attend(attn, hidden_states, hidden_states)


class ReferenceReadProcessor(_ReferenceProcessor):
    """Self-attention whose keys and values also cover the stored reference tokens."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        **kwargs,
    ) -> torch.Tensor:
        reference = self.bank.tokens.get(self.name)
        if reference is None:
            return _attend(attn, hidden_states, hidden_states)
        skip = self.bank.unconditional_rows
        plain, guided = hidden_states[:skip], hidden_states[skip:]
        if guided.shape[0] % reference.shape[0]:
            raise ValueError(
                f"{self.name}: {guided.shape[0]} rows do not split over {reference.shape[0]} reference images"
            )
        per_reference = guided.shape[0] // reference.shape[0]  # the frames of one video
        context = torch.cat([guided, reference.to(guided.dtype).repeat_interleave(per_reference, 0)], dim=1)
        out = _attend(attn, guided, context)
        if skip:
            out = torch.cat([_attend(attn, plain, plain), out], dim=0)
        return out


def _spatial_self_attention_names(unet: nn.Module) -> list[str]:
    """Processor names of the spatial transformer blocks' self-attention (not the motion modules)."""
    return [
        name for name in unet.attn_processors if ".attentions." in name and name.endswith("attn1.processor")
    ]


def attach_reference_attention(
    reference_unet: UNet2DConditionModel, denoising_unet: UNetMotionModel, bank: ReferenceBank
) -> None:
    """Wire the two UNets through ``bank``; layers are paired by name, so the shapes must agree."""
    writers = _spatial_self_attention_names(reference_unet)
    readers = _spatial_self_attention_names(denoising_unet)
    if set(writers) != set(readers):
        missing = sorted(set(writers) ^ set(readers))[:3]
        raise ValueError(f"reference and denoising UNets have different attention layers (e.g. {missing})")
    reference_unet.set_attn_processor(
        {
            name: ReferenceWriteProcessor(bank, name) if name in writers else processor
            for name, processor in reference_unet.attn_processors.items()
        }
    )
    denoising_unet.set_attn_processor(
        {
            name: ReferenceReadProcessor(bank, name) if name in readers else processor
            for name, processor in denoising_unet.attn_processors.items()
        }
    )


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
