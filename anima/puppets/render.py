"""Drawing puppet clips: parts as filled polygons in depth order, the head ray-cast, at 2x then
downsampled (INTER_AREA) for clean edges.

Keypoints are exact by construction: they are the posed skeleton's joints, orthographically
projected. Confidence rule: every body joint is 1.0, also when the body hides it (as OpenPose
annotations usually still mark occluded limbs); a face keypoint (nose, eyes, ears) is 1.0 while its
point on the head faces the camera or lies near the silhouette (surface normal's component toward
the camera above -0.1), else 0.0: nose and eyes vanish when the face points away, the far eye and
ear in profile; both ears stay visible from the back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from anima.pose.sequence import PoseSequence
from anima.puppets import textures
from anima.puppets.character import Character, Fabric, sample_character
from anima.puppets.dynamics import follow
from anima.puppets.motion import CLIP_KINDS, Motion, sample_motion
from anima.puppets.skeleton import EYE_X, EYE_Y, MOUTH_Y, NOSE_Y, Posed, pose

SUPERSAMPLE = 2
VISIBLE_NORMAL = -0.1
_LIGHT = np.array([-0.35, 0.55, 1.0]) / np.linalg.norm([-0.35, 0.55, 1.0])
_KIND_SALT = 0x6B696E
_CIRCLE = np.stack([np.cos(np.arange(12) * np.pi / 6), np.sin(np.arange(12) * np.pi / 6)], axis=-1)
RGB = tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class PuppetClip:
    """A rendered clip with its exact pose and character masks.

    Attributes:
        frames: ``(N, H, W, 3)`` uint8 RGB.
        keypoints: ``(N, 18, 3)`` OpenPose-18 x/W, y/H and confidence (1.0 visible, 0.0 hidden).
        masks: ``(N, H, W)`` bool, True where the character (body, clothes, hair) is drawn.
        kind: one of CLIP_KINDS; fps: frames per second.
    """

    frames: np.ndarray
    keypoints: np.ndarray
    masks: np.ndarray
    kind: str
    fps: float

    def pose(self) -> PoseSequence:
        """The keypoints as a PoseSequence on the frames' canvas."""
        height, width = self.frames.shape[1:3]
        return PoseSequence(keypoints=self.keypoints, fps=self.fps, width=width, height=height)


@dataclass(frozen=True)
class _Texture:
    image: np.ndarray
    border: int
    per_unit: float  # texture pixels per body unit
    per_pixel: float  # texture pixels per canvas pixel
    outline: RGB


