"""``load_pose``: every way a user can say how the character should move, turned into the skeleton
frames the pose guider reads (and the keypoints behind them, where there are any)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from anima.errors import BadInput
from anima.media import VIDEO_SUFFIXES, iter_frames, probe_video
from anima.pose.align import align_to_reference
from anima.pose.blazepose import extract_pose_from_video
from anima.pose.dwpose import DWPoseExtractor
from anima.pose.fit import Fit
from anima.pose.motions import builtin_motion
from anima.pose.readers import (
    DEFAULT_FPS,
    SKELETON_SAMPLE_FRAMES,
    looks_like_skeleton,
    read_pose_json,
    read_skeleton_video,
)
from anima.pose.render import check_same_aspect, render_sequence
from anima.pose.sequence import PoseSequence

MOTION_PREFIX = "motion:"
SKELETON_PREFIX = "skeleton:"
VIDEO_PREFIX = "video:"
DEFAULT_MOTION_FRAMES = 48
# Why an unaligned pose of another shape than the picture is refused, and what to do instead.
UNALIGNED_HINT = (
    "it would not lie over the character: align it to the reference's body, or give a pose of the "
    "picture's shape"
)


@dataclass(frozen=True)
class PoseInput:
    """What the pipeline animates with.

    Attributes:
        frames: ``(frames, height, width, 3)`` uint8 RGB skeletons at the output size.
        fps: their frame rate.
        keypoints: the pose they were drawn from (aligned, when a reference was given); ``None`` for
            an already rendered skeleton video, whose keypoints are unknown.
    """

    frames: np.ndarray
    fps: float
    keypoints: PoseSequence | None


def extract_driving_pose(
    path: Path, dwpose_models: Path | None = None, tool_dir: Path | None = None
) -> PoseSequence:
    """The pose of the person in a driving video: by DWPose when its ONNX folder is given, else by
    MediaPipe BlazePose (``tool_dir``: its tool environment)."""
    path = Path(path)
    if dwpose_models is None:
        return extract_pose_from_video(path, tool_dir=tool_dir)
    fps = float(probe_video(path).fps)
    return DWPoseExtractor(dwpose_models).extract(iter_frames(path), fps, source=str(path))


def _video_kind(path: Path) -> str:
    """ "skeleton" for an already rendered pose video, "video" for a driving video, judged by a few frames."""
    frames = iter_frames(path)
    try:
        head = list(islice(frames, SKELETON_SAMPLE_FRAMES))
    finally:
        frames.close()
    return "skeleton" if looks_like_skeleton(np.stack(head)) else "video"


def _locate(spec: str) -> tuple[str, Path]:
    """What kind of input ``spec`` names and its path: "json", "skeleton", "video", or "media" for a
    video not yet told apart (see :func:`_classify`)."""
    for prefix, kind in ((SKELETON_PREFIX, "skeleton"), (VIDEO_PREFIX, "video")):
        if spec.startswith(prefix):
            return kind, Path(spec.removeprefix(prefix))
    path = Path(spec)
    if not path.exists():
        raise BadInput(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() == ".json":
        return "json", path
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "media", path
    raise BadInput(
        f"{path}: not a pose input (give a pose .json or folder of them, a skeleton or driving .mp4, "
        "or motion:NAME)"
    )


def _classify(spec: str) -> tuple[str, Path]:
    kind, path = _locate(spec)
    return (_video_kind(path), path) if kind == "media" else (kind, path)


def pose_canvas(
    spec: str, source_size: tuple[int, int] | None = None, fps: float | None = None
) -> tuple[int, int] | None:
    """The (width, height) a pose input's coordinates refer to, found cheaply (a pose file is read, a
    video's header probed, nothing extracted); ``None`` for a built-in motion, drawn to order."""
    if spec.startswith(MOTION_PREFIX):
        return None
    kind, path = _locate(spec)
    if kind == "json":
        return read_pose_json(path, canvas_size=source_size, fps=fps).size
    info = probe_video(path)
    return info.width, info.height


def _resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (frames.shape[2], frames.shape[1]) == tuple(size):
        return frames
    shrinking = size[0] < frames.shape[2]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR  # keeps thin limbs when shrinking
    return np.stack([cv2.resize(frame, size, interpolation=interpolation) for frame in frames])


def load_pose(
    spec: str,
    size: tuple[int, int],
    *,
    reference: PoseSequence | None = None,
    fit: Fit | None = None,
    num_frames: int = DEFAULT_MOTION_FRAMES,
    fps: float | None = None,
    source_size: tuple[int, int] | None = None,
    dwpose_models: Path | None = None,
    tool_dir: Path | None = None,
) -> PoseInput:
    """Skeleton frames at ``size`` = (width, height) from any pose input.

    Args:
        spec: ``motion:NAME`` (a built-in motion); a pose ``.json`` (ours, OpenPose or DWPose, told
            apart by content) or a folder of per-frame OpenPose files; an ``.mp4`` that is either an
            already rendered skeleton video (used as it is) or a driving video (its pose is
            extracted), told apart by its look, or forced with ``skeleton:PATH`` / ``video:PATH``.
        size: the output's (width, height); without ``fit``, sources of another aspect ratio are refused.
        reference: the reference character's one-frame pose; when given, keypoint sources are
            re-proportioned to it (see :func:`align_to_reference`). Skeleton videos cannot be.
        fit: how the reference picture sits on the output canvas (:class:`Fit`, its ``output`` is
            ``size``): the reference pose is on the picture's canvas; a built-in motion is drawn for
            the picture; a pose that is not aligned must have the picture's shape. Every pose is
            then placed in the picture's box, so it lies over the character.
        num_frames: length of a built-in motion.
        fps: frame rate for sources that don't record one (motions, JSON); default 24.
        source_size: the canvas OpenPose pixel coordinates refer to, when the file doesn't say.
        dwpose_models: a folder with DWPose's ONNX files, to extract with instead of MediaPipe.
        tool_dir: the MediaPipe tool environment (default ``$ANIMA_HOME/tools/mediapipe-0.10.21``).
    """
    if fit is not None and tuple(fit.output) != tuple(size):
        raise BadInput(f"the fit is for a {fit.output[0]}x{fit.output[1]} output, not {size[0]}x{size[1]}")
    canvas = fit.source if fit is not None else size  # where poses are drawn before placing
    if spec.startswith(MOTION_PREFIX):
        sequence = builtin_motion(spec, num_frames, fps or DEFAULT_FPS, canvas)
    else:
        kind, path = _classify(spec)
        if kind == "skeleton":
            video = read_skeleton_video(path)
            if fit is not None:
                fit.check(video.size, f"{path}: the skeleton video", hint="give one of the picture's shape")
                return PoseInput(fit.frames(video.frames), float(video.fps), None)
            check_same_aspect(video.size, size, str(path))
            return PoseInput(_resized(video.frames, size), float(video.fps), None)
        if kind == "json":
            sequence = read_pose_json(path, canvas_size=source_size, fps=fps)
        else:
            sequence = extract_driving_pose(path, dwpose_models=dwpose_models, tool_dir=tool_dir)
    if reference is not None:
        if fit is not None:
            fit.check(reference.size, "the reference pose's canvas")
        else:
            check_same_aspect(reference.size, size, "the reference pose's canvas")
        sequence = align_to_reference(sequence, reference)
    elif fit is not None:
        fit.check(sequence.size, f"{spec}: the pose's canvas", hint=UNALIGNED_HINT)
    if fit is not None:
        sequence = fit.pose(sequence)
    return PoseInput(render_sequence(sequence, size), sequence.fps, sequence)
