"""Puppet motions: smooth dances from joint-angle curves, small steps and turns, eased in from a
neutral front-facing pose at frame 0 (the reference picture)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anima.puppets.skeleton import ANGLE, ANGLES, LIMITS, pose, reference_body

CLIP_KINDS = ("rigid-front", "turning", "non-rigid")
_SALT = 0x6D6F74  # separates this stream from the character's for the same seed

# Fastest allowed joint movement, in body heights per frame (a puppet fills at most 90% of the frame).
MAX_STEP = 0.055
MAX_TURN_RATE = np.radians(13.0)  # per frame


@dataclass(frozen=True, eq=False)
class Motion:
    """A puppet's motion, independent of its proportions.

    Attributes:
        angles: ``(frames, 18)`` joint angles in radians, in ``skeleton.ANGLES`` order.
        yaw: ``(frames,)`` body rotation about the vertical axis in radians (0 faces the camera).
        root: ``(frames, 3)`` pelvis offset on the floor plane, in body units.
        joints: ``(frames, 18, 3)`` OpenPose-18 joints of the reference body in body units (x right,
            y up, z toward the camera); a character's own joints come from ``skeleton.pose``.
        kind: the clip kind it was made for; fps: frames per second.
    """

    angles: np.ndarray = field(repr=False)
    yaw: np.ndarray = field(repr=False)
    root: np.ndarray = field(repr=False)
    kind: str
    fps: float
    joints: np.ndarray = field(repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.angles.shape[0])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _neutral(rng: np.random.Generator) -> np.ndarray:
    """A relaxed standing pose: arms a little out, elbows soft, legs straight."""
    neutral = np.zeros(len(ANGLES))
    for name, low, high in (
        ("head_yaw", -4, 4), ("head_pitch", -4, 4), ("head_roll", -3, 3),
        ("r_shoulder_abd", 6, 22), ("l_shoulder_abd", 6, 22), ("r_shoulder_flex", -5, 10),
        ("l_shoulder_flex", -5, 10), ("r_elbow", 5, 25), ("l_elbow", 5, 25),
        ("r_hip_abd", 2, 7), ("l_hip_abd", 2, 7), ("r_knee", 0, 5), ("l_knee", 0, 5),
    ):  # fmt: skip
        neutral[ANGLE[name]] = np.radians(rng.uniform(low, high))
    return neutral


# Amplitude (degrees) of each angle's dance, and how far its centre may drift from neutral.
_AMPLITUDE = {
    "torso_pitch": (6, 6), "torso_roll": (8, 4), "torso_twist": (14, 6),
    "head_yaw": (15, 8), "head_pitch": (8, 5), "head_roll": (8, 4),
    "shoulder_abd": (45, 50), "shoulder_flex": (45, 40), "elbow": (40, 40),
    "hip_abd": (8, 6), "hip_flex": (20, 8), "knee": (22, 12),
}  # fmt: skip


def _dance(rng: np.random.Generator, t: np.ndarray, lively: float) -> np.ndarray:
    """Per-angle deviations from neutral (radians): a few sinusoids sharing one tempo, so the body
    moves together; the left limbs mostly echo the right ones in step or in alternation."""
    tempo = rng.uniform(0.3, 0.7) * (1.0 + 0.5 * lively)
    harmonics = tempo * np.array([0.5, 1.0, 2.0]) * rng.uniform(0.9, 1.1, size=3)
    arm_offset = rng.choice([0.0, np.pi])
    deviation = np.zeros((t.size, len(ANGLES)))
    right: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for name, index in ANGLE.items():
        key = name[2:] if name[:2] in ("r_", "l_") else name
        amplitude, drift = _AMPLITUDE[key]
        weights = rng.dirichlet(np.ones(3)) * amplitude * rng.uniform(0.3, 1.0) * (1.0 + 0.6 * lively)
        phases = rng.uniform(0, 2 * np.pi, size=3)
        centre = rng.uniform(-1, 1) * drift
        if key in ("shoulder_abd", "elbow", "knee"):
            centre = abs(centre)
        if name.startswith("l_") and rng.random() < 0.75:
            weights, phases, centre = right[key]
            phases = phases + (arm_offset if key in ("shoulder_abd", "shoulder_flex", "elbow") else np.pi)
        elif name.startswith("r_"):
            right[key] = (weights, phases, centre)
        curve = centre + sum(
            w * np.sin(2 * np.pi * f * t + p) for w, f, p in zip(weights, harmonics, phases, strict=True)
        )
        deviation[:, index] = np.radians(curve)
    return deviation


def _turn(rng: np.random.Generator, frames: int, start: int) -> np.ndarray:
    """A yaw curve that reaches the back: turn and stay, or keep spinning, rate-limited per frame."""
    span = max(frames - 1 - start, 1)
    direction = rng.choice([-1.0, 1.0])
    if rng.random() < 0.6:
        wanted = np.radians(rng.choice([rng.uniform(150, 200), 360.0]))
        ramp = rng.uniform(0.7, 1.0) * span
        amplitude = min(wanted, MAX_TURN_RATE * ramp / 1.5)
        s = (np.arange(frames) - start) / ramp
        return direction * amplitude * _smoothstep(s)
    # Spin: ease into a constant rate.
    rate = rng.uniform(0.6, 1.0) * MAX_TURN_RATE
    ease = min(4.0, span / 2)
    s = np.arange(frames, dtype=np.float64) - start
    # Integral of a smoothstep ramp of the rate, so the speed (not the angle) eases in.
    progress = np.where(s < ease, np.clip(s, 0, None) ** 2 / (2 * ease), s - ease / 2)
    return direction * rate * progress


def _sway(rng: np.random.Generator, t: np.ndarray, limit_deg: float) -> np.ndarray:
    frequency = rng.uniform(0.15, 0.5)
    return np.radians(rng.uniform(0.4, 1.0) * limit_deg) * np.sin(
        2 * np.pi * frequency * t + rng.uniform(0, 6.3)
    )


def _max_step(angles: np.ndarray, yaw: np.ndarray, root: np.ndarray) -> float:
    joints = pose(reference_body(), angles, yaw, root).joints[..., :2]
    if len(joints) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(joints, axis=0), axis=-1).max())


def sample_motion(seed: int, frames: int, kind: str | None = None, fps: float = 12.0) -> Motion:
    """A motion of ``frames`` frames for a clip ``kind`` (None: drawn from CLIP_KINDS by the seed).

    Frame 0 is front-facing and close to neutral; the dance eases in over the first quarter of the
    clip. Joints stay within ``skeleton.LIMITS`` and move at most ``MAX_STEP`` body heights a frame.
    """
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rng = np.random.default_rng([_SALT, seed])
    kind = _check_kind(kind, rng)
    t = np.arange(frames) / fps
    ease_frames = float(np.clip(round(0.25 * frames), 2, 10))
    envelope = _smoothstep(np.arange(frames) / ease_frames)
    neutral = _neutral(rng)
    lively = {"rigid-front": 0.0, "turning": 0.0, "non-rigid": 1.0}[kind]
    dance = _dance(rng, t, lively) * envelope[:, None]
    steps = np.zeros((frames, 3))
    for axis, reach in ((0, 0.08), (2, 0.05)):  # sideways and back-and-forth, in body heights
        frequency, phase = rng.uniform(0.1, 0.4), rng.uniform(0, 2 * np.pi)
        steps[:, axis] = rng.uniform(0, reach) * np.sin(2 * np.pi * frequency * t + phase)
    steps = (steps - steps[:1]) * envelope[:, None]
    if kind == "turning":
        yaw = _turn(rng, frames, start=int(ease_frames // 2))
    else:
        yaw = _sway(rng, t, 20.0 if kind == "rigid-front" else 35.0) * envelope
    for _ in range(20):  # slow down (shrink the dance) until no joint jumps
        angles = np.clip(neutral + dance, LIMITS[:, 0], LIMITS[:, 1])
        if _max_step(angles, yaw, steps) <= MAX_STEP:
            break
        dance *= 0.85
        steps *= 0.85
    joints = pose(reference_body(), angles, yaw, steps).joints
    return Motion(angles=angles, yaw=yaw, root=steps, kind=kind, fps=float(fps), joints=joints)


def _check_kind(kind: str | None, rng: np.random.Generator) -> str:
    if kind is None:
        return str(CLIP_KINDS[int(rng.integers(len(CLIP_KINDS)))])
    if kind not in CLIP_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CLIP_KINDS)}, got {kind!r}")
    return kind
