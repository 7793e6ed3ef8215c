"""Running a pipeline on user inputs: load a model folder, read the reference and the pose, animate.

Kept apart from the pipeline so that the pipeline stays a plain diffusers pipeline, and apart from
the API so that ``import anima`` does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anima import media
from anima.errors import BadInput
from anima.generate.fitting import ModelCanvas, check_model_folder, pad_picture, plan, reference_pose_file
from anima.generate.pipeline import RESAMPLE, AnimationPipeline
from anima.generate.request import GenerationRequest
from anima.pose import Fit, PoseSequence, extract_pose_from_image, load_pose

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "weights" / "anima-puppets"


@dataclass(frozen=True)
class GeneratedVideo:
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    fps: float
    model_name: str
    sampling: dict[str, float]  # the steps, guidance and strength actually used
    fitting: dict[str, Any]  # how the reference was fitted to the output (Fit.to_dict)


def default_pipeline(device: str | None = None) -> AnimationPipeline:
    """The shipped default model, ``anima-puppets`` (puppet-like characters, 128 px)."""
    return load_pipeline(DEFAULT_MODEL, device)


def load_pipeline(model: Path | None = None, device: str | None = None) -> AnimationPipeline:
    """A pipeline from a saved folder (default: the shipped model), in fp16 on CUDA when there is
    one, fp32 on the CPU."""
    model = check_model_folder(model or DEFAULT_MODEL)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        pipe = AnimationPipeline.from_pretrained(model, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise BadInput(f"{model}: cannot load the model ({exc.__class__.__name__}: {exc})") from None
    return pipe.to(device)


def model_name(pipe: AnimationPipeline) -> str:
    """The name recorded with an output: the model folder's, else the pipeline class's."""
    return Path(pipe.name_or_path).name if pipe.name_or_path else type(pipe).__name__


def _reference_pose(request: GenerationRequest, reference: np.ndarray, tool_dir: Path | None) -> PoseSequence:
    """The reference's pose on the picture's canvas: from its file, else extracted from the picture."""
    if request.reference_pose is None:
        return extract_pose_from_image(reference, tool_dir=tool_dir)
    return reference_pose_file(request.reference_pose, (reference.shape[1], reference.shape[0]))


def animate(
    pipe: AnimationPipeline,
    request: GenerationRequest,
    reference: np.ndarray | None = None,
    *,
    fit: Fit | None = None,
    tool_dir: Path | None = None,
) -> GeneratedVideo:
    """Generate the frames of one video (in memory; the caller stamps them).

    ``reference`` is the picture as already read (so that what was checked is what is animated);
    ``None`` reads ``request.reference``. ``fit`` is where the picture and its poses go on the
    output (:func:`~anima.generate.fitting.plan`, which the caller may have run before the consent
    gate); ``None`` plans it here. ``tool_dir`` is the MediaPipe tool environment for pose
    extraction (default: under the configured Anima home).
    """
    reference = media.read_image(request.reference) if reference is None else reference
    if fit is None:
        fit = plan(request, (reference.shape[1], reference.shape[0]), ModelCanvas.of(pipe))
    width, height = fit.output
    # A warp-guided model moves the reference limb by limb, so it needs the reference's pose and a
    # motion fitted to that body.
    needs_reference_pose = request.align or pipe.warp_guided or request.reference_pose is not None
    reference_pose = _reference_pose(request, reference, tool_dir) if needs_reference_pose else None
    pose = load_pose(
        request.pose,
        (width, height),
        reference=reference_pose,
        fit=fit,
        num_frames=request.frames,
        fps=request.fps,
        tool_dir=tool_dir,
    )
    # A pose file or video sets its own length: checked before the pipeline allocates anything.
    media.check_video_size(len(pose.frames), width, height)
    if pipe.warp_guided and pose.keypoints is None:
        raise BadInput(
            f"{request.pose}: a rendered skeleton video has no keypoints, which this model needs; "
            "give a pose .json, a driving video or motion:NAME"
        )
    config = pipe.config
    sampling = {
        "steps": config.default_steps if request.steps is None else request.steps,
        "guidance": config.default_guidance if request.guidance is None else request.guidance,
        "strength": config.default_strength if request.strength is None else request.strength,
    }
    generator = torch.Generator(device="cpu").manual_seed(request.seed)
    try:
        frames = pipe(
            pad_picture(reference, fit, RESAMPLE[pipe.config.resample]),
            list(pose.frames),
            height=height,
            width=width,
            num_inference_steps=sampling["steps"],
            guidance_scale=sampling["guidance"],
            strength=sampling["strength"],
            reference_pose=fit.pose(reference_pose).keypoints[0] if pipe.warp_guided else None,
            poses=pose.keypoints.keypoints if pipe.warp_guided else None,
            generator=generator,
            output_type="np",
        ).frames[0]
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    video = (np.asarray(frames) * 255).round().astype(np.uint8)
    return GeneratedVideo(video, request.fps or pose.fps, model_name(pipe), sampling, fit.to_dict())
