"""Running a pipeline on user inputs: load a model folder, read the reference and the pose, animate.

Kept apart from the pipeline so that the pipeline stays a plain diffusers pipeline, and apart from
the API so that ``import anima`` does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anima import media
from anima.errors import BadInput
from anima.generate.pipeline import AnimationPipeline
from anima.generate.request import GenerationRequest
from anima.pose import PoseSequence, extract_pose_from_image, load_pose, read_pose_json

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "weights" / "anima-puppets"


@dataclass(frozen=True)
class GeneratedVideo:
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    fps: float
    model_name: str
    sampling: dict[str, float]  # the steps, guidance and strength actually used


def default_pipeline(device: str | None = None) -> AnimationPipeline:
    """The shipped default model, ``anima-puppets`` (puppet-like characters, 128 px)."""
    return load_pipeline(DEFAULT_MODEL, device)


def load_pipeline(model: Path | None = None, device: str | None = None) -> AnimationPipeline:
    """A pipeline from a saved folder (default: the shipped model), in fp16 on CUDA when there is
    one, fp32 on the CPU."""
    model = Path(model or DEFAULT_MODEL)
    if not (model / "model_index.json").is_file():
        raise BadInput(
            f"{model}: not an Anima model folder (no model_index.json); "
            "import published weights with `anima models import-moore`"
        )
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


def _output_size(
    pipe: AnimationPipeline, reference: np.ndarray, width: int | None, height: int | None
) -> tuple[int, int]:
    """(width, height): the model's native width, height following the reference's aspect."""
    step = pipe.vae_scale_factor
    native = pipe.denoising_unet.config.sample_size * step
    width = native if width is None else width
    if height is None:
        height = max(step, round(width * reference.shape[0] / reference.shape[1] / step) * step)
    if width % step or height % step:
        raise BadInput(f"width and height must be multiples of {step}, got {width}x{height}")
    return width, height


def _reference_pose(request: GenerationRequest, reference: np.ndarray, tool_dir: Path | None) -> PoseSequence:
    if request.reference_pose is None:
        return extract_pose_from_image(reference, tool_dir=tool_dir)
    pose = read_pose_json(request.reference_pose, canvas_size=(reference.shape[1], reference.shape[0]))
    if pose.num_frames != 1:
        raise BadInput(f"{request.reference_pose}: a reference pose is one frame, got {pose.num_frames}")
    return pose


def animate(
    pipe: AnimationPipeline,
    request: GenerationRequest,
    reference: np.ndarray | None = None,
    *,
    tool_dir: Path | None = None,
) -> GeneratedVideo:
    """Generate the frames of one video (in memory; the caller stamps them).

    ``reference`` is the picture as already read (so that what was checked is what is animated);
    ``None`` reads ``request.reference``. ``tool_dir`` is the MediaPipe tool environment for pose
    extraction (default: under the configured Anima home).
    """
    reference = media.read_image(request.reference) if reference is None else reference
    width, height = _output_size(pipe, reference, request.width, request.height)
    if request.pose.startswith("motion:"):  # the size is known only now (the model's, the aspect)
        media.check_video_size(request.frames, width, height)
    # A warp-guided model moves the reference limb by limb, so it needs the reference's pose and a
    # motion fitted to that body.
    needs_reference_pose = request.align or pipe.warp_guided or request.reference_pose is not None
    reference_pose = _reference_pose(request, reference, tool_dir) if needs_reference_pose else None
    pose = load_pose(
        request.pose,
        (width, height),
        reference=reference_pose,
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
            reference,
            list(pose.frames),
            height=height,
            width=width,
            num_inference_steps=sampling["steps"],
            guidance_scale=sampling["guidance"],
            strength=sampling["strength"],
            reference_pose=reference_pose.keypoints[0] if pipe.warp_guided else None,
            poses=pose.keypoints.keypoints if pipe.warp_guided else None,
            generator=generator,
            output_type="np",
        ).frames[0]
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    video = (np.asarray(frames) * 255).round().astype(np.uint8)
    return GeneratedVideo(video, request.fps or pose.fps, model_name(pipe), sampling)
