"""Forward kinematics: a body's proportions and per-frame joint angles -> 3D joints and part frames.

World coordinates, in body units (a reference person stands about 1.0 tall): x to the image right,
y up, z toward the camera. At yaw 0 the puppet faces the camera, so its anatomical right (body -x)
appears on the image left; yaw turns the whole body about the vertical axis through the pelvis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Joint angles, in this order, in radians in a Motion (degrees in LIMITS for reading).
ANGLES = (
    "torso_pitch", "torso_roll", "torso_twist", "head_yaw", "head_pitch", "head_roll",
    "r_shoulder_abd", "l_shoulder_abd", "r_shoulder_flex", "l_shoulder_flex", "r_elbow", "l_elbow",
    "r_hip_abd", "l_hip_abd", "r_hip_flex", "l_hip_flex", "r_knee", "l_knee",
)  # fmt: skip
ANGLE = {name: index for index, name in enumerate(ANGLES)}
LIMITS_DEG = np.array(
    [
        (-15, 25), (-20, 20), (-35, 35), (-45, 45), (-25, 25), (-20, 20),
        (0, 165), (0, 165), (-45, 150), (-45, 150), (0, 140), (0, 140),
        (-10, 40), (-10, 40), (-30, 95), (-30, 95), (0, 120), (0, 120),
    ],
    dtype=np.float64,
)  # fmt: skip
LIMITS = np.radians(LIMITS_DEG)

# Where the face keypoints sit on the head ellipsoid, in head units (x by a, y by b, z by c).
EYE_X, EYE_Y = 0.36, 0.05
NOSE_Y = -0.22
MOUTH_Y = -0.45


@dataclass(frozen=True)
class Body:
    """Proportions in body units. Radii are the half-thickness of the drawn parts."""

    head_a: float  # head ellipsoid half-width
    head_b: float  # half-height
    head_c: float  # half-depth
    neck_len: float
    neck_r: float
    torso_len: float  # hip line to shoulder line
    shoulder_w: float
    chest_w: float
    waist_w: float
    hip_w: float  # between the hip joints
    thickness: float  # front-to-back depth of the torso
    upper_arm: float
    forearm: float
    hand: float
    arm_r: float
    thigh: float
    shin: float
    thigh_r: float
    ankle_h: float
    foot: float

    @property
    def height(self) -> float:
        """Standing height, floor to the top of the head."""
        return self.ankle_h + self.shin + self.thigh + self.torso_len + self.neck_len + 1.8 * self.head_b


def reference_body() -> Body:
    """The average proportions, used to give a Motion's joints in body units."""
    return Body(
        head_a=0.06, head_b=0.075, head_c=0.066, neck_len=0.035, neck_r=0.024, torso_len=0.3,
        shoulder_w=0.22, chest_w=0.2, waist_w=0.16, hip_w=0.15, thickness=0.13,
        upper_arm=0.17, forearm=0.145, hand=0.07, arm_r=0.026, thigh=0.245, shin=0.235,
        thigh_r=0.042, ankle_h=0.04, foot=0.085,
    )  # fmt: skip


@dataclass(frozen=True)
class Posed:
    """Per-frame results of forward kinematics (F frames). Rotations map part frames to world."""

    joints: np.ndarray  # (F, 18, 3) OpenPose order
    normals: np.ndarray  # (F, 18, 3) outward surface normals of the head keypoints, zero elsewhere
    pelvis: np.ndarray  # (F, 3)
    r_pelvis: np.ndarray  # (F, 3, 3)
    r_torso: np.ndarray
    r_head: np.ndarray
    head: np.ndarray  # (F, 3) head ellipsoid centre
    neck_top: np.ndarray  # (F, 3)
    hands: np.ndarray  # (F, 2, 3) finger tips, right then left
    toes: np.ndarray  # (F, 2, 3)


