"""``AnimationPipeline``: one reference picture + a pose sequence -> video frames (Animate Anyone).

Reads top to bottom like the algorithm: check inputs, encode the reference (CLIP token and VAE
latent), run the ReferenceNet once, run the Pose Guider over all frames, then DDIM with
classifier-free guidance over overlapping context windows whose noise predictions are averaged,
and decode frame by frame with the VAE.

Warp guidance (small models such as the default ``anima-puppets``): a Pose Guider built for
:data:`WARP_GUIDED_CHANNELS` input channels also reads the reference warped limb by limb into each
target pose (and where the warp covers the body), so the network need not learn from nothing what
geometry already gives; with ``strength`` < 1 sampling starts from the noised warp (SDEdit) instead
of pure noise. Such a pipeline needs the keypoints of the reference and of every target frame.
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
from anima.generate.warp import warp_sequence

ImageInput = PIL.Image.Image | np.ndarray
SKELETON_CHANNELS = 3
# skeleton RGB + warped reference RGB + warp coverage
WARP_GUIDED_CHANNELS = 7


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
        default_steps, default_guidance, default_strength, default_context_frames: the sampling
            settings this model was made for, used when a call leaves them out (saved with it).

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
        default_steps: int = 25,
        default_guidance: float = 3.5,
        default_strength: float = 1.0,
        default_context_frames: int | None = None,
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
        self.register_to_config(
            default_steps=default_steps,
            default_guidance=default_guidance,
            default_strength=default_strength,
            default_context_frames=default_context_frames,
        )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    @property
    def warp_guided(self) -> bool:
        """Whether the Pose Guider reads the limb warp too (and so needs keypoints)."""
        return self.pose_guider.config.conditioning_channels == WARP_GUIDED_CHANNELS

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
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        strength: float | None = None,
        reference_pose: np.ndarray | None = None,
        poses: np.ndarray | None = None,
        context_frames: int | None = None,
        context_overlap: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
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
            context_overlap (`int`, defaults to a quarter of a window, at most 4): frames shared by
                neighbouring windows.
            generator (`torch.Generator`, optional): for reproducible noise.
            latents (`torch.Tensor`, optional): initial noise (1, C, frames, h, w) instead of sampling it.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"` or `"pt"`.
        """
        config = self.config
        num_inference_steps = config.default_steps if num_inference_steps is None else num_inference_steps
        guidance_scale = config.default_guidance if guidance_scale is None else guidance_scale
        strength = config.default_strength if strength is None else strength
        if context_frames is None:
            context_frames = config.default_context_frames or self.denoising_unet.config.motion_max_seq_length
        if context_overlap is None:
            context_overlap = min(4, context_frames // 4)
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
        dtype = self.denoising_unet.dtype
        latents = self.prepare_latents(num_frames, height, width, dtype, device, generator, latents, start)

        # 5. Denoise over overlapping windows, averaging the windows' noise predictions.
        windows = context_windows(num_frames, context_frames, context_overlap)
        branches = 2 if guided else 1
        try:
            with self.progress_bar(total=len(timesteps)) as progress:
                for t in timesteps:
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

        # 6. Decode frame by frame.
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
