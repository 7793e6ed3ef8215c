"""Pose extraction that works offline on a fresh machine: MediaPipe's BlazePose "full" model.

mediapipe 0.10.21 is the last release that ships the model inside its wheel (later ones download
it at run time), but it needs numpy<2 while Anima runs on numpy 2. So it lives in its own tool
environment, built on first use (about a minute, from the package index) in
``$ANIMA_MEDIAPIPE_ENV`` or ``$ANIMA_HOME/tools/mediapipe-0.10.21``, and runs as a subprocess
(:mod:`blazepose_worker`) that reads raw frames from a file and prints landmarks as JSON lines.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from anima.config import load_settings
from anima.errors import AnimaError, BadInput, MediaError
from anima.media import iter_frames, probe_video
from anima.pose.sequence import NECK, PoseSequence

MEDIAPIPE_VERSION = "0.10.21"
TOOL_ENV_VARIABLE = "ANIMA_MEDIAPIPE_ENV"
READY_MARKER = ".anima-ready"
WORKER = Path(__file__).with_name("blazepose_worker.py")
STILL_FPS = 24.0
BLAZEPOSE_LANDMARKS = 33
# OpenPose-18 joint <- BlazePose landmark. BlazePose has no neck: it is the shoulders' midpoint,
# filled in over the placeholder at index 1.
BLAZEPOSE_SHOULDERS = (11, 12)
OPENPOSE_FROM_BLAZEPOSE = (0, 0, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)

log = logging.getLogger(__name__)


class PoseExtractionError(AnimaError):
    """The pose extractor could not run: its tool environment could not be built, or it crashed."""


def default_tool_dir(home: Path | None = None) -> Path:
    """Where the MediaPipe tool environment lives: ``$ANIMA_MEDIAPIPE_ENV``, else under the Anima
    home given (else the configured one)."""
    configured = os.environ.get(TOOL_ENV_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path(home or load_settings().home) / "tools" / f"mediapipe-{MEDIAPIPE_VERSION}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` so two processes never build the same environment at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_or_fail(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise PoseExtractionError(f"{what} failed: {lines[-1]}")


def ensure_mediapipe_env(tool_dir: Path | None = None) -> Path:
    """Build the MediaPipe tool environment unless it is ready; return its Python interpreter."""
    tool_dir = Path(tool_dir or default_tool_dir())
    python = tool_dir / "bin" / "python"
    with _locked(tool_dir.with_name(tool_dir.name + ".lock")):
        if (tool_dir / READY_MARKER).exists():
            return python
        log.info("building the MediaPipe %s tool environment in %s (first use)", MEDIAPIPE_VERSION, tool_dir)
        shutil.rmtree(tool_dir, ignore_errors=True)  # a half-built one from an interrupted run
        _run_or_fail([sys.executable, "-m", "venv", str(tool_dir)], f"creating {tool_dir}")
        _run_or_fail(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"mediapipe=={MEDIAPIPE_VERSION}", "numpy<2"],
            f"installing mediapipe {MEDIAPIPE_VERSION} into {tool_dir}",
        )  # fmt: skip
        (tool_dir / READY_MARKER).write_text(f"mediapipe=={MEDIAPIPE_VERSION}\n")
    return python


def blazepose_to_openpose(landmarks: np.ndarray) -> np.ndarray:
    """``(frames, 33, 3)`` BlazePose landmarks (x, y, visibility) to ``(frames, 18, 3)`` OpenPose-18."""
    keypoints = landmarks[:, list(OPENPOSE_FROM_BLAZEPOSE)].copy()
    shoulders = landmarks[:, list(BLAZEPOSE_SHOULDERS)]
    keypoints[:, NECK, :2] = shoulders[..., :2].mean(axis=1)
    keypoints[:, NECK, 2] = shoulders[..., 2].min(axis=1)
    return keypoints


def _write_raw_frames(frames: Iterable[np.ndarray], path: Path) -> tuple[int, tuple[int, int]]:
    count, shape = 0, None
    with open(path, "wb") as handle:
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise MediaError(f"frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise MediaError(f"frame size changes from {shape[:2]} to {frame.shape[:2]} (height, width)")
            handle.write(np.ascontiguousarray(frame).tobytes())
            count += 1
    if shape is None:
        raise MediaError("no frames to extract a pose from")
    return count, (shape[1], shape[0])


def _run_worker(
    frames: Iterable[np.ndarray], still_images: bool, tool_dir: Path | None
) -> tuple[np.ndarray, tuple[int, int]]:
    """BlazePose's ``(frames, 33, 3)`` landmarks (zeros where no body was found) and the frame size."""
    with tempfile.TemporaryDirectory(prefix="anima-pose-") as folder:
        raw = Path(folder) / "frames.rgb"
        count, (width, height) = _write_raw_frames(frames, raw)  # bad input fails before any build
        python = ensure_mediapipe_env(tool_dir)
        mode = "images" if still_images else "video"
        quiet = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [str(python), "-I", str(WORKER), str(raw), str(width), str(height), str(count), mode],
            capture_output=True, text=True, env=quiet, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise PoseExtractionError(f"MediaPipe pose worker failed: {lines[-1]}")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    if len(rows) != count:
        raise PoseExtractionError(f"MediaPipe pose worker answered {len(rows)} of {count} frames")
    landmarks = np.zeros((count, BLAZEPOSE_LANDMARKS, 3))
    for index, row in enumerate(rows):
        if row is not None:
            landmarks[index] = row
    return landmarks, (width, height)


def extract_pose(
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    still_images: bool = False,
    tool_dir: Path | None = None,
    source: str = "the frames",
) -> PoseSequence:
    """The main person's OpenPose-18 pose in each RGB frame, by BlazePose.

    Args:
        frames: ``(H, W, 3)`` uint8 RGB frames of one size (an array or any iterable).
        fps: their frame rate, carried into the sequence.
        still_images: detect afresh in every frame instead of tracking (for unrelated pictures).
        tool_dir: the MediaPipe tool environment (default :func:`default_tool_dir`).
        source: names the input in errors.
    """
    landmarks, (width, height) = _run_worker(frames, still_images, tool_dir)
    keypoints = blazepose_to_openpose(landmarks)
    # BlazePose extrapolates landmarks far outside the picture, with low visibility; keep them sane.
    keypoints[..., :2] = np.clip(keypoints[..., :2], -1.0, 2.0)
    sequence = PoseSequence(keypoints, fps=fps, width=width, height=height)
    if not sequence.has_person():
        raise BadInput(f"{source}: no person found")
    return sequence


def extract_pose_from_video(path: Path, tool_dir: Path | None = None) -> PoseSequence:
    """The pose of the person in a driving video, frame by frame."""
    path = Path(path)
    fps = float(probe_video(path).fps)
    return extract_pose(iter_frames(path), fps, tool_dir=tool_dir, source=str(path))


def extract_pose_from_image(image: np.ndarray, tool_dir: Path | None = None) -> PoseSequence:
    """The one-frame pose of the person in a picture, e.g. the reference to align a motion to."""
    return extract_pose([image], STILL_FPS, still_images=True, tool_dir=tool_dir, source="the image")
