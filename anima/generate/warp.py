"""Per-limb warp: the reference picture moved bone by bone into a target pose.

This is what geometry alone gives, and what the default model is guided by (and measured against):
every target pixel near a bone is fetched from the reference through that bone's own frame —
position along the bone scales with the bone's length (so foreshortening works), distance across it
with the body's size (so limbs keep their thickness); the torso's width follows the signed shoulder
span, so a character seen from the back shows its front mirrored (the mistake the model learns to
fix). Pixels far from every bone come from the reference with its body painted out (the camera is
static). What the reference does not show (the back, hidden limbs) and what is not rigid (cloth,
hair) is exactly where this warp is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from anima.pose.sequence import CONFIDENCE_THRESHOLD, LIMBS, NECK

FACE_JOINTS = (0, 14, 15, 16, 17)
HIPS = (8, 11)
SHOULDERS = (2, 5)
# Half-widths in units of the body scale (neck to mid-hip): limbs, torso, head.
LIMB_RADIUS = 0.22
TORSO_RADIUS = 0.42
HEAD_RADIUS = 0.38
# Shoulder spans below this fraction of the reference's are clamped (a profile has none).
MIN_SPAN_RATIO = 0.15
INPAINT_RADIUS = 5


@dataclass(frozen=True)
class _Bone:
    start: np.ndarray  # (2,) pixels
    end: np.ndarray
    across: np.ndarray  # (2,) the unit of the perpendicular coordinate, pixels
    radius: float  # pixels


@dataclass(frozen=True)
class WarpResult:
    image: np.ndarray  # (H, W, 3) uint8
    coverage: np.ndarray  # (H, W) float32 in [0, 1]: 1 where a bone supplied the pixel


def _pixels(keypoints: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    width, height = size
    points = np.asarray(keypoints, dtype=np.float64)[:, :2] * (width, height)
    return points, np.asarray(keypoints)[:, 2] > CONFIDENCE_THRESHOLD


def _perpendicular(vector: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(vector)
    if length < 1e-6:
        return np.array([1.0, 0.0])
    return np.array([-vector[1], vector[0]]) / length


def _body_scale(points: np.ndarray, found: np.ndarray) -> float | None:
    hips = [points[j] for j in HIPS if found[j]]
    if not found[NECK] or not hips:
        return None
    return float(max(np.linalg.norm(np.mean(hips, axis=0) - points[NECK]), 1.0))


def _head_centre(points: np.ndarray, found: np.ndarray) -> np.ndarray | None:
    face = [points[j] for j in FACE_JOINTS if found[j]]
    return np.mean(face, axis=0) if face else None


def _bones(points: np.ndarray, found: np.ndarray, scale: float) -> dict[str, _Bone]:
    """The body as bones in one picture; only bones whose joints were found."""
    bones: dict[str, _Bone] = {}
    for a, b in LIMBS:
        if (a == NECK and b in (0, *SHOULDERS, *HIPS)) or a in FACE_JOINTS:
            continue  # the head and the torso are bones of their own
        if found[a] and found[b]:
            across = _perpendicular(points[b] - points[a]) * scale
            bones[f"{a}-{b}"] = _Bone(points[a], points[b], across, LIMB_RADIUS * scale)
    hips = [points[j] for j in HIPS if found[j]]
    if found[NECK] and hips:
        neck, pelvis = points[NECK], np.mean(hips, axis=0)
        if found[SHOULDERS[0]] and found[SHOULDERS[1]]:
            across = (points[SHOULDERS[1]] - points[SHOULDERS[0]]) / 2  # signed: flips in a back view
        else:
            # Toward the image's +x in a front view, as the shoulder span (right to left) is.
            across = -_perpendicular(pelvis - neck) * scale * TORSO_RADIUS
        bones["torso"] = _Bone(neck, pelvis, across, TORSO_RADIUS * scale)
    centre = _head_centre(points, found)
    if found[NECK] and centre is not None:
        across = _perpendicular(centre - points[NECK]) * scale
        bones["head"] = _Bone(points[NECK], centre, across, HEAD_RADIUS * scale)
    return bones


def _segment_coordinates(grid: np.ndarray, bone: _Bone) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every pixel: position along the bone (0 at start, 1 at end), signed distance across it in
    ``bone.across`` units, and the distance to the segment in pixels."""
    axis = bone.end - bone.start
    length2 = max(float(axis @ axis), 1e-6)
    offset = grid - bone.start
    along = offset @ axis / length2
    across_unit = bone.across / max(float(bone.across @ bone.across), 1e-6)
    across = offset @ across_unit
    nearest = bone.start + np.clip(along, 0, 1)[..., None] * axis
    distance = np.linalg.norm(grid - nearest, axis=-1)
    return along, across, distance


