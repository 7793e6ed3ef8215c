"""Pose files from other tools, read into a :class:`PoseSequence`, and rendered skeleton videos.

JSON is recognised by its content, not its name:

- ours: ``{"format": "anima-pose", ...}`` (:meth:`PoseSequence.save`);
- OpenPose: ``{"people": [{"pose_keypoints_2d": [x, y, c, ...]}], "canvas_width": W, ...}`` per frame,
  COCO-18 or BODY_25 keypoints in pixels (or already normalised, as some ControlNet tools write);
  one file per frame in a folder, or one file holding a list of frames;
- DWPose as controlnet_aux's ``DWposeDetector`` builds it: ``{"bodies": {"candidate": [[x, y], ...],
  "subset": [[index or -1, ...], ...]}, "H": h, "W": w}`` with normalised candidates; one frame per
  dict, or a list of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anima.errors import BadInput, MediaError
from anima.media import Video, read_video
from anima.pose.sequence import (
    FILE_FORMAT,
    NUM_JOINTS,
    PoseSequence,
    main_person,
    read_json,
)

DEFAULT_FPS = 24.0
# BODY_25 lists a mid-hip (8) and feet (19-24) that COCO-18 lacks; these pick the COCO-18 joints.
BODY_25_TO_COCO_18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
# A rendered skeleton is mostly black, and what is not black is the palette's saturated colours.
SKELETON_MIN_BLACK_FRACTION = 0.6
SKELETON_MIN_SATURATION = 80
SKELETON_BLACK_LEVEL = 40
SKELETON_SAMPLE_FRAMES = 8


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _people_array(people: Sequence[Any], source: str) -> np.ndarray:
    """``(people, 18, 3)`` from OpenPose ``people`` entries, in the file's own coordinates."""
    skeletons = []
    for person in people:
        if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
            raise BadInput(f"{source}: an OpenPose person lacks 'pose_keypoints_2d'")
        flat = np.asarray(person["pose_keypoints_2d"] or [], dtype=np.float64)
        if flat.size == 0:
            continue
        if flat.size == 25 * 3:
            skeletons.append(flat.reshape(25, 3)[list(BODY_25_TO_COCO_18)])
        elif flat.size == NUM_JOINTS * 3:
            skeletons.append(flat.reshape(NUM_JOINTS, 3))
        else:
            raise BadInput(
                f"{source}: pose_keypoints_2d has {flat.size} numbers; expected 54 (COCO-18) or 75 (BODY_25)"
            )
    return np.asarray(skeletons, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)


def _frame_canvas(frame: dict[str, Any], width_key: str, height_key: str) -> tuple[int, int] | None:
    if width_key in frame and height_key in frame:
        return int(frame[width_key]), int(frame[height_key])
    return None


def _common_canvas(
    canvases: list[tuple[int, int] | None], canvas_size: tuple[int, int] | None, source: str
) -> tuple[int, int] | None:
    """The one canvas all frames refer to; frames of different sizes cannot form one sequence."""
    known = {canvas for canvas in canvases if canvas is not None}
    if len(known) > 1:
        sizes = ", ".join(f"{w}x{h}" for w, h in sorted(known))
        raise BadInput(f"{source}: frames refer to different canvas sizes ({sizes})")
    if known:
        (canvas,) = known
        if canvas[0] < 1 or canvas[1] < 1:
            raise BadInput(f"{source}: canvas size {canvas[0]}x{canvas[1]} is not positive")
        return canvas
    return canvas_size


def _read_openpose(
    frames: list[dict[str, Any]], source: str, canvas_size: tuple[int, int] | None, fps: float
) -> PoseSequence:
    people = [_people_array(frame["people"] or [], source) for frame in frames]
    canvas = _common_canvas(
        [_frame_canvas(frame, "canvas_width", "canvas_height") for frame in frames], canvas_size, source
    )
    found = np.concatenate([p[..., :2][p[..., 2] > 0] for p in people]) if people else np.zeros((0, 2))
    # Some ControlNet tools write normalised coordinates into the pixel field; no real pixel
    # skeleton fits inside one pixel, so a file whose points all lie within 1.0 is normalised.
    already_normalised = found.size > 0 and float(np.abs(found).max()) <= 1.0
    if canvas is None:
        raise BadInput(
            f"{source}: OpenPose JSON records no canvas_width/canvas_height; "
            "give the size of the video it was extracted from"
        )
    scale = np.ones(2) if already_normalised else np.array(canvas, dtype=np.float64)
    keypoints = []
    for frame_people in people:
        normalised = frame_people.copy()
        normalised[..., :2] /= scale
        keypoints.append(main_person(normalised, *canvas))
    return PoseSequence(np.stack(keypoints), fps=fps, width=canvas[0], height=canvas[1])


