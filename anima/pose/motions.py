"""Built-in motions (``motion:wave``, ``motion:walk``, ``motion:dance``, ``motion:idle``) so a user can
animate a picture without any driving video.

Each motion is a figure of fixed bone lengths posed by forward kinematics from smooth periodic joint
angles, with the lower ankle kept on the floor; bones never stretch and nothing jumps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anima.errors import BadInput
from anima.pose.sequence import NUM_JOINTS, PoseSequence

# Proportions in body heights (neck to ankle is 0.76).
TORSO = 0.30
SHOULDER_HALF = 0.11
HIP_HALF = 0.07
UPPER_ARM = 0.17
FOREARM = 0.15
THIGH = 0.23
SHIN = 0.23
NECK_TO_NOSE = 0.10
EYE_OFFSET = (0.03, 0.03)
EAR_OFFSET = (0.035, 0.01)
# Placement: the figure's extent over a whole cycle fills this fraction of the canvas, standing on a
# floor this far down; the cycle is sampled this finely to measure the extent.
FILL = 0.9
FLOOR = 0.95
CYCLE_SAMPLES = 64
# Softness (body heights) of "the lower ankle is on the floor": a hard maximum would kink the
# motion each time the supporting foot changes.
FOOT_CONTACT_SOFTNESS = 0.01

Angles = dict[str, np.ndarray]


@dataclass(frozen=True)
class View:
    """How the figure faces the camera: ``width`` shrinks shoulders, hips and face sideways when
    the body is turned, ``face_shift`` moves the face toward where it looks (+x)."""

    width: float = 1.0
    face_shift: float = 0.0


FRONT = View()
THREE_QUARTER = View(width=0.45, face_shift=0.035)


def _direction(angle: np.ndarray) -> np.ndarray:
    """Unit vectors at ``angle`` radians from straight down, positive toward +x (image y points down)."""
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def _rotate(vector: tuple[float, float], angle: np.ndarray) -> np.ndarray:
    x, y = vector
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([x * cos - y * sin, x * sin + y * cos], axis=-1)


def _figure(angles: Angles, view: View) -> np.ndarray:
    """``(frames, 18, 2)`` joint positions in body heights, neck at the origin, by forward kinematics.

    Angles: ``lean`` (torso), ``shoulders`` (tilt), ``head`` (tilt), and for ``r``/``l`` arms and legs
    the upper bone's absolute angle (``*_arm``, ``*_thigh``) and the lower bone's angle relative to
    it (``*_forearm``, ``*_shin``).
    """
    frames = len(angles["lean"])
    points = np.zeros((frames, NUM_JOINTS, 2))
    shoulder, hip = SHOULDER_HALF * view.width, HIP_HALF * view.width
    points[:, 2] = _rotate((-shoulder, 0.0), angles["shoulders"])
    points[:, 5] = _rotate((shoulder, 0.0), angles["shoulders"])
    points[:, 8] = _rotate((-hip, TORSO), angles["lean"])
    points[:, 11] = _rotate((hip, TORSO), angles["lean"])
    for side, root, middle, end, upper, lower, upper_length, lower_length in (
        ("r", 2, 3, 4, "arm", "forearm", UPPER_ARM, FOREARM),
        ("l", 5, 6, 7, "arm", "forearm", UPPER_ARM, FOREARM),
        ("r", 8, 9, 10, "thigh", "shin", THIGH, SHIN),
        ("l", 11, 12, 13, "thigh", "shin", THIGH, SHIN),
    ):
        upper_angle = angles[f"{side}_{upper}"]
        points[:, middle] = points[:, root] + upper_length * _direction(upper_angle)
        lower_angle = upper_angle + angles[f"{side}_{lower}"]
        points[:, end] = points[:, middle] + lower_length * _direction(lower_angle)
    head = angles["head"]
    points[:, 0] = _rotate((view.face_shift, -NECK_TO_NOSE), head)
    for eye, ear, sign in ((14, 16, -1.0), (15, 17, 1.0)):
        eye_offset = (view.face_shift / 2 + sign * EYE_OFFSET[0] * view.width, -EYE_OFFSET[1])
        points[:, eye] = points[:, 0] + _rotate(eye_offset, head)
        points[:, ear] = points[:, eye] + _rotate((sign * EAR_OFFSET[0] * view.width, EAR_OFFSET[1]), head)
    return points


def _standing_legs(frames: int) -> Angles:
    return {
        "r_thigh": np.full(frames, -0.03),
        "r_shin": np.zeros(frames),
        "l_thigh": np.full(frames, 0.03),
        "l_shin": np.zeros(frames),
    }


def _idle(phase: np.ndarray) -> tuple[Angles, np.ndarray, View]:
    """Standing, breathing, weight shifting a little."""
    sin = np.sin(phase)
    angles = {
        "lean": 0.02 * sin,
        "shoulders": 0.015 * sin,
        "head": 0.04 * np.sin(phase + 0.5),
        "r_arm": -0.10 - 0.02 * sin,
        "r_forearm": np.full_like(phase, 0.08),
        "l_arm": 0.10 + 0.02 * sin,
        "l_forearm": np.full_like(phase, -0.08),
        **_standing_legs(len(phase)),
    }
    return angles, 0.005 * sin, FRONT


def _wave(phase: np.ndarray) -> tuple[Angles, np.ndarray, View]:
    """Right arm raised, the forearm swinging either side of vertical three times a cycle."""
    upper = -2.2 - 0.05 * np.sin(phase)
    forearm_target = -np.pi + 0.35 * np.sin(3 * phase)  # -pi is straight up
    angles = {
        "lean": np.full_like(phase, -0.03),
        "shoulders": -0.04 + 0.01 * np.sin(phase),
        "head": 0.08 + 0.03 * np.sin(phase),
        "r_arm": upper,
        "r_forearm": forearm_target - upper,
        "l_arm": np.full_like(phase, 0.12),
        "l_forearm": np.full_like(phase, -0.1),
        **_standing_legs(len(phase)),
    }
    return angles, np.zeros_like(phase), FRONT


def _walk(phase: np.ndarray) -> tuple[Angles, np.ndarray, View]:
    """Walking in place, turned toward +x: legs swing opposite the arms and each knee bends most
    while its leg swings forward."""
    sin, cos = np.sin(phase), np.cos(phase)
    angles = {
        "lean": np.full_like(phase, 0.05),
        "shoulders": np.zeros_like(phase),
        "head": 0.02 * np.sin(2 * phase),
        "r_arm": -0.35 * sin,
        "r_forearm": 0.3 - 0.2 * sin,
        "l_arm": 0.35 * sin,
        "l_forearm": 0.3 + 0.2 * sin,
        "r_thigh": 0.45 * sin,
        "r_shin": -0.9 * ((1 + cos) / 2) ** 2,
        "l_thigh": -0.45 * sin,
        "l_shin": -0.9 * ((1 - cos) / 2) ** 2,
    }
    return angles, np.zeros_like(phase), THREE_QUARTER


def _dance(phase: np.ndarray) -> tuple[Angles, np.ndarray, View]:
    """Arms rising and falling in turn, hips swaying, knees bouncing four times a cycle."""
    bounce = np.sin(2 * phase) ** 2
    sin = np.sin(phase)
    angles = {
        "lean": 0.10 * sin,
        "shoulders": 0.08 * np.sin(2 * phase),
        "head": 0.10 * np.sin(2 * phase + 0.6),
        "r_arm": -(1.5 + 1.0 * sin),
        "r_forearm": -(0.5 + 0.4 * np.sin(2 * phase)),
        "l_arm": 1.5 - 1.0 * sin,
        "l_forearm": 0.5 - 0.4 * np.sin(2 * phase),
        "r_thigh": -(0.05 + 0.15 * bounce),
        "r_shin": 0.30 * bounce,
        "l_thigh": 0.05 + 0.15 * bounce,
        "l_shin": -0.30 * bounce,
    }
    return angles, 0.05 * sin, FRONT


Motion = Callable[[np.ndarray], tuple[Angles, np.ndarray, View]]
# name -> (joint angles and sideways sway for a phase, seconds per cycle)
MOTIONS: dict[str, tuple[Motion, float]] = {
    "idle": (_idle, 4.0),
    "wave": (_wave, 2.0),
    "walk": (_walk, 1.2),
    "dance": (_dance, 4.0),
}


def _smooth_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    top = np.maximum(a, b)
    soft = FOOT_CONTACT_SOFTNESS
    return top + soft * np.log(np.exp((a - top) / soft) + np.exp((b - top) / soft))


def _grounded(motion: Motion, phase: np.ndarray) -> np.ndarray:
    """Joint positions in body heights with the floor at y = 0 and the figure above it (y < 0)."""
    angles, sway, view = motion(phase)
    points = _figure(angles, view)
    points[..., 0] += sway[:, None]
    points[..., 1] -= _smooth_max(points[:, 10, 1], points[:, 13, 1])[:, None]
    return points


def builtin_motion(name: str, frames: int, fps: float, size: tuple[int, int]) -> PoseSequence:
    """A built-in motion (``"wave"`` or ``"motion:wave"``) as ``frames`` poses at ``fps`` on a
    ``size`` = (width, height) canvas: the figure stands centred on a floor near the bottom, as
    large as its whole cycle of movement allows."""
    key = name.removeprefix("motion:")
    if key not in MOTIONS:
        raise BadInput(f"unknown motion {name!r} (built-in motions: {', '.join(sorted(MOTIONS))})")
    if frames < 1:
        raise BadInput(f"a motion needs at least one frame, got {frames}")
    if not fps > 0:
        raise BadInput(f"fps must be positive, got {fps}")
    width, height = size
    motion, period = MOTIONS[key]
    cycle = _grounded(motion, 2 * np.pi * np.arange(CYCLE_SAMPLES) / CYCLE_SAMPLES)
    left, right = cycle[..., 0].min(), cycle[..., 0].max()
    scale = min(FILL * height / -cycle[..., 1].min(), FILL * width / (right - left))  # pixels per unit
    points = _grounded(motion, 2 * np.pi * np.arange(frames) / fps / period)
    pixels = np.stack(
        [width / 2 + (points[..., 0] - (left + right) / 2) * scale, FLOOR * height + points[..., 1] * scale],
        axis=-1,
    )
    keypoints = np.concatenate(
        [pixels / np.array([width, height], dtype=np.float64), np.ones((frames, NUM_JOINTS, 1))], axis=-1
    )
    return PoseSequence(keypoints, fps=fps, width=width, height=height)
