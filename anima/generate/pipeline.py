"""``AnimationPipeline``: one reference picture + a pose sequence -> video frames (Animate Anyone).

Reads top to bottom like the algorithm: check inputs, encode the reference (CLIP token and VAE
latent), run the ReferenceNet once, run the Pose Guider over all frames, then DDIM with
classifier-free guidance over overlapping context windows whose noise predictions are averaged,
and decode frame by frame with the VAE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel, UNetMotionModel
from diffusers.utils import BaseOutput
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from anima.generate.models import (
    PoseGuider,
    ReferenceBank,
    attach_reference_attention,
    pose_features_after_conv_in,
)

ImageInput = PIL.Image.Image | np.ndarray


@dataclass
class AnimationPipelineOutput(BaseOutput):
    """``frames``: per video, a list of PIL images (``"pil"``), or an array/tensor of shape
    (videos, frames, height, width, 3) with values in [0, 1] (``"np"`` / ``"pt"``)."""

    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor


def context_windows(num_frames: int, context_frames: int, context_overlap: int) -> list[list[int]]:
    """Overlapping windows covering every frame; the last one ends on the last frame."""
    if num_frames <= context_frames:
        return [list(range(num_frames))]
    stride = context_frames - context_overlap
    starts = list(range(0, num_frames - context_frames + 1, stride))
    if starts[-1] + context_frames < num_frames:
        starts.append(num_frames - context_frames)
    return [list(range(start, start + context_frames)) for start in starts]


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

    Example:
        >>> pipe = AnimationPipeline.from_pretrained("models/anima-puppets")
        >>> video = pipe(reference, skeleton_frames, num_inference_steps=25, output_type="np").frames[0]
    """

    model_cpu_offload_seq = "image_encoder->reference_unet->pose_guider->denoising_unet->vae"
    _optional_components: ClassVar[list[str]] = []

    def __init__(
        self,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        reference_unet: UNet2DConditionModel,
        denoising_unet: UNetMotionModel,
        pose_guider: PoseGuider,
        scheduler: DDIMScheduler,
        feature_extractor: CLIPImageProcessor,
    ) -> None:
        super().__init__()
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
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def check_inputs(
        self,
        reference_image: ImageInput,
        pose_frames: list[ImageInput] | np.ndarray,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        context_frames: int,
        context_overlap: int,
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

    def _image_tensor(self, image: ImageInput, height: int, width: int, name: str) -> torch.Tensor:
        """(1, 3, H, W) float in [0, 1], resized to the output size."""
        array = _to_rgb_array(image, name)
        if array.shape[:2] != (height, width):
            array = np.array(PIL.Image.fromarray(array).resize((width, height), PIL.Image.BICUBIC))
        return torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255.0

    @torch.no_grad()
    def encode_reference(
        self, reference_image: ImageInput, height: int, width: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's CLIP token (1, 1, D) and its VAE latent (1, 4, h, w)."""
        pixels = self.feature_extractor(
            images=_to_rgb_array(reference_image, "reference_image"), return_tensors="pt"
        ).pixel_values
        embeds = self.image_encoder(pixels.to(device, self.image_encoder.dtype)).image_embeds
        image = self._image_tensor(reference_image, height, width, "reference_image")
        image = (image * 2 - 1).to(device, self.vae.dtype)
        latent = self.vae.encode(image).latent_dist.mean * self.vae.config.scaling_factor
        return embeds[:, None, :], latent

    @torch.no_grad()
    def encode_poses(
        self, pose_frames: list[ImageInput] | np.ndarray, height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        """Pose Guider features for every frame, (frames, C, h, w)."""
        features = []
        for index, frame in enumerate(pose_frames):
            image = self._image_tensor(frame, height, width, f"pose_frames[{index}]")
            features.append(self.pose_guider(image.to(device, self.pose_guider.dtype)))
        return torch.cat(features)

    def prepare_latents(
        self,
        num_frames: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
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
        return (latents.to(device) * self.scheduler.init_noise_sigma).to(dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE-decode frame by frame (bounded memory): (1, C, F, h, w) -> (F, H, W, 3) in [0, 1]."""
        frames = []
        for index in range(latents.shape[2]):
            latent = latents[:, :, index] / self.vae.config.scaling_factor
            image = self.vae.decode(latent.to(self.vae.dtype)).sample
            frames.append(((image.float() + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).cpu())
        return torch.stack(frames)

    @torch.no_grad()
    def __call__(
        self,
        reference_image: ImageInput,
        pose_frames: list[ImageInput] | np.ndarray,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 3.5,
        context_frames: int = 24,
        context_overlap: int = 4,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> AnimationPipelineOutput | tuple:
        """Generate one video.

        Args:
            reference_image (`PIL.Image` or uint8 array): the character to animate.
            pose_frames (list of `PIL.Image` or uint8 arrays): rendered OpenPose skeletons, one per frame.
            height, width (`int`, defaults to the first pose frame's size): output size, multiples of 8.
            num_inference_steps (`int`, defaults to 25): DDIM steps.
            guidance_scale (`float`, defaults to 3.5): classifier-free guidance; 1 turns it off.
            context_frames (`int`, defaults to 24): frames the motion modules see at once.
            context_overlap (`int`, defaults to 4): frames shared by neighbouring windows.
            generator (`torch.Generator`, optional): for reproducible noise.
            latents (`torch.Tensor`, optional): initial noise (1, 4, frames, h, w) instead of sampling it.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"` or `"pt"`.
        """
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
            context_frames,
            context_overlap,
        )
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"`output_type` must be 'pil', 'np' or 'pt', got {output_type!r}")
        device = self._execution_device
        guided = guidance_scale > 1.0
        num_frames = len(pose_frames)

        # 1. The reference: one CLIP token (zero for the unconditional branch) and its latent.
        image_token, reference_latent = self.encode_reference(reference_image, height, width, device)
        context = torch.cat([torch.zeros_like(image_token), image_token]) if guided else image_token

        # 2. ReferenceNet, once per video, at timestep 0: fills the bank.
        self.reference_bank.clear()
        self.reference_unet(
            reference_latent.to(self.reference_unet.dtype),
            torch.zeros((), device=device),
            encoder_hidden_states=image_token.to(self.reference_unet.dtype),
            return_dict=False,
        )

        # 3. Pose features for every frame.
        pose_features = self.encode_poses(pose_frames, height, width, device)

        # 4. Denoise over overlapping windows, averaging the windows' noise predictions.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        dtype = self.denoising_unet.dtype
        latents = self.prepare_latents(num_frames, height, width, dtype, device, generator, latents)
        windows = context_windows(num_frames, context_frames, context_overlap)
        branches = 2 if guided else 1
        try:
            with self.progress_bar(total=len(self.scheduler.timesteps)) as progress:
                for t in self.scheduler.timesteps:
                    noise = torch.zeros((branches, *latents.shape[1:]), device=device, dtype=torch.float32)
                    counts = torch.zeros((1, 1, num_frames, 1, 1), device=device, dtype=torch.float32)
                    for window in windows:
                        window_latents = self.scheduler.scale_model_input(latents[:, :, window], t)
                        window_input = window_latents.repeat(branches, 1, 1, 1, 1)
                        window_poses = pose_features[window].repeat(branches, 1, 1, 1).to(dtype)
                        self.reference_bank.unconditional_rows = len(window) if guided else 0
                        # UNetMotionModel takes one context row per frame.
                        window_context = context.repeat_interleave(len(window), dim=0).to(dtype)
                        with pose_features_after_conv_in(self.denoising_unet, window_poses):
                            prediction = self.denoising_unet(
                                window_input, t, encoder_hidden_states=window_context, return_dict=False
                            )[0]
                        noise[:, :, window] += prediction.float()
                        counts[:, :, window] += 1
                    noise /= counts
                    if guided:
                        unconditional, conditional = noise.chunk(2)
                        noise = unconditional + guidance_scale * (conditional - unconditional)
                    latents = self.scheduler.step(noise, t, latents.float(), generator=generator).prev_sample
                    latents = latents.to(dtype)
                    progress.update()
        finally:
            self.reference_bank.clear()

        # 5. Decode frame by frame.
        frames = self.decode_latents(latents)
        self.maybe_free_model_hooks()
        if output_type == "pt":
            output: object = frames[None]
        elif output_type == "np":
            output = frames[None].numpy()
        else:
            output = [[PIL.Image.fromarray((f.numpy() * 255).round().astype(np.uint8)) for f in frames]]
        if not return_dict:
            return (output,)
        return AnimationPipelineOutput(frames=output)