def _rx(t: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(t), np.sin(t), np.ones_like(t), np.zeros_like(t)
    return np.stack([o, z, z, z, c, -s, z, s, c], axis=-1).reshape(*t.shape, 3, 3)


def _ry(t: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(t), np.sin(t), np.ones_like(t), np.zeros_like(t)
    return np.stack([c, z, s, z, o, z, -s, z, c], axis=-1).reshape(*t.shape, 3, 3)


def _rz(t: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(t), np.sin(t), np.ones_like(t), np.zeros_like(t)
    return np.stack([c, -s, z, s, c, z, z, z, o], axis=-1).reshape(*t.shape, 3, 3)


def _apply(rotation: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Rotate (F, 3) or constant (3,) vectors by (F, 3, 3) rotations."""
    if vectors.ndim == 1:
        return np.einsum("fij,j->fi", rotation, vectors)
    return np.einsum("fij,fj->fi", rotation, vectors)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def limb_direction(abduction: np.ndarray, flexion: np.ndarray, side: float) -> np.ndarray:
    """Direction of an upper limb in its parent frame: hanging down at 0, out sideways with abduction,
    forward (+z) with flexion."""
    return np.stack(
        [side * np.sin(abduction), -np.cos(abduction) * np.cos(flexion), np.cos(abduction) * np.sin(flexion)],
        axis=-1,
    )


def bend(direction: np.ndarray, toward: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Turn ``direction`` by ``angle`` in the plane that holds ``toward`` (elbows, knees)."""
    normal = toward - np.sum(toward * direction, axis=-1, keepdims=True) * direction
    normal = _unit(normal)
    return np.cos(angle)[:, None] * direction + np.sin(angle)[:, None] * normal


def head_points(body: Body) -> tuple[np.ndarray, np.ndarray]:
    """Nose, right eye, left eye, right ear, left ear in the head frame, and their surface normals."""
    a, b, c = body.head_a, body.head_b, body.head_c

    def on_surface(x: float, y: float, inset: float = 0.97) -> tuple[float, float, float]:
        return x, y, inset * float(np.sqrt(max(1.0 - x * x - y * y, 0.0)))

    unit = np.array(
        [
            on_surface(0.0, NOSE_Y),
            on_surface(-EYE_X, EYE_Y),
            on_surface(EYE_X, EYE_Y),
            (-0.93, -0.05, -0.1),
            (0.93, -0.05, -0.1),
        ]
    )
    points = unit * np.array([a, b, c])
    normals = _unit(unit / np.array([a, b, c]))
    return points, normals


def pose(body: Body, angles: np.ndarray, yaw: np.ndarray, root: np.ndarray) -> Posed:
    """Pose ``body`` for every frame: ``angles`` (F, 18) radians in ANGLES order, ``yaw`` (F,) radians,
    ``root`` (F, 3) offset of the pelvis on the floor plane. The pelvis height keeps the lower ankle
    on the floor, so bending both knees crouches."""
    angles = np.asarray(angles, dtype=np.float64)
    frames = angles.shape[0]
    g = {name: angles[:, index] for name, index in ANGLE.items()}
    r_pelvis = _ry(np.asarray(yaw, dtype=np.float64))
    r_torso = r_pelvis @ _rx(g["torso_pitch"]) @ _rz(g["torso_roll"]) @ _ry(g["torso_twist"])
    r_head = r_torso @ _ry(g["head_yaw"]) @ _rx(g["head_pitch"]) @ _rz(g["head_roll"])

    joints = np.zeros((frames, 18, 3))
    back = np.array([0.0, 0.0, -1.0])
    for side, prefix, hip, knee, ankle in ((-1.0, "r", 8, 9, 10), (1.0, "l", 11, 12, 13)):
        joints[:, hip] = _apply(r_pelvis, np.array([side * body.hip_w / 2, 0.0, 0.0]))
        thigh = limb_direction(g[f"{prefix}_hip_abd"], g[f"{prefix}_hip_flex"], side)
        shin = bend(thigh, np.broadcast_to(back, thigh.shape), g[f"{prefix}_knee"])
        joints[:, knee] = joints[:, hip] + body.thigh * _apply(r_pelvis, thigh)
        joints[:, ankle] = joints[:, knee] + body.shin * _apply(r_pelvis, shin)
    lift = body.ankle_h - np.minimum(joints[:, 10, 1], joints[:, 13, 1])
    pelvis = np.zeros((frames, 3))
    pelvis[:, 1] = lift
    joints[:, 8:14] += pelvis[:, None]

    neck = pelvis + _apply(r_torso, np.array([0.0, body.torso_len, 0.0]))
    joints[:, 1] = neck
    hands = np.zeros((frames, 2, 3))
    for n, (side, prefix, shoulder, elbow, wrist) in enumerate(((-1.0, "r", 2, 3, 4), (1.0, "l", 5, 6, 7))):
        joints[:, shoulder] = neck + _apply(r_torso, np.array([side * body.shoulder_w / 2, -0.012, 0.0]))
        upper = limb_direction(g[f"{prefix}_shoulder_abd"], g[f"{prefix}_shoulder_flex"], side)
        toward = _unit(np.array([-side * 0.25, 0.15, 1.0]))
        fore = bend(upper, np.broadcast_to(toward, upper.shape), g[f"{prefix}_elbow"])
        joints[:, elbow] = joints[:, shoulder] + body.upper_arm * _apply(r_torso, upper)
        fore_world = _apply(r_torso, fore)
        joints[:, wrist] = joints[:, elbow] + body.forearm * fore_world
        hands[:, n] = joints[:, wrist] + body.hand * fore_world

    neck_top = neck + _apply(r_torso, np.array([0.0, body.neck_len, 0.0]))
    head = neck_top + _apply(r_head, np.array([0.0, 0.8 * body.head_b, 0.1 * body.head_c]))
    points, normals = head_points(body)
    world_normals = np.zeros((frames, 18, 3))
    for point, normal, joint in zip(points, normals, (0, 14, 15, 16, 17), strict=True):
        joints[:, joint] = head + _apply(r_head, point)
        world_normals[:, joint] = _apply(r_head, normal)

    toes = np.stack(
        [joints[:, a] + _apply(r_pelvis, np.array([0.0, -0.6 * body.ankle_h, body.foot])) for a in (10, 13)],
        axis=1,
    )
    offset = np.asarray(root, dtype=np.float64).copy()
    offset[:, 1] = 0.0
    return Posed(
        joints=joints + offset[:, None],
        normals=world_normals,
        pelvis=pelvis + offset,
        r_pelvis=r_pelvis,
        r_torso=r_torso,
        r_head=r_head,
        head=head + offset,
        neck_top=neck_top + offset,
        hands=hands + offset[:, None],
        toes=toes + offset[:, None],
    )