@dataclass
class _Scene:
    """What every frame of one clip shares."""

    character: Character
    posed: Posed
    per_unit: float  # canvas pixels per body unit
    origin: np.ndarray  # canvas position of world (0, 0)
    skin: RGB
    fabrics: dict[int, _Texture | RGB]
    face: np.ndarray | None
    skirt: np.ndarray | None  # (F, K, 3) hem points
    hair: np.ndarray | None  # (F, strands, nodes, 3)
    sleeves: np.ndarray | None  # (F, 2, K, 3) cuff points

    def screen(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        return np.stack(
            [
                self.origin[0] + points[..., 0] * self.per_unit,
                self.origin[1] - points[..., 1] * self.per_unit,
            ],
            axis=-1,
        )


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.rgb = np.zeros((height, width, 3), dtype=np.uint8)
        self.alpha = np.zeros((height, width), dtype=np.uint8)

    def polygon(self, points: np.ndarray, paint: _Texture | RGB, frame: tuple | None = None) -> None:
        """Fill a convex polygon (canvas pixels), plain or textured in the part's own frame
        ``(origin, along, across, scroll)`` so the pattern moves with the part."""
        fixed = np.round(np.asarray(points) * 16).astype(np.int32)
        if isinstance(paint, _Texture):
            self._textured(points, fixed, paint, frame)
            outline = paint.outline
        else:
            cv2.fillPoly(self.rgb, [fixed], paint, cv2.LINE_8, 4)
            outline = tuple(int(v * 0.6) for v in paint)
        cv2.fillPoly(self.alpha, [fixed], 255, cv2.LINE_8, 4)
        cv2.polylines(self.rgb, [fixed], True, outline, 1, cv2.LINE_8, 4)
        cv2.polylines(self.alpha, [fixed], True, 255, 1, cv2.LINE_8, 4)

    def _textured(self, points: np.ndarray, fixed: np.ndarray, paint: _Texture, frame: tuple | None) -> None:
        height, width = self.alpha.shape
        x0, y0 = np.floor(points.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            return
        origin, along, across, scroll = (
            frame if frame is not None else (points.mean(axis=0), (0, 1), (1, 0), 0)
        )
        k = paint.per_pixel
        ox, oy = origin[0] - x0, origin[1] - y0
        matrix = np.array(
            [
                [
                    k * across[0],
                    k * across[1],
                    -k * (across[0] * ox + across[1] * oy) + scroll * paint.per_unit,
                ],
                [k * along[0], k * along[1], -k * (along[0] * ox + along[1] * oy)],
            ]
        )
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        patch = cv2.warpAffine(paint.image, matrix, (x1 - x0, y1 - y0), flags=flags, borderMode=paint.border)
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        cv2.fillPoly(mask, [fixed - np.int32([x0 * 16, y0 * 16])], 1, cv2.LINE_8, 4)
        region = self.rgb[y0:y1, x0:x1]
        np.copyto(region, patch, where=mask[..., None].astype(bool))


def _hull(points: np.ndarray) -> np.ndarray:
    return (
        cv2.convexHull(np.asarray(points, dtype=np.float32).reshape(-1, 2)).reshape(-1, 2).astype(np.float64)
    )


def _capsule(a: np.ndarray, b: np.ndarray, radius_a: float, radius_b: float) -> np.ndarray:
    return _hull(np.concatenate([a + radius_a * _CIRCLE, b + radius_b * _CIRCLE]))


def _part_frame(top: np.ndarray, bottom: np.ndarray, scroll: float = 0.0) -> tuple:
    along = bottom - top
    along = along / max(float(np.linalg.norm(along)), 1e-6)
    return top, along, np.array([-along[1], along[0]]) * -1, scroll


def _ring(
    centre: np.ndarray, rotation: np.ndarray, y: float, rx: float, rz: float, count: int = 12
) -> np.ndarray:
    theta = np.linspace(0, 2 * np.pi, count, endpoint=False)
    local = np.stack([rx * np.cos(theta), np.full_like(theta, y), rz * np.sin(theta)], axis=-1)
    return centre + local @ rotation.T


# --- secondary motion --------------------------------------------------------------------------------


def _skirt_hem(character: Character, posed: Posed, fps: float) -> np.ndarray:
    """Hem points of the skirt: a flared ring under the hips, pushed out by the legs, lagging."""
    body = character.body
    count = 16
    length = min(character.skirt_length, 0.95 * (body.thigh + body.shin))
    theta = np.linspace(0, 2 * np.pi, count, endpoint=False)
    rx = (body.hip_w / 2 + body.thigh_r) * character.skirt_flare
    rz = (body.thickness / 2 + 0.01) * character.skirt_flare
    radius = rx * rz / np.sqrt((rz * np.cos(theta)) ** 2 + (rx * np.sin(theta)) ** 2)
    local_dirs = np.stack([np.cos(theta), np.zeros_like(theta), np.sin(theta)], axis=-1)
    dirs = np.einsum("fij,kj->fki", posed.r_pelvis, local_dirs)  # (F, K, 3) horizontal
    centre = posed.pelvis + np.array([0.0, -length, 0.0])
    reach = np.broadcast_to(radius, dirs.shape[:2]).copy()
    for hip, knee, ankle in ((8, 9, 10), (11, 12, 13)):
        leg = _leg_point_at(posed.joints[:, [hip, knee, ankle]], centre[:, 1])
        offset = leg - centre
        offset[:, 1] = 0.0
        along = np.einsum("fki,fi->fk", dirs, offset)
        across = np.linalg.norm(offset[:, None] - along[..., None] * dirs, axis=-1)
        needed = along + body.thigh_r * 1.1
        push = (across < radius * 0.9) & (needed > reach)
        reach = np.where(push, needed, reach)
    targets = centre[:, None] + reach[..., None] * dirs
    return follow(targets, fps, frequency=1.6, damping=0.25)


def _leg_point_at(leg: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Where the hip-knee-ankle chain (F, 3, 3) crosses ``height``; its lowest point if it does not."""
    out = leg[np.arange(len(leg)), np.argmin(leg[..., 1], axis=1)].copy()
    for upper, lower in ((0, 1), (1, 2)):
        a, b = leg[:, upper], leg[:, lower]
        span = a[:, 1] - b[:, 1]
        s = np.clip((a[:, 1] - height) / np.where(np.abs(span) < 1e-9, 1e-9, span), 0, 1)
        crossing = (np.minimum(a[:, 1], b[:, 1]) <= height) & (np.maximum(a[:, 1], b[:, 1]) >= height)
        out = np.where(crossing[:, None], a + s[:, None] * (b - a), out)
    return out


def _hair_strands(character: Character, posed: Posed, fps: float) -> np.ndarray:
    """Long hair: strands hanging from the sides and back of the head, lagging more toward the tips."""
    body, hair = character.body, character.hair
    phi = np.radians(np.linspace(100, 260, 7))
    nodes = 5
    segment = hair.length / (nodes - 1)
    height = np.where(np.cos(phi) < -0.3, 0.3, 0.1)  # higher at the back of the head
    unit = np.stack([np.sin(phi), height, np.cos(phi)], axis=-1)
    anchor_local = unit * np.array([body.head_a, body.head_b, body.head_c]) * hair.volume
    anchors = posed.head[:, None] + np.einsum("fij,kj->fki", posed.r_head, anchor_local)
    outward = np.einsum("fij,kj->fki", posed.r_head, np.stack([np.sin(phi), 0 * phi, np.cos(phi)], axis=-1))
    outward[..., 1] = 0.0
    down = np.array([0.0, -1.0, 0.0])
    first = outward * 0.5 + down * 0.85
    rest = outward * 0.18 + down
    first /= np.linalg.norm(first, axis=-1, keepdims=True)
    rest /= np.linalg.norm(rest, axis=-1, keepdims=True)
    steps = (
        np.concatenate([first[:, :, None], np.repeat(rest[:, :, None], nodes - 2, axis=2)], axis=2) * segment
    )
    targets = np.concatenate([anchors[:, :, None], anchors[:, :, None] + np.cumsum(steps, axis=2)], axis=2)
    frequency = np.linspace(6.0, 1.4, nodes)[None, :]
    moved = follow(targets, fps, frequency=np.broadcast_to(frequency, targets.shape[1:3]), damping=0.3)
    moved[:, :, 0] = anchors
    return moved


def _sleeve_cuffs(character: Character, posed: Posed, fps: float) -> np.ndarray:
    """Loose sleeves: a wide cuff ring around each forearm that droops and lags."""
    body = character.body
    cuffs = []
    theta = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    for elbow, wrist in ((3, 4), (6, 7)):
        e, w = posed.joints[:, elbow], posed.joints[:, wrist]
        axis = (w - e) / np.maximum(np.linalg.norm(w - e, axis=-1, keepdims=True), 1e-9)
        helper = np.where(np.abs(axis[:, 1:2]) > 0.9, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
        u = np.cross(axis, helper)
        u /= np.linalg.norm(u, axis=-1, keepdims=True)
        v = np.cross(axis, u)
        centre = e + 0.85 * (w - e) + np.array([0.0, -0.3 * body.forearm, 0.0]) * 0.35
        radius = character.sleeve_flare * body.arm_r
        ring = centre[:, None] + radius * (
            np.cos(theta)[None, :, None] * u[:, None] + np.sin(theta)[None, :, None] * v[:, None]
        )
        cuffs.append(ring)
    targets = np.stack(cuffs, axis=1)
    return follow(targets, fps, frequency=2.2, damping=0.3)


# --- the scene ------------------------------------------------------------------------------------------


def _texture(fabric: Fabric, canvas_per_unit: float) -> _Texture | RGB:
    if fabric.pattern == "flat":
        return tuple(int(v) for v in fabric.colors[0])  # type: ignore[return-value]
    image, border = textures.tile(fabric)
    outline = tuple(int(v * 0.55) for v in image.reshape(-1, 3).mean(axis=0))
    per_unit = image.shape[0] / fabric.scale
    return _Texture(image, border, per_unit, per_unit / canvas_per_unit, outline)  # type: ignore[arg-type]


def _scene(character: Character, motion: Motion, size: tuple[int, int]) -> _Scene:
    width, height = size
    posed = pose(character.body, motion.angles, motion.yaw, motion.root)
    per_unit = character.fill * height * SUPERSAMPLE / character.body.height
    origin = np.array([character.center * width * SUPERSAMPLE, character.floor * height * SUPERSAMPLE])
    fabrics = {
        id(f): _texture(f, per_unit)
        for f in (character.top, character.top_back, character.bottom_front, character.bottom_back)
    }
    face = textures.face_image(character.face) if character.face.kind == "photo" else None
    fps = motion.fps
    return _Scene(
        character=character,
        posed=posed,
        per_unit=per_unit,
        origin=origin,
        skin=character.skin,
        fabrics=fabrics,
        face=face,
        skirt=_skirt_hem(character, posed, fps) if character.has_skirt else None,
        hair=_hair_strands(character, posed, fps) if character.has_long_hair else None,
        sleeves=_sleeve_cuffs(character, posed, fps) if character.has_loose_sleeves else None,
    )


Part = tuple[float, int, Callable[[_Canvas], None]]


def _parts(scene: _Scene, f: int) -> list[Part]:
    """Every drawable piece of frame ``f`` with its depth (larger is nearer the camera)."""
    ch, p, body = scene.character, scene.posed, scene.character.body
    px = scene.per_unit
    joints = p.joints[f]
    parts: list[Part] = []

    def add(depth: float, draw: Callable[[_Canvas], None]) -> None:
        parts.append((float(depth), len(parts), draw))

    def capsule(a, b, ra, rb, paint, depth, scroll=0.0) -> None:
        sa, sb = scene.screen(a), scene.screen(b)
        polygon = _capsule(sa, sb, ra * px, rb * px)
        frame = _part_frame(sa, sb, scroll)
        add(depth, lambda c: c.polygon(polygon, paint, frame))

    facing = p.r_torso[f][2, 2] > 0
    hips_facing = p.r_pelvis[f][2, 2] > 0
    top = scene.fabrics[id(ch.top if facing else ch.top_back)]
    bottom = scene.fabrics[id(ch.bottom_front if hips_facing else ch.bottom_back)]
    skin = scene.skin
    yaw = float(np.arctan2(p.r_torso[f][0, 2], p.r_torso[f][2, 2]))
    scroll = yaw * body.shoulder_w / 2

    # Torso: rings through shoulders, chest, waist (torso frame) and hips (pelvis frame).
    pelvis, rt, rp = p.pelvis[f], p.r_torso[f], p.r_pelvis[f]
    half = body.thickness / 2
    length = body.torso_len
    shoulder_ring = _ring(pelvis, rt, length - 0.005, body.shoulder_w / 2 + body.arm_r * 0.5, half * 0.9)
    chest_ring = _ring(pelvis, rt, 0.7 * length, body.chest_w / 2, half * 1.05)
    waist_ring = _ring(pelvis, rt, 0.32 * length, body.waist_w / 2, half * 0.95)
    hem_ring = _ring(pelvis, rt, 0.1 * length, (body.waist_w + body.hip_w) / 4 + body.thigh_r * 0.4, half)
    hip_ring = _ring(pelvis, rp, -0.03, body.hip_w / 2 + body.thigh_r * 0.9, half)
    torso_depth = float((pelvis[2] + joints[1, 2]) / 2)
    torso_frame = _part_frame(scene.screen(joints[1]), scene.screen(pelvis), scroll)
    hips = _hull(scene.screen(np.concatenate([waist_ring, hip_ring])))
    chest = _hull(scene.screen(np.concatenate([shoulder_ring, chest_ring])))
    belly = _hull(scene.screen(np.concatenate([chest_ring, waist_ring, hem_ring])))
    add(torso_depth, lambda c: c.polygon(hips, bottom, torso_frame))
    add(
        torso_depth + 1e-4, lambda c: (c.polygon(belly, top, torso_frame), c.polygon(chest, top, torso_frame))
    )
    if facing and abs(yaw) < np.radians(75) and ch.motif != "none":
        add(torso_depth + 2e-4, _motif(scene, f))

    # Neck and head.
    neck_depth = float((joints[1] + rt @ np.array([0, 0, 0.3 * body.thickness]))[2])
    capsule(joints[1], p.neck_top[f], body.neck_r, body.neck_r, skin, neck_depth)
    add(max(float(p.head[f][2]), neck_depth + 1e-3), lambda c: _draw_head(c, scene, f))

    # Arms.
    for side, (shoulder, elbow, wrist) in enumerate(((2, 3, 4), (5, 6, 7))):
        s, e, w, tip = joints[shoulder], joints[elbow], joints[wrist], p.hands[f][side]
        upper_depth = (s[2] + e[2]) / 2 + 0.01
        fore_depth = (e[2] + w[2]) / 2 + 0.01
        sleeve_paint = top if ch.sleeves in ("long", "loose") else skin
        capsule(s, e, body.arm_r, body.arm_r * 0.85, sleeve_paint, upper_depth)
        if ch.sleeves == "short":
            capsule(s, s + 0.55 * (e - s), body.arm_r * 1.18, body.arm_r * 1.1, top, upper_depth + 1e-4)
        capsule(e, w, body.arm_r * 0.85, body.arm_r * 0.7, top if ch.sleeves == "long" else skin, fore_depth)
        capsule(w, tip, body.arm_r * 0.8, body.arm_r * 0.9, skin, fore_depth + 0.001)
        if scene.sleeves is not None:
            ring = _ring(e, np.eye(3), 0.0, body.arm_r * 1.1, body.arm_r * 1.1)
            cuff = scene.sleeves[f, side]
            polygon = _hull(scene.screen(np.concatenate([ring, cuff])))
            frame = _part_frame(scene.screen(e), scene.screen(w))
            add(fore_depth + 5e-4, lambda c, poly=polygon, fr=frame: c.polygon(poly, top, fr))

    # Legs, the skirt over them.
    skirt_depth = torso_depth - 5e-4
    for side, (hip, knee, ankle) in enumerate(((8, 9, 10), (11, 12, 13))):
        h, k, a, toe = joints[hip], joints[knee], joints[ankle], p.toes[f][side]
        thigh_depth = (h[2] + k[2]) / 2 - 0.01
        shin_depth = (k[2] + a[2]) / 2 - 0.01
        if ch.has_skirt:  # legs inside the skirt stay behind it
            thigh_depth = min(thigh_depth, skirt_depth - 1e-3)
            if scene.skirt is not None and k[1] > scene.skirt[f][:, 1].mean():
                shin_depth = min(shin_depth, skirt_depth - 1e-3)
        leg_paint = bottom if ch.bottom == "trousers" else ch.legs
        capsule(h, k, body.thigh_r, body.thigh_r * 0.78, leg_paint, thigh_depth)
        if ch.bottom == "shorts":
            capsule(
                h, h + 0.5 * (k - h), body.thigh_r * 1.12, body.thigh_r * 1.05, bottom, thigh_depth + 1e-4
            )
        capsule(k, a, body.thigh_r * 0.78, body.thigh_r * 0.55, leg_paint, shin_depth)
        capsule(a, toe, body.thigh_r * 0.55, body.thigh_r * 0.5, ch.shoes, (a[2] + toe[2]) / 2 - 0.01)
    if scene.skirt is not None:
        skirt = _hull(scene.screen(np.concatenate([waist_ring, hip_ring, scene.skirt[f]])))
        skirt_frame = _part_frame(scene.screen(pelvis), scene.screen(scene.skirt[f].mean(axis=0)), scroll)
        add(skirt_depth, lambda c: c.polygon(skirt, bottom, skirt_frame))

    if scene.hair is not None:
        mass = _hull(scene.screen(scene.hair[f].reshape(-1, 3)))
        hair_rgb = tuple(int(v * 0.85) for v in ch.hair.color)
        add(float(scene.hair[f][..., 2].mean()) - 1e-3, lambda c: c.polygon(mass, hair_rgb))
        for strand in scene.hair[f]:
            points = scene.screen(strand)
            add(float(strand[:, 2].mean()), _strand(points, ch.hair.color, body.head_a * 0.55 * px))
    return parts


def _strand(points: np.ndarray, color: RGB, width: float) -> Callable[[_Canvas], None]:
    fixed = np.round(points * 16).astype(np.int32)
    dark = tuple(int(v * 0.6) for v in color)
    thick = max(2, round(width))

    def draw(canvas: _Canvas) -> None:
        for target, value in ((canvas.rgb, dark), (canvas.alpha, 255)):
            cv2.polylines(target, [fixed], False, value, thick + 2, cv2.LINE_8, 4)
        cv2.polylines(canvas.rgb, [fixed], False, color, thick, cv2.LINE_8, 4)

    return draw


def _motif(scene: _Scene, f: int) -> Callable[[_Canvas], None]:
    """A print on the front of the top: buttons, a round logo, a V-neck or a chest band."""
    ch, p, body = scene.character, scene.posed, scene.character.body
    pelvis, rt = p.pelvis[f], p.r_torso[f]
    length, front = body.torso_len, body.thickness / 2 * 1.02
    color = ch.motif_color

    def at(local: np.ndarray) -> np.ndarray:
        return scene.screen(pelvis + np.asarray(local) @ rt.T)

    dot = np.c_[_CIRCLE, np.zeros(12)]  # a unit circle facing the camera
    shapes: list[tuple[np.ndarray, RGB]] = []
    if ch.motif == "buttons":
        for y in np.linspace(0.85, 0.3, 4) * length:
            shapes.append((at(np.array([0, y, front * 1.02]) + 0.008 * dot), color))
    elif ch.motif == "logo":
        shapes.append((at(np.array([0, 0.6 * length, front * 1.04]) + 0.045 * dot), color))
    elif ch.motif == "vneck":
        vee = np.array([[-0.04, length, front * 0.6], [0.04, length, front * 0.6], [0, 0.8 * length, front]])
        shapes.append((at(vee), scene.skin))
    elif ch.motif == "band":
        theta = np.linspace(0, np.pi, 9)
        x, z = body.chest_w / 2 * np.cos(theta) * 1.01, front * 1.04 * np.sin(theta)
        upper = np.c_[x, np.full(9, 0.66 * length), z]
        lower = np.c_[x, np.full(9, 0.54 * length), z]
        shapes.append((at(np.concatenate([upper, lower[::-1]])), color))
    polygons = [(_hull(points), paint) for points, paint in shapes]

    def draw(canvas: _Canvas) -> None:
        for polygon, paint in polygons:
            canvas.polygon(polygon, paint)

    return draw


def _draw_head(canvas: _Canvas, scene: _Scene, f: int) -> None:
    """Ray-cast the head ellipsoid, the hair volume and a bun: exact silhouettes at any turn, the face
    and hair painted in head coordinates so they turn with it."""
    ch, body, px = scene.character, scene.character.body, scene.per_unit
    a, b, c = body.head_a, body.head_b, body.head_c
    rotation = scene.posed.r_head[f]
    centre = scene.screen(scene.posed.head[f])
    hair = ch.hair
    v = hair.volume
    solids = [(np.zeros(3), np.array([a, b, c]))]
    if hair.style == "bob":
        solids.append((np.array([0, -0.06 * b, -0.08 * c]), np.array([a * v, b * v, c * v])))
    else:
        solids.append((np.array([0, 0.1 * b, -0.07 * c]), np.array([a * v, b * v * 0.97, c * v])))
    if hair.style == "bun":
        solids.append((np.array([0, 0.55 * b, -0.9 * c]), np.full(3, 0.45 * a)))
    reach = max(float(np.linalg.norm(o) + r.max()) for o, r in solids) * px + 2
    height, width = canvas.alpha.shape
    x0, y0 = max(int(centre[0] - reach), 0), max(int(centre[1] - reach), 0)
    x1, y1 = min(int(centre[0] + reach) + 1, width), min(int(centre[1] + reach) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dx, dy = (xs - centre[0]) / px, -(ys - centre[1]) / px
    base = dx[..., None] * rotation[0] + dy[..., None] * rotation[1]  # head-frame point at world z = 0
    toward = rotation[2]  # head-frame direction of world +z
    best = np.full(dx.shape, -np.inf)
    which = np.full(dx.shape, -1)
    for index, (offset, radii) in enumerate(solids):
        inverse = 1.0 / radii**2
        u = base - offset
        qa = float(np.sum(toward**2 * inverse))
        qb = np.sum(u * toward * inverse, axis=-1)
        qc = np.sum(u * u * inverse, axis=-1) - 1.0
        disc = qb * qb - qa * qc
        root = np.sqrt(np.maximum(disc, 0.0))
        z = (-qb + root) / qa
        if index == 1:  # the hair shell is open over the face: there one sees its inside, behind
            near = (u + z[..., None] * toward) / radii
            z = np.where(_hair_covers(near, hair.hairline), z, (-qb - root) / qa)
        nearer = (disc >= 0) & (z > best)
        best = np.where(nearer, z, best)
        which = np.where(nearer, index, which)
    hit = which >= 0
    if not hit.any():
        return
    q = base + np.where(hit, best, 0.0)[..., None] * toward
    colour = np.empty((*dx.shape, 3), dtype=np.float32)
    hair_rgb = np.float32(hair.color)
    on_head = which == 0
    x, y, zn = q[..., 0] / a, q[..., 1] / b, q[..., 2] / c
    colour[:] = hair_rgb * (0.95 + 0.05 * np.sin(np.arctan2(q[..., 0], q[..., 2]) * 37 + 9 * y))[..., None]
    skin = np.float32(scene.skin)
    head_rgb = np.broadcast_to(skin, colour.shape).copy()
    front = zn > 0
    if scene.face is not None:
        size = scene.face.shape[0] - 1
        cols = np.clip(((x + 1) / 2 * size).round().astype(int), 0, size)
        rows = np.clip(((1 - y) / 2 * size).round().astype(int), 0, size)
        oval = np.sqrt((x / 0.82) ** 2 + ((y + 0.12) / 0.92) ** 2)
        weight = (np.clip((1 - oval) / 0.2, 0, 1) * front)[..., None].astype(np.float32)
        head_rgb = weight * scene.face[rows, cols] + (1 - weight) * head_rgb
    else:
        _paint_face(head_rgb, x, y, front, ch)
    covered = _hair_covers(np.stack([x, y, zn], axis=-1), hair.hairline)
    if hair.style == "buzz":
        head_rgb = np.where(covered[..., None], 0.5 * head_rgb + 0.5 * hair_rgb, head_rgb)
    else:
        head_rgb = np.where(covered[..., None], colour, head_rgb)
    colour = np.where(on_head[..., None], head_rgb, colour)
    # Light from the upper front: surface normals in world space.
    offsets = np.stack([o for o, _ in solids])[np.maximum(which, 0)]
    radii = np.stack([r for _, r in solids])[np.maximum(which, 0)]
    normal = (q - offsets) / radii**2
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
    light = np.clip((normal @ rotation.T) @ _LIGHT, 0, 1)
    colour *= (0.72 + 0.32 * light)[..., None].astype(np.float32)
    region = canvas.rgb[y0:y1, x0:x1]
    np.copyto(region, np.clip(colour, 0, 255).astype(np.uint8), where=hit[..., None])
    canvas.alpha[y0:y1, x0:x1][hit] = 255


def _hair_covers(unit: np.ndarray, hairline: float) -> np.ndarray:
    """Whether hair covers a point of a head-like ellipsoid (in its unit coordinates): above the
    hairline on the forehead, lower toward the nape."""
    phi = np.arctan2(unit[..., 0], unit[..., 2])
    backness = (1 - np.cos(phi)) / 2
    return unit[..., 1] > hairline + (-0.6 - hairline) * backness**0.8


def _paint_face(rgb: np.ndarray, x: np.ndarray, y: np.ndarray, front: np.ndarray, ch: Character) -> None:
    face = ch.face
    nose = ((x / 0.09) ** 2 + ((y - NOSE_Y) / 0.1) ** 2 < 1) & front
    rgb[nose] *= 0.86
    mouth = ((x / 0.22) ** 2 + ((y - MOUTH_Y) / 0.075) ** 2 < 1) & front
    rgb[mouth] = face.mouth_color
    for ex in (-EYE_X, EYE_X):
        white = (((x - ex) / 0.17) ** 2 + ((y - EYE_Y) / 0.1) ** 2 < 1) & front
        iris = (((x - ex) / 0.1) ** 2 + ((y - EYE_Y) / 0.1) ** 2 < 1) & front
        brow = (np.abs(y - EYE_Y - 0.2) < 0.045) & (np.abs(x - ex) < 0.17) & front
        rgb[white] = (245, 245, 240)
        rgb[iris] = face.eye_color
        rgb[brow] = tuple(int(v * 0.7) for v in ch.hair.color)
        if face.glasses is not None:
            r = np.sqrt((x - ex) ** 2 + ((y - EYE_Y) * 1.15) ** 2)
            rgb[(r > 0.2) & (r < 0.27) & front] = face.glasses
    if face.glasses is not None:
        bridge = (np.abs(x) < EYE_X - 0.2) & (np.abs(y - EYE_Y) < 0.03) & front
        rgb[bridge] = face.glasses


# --- background, clip ---------------------------------------------------------------------------------


def _background(character: Character, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    bg = character.background
    a, b = (np.float32(c) for c in bg.colors)
    if bg.kind == "photo":
        image = textures.crop(bg.photo, bg.crop, (width, height)).astype(np.float32)
        image = cv2.GaussianBlur(image, (0, 0), 0.8)
    else:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        if bg.kind == "vgradient":
            t = ys / max(height - 1, 1)
        elif bg.kind == "dgradient":
            t = (xs / max(width - 1, 1) + ys / max(height - 1, 1)) / 2
        else:
            t = np.zeros_like(ys)
        image = a + t[..., None] * (b - a)
    if bg.floor is not None:
        horizon = int(bg.horizon * height)
        ramp = np.linspace(0.85, 1.1, height - horizon, dtype=np.float32)[:, None, None]
        image[horizon:] = np.clip(np.float32(bg.floor) * ramp, 0, 255)
    return image


def render_clip(character: Character, motion: Motion, size: tuple[int, int] = (128, 128)) -> PuppetClip:
    """Draw ``character`` performing ``motion`` on its background, ``size`` = (width, height)."""
    width, height = int(size[0]), int(size[1])
    if width < 8 or height < 8:
        raise ValueError(f"size must be at least 8x8, got {width}x{height}")
    scene = _scene(character, motion, (width, height))
    background = _background(character, (width, height))
    count = motion.num_frames
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    masks = np.empty((count, height, width), dtype=bool)
    big = (width * SUPERSAMPLE, height * SUPERSAMPLE)
    for f in range(count):
        canvas = _Canvas(*big)
        for _, _, draw in sorted(_parts(scene, f), key=lambda part: part[:2]):
            draw(canvas)
        rgb = cv2.resize(canvas.rgb, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = cv2.resize(canvas.alpha, (width, height), interpolation=cv2.INTER_AREA)
        cover = alpha.astype(np.float32)[..., None] / 255
        frames[f] = np.clip(_shadow(background, scene, f) * (1 - cover) + rgb + 0.5, 0, 255).astype(np.uint8)
        masks[f] = alpha >= 128
    return PuppetClip(
        frames=frames, keypoints=_keypoints(scene, big), masks=masks, kind=motion.kind, fps=motion.fps
    )


def _shadow(background: np.ndarray, scene: _Scene, f: int) -> np.ndarray:
    """A soft contact shadow on the floor under the feet (not part of the mask)."""
    feet = scene.screen(scene.posed.joints[f, [10, 13]]) / SUPERSAMPLE
    centre = (float(feet[:, 0].mean()), float(scene.origin[1] / SUPERSAMPLE))
    axes = (max(float(np.ptp(feet[:, 0])) / 2 + 0.08 * scene.per_unit / SUPERSAMPLE, 1.0),
            max(0.025 * scene.per_unit / SUPERSAMPLE, 1.0))  # fmt: skip
    shade = np.ones(background.shape[:2], dtype=np.float32)
    cv2.ellipse(shade, (centre, (2 * axes[0], 2 * axes[1]), 0), 0.6, -1, cv2.LINE_AA)
    return background * shade[..., None]


def _keypoints(scene: _Scene, big: tuple[int, int]) -> np.ndarray:
    points = scene.screen(scene.posed.joints)
    keypoints = np.ones((*points.shape[:2], 3))
    keypoints[..., 0] = (points[..., 0] + 0.5) / big[0]
    keypoints[..., 1] = (points[..., 1] + 0.5) / big[1]
    face = [0, 14, 15, 16, 17]
    keypoints[:, face, 2] = (scene.posed.normals[:, face, 2] > VISIBLE_NORMAL).astype(np.float64)
    return keypoints


def sample_clip(
    seed: int,
    frames: int = 24,
    size: tuple[int, int] = (128, 128),
    kind: str | None = None,
    fps: float = 12.0,
) -> PuppetClip:
    """A random puppet clip; ``kind`` None draws one of CLIP_KINDS from the seed. Deterministic: the same
    arguments give identical bytes."""
    if kind is None:
        kind = str(CLIP_KINDS[int(np.random.default_rng([_KIND_SALT, seed]).integers(len(CLIP_KINDS)))])
    character = sample_character(seed, kind)
    motion = sample_motion(seed, frames, kind, fps)
    return render_clip(character, motion, size)


def contact_sheet(
    seeds: Sequence[int], frames_per_clip: int = 6, size: tuple[int, int] = (128, 128)
) -> np.ndarray:
    """An RGB grid: one row per seed (a 24-frame clip of the seed's kind, labelled), ``frames_per_clip``
    evenly spaced frames from frame 0 across."""
    width, height = size
    label_width = max(64, width // 2)
    rows = []
    for seed in seeds:
        clip = sample_clip(seed, frames=max(24, frames_per_clip), size=size)
        picks = np.linspace(0, len(clip.frames) - 1, frames_per_clip).round().astype(int)
        label = np.full((height, label_width, 3), 30, dtype=np.uint8)
        for line, text in enumerate((f"seed {seed}", clip.kind)):
            cv2.putText(
                label,
                text,
                (4, 16 + 16 * line),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (230, 230, 230),
                1,
                cv2.LINE_AA,
            )
        rows.append(np.concatenate([label, *clip.frames[picks]], axis=1))
    return np.concatenate(rows, axis=0)
