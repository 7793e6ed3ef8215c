"""Running a saved pipeline on user inputs: load the model, the reference and the pose, animate.

Kept apart from the pipeline so that the pipeline stays a plain diffusers pipeline, and apart from
``flows`` so that the CLI starts without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anima import media
from anima.errors import BadInput
from anima.generate.pipeline import AnimationPipeline
from anima.generate.pose import extract_pose_from_image, load_pose
from anima.generate.request import GenerationRequest


@dataclass(frozen=True)
class GeneratedVideo:
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    fps: float
    model_name: str


def load_pipeline(model: Path, device: str | None = None) -> tuple[AnimationPipeline, str]:
    """A pipeline from a saved folder, in fp16 on CUDA when there is one, fp32 on the CPU."""
    model = Path(model)
    if not (model / "model_index.json").is_file():
        raise BadInput(
            f"{model}: not an Anima model folder (no model_index.json); "
            "see `anima models import-moore` for published weights"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        pipe = AnimationPipeline.from_pretrained(model, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise BadInput(f"{model}: cannot load the model ({exc.__class__.__name__}: {exc})") from None
    return pipe.to(device), device


def _output_size(
    pipe: AnimationPipeline, reference: np.ndarray, width: int | None, height: int | None
) -> tuple[int, int]:
    """(width, height): the model's native width, height following the reference's aspect."""
    step = pipe.vae_scale_factor
    native = pipe.denoising_unet.config.sample_size * step
    width = width or native
    height = height or max(step, round(width * reference.shape[0] / reference.shape[1] / step) * step)
    if width % step or height % step:
        raise BadInput(f"--width and --height must be multiples of {step}, got {width}x{height}")
    return width, height


def animate(request: GenerationRequest, device: str | None = None) -> GeneratedVideo:
    """Generate the frames of one video (in memory; the caller stamps them)."""
    reference = media.read_image(request.reference)
    if request.frames < 1:
        raise BadInput(f"--frames must be >= 1, got {request.frames}")
    pipe, device = load_pipeline(request.model, device)
    width, height = _output_size(pipe, reference, request.width, request.height)
    reference_pose = extract_pose_from_image(reference) if request.align else None
    pose = load_pose(
        request.pose, (width, height), reference=reference_pose, num_frames=request.frames, fps=request.fps
    )
    generator = torch.Generator(device="cpu").manual_seed(request.seed)
    try:
        frames = pipe(
            reference,
            list(pose.frames),
            height=height,
            width=width,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=generator,
            output_type="np",
        ).frames[0]
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    video = (np.asarray(frames) * 255).round().astype(np.uint8)
    return GeneratedVideo(video, request.fps or pose.fps, Path(request.model).resolve().name)
