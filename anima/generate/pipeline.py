"""``AnimationPipeline``: one reference picture + a pose sequence -> video frames (Animate Anyone).

Reads top to bottom like the algorithm: check inputs, encode the reference (CLIP token and VAE
latent), run the ReferenceNet once, run the Pose Guider over all frames, then DDIM with
classifier-free guidance over overlapping context windows whose noise predictions are averaged,
and decode a chunk of frames at a time with the VAE. diffusers' switches (attention slicing, fused
QKV, default processors, xFormers, model CPU offload) and step-end callbacks work as in its own
pipelines; the attention switches keep the reference attention (see ``anima.generate.models``).

Warp guidance (small models such as the default ``anima-puppets``): a Pose Guider built for
:data:`WARP_GUIDED_CHANNELS` input channels also reads the reference warped limb by limb into each
target pose (and where the warp covers the body), so the network need not learn from nothing what
geometry already gives; with ``strength`` < 1 sampling starts from the noised warp (SDEdit) instead
of pure noise. Such a pipeline needs the keypoints of the reference and of every target frame.

How a model wants to be run is part of its config (``model_index.json``), so imported
Moore-AnimateAnyone weights run as Moore runs them and older folders as they always did: sampling
defaults, context windows (length, overlap, closed loop), the motion modules' normalisation, how
the reference reaches CLIP and the resize filter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel, UNetMotionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.models.attention_processor import AttnProcessor
from diffusers.utils import BaseOutput
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from anima.generate.models import (
    PoseGuider,
    ReferenceBank,
    attach_reference_attention,
    missing_reference_attention,
    pose_features_after_conv_in,
    set_motion_norm,
    slice_attention,
)
from anima.generate.warp import warp_sequence

ImageInput = PIL.Image.Image | np.ndarray
SKELETON_CHANNELS = 3
# skeleton RGB + warped reference RGB + warp coverage
WARP_GUIDED_CHANNELS = 7
RESAMPLE = {"bicubic": PIL.Image.Resampling.BICUBIC, "lanczos": PIL.Image.Resampling.LANCZOS}
# "center_crop": CLIP's own preprocessing (shortest side, then the centre square);
# "resize": the whole reference squashed to CLIP's square input (Moore-AnimateAnyone's way).
CLIP_INPUTS = ("center_crop", "resize")
OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class AnimationPipelineOutput(BaseOutput):
    """``frames``: per video, a list of PIL images (``"pil"``), or an array/tensor of shape
    (videos, frames, height, width, 3) with values in [0, 1] (``"np"`` / ``"pt"``), or the final
    latents (videos, channels, frames, height / 8, width / 8) (``"latent"``)."""

    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor


def context_windows(
    num_frames: int, context_frames: int, context_overlap: int, wrap: bool = False
) -> list[list[int]]:
    """Overlapping windows covering every frame. Without ``wrap`` the last one ends on the last
    frame; with it every window keeps the stride and the last ones run on into the first frames
    (a closed loop, as Moore-AnimateAnyone schedules them: 72 frames, 24 a window, overlap 4 give
    0-23, 20-43, 40-63, 60-71 + 0-11)."""
    if num_frames <= context_frames:
        return [list(range(num_frames))]
    stride = context_frames - context_overlap
    if wrap:
        return [
            [(start + index) % num_frames for index in range(context_frames)]
            for start in range(0, num_frames, stride)
        ]
    starts = list(range(0, num_frames - context_frames + 1, stride))
    if starts[-1] + context_frames < num_frames:
        starts.append(num_frames - context_frames)
    return [list(range(start, start + context_frames)) for start in starts]


def native_side(sample_size: int | list[int] | tuple[int, int], vae_scale_factor: int) -> tuple[int, int]:
    """(width, height) in pixels of a UNet ``sample_size`` (latent pixels: one side, or height, width)."""
    if isinstance(sample_size, int):
        return sample_size * vae_scale_factor, sample_size * vae_scale_factor
    height, width = sample_size
    return width * vae_scale_factor, height * vae_scale_factor


def _to_rgb_array(image: ImageInput, name: str) -> np.ndarray:
    array = np.array(image.convert("RGB") if isinstance(image, PIL.Image.Image) else image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"`{name}` must be an RGB image (H, W, 3), got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"`{name}` must be uint8, got {array.dtype}")
    return array


class AnimationPipeline(DiffusionPipeline):
    """Animate a character from one reference image and a sequence of rendered skeleton frames.

    Args:
        vae: the image autoencoder (SD's sd-vae-ft-mse for the published weights).
        image_encoder: CLIP vision model; its projected embedding is the one cross-attention token.
        reference_unet: the ReferenceNet, run once per video at timestep 0.
        denoising_unet: the denoising UNet with motion modules.
        pose_guider: maps skeleton frames to features added after the denoiser's ``conv_in``.
        scheduler: a DDIM scheduler.
        feature_extractor: CLIP preprocessing (224 px, CLIP normalisation).
        default_steps, default_guidance, default_strength (`int`, `float`, `float`, defaults to 25,
            3.5, 1.0): the sampling settings this model was made for, used when a call leaves them out.
        default_context_frames (`int`, optional): frames a context window holds; `None` for the
            motion modules' length.
        default_context_overlap (`int`, optional): frames neighbouring windows share; `None` for a
            quarter of a window, at most 4.
        default_context_wrap (`bool`, defaults to `False`): windows run on past the last frame into
            the first ones (closed loop) instead of the last window ending on the last frame.
        motion_norm (`str`, defaults to `"window"`): how each motion module normalises its input:
            over all frames of the window at once (`"window"`, diffusers' ``AnimateDiffTransformer3D``)
            or frame by frame (`"per_frame"`, the original AnimateDiff and Moore-AnimateAnyone).
        clip_input (`str`, defaults to `"center_crop"`): how the reference reaches CLIP: CLIP's own
            shortest-side resize and centre crop, or `"resize"`, the whole picture squashed to CLIP's
            square (a portrait keeps its head and feet).
        resample (`str`, defaults to `"bicubic"`): the filter resizing the reference and the pose
            frames to the output size (`"bicubic"` or `"lanczos"`).
        default_width, default_height (`int`, optional): the size the model was made to run at (see
            :attr:`native_size`); `None` for the denoising UNet's sample size in pixels.

    All of these are saved with the model; a folder saved without one gets the default above.

    Example:
        >>> pipe = AnimationPipeline.from_pretrained("models/anima-puppets")
        >>> video = pipe(reference, skeleton_frames, num_inference_steps=25, output_type="np").frames[0]
    """

    # Order of first use after the VAE: the VAE also encodes first (reference, limb warp) but stays
    # last, as in diffusers' SVD ("image_encoder->unet->vae"): each model's hook offloads the one
    # before it, so the denoiser leaves the GPU when decoding starts.
    model_cpu_offload_seq = "image_encoder->reference_unet->pose_guider->denoising_unet->vae"
    _optional_components: ClassVar[list[str]] = []
    _callback_tensor_inputs: ClassVar[list[str]] = ["latents", "pose_features", "image_embeds"]

    def __init__(
        self,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        reference_unet: UNet2DConditionModel,
        denoising_unet: UNetMotionModel,
        pose_guider: PoseGuider,
        scheduler: DDIMScheduler,
        feature_extractor: CLIPImageProcessor,
        default_steps: int = 25,
        default_guidance: float = 3.5,
        default_strength: float = 1.0,
        default_context_frames: int | None = None,
        default_context_overlap: int | None = None,
        default_context_wrap: bool = False,
        motion_norm: str = "window",
        clip_input: str = "center_crop",
        resample: str = "bicubic",
        default_width: int | None = None,
        default_height: int | None = None,
    ) -> None:
        super().__init__()
        if clip_input not in CLIP_INPUTS:
            raise ValueError(f"`clip_input` must be one of {CLIP_INPUTS}, got {clip_input!r}")
        if resample not in RESAMPLE:
            raise ValueError(f"`resample` must be one of {tuple(RESAMPLE)}, got {resample!r}")
        self.register_modules(
            vae=vae,
            image_encoder=image_encoder,
            reference_unet=reference_unet,
            denoising_unet=denoising_unet,
            pose_guider=pose_guider,
            scheduler=scheduler,
            feature_extractor=feature_extractor,
        )
        self.reference_bank = ReferenceBank()
        attach_reference_attention(reference_unet, denoising_unet, self.reference_bank)
        set_motion_norm(denoising_unet, motion_norm)
        self.register_to_config(
            default_steps=default_steps,
            default_guidance=default_guidance,
            default_strength=default_strength,
            default_context_frames=default_context_frames,
            default_context_overlap=default_context_overlap,
            default_context_wrap=default_context_wrap,
            motion_norm=motion_norm,
            clip_input=clip_input,
            resample=resample,
            default_width=default_width,
            default_height=default_height,
        )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self._interrupt = False
        self._num_timesteps = 0

    @property
    def native_size(self) -> tuple[int, int]:
        """(width, height) the model was made to run at: ``default_width`` / ``default_height`` from
        its config, else the denoising UNet's sample size in pixels."""
        side = native_side(self.denoising_unet.config.sample_size, self.vae_scale_factor)
        config = self.config
        return config.default_width or side[0], config.default_height or side[1]

    @property
    def warp_guided(self) -> bool:
        """Whether the Pose Guider reads the limb warp too (and so needs keypoints)."""
        return self.pose_guider.config.conditioning_channels == WARP_GUIDED_CHANNELS

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` from ``callback_on_step_end`` to skip the remaining steps."""
        return self._interrupt

    @property
    def num_timesteps(self) -> int:
        """Denoising steps of the current (or last) call."""
        return self._num_timesteps

    # -- attention: diffusers' switches, keeping reference attention ---------------------------
    def restore_reference_attention(self) -> None:
        """Put the reference-attention processors back on both UNets (after something replaced them),
        keeping each layer's fused-QKV or slicing setting."""
        attach_reference_attention(self.reference_unet, self.denoising_unet, self.reference_bank)

    def check_reference_attention(self) -> None:
        """Raise if a reference-attention processor was replaced: the video would silently ignore
        the reference."""
        unets = {"reference_unet": self.reference_unet, "denoising_unet": self.denoising_unet}
        missing = missing_reference_attention(unets, self.reference_bank)
        if missing:
            raise ValueError(
                f"reference attention is gone from {len(missing)} layer(s), e.g. {missing[0]}: a UNet's "
                "own set_attn_processor / set_default_attn_processor / fuse_qkv_projections / "
                "set_attention_slice replaced it, and the video would ignore the reference. Use the "
                "pipeline's methods of those names (they keep it) or `pipe.restore_reference_attention()`"
            )

    def set_attention_slice(self, slice_size: str | int | None) -> None:
        """Sliced attention on both UNets (``enable_attention_slicing`` / ``disable_attention_slicing``
        land here); reference attention slices the same way."""
        for unet in (self.reference_unet, self.denoising_unet):
            slice_attention(unet, slice_size)
        self.restore_reference_attention()

    def set_use_memory_efficient_attention_xformers(
        self, valid: bool, attention_op: Callable | None = None
    ) -> None:
        """xFormers attention (``enable_xformers_memory_efficient_attention``) on every layer but the
        reference-attention ones, which keep PyTorch's scaled_dot_product_attention (memory-efficient
        too); turning xFormers off gives PyTorch attention everywhere."""
        try:
            super().set_use_memory_efficient_attention_xformers(valid, attention_op)
        finally:
            self.restore_reference_attention()

    def fuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        """Fused QKV projections, as diffusers' Stable Diffusion pipelines offer them: in both UNets
        (reference attention uses them too) and in the VAE."""
        for model in self._qkv_models(unet, vae):
            model.fuse_qkv_projections()
        self.restore_reference_attention()

    def unfuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        """Undo :meth:`fuse_qkv_projections`: the processors from before it come back."""
        for model in self._qkv_models(unet, vae):
            if getattr(model, "original_attn_processors", None) is not None:
                model.unfuse_qkv_projections()
        self.restore_reference_attention()

    def _qkv_models(self, unet: bool, vae: bool) -> list[torch.nn.Module]:
        unets = [self.reference_unet, self.denoising_unet] if unet else []
        return unets + ([self.vae] if vae else [])

    def set_default_attn_processor(self) -> None:
        """diffusers' plain ``AttnProcessor`` on every attention layer of the UNets and the VAE, except
        that reference attention stays (unfused, unsliced). The UNets' own method refuses."""
        for unet in (self.reference_unet, self.denoising_unet):
            unet.set_attn_processor(AttnProcessor())
        self.vae.set_default_attn_processor()
        self.restore_reference_attention()

    # -- inputs ---------------------------------------------------------------------------------
    def check_inputs(
        self,
        reference_image: ImageInput,
        pose_frames: list[ImageInput] | np.ndarray,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        strength: float,
        context_frames: int,
        context_overlap: int,
        reference_pose: np.ndarray | None,
        poses: np.ndarray | None,
        output_type: str = "pil",
        decode_chunk_size: int = 16,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> None:
        _to_rgb_array(reference_image, "reference_image")
        if len(pose_frames) == 0:
            raise ValueError("`pose_frames` is empty: give at least one skeleton frame")
        if height % self.vae_scale_factor or width % self.vae_scale_factor or min(height, width) <= 0:
            raise ValueError(
                f"`height` and `width` must be positive multiples of {self.vae_scale_factor}, "
                f"got {height}x{width}"
            )
        if self.pose_guider.downscale_factor != self.vae_scale_factor:
            raise ValueError(
                f"pose guider downscales by {self.pose_guider.downscale_factor} but the VAE by "
                f"{self.vae_scale_factor}: these components do not belong together"
            )
        sizes = {_to_rgb_array(frame, "pose_frames").shape[:2] for frame in pose_frames}
        if len(sizes) > 1:
            raise ValueError(f"`pose_frames` must all have one size, got {sorted(sizes)}")
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        if guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be >= 1 (1 disables guidance), got {guidance_scale}")
        max_frames = self.denoising_unet.config.motion_max_seq_length
        if not 1 <= context_frames <= max_frames:
            raise ValueError(
                f"`context_frames` must be in 1..{max_frames} (the motion modules' length), "
                f"got {context_frames}"
            )
        if not 0 <= context_overlap < context_frames:
            raise ValueError(f"`context_overlap` must be in 0..{context_frames - 1}, got {context_overlap}")
        if not 0 < strength <= 1:
            raise ValueError(f"`strength` must be in (0, 1], got {strength}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if decode_chunk_size < 1:
            raise ValueError(f"`decode_chunk_size` must be >= 1, got {decode_chunk_size}")
        unknown = [
            k for k in callback_on_step_end_tensor_inputs or () if k not in self._callback_tensor_inputs
        ]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` must be among {self._callback_tensor_inputs}, "
                f"got {unknown}"
            )
        channels = self.pose_guider.config.conditioning_channels
        if channels not in (SKELETON_CHANNELS, WARP_GUIDED_CHANNELS):
            raise ValueError(f"pose guider reads {channels} channels; this pipeline knows 3 and 7")
        if not self.warp_guided:
            if strength < 1:
                raise ValueError("`strength` < 1 starts from the limb warp: only a warp-guided model has one")
            return
        latent_channels = self.pose_guider.config.latent_channels
        if latent_channels not in (0, self.vae.config.latent_channels):
            raise ValueError(
                f"pose guider reads {latent_channels}-channel latents but the VAE makes "
                f"{self.vae.config.latent_channels}: these components do not belong together"
            )
        if reference_pose is None or poses is None:
            raise ValueError("this model is warp-guided: give `reference_pose` and `poses` (keypoints)")
        if np.shape(reference_pose) != (18, 3):
            raise ValueError(f"`reference_pose` must have shape (18, 3), got {np.shape(reference_pose)}")
        if np.shape(poses) != (len(pose_frames), 18, 3):
            raise ValueError(
                f"`poses` must have shape ({len(pose_frames)}, 18, 3), one per pose frame, "
                f"got {np.shape(poses)}"
            )

    def _image_tensor(self, image: ImageInput, height: int, width: int, name: str) -> torch.Tensor:
        """(1, 3, H, W) float in [0, 1], resized to the output size with the model's filter."""
        array = _to_rgb_array(image, name)
        if array.shape[:2] != (height, width):
            resample = RESAMPLE[self.config.resample]
            array = np.array(PIL.Image.fromarray(array).resize((width, height), resample))
        return torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255.0

    def clip_pixels(self, reference_image: ImageInput) -> torch.Tensor:
        """The image encoder's input (1, 3, S, S): CLIP's centre crop of the reference, or with
        ``clip_input="resize"`` the whole reference resized to S x S (bicubic)."""
        array = _to_rgb_array(reference_image, "reference_image")
        if self.config.clip_input == "resize":
            crop = self.feature_extractor.crop_size
            size = (crop["width"], crop["height"])
            array = np.array(PIL.Image.fromarray(array).resize(size, PIL.Image.Resampling.BICUBIC))
        return self.feature_extractor(images=array, return_tensors="pt").pixel_values

    @torch.no_grad()
    def encode_reference(
        self, reference_image: ImageInput, height: int, width: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's CLIP token (1, 1, D) and its VAE latent (1, 4, h, w)."""
        pixels = self.clip_pixels(reference_image)
        embeds = self.image_encoder(pixels.to(device, self.image_encoder.dtype)).image_embeds
        image = self._image_tensor(reference_image, height, width, "reference_image")
        image = (image * 2 - 1).to(device, self.vae.dtype)
        latent = self.vae.encode(image).latent_dist.mean * self.vae.config.scaling_factor
        return embeds[:, None, :], latent

    def limb_warp(
        self,
        reference_image: ImageInput,
        reference_pose: np.ndarray,
        poses: np.ndarray,
        height: int,
        width: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference warped into every pose: images (frames, 3, H, W) in [0, 1] and coverage
        (frames, 1, H, W)."""
        reference = self._image_tensor(reference_image, height, width, "reference_image")
        reference = (reference[0].permute(1, 2, 0) * 255).round().byte().numpy()
        images, coverage = warp_sequence(reference, np.asarray(reference_pose), np.asarray(poses))
        return (
            torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0,
            torch.from_numpy(coverage)[:, None].float(),
        )

    @torch.no_grad()
    def encode_poses(
        self,
        pose_frames: list[ImageInput] | np.ndarray,
        height: int,
        width: int,
        device: torch.device,
        warp: tuple[torch.Tensor, torch.Tensor] | None = None,
        warp_latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pose Guider features for every frame, (frames, C, h, w); a warp-guided guider also reads
        each frame's warped reference and coverage (and, if it takes latents, the warp's latents
        (1, C, frames, h, w))."""
        features = []
        for index, frame in enumerate(pose_frames):
            image = self._image_tensor(frame, height, width, f"pose_frames[{index}]")
            latent = None
            if warp is not None:
                image = torch.cat([image, warp[0][index : index + 1], warp[1][index : index + 1]], dim=1)
            if warp_latents is not None and self.pose_guider.config.latent_channels:
                latent = warp_latents[:, :, index]
            features.append(self.pose_guider(image.to(device, self.pose_guider.dtype), latent))
        return torch.cat(features)

    @torch.no_grad()
    def encode_frames(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """VAE latents of (frames, 3, H, W) images in [0, 1], frame by frame: (1, C, frames, h, w)."""
        latents = [
            self.vae.encode((image[None] * 2 - 1).to(device, self.vae.dtype)).latent_dist.mean
            for image in images
        ]
        return (torch.cat(latents) * self.vae.config.scaling_factor).permute(1, 0, 2, 3)[None]

    def prepare_latents(
        self,
        num_frames: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
        latents: torch.Tensor | None = None,
        start: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Pure noise, or with ``start`` = (latents of the warped frames, first timestep) those
        latents noised to that timestep (SDEdit)."""
        shape = (
            1,
            self.denoising_unet.config.in_channels,
            num_frames,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}")
        else:
            noise_device = generator.device if generator else "cpu"
            latents = torch.randn(shape, generator=generator, dtype=torch.float32, device=noise_device)
        latents = latents.to(device)
        if start is not None:
            init, timestep = start
            return self.scheduler.add_noise(init.float(), latents, timestep.reshape(1)).to(dtype)
        return (latents * self.scheduler.init_noise_sigma).to(dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, decode_chunk_size: int = 16) -> torch.Tensor:
        """VAE-decode ``decode_chunk_size`` frames at a time (bounded memory):
        (1, C, F, h, w) -> (F, H, W, 3) in [0, 1]."""
        frames = latents[0].transpose(0, 1) / self.vae.config.scaling_factor
        decoded = []
        for start in range(0, frames.shape[0], decode_chunk_size):
            chunk = frames[start : start + decode_chunk_size].to(self.vae.dtype)
            images = self.vae.decode(chunk).sample
            decoded.append(((images.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu())
        return torch.cat(decoded)

    @torch.no_grad()
    def __call__(
        self,
        reference_image: ImageInput,
        pose_frames: list[ImageInput] | np.ndarray,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        strength: float | None = None,
        reference_pose: np.ndarray | None = None,
        poses: np.ndarray | None = None,
        context_frames: int | None = None,
        context_overlap: int | None = None,
        context_wrap: bool | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        decode_chunk_size: int = 16,
        callback_on_step_end: Callable[..., dict[str, Any]]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> AnimationPipelineOutput | tuple:
        """Generate one video.

        Args:
            reference_image (`PIL.Image` or uint8 array): the character to animate.
            pose_frames (list of `PIL.Image` or uint8 arrays): rendered OpenPose skeletons, one per frame.
            height, width (`int`, defaults to the first pose frame's size): output size, multiples of
                the VAE's downscaling.
            num_inference_steps (`int`, defaults to the model's `default_steps`): DDIM steps over the
                whole schedule; with `strength` < 1 only the last `strength` share of them run.
            guidance_scale (`float`, defaults to the model's `default_guidance`): classifier-free
                guidance; 1 turns it off.
            strength (`float`, defaults to the model's `default_strength`): 1 starts from pure noise;
                less starts from the limb warp noised that far (warp-guided models only).
            reference_pose, poses (`np.ndarray`, (18, 3) and (frames, 18, 3)): normalised OpenPose
                keypoints of the reference and of every target frame; warp-guided models need them.
            context_frames (`int`, defaults to the model's `default_context_frames`, else the motion
                modules' length): frames seen at once.
            context_overlap (`int`, defaults to the model's `default_context_overlap`, else a quarter
                of a window, at most 4): frames shared by neighbouring windows.
            context_wrap (`bool`, defaults to the model's `default_context_wrap`): windows run on past
                the last frame into the first ones (closed loop).
            generator (`torch.Generator`, optional): for reproducible noise.
            latents (`torch.Tensor`, optional): initial noise (1, C, frames, h, w) instead of sampling it.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` or `"latent"` (the final
                latents, not decoded).
            decode_chunk_size (`int`, defaults to 16): frames the VAE decodes at once; fewer use less
                memory.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, optional):
                called after every denoising step as `callback_on_step_end(pipe, step, timestep,
                callback_kwargs)`; the tensors it returns in a dict replace the pipeline's. Setting
                `pipe._interrupt = True` skips the remaining steps.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): which of
                `latents`, `pose_features` (per frame) and `image_embeds` (CLIP tokens, unconditional
                first under guidance) go into `callback_kwargs`.
        """
        config = self.config
        num_inference_steps = config.default_steps if num_inference_steps is None else num_inference_steps
        guidance_scale = config.default_guidance if guidance_scale is None else guidance_scale
        strength = config.default_strength if strength is None else strength
        if context_frames is None:
            context_frames = config.default_context_frames or self.denoising_unet.config.motion_max_seq_length
        if context_overlap is None:
            context_overlap = config.default_context_overlap
        if context_overlap is None:
            context_overlap = min(4, context_frames // 4)
        context_wrap = config.default_context_wrap if context_wrap is None else context_wrap
        if isinstance(callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        first = _to_rgb_array(pose_frames[0], "pose_frames[0]") if len(pose_frames) else None
        height = height or (first.shape[0] if first is not None else 0)
        width = width or (first.shape[1] if first is not None else 0)
        self.check_inputs(
            reference_image,
            pose_frames,
            height,
            width,
            num_inference_steps,
            guidance_scale,
            strength,
            context_frames,
            context_overlap,
            reference_pose,
            poses,
            output_type,
            decode_chunk_size,
            tensor_inputs,
        )
        self.check_reference_attention()
        self._interrupt = False
        device = self._execution_device
        guided = guidance_scale > 1.0
        num_frames = len(pose_frames)

        # 1. The reference: one CLIP token (zero for the unconditional branch) and its latent.
        image_token, reference_latent = self.encode_reference(reference_image, height, width, device)
        image_embeds = torch.cat([torch.zeros_like(image_token), image_token]) if guided else image_token

        # 2. ReferenceNet, once per video, at timestep 0: fills the bank.
        self.reference_bank.clear()
        self.reference_unet(
            reference_latent.to(self.reference_unet.dtype),
            torch.zeros((), device=device),
            encoder_hidden_states=image_token.to(self.reference_unet.dtype),
            return_dict=False,
        )

        # 3. Pose features for every frame (with the limb warp, for a warp-guided model).
        warp = warp_latents = None
        if self.warp_guided:
            warp = self.limb_warp(reference_image, reference_pose, poses, height, width)
            warp_latents = self.encode_frames(warp[0], device)
        pose_features = self.encode_poses(pose_frames, height, width, device, warp, warp_latents)

        # 4. Timesteps: the whole schedule, or its last `strength` share starting from the noised warp.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        start = None
        if strength < 1:
            timesteps = timesteps[num_inference_steps - max(1, round(num_inference_steps * strength)) :]
            start = (warp_latents, timesteps[0])
        self._num_timesteps = len(timesteps)
        dtype = self.denoising_unet.dtype
        latents = self.prepare_latents(num_frames, height, width, dtype, device, generator, latents, start)

        # 5. Denoise over overlapping windows, averaging the windows' noise predictions.
        windows = context_windows(num_frames, context_frames, context_overlap, context_wrap)
        try:
            with self.progress_bar(total=len(timesteps)) as progress:
                for step, t in enumerate(timesteps):
                    if self.interrupt:
                        continue
                    noise = self.predict_noise(
                        latents, t, windows, pose_features, image_embeds, guidance_scale
                    )
                    latents = self.scheduler.step(noise, t, latents.float(), generator=generator).prev_sample
                    latents = latents.to(dtype)
                    if callback_on_step_end is not None:
                        state = {
                            "latents": latents,
                            "pose_features": pose_features,
                            "image_embeds": image_embeds,
                        }
                        outputs = callback_on_step_end(self, step, t, {k: state[k] for k in tensor_inputs})
                        latents = outputs.pop("latents", latents)
                        pose_features = outputs.pop("pose_features", pose_features)
                        image_embeds = outputs.pop("image_embeds", image_embeds)
                    progress.update()
        finally:
            self.reference_bank.clear()

        # 6. Decode, a chunk of frames at a time.
        if output_type == "latent":
            output: object = latents
        else:
            frames = self.decode_latents(latents, decode_chunk_size)
            if output_type == "pt":
                output = frames[None]
            elif output_type == "np":
                output = frames[None].numpy()
            else:
                output = [[PIL.Image.fromarray((f.numpy() * 255).round().astype(np.uint8)) for f in frames]]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output,)
        return AnimationPipelineOutput(frames=output)

    def predict_noise(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        windows: list[list[int]],
        pose_features: torch.Tensor,
        image_embeds: torch.Tensor,
        guidance_scale: float,
    ) -> torch.Tensor:
        """The guided noise prediction for all frames at timestep ``t``: each window's prediction,
        averaged where windows overlap."""
        branches = image_embeds.shape[0]
        num_frames, dtype, device = latents.shape[2], latents.dtype, latents.device
        noise = torch.zeros((branches, *latents.shape[1:]), device=device, dtype=torch.float32)
        counts = torch.zeros((1, 1, num_frames, 1, 1), device=device, dtype=torch.float32)
        for window in windows:
            window_input = self.scheduler.scale_model_input(latents[:, :, window], t).repeat(
                branches, 1, 1, 1, 1
            )
            window_poses = pose_features[window].repeat(branches, 1, 1, 1).to(dtype)
            self.reference_bank.unconditional_rows = len(window) if branches == 2 else 0
            # UNetMotionModel takes one context row per frame.
            window_context = image_embeds.repeat_interleave(len(window), dim=0).to(dtype)
            with pose_features_after_conv_in(self.denoising_unet, window_poses):
                prediction = self.denoising_unet(
                    window_input, t, encoder_hidden_states=window_context, return_dict=False
                )[0]
            noise[:, :, window] += prediction.float()
            counts[:, :, window] += 1
        noise /= counts
        if branches == 1:
            return noise
        unconditional, conditional = noise.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)