def _dwpose_people(frame: dict[str, Any], source: str) -> np.ndarray:
    """``(people, 18, 3)`` normalised skeletons from one DWPose ``bodies`` dict."""
    bodies = frame["bodies"]
    if not isinstance(bodies, dict) or "candidate" not in bodies or "subset" not in bodies:
        raise BadInput(f"{source}: DWPose 'bodies' needs 'candidate' and 'subset'")
    candidate = np.asarray(bodies["candidate"] or [], dtype=np.float64).reshape(-1, 2)
    subset = np.asarray(bodies["subset"] or [], dtype=np.float64).reshape(-1, NUM_JOINTS)
    # DWposeDetector drops scores once it has thresholded them into the subset; a 'score' array
    # kept beside it (as some forks do) restores them.
    scores = bodies.get("score")
    score = np.asarray(scores, dtype=np.float64).reshape(subset.shape) if scores is not None else None
    people = np.zeros((len(subset), NUM_JOINTS, 3))
    for person, indices in enumerate(subset):
        for joint, index in enumerate(indices.astype(int)):
            if index < 0:
                continue
            if index >= len(candidate):
                raise BadInput(f"{source}: DWPose subset points at candidate {index} of {len(candidate)}")
            confidence = 1.0 if score is None else score[person, joint]
            people[person, joint] = (*candidate[index], confidence)
    return people


def _read_dwpose(
    frames: list[dict[str, Any]], source: str, canvas_size: tuple[int, int] | None, fps: float
) -> PoseSequence:
    canvas = _common_canvas([_frame_canvas(frame, "W", "H") for frame in frames], canvas_size, source)
    if canvas is None:
        raise BadInput(f"{source}: DWPose frames record no 'W'/'H'; give the size they refer to")
    keypoints = np.stack([main_person(_dwpose_people(frame, source), *canvas) for frame in frames])
    return PoseSequence(keypoints, fps=fps, width=canvas[0], height=canvas[1])


def _frame_kind(frame: object) -> str | None:
    if isinstance(frame, dict):
        if "people" in frame:
            return "openpose"
        if "bodies" in frame:
            return "dwpose"
    return None


def parse_pose_document(
    document: object, source: str, canvas_size: tuple[int, int] | None = None, fps: float | None = None
) -> PoseSequence:
    """A :class:`PoseSequence` from parsed JSON in any supported format (see the module doc)."""
    if isinstance(document, dict) and document.get("format") == FILE_FORMAT:
        return PoseSequence.from_document(document, source)
    frames: list[Any] = document if isinstance(document, list) else [document]
    if not frames:
        raise BadInput(f"{source}: the pose file holds no frames")
    kinds = {_frame_kind(frame) for frame in frames}
    if len(kinds) != 1 or None in kinds:
        raise BadInput(
            f"{source}: not a pose file (expected anima-pose, OpenPose 'people[].pose_keypoints_2d' "
            "or DWPose 'bodies.candidate/subset' JSON)"
        )
    reader = _read_openpose if kinds == {"openpose"} else _read_dwpose
    try:
        sequence = reader(frames, source, canvas_size, fps or DEFAULT_FPS)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{source}: malformed pose data ({exc})") from None
    if not sequence.has_person():
        raise BadInput(f"{source}: the pose has no people in it (no frame shows a single bone)")
    return sequence


def read_pose_json(
    path: Path, canvas_size: tuple[int, int] | None = None, fps: float | None = None
) -> PoseSequence:
    """Read a pose JSON file, or a folder of per-frame OpenPose JSON files in natural name order.

    Args:
        path: the file or folder.
        canvas_size: (width, height) the coordinates refer to, for files that don't record it.
        fps: frame rate for formats that don't record it (default 24).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"), key=_natural_key)
        if not files:
            raise BadInput(f"{path}: folder holds no .json pose files")
        return parse_pose_document([read_json(file) for file in files], str(path), canvas_size, fps)
    return parse_pose_document(read_json(path), str(path), canvas_size, fps)


def looks_like_skeleton(frames: np.ndarray) -> bool:
    """Whether frames look like rendered OpenPose skeletons: mostly black, the rest saturated colour."""
    step = max(1, len(frames) // SKELETON_SAMPLE_FRAMES)
    sample = frames[::step][:SKELETON_SAMPLE_FRAMES].reshape(-1, 3).astype(np.int16)
    brightest = sample.max(axis=1)
    lit = brightest > SKELETON_BLACK_LEVEL
    if 1 - lit.mean() < SKELETON_MIN_BLACK_FRACTION:
        return False
    if not lit.any():
        return True
    saturation = brightest[lit] - sample[lit].min(axis=1)
    return bool(np.median(saturation) >= SKELETON_MIN_SATURATION)


def read_skeleton_video(path: Path) -> Video:
    """Decode an already rendered pose video, to be used as the conditioning frames as they are."""
    video = read_video(Path(path))
    if not looks_like_skeleton(video.frames):
        raise MediaError(
            f"{path}: does not look like a rendered pose video (mostly black with coloured limbs); "
            "to extract the pose from a driving video, pass it as 'video:PATH'"
        )
    return video
