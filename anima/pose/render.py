"""Skeleton images drawn the way the public OpenPose-conditioned models (ControlNet, Animate Anyone,
MusePose) saw them in training, since a pose guider only understands the pictures it learned from:
limbs as filled ellipses in the standard 18-colour table on black, the limbs dimmed to 60%, then the
joints as full-colour dots; anything not found (confidence at or under 0.3) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from anima.errors import BadInput
from anima.media import write_video
from anima.pose.sequence import CONFIDENCE_THRESHOLD, LIMBS, NUM_JOINTS, PoseSequence

# RGB; limb i is drawn in COLORS[i], joint j in COLORS[j].
COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
LIMB_DIMMING = 0.6
# Widths as trained: a 4-pixel half-width stick and 4-pixel joints on a canvas whose short side is
# 512 (the detectors' working resolution); other canvases scale them so the picture looks the same.
TRAINING_SHORT_SIDE = 512
STICK_HALF_WIDTH = 4
JOINT_RADIUS = 4
ASPECT_TOLERANCE = 0.01


def _scaled_width(value: int, size: tuple[int, int]) -> int:
    return max(1, round(value * min(size) / TRAINING_SHORT_SIDE))


def same_aspect(source: tuple[int, int], target: tuple[int, int]) -> bool:
    """Whether two (width, height) sizes have one shape, within 1% (sizes rounded to whole pixels)."""
    return abs(source[0] * target[1] / (source[1] * target[0]) - 1) <= ASPECT_TOLERANCE


def check_same_aspect(
    source: tuple[int, int],
    target: tuple[int, int],
    what: str,
    against: str = "the output",
    hint: str = "align the pose to a reference of the output's size, or match sizes",
) -> None:
    """Refuse to stretch a pose onto a canvas of another shape, which would distort every bone."""
    if not same_aspect(source, target):
        raise BadInput(
            f"{what} is {source[0]}x{source[1]} but {against} is {target[0]}x{target[1]}: "
            f"the aspect ratios differ ({hint})"
        )


def render_pose(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Draw one ``(18, 3)`` normalised skeleton on a black ``size`` = (width, height) RGB uint8 canvas."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape != (NUM_JOINTS, 3):
        raise BadInput(f"a skeleton must have shape (18, 3), got {keypoints.shape}")
    width, height = size
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    stick = _scaled_width(STICK_HALF_WIDTH, size)
    radius = _scaled_width(JOINT_RADIUS, size)
    found = keypoints[:, 2] > CONFIDENCE_THRESHOLD
    xs, ys = keypoints[:, 0] * width, keypoints[:, 1] * height
    for (a, b), color in zip(LIMBS, COLORS[: len(LIMBS)], strict=True):
        if not (found[a] and found[b]):
            continue
        # The training renderer truncates with int() everywhere; so do we, to match it pixel for pixel.
        centre = (int((xs[a] + xs[b]) / 2), int((ys[a] + ys[b]) / 2))
        half_length = int(math.hypot(xs[a] - xs[b], ys[a] - ys[b]) / 2)
        angle = int(math.degrees(math.atan2(ys[a] - ys[b], xs[a] - xs[b])))
        polygon = cv2.ellipse2Poly(centre, (half_length, stick), angle, 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, color)
    canvas = (canvas * LIMB_DIMMING).astype(np.uint8)
    for joint, color in enumerate(COLORS):
        if found[joint]:
            cv2.circle(canvas, (int(xs[joint]), int(ys[joint])), radius, color, thickness=-1)
    return canvas


def iter_rendered(sequence: PoseSequence, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Render frame by frame at ``size`` (default: the sequence's canvas), in constant memory."""
    size = size or sequence.size
    check_same_aspect(sequence.size, size, "the pose canvas")
    for keypoints in sequence.keypoints:
        yield render_pose(keypoints, size)


def render_sequence(sequence: PoseSequence, size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames as one ``(frames, height, width, 3)`` uint8 RGB array, ready for the pose guider."""
    return np.stack(list(iter_rendered(sequence, size)))


def render_video(
    sequence: PoseSequence, path: Path, size: tuple[int, int] | None = None, crf: int = 18
) -> int:
    """Write the rendered skeleton as an H.264 MP4 at the sequence's fps; returns the frame count."""
    fps = Fraction(sequence.fps).limit_denominator(1001)
    return write_video(Path(path), iter_rendered(sequence, size), fps=fps, crf=crf)