def _clamped_span(target: _Bone, reference: _Bone) -> _Bone:
    """A torso whose shoulder span nearly vanished (a profile) keeps a sliver of width."""
    ratio = np.linalg.norm(target.across) / max(np.linalg.norm(reference.across), 1e-6)
    if ratio >= MIN_SPAN_RATIO:
        return target
    direction = target.across if np.linalg.norm(target.across) > 1e-6 else reference.across
    direction = direction / max(np.linalg.norm(direction), 1e-6)
    across = direction * MIN_SPAN_RATIO * np.linalg.norm(reference.across)
    return _Bone(target.start, target.end, across, target.radius)


def _pixel_grid(width: int, height: int) -> np.ndarray:
    """(H, W, 2) pixel centres."""
    return np.stack(np.meshgrid(np.arange(width), np.arange(height)), axis=-1).astype(np.float64) + 0.5


def _skeleton_bones(keypoints: np.ndarray, size: tuple[int, int]) -> dict[str, _Bone] | None:
    """The bones of one skeleton on a ``size`` canvas; ``None`` without a neck and a hip."""
    points, found = _pixels(keypoints, size)
    scale = _body_scale(points, found)
    return None if scale is None else _bones(points, found, scale)


def _reach(bones: dict[str, _Bone], grid: np.ndarray) -> np.ndarray:
    mask = np.zeros(grid.shape[:2], dtype=bool)
    for bone in bones.values():
        mask |= _segment_coordinates(grid, bone)[2] < bone.radius
    return mask


def body_mask(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels within reach of some bone of this skeleton."""
    bones = _skeleton_bones(keypoints, size)
    if bones is None:
        return np.zeros((size[1], size[0]), dtype=bool)
    return _reach(bones, _pixel_grid(*size))


@dataclass(frozen=True)
class _Reference:
    """What every warp of one reference shares: its picture, bones, pixel grid and background."""

    image: np.ndarray
    bones: dict[str, _Bone] | None
    grid: np.ndarray
    background: np.ndarray


def _prepare(reference: np.ndarray, reference_keypoints: np.ndarray) -> _Reference:
    height, width = reference.shape[:2]
    bones = _skeleton_bones(reference_keypoints, (width, height))
    grid = _pixel_grid(width, height)
    background = reference
    ref_body = _reach(bones, grid) if bones is not None else np.zeros((height, width), dtype=bool)
    if ref_body.any():
        dilated = cv2.dilate(ref_body.astype(np.uint8), np.ones((5, 5), np.uint8))
        background = cv2.inpaint(reference, dilated, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    return _Reference(reference, bones, grid, background)


def _warp(prepared: _Reference, target_keypoints: np.ndarray) -> WarpResult:
    reference, grid, background = prepared.image, prepared.grid, prepared.background
    height, width = reference.shape[:2]
    tgt_bones = _skeleton_bones(target_keypoints, (width, height))
    ref_bones = prepared.bones
    if ref_bones is None or tgt_bones is None:
        return WarpResult(background.copy(), np.zeros((height, width), np.float32))
    best = np.full((height, width), np.inf)
    source = grid.copy()
    for name, target in tgt_bones.items():
        if name not in ref_bones:
            continue
        ref = ref_bones[name]
        if name == "torso":
            target = _clamped_span(target, ref)
        along, across, distance = _segment_coordinates(grid, target)
        closer = distance / target.radius < best
        fetched = ref.start + along[..., None] * (ref.end - ref.start) + across[..., None] * ref.across
        source[closer] = fetched[closer]
        best = np.where(closer, distance / target.radius, best)
    covered = best < 1.0
    map_x, map_y = (source[..., 0] - 0.5).astype(np.float32), (source[..., 1] - 0.5).astype(np.float32)
    moved = cv2.remap(reference, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Soft edge over the last 15% of each bone's reach, so the warp has no hard seam.
    coverage = np.clip((1.0 - best) / 0.15, 0.0, 1.0).astype(np.float32)
    image = moved * coverage[..., None] + background * (1 - coverage[..., None])
    image = np.where(covered[..., None], image, background)
    return WarpResult(image.round().astype(np.uint8), coverage)


def limb_warp(
    reference: np.ndarray, reference_keypoints: np.ndarray, target_keypoints: np.ndarray
) -> WarpResult:
    """The reference (H, W, 3) uint8 warped from its pose into the target pose (both (18, 3),
    normalised to the reference's canvas)."""
    return _warp(_prepare(reference, reference_keypoints), target_keypoints)


def warp_sequence(
    reference: np.ndarray, reference_keypoints: np.ndarray, target_keypoints: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Warp the reference into every pose of ``target_keypoints`` (frames, 18, 3):
    images (frames, H, W, 3) uint8 and coverage (frames, H, W) float32."""
    prepared = _prepare(reference, reference_keypoints)  # bones and background once, not per frame
    results = [_warp(prepared, pose) for pose in target_keypoints]
    return np.stack([r.image for r in results]), np.stack([r.coverage for r in results])
