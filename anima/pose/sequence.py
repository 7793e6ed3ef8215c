"""``PoseSequence``: one person's OpenPose-18 body keypoints per frame, and its JSON file format.

The generator animates one person, so a sequence holds one skeleton per frame; readers of
multi-person files keep the main person of each frame (:func:`main_person`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anima.errors import BadInput

JOINT_NAMES = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
NUM_JOINTS = len(JOINT_NAMES)
NECK = 1

# The 17 bones of the OpenPose-18 skeleton as (parent, child), listed from the neck outward: every
# parent appears as a child (or is the neck) before its own children. The renderer draws them in
# this order, which is the order the public pose models were trained with.
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip

# OpenPose-family detectors mark a keypoint as found only above this score; the renderer and the
# main-person choice use the same line.
CONFIDENCE_THRESHOLD = 0.3

# A point further than this many canvases away is not a pose but unnormalised or garbage data.
MAX_COORDINATE = 10.0

FILE_FORMAT = "anima-pose"
FILE_VERSION = 1


@dataclass(frozen=True)
class PoseSequence:
    """One person's body pose per frame, normalised to a canvas.

    Attributes:
        keypoints: ``(frames, 18, 3)`` float array of x and y as fractions of the canvas width and
            height (a point may fall outside [0, 1] when a limb leaves the frame) and a confidence
            in [0, 1]; a keypoint at or under 0.3 counts as not found.
        fps: frames per second.
        width, height: the canvas, in pixels, the coordinates refer to; bone lengths and aspect
            ratios are measured on it.
    """

    keypoints: np.ndarray
    fps: float
    width: int
    height: int

    def __post_init__(self) -> None:
        keypoints = np.array(self.keypoints, dtype=np.float64)  # a copy: the caller keeps its own
        if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_JOINTS, 3):
            raise BadInput(f"pose keypoints must have shape (frames, 18, 3), got {keypoints.shape}")
        if keypoints.shape[0] == 0:
            raise BadInput("pose sequence has no frames")
        if not np.isfinite(keypoints).all():
            raise BadInput("pose keypoints contain NaN or infinite values")
        if np.abs(keypoints[..., :2]).max() > MAX_COORDINATE:
            raise BadInput(f"pose keypoints lie more than {MAX_COORDINATE:g} canvases away: not normalised?")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise BadInput(f"pose fps must be positive, got {self.fps}")
        if int(self.width) < 1 or int(self.height) < 1:
            raise BadInput(f"pose canvas must be at least 1x1 pixels, got {self.width}x{self.height}")
        keypoints[..., 2] = np.clip(keypoints[..., 2], 0.0, 1.0)
        keypoints.setflags(write=False)
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the canvas."""
        return self.width, self.height

    @property
    def visible(self) -> np.ndarray:
        """``(frames, 18)`` bool: which keypoints were found."""
        return self.keypoints[..., 2] > CONFIDENCE_THRESHOLD

    def pixels(self) -> np.ndarray:
        """``(frames, 18, 2)`` keypoint positions in canvas pixels, where lengths and angles are true."""
        return self.keypoints[..., :2] * np.array([self.width, self.height], dtype=np.float64)

    def has_person(self) -> bool:
        """Whether any frame shows at least one bone, i.e. there is something to animate."""
        visible = self.visible
        return any(bool((visible[:, a] & visible[:, b]).any()) for a, b in LIMBS)

    def save(self, path: Path) -> None:
        """Write the sequence as our JSON format (``"format": "anima-pose"``)."""
        document = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "joints": list(JOINT_NAMES),
            "frames": np.round(self.keypoints, 6).tolist(),
        }
        Path(path).write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def from_document(cls, document: dict[str, Any], source: str) -> PoseSequence:
        """Build a sequence from a parsed ``anima-pose`` JSON document; ``source`` names it in errors."""
        if document.get("version") != FILE_VERSION:
            raise BadInput(f"{source}: unsupported anima-pose version {document.get('version')!r}")
        try:
            return cls(
                keypoints=np.asarray(document["frames"], dtype=np.float64),
                fps=float(document["fps"]),
                width=int(document["width"]),
                height=int(document["height"]),
            )
        except KeyError as exc:
            raise BadInput(f"{source}: anima-pose file lacks the {exc.args[0]!r} field") from None
        except (TypeError, ValueError) as exc:
            raise BadInput(f"{source}: malformed anima-pose file ({exc})") from None

    @classmethod
    def load(cls, path: Path) -> PoseSequence:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        document = read_json(path)
        if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
            raise BadInput(f"{path}: not an anima-pose file")
        return cls.from_document(document, str(path))


def read_json(path: Path) -> object:
    """Parse a JSON file, turning every way it can be unreadable into one ``BadInput`` line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: malformed JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def person_score(person: np.ndarray, width: int, height: int) -> float:
    """How much a detected person looks like the subject: total confidence of the found keypoints times
    the diagonal (pixels) of their bounding box, so a complete, large figure beats a partial or
    distant one."""
    found = person[:, 2] > CONFIDENCE_THRESHOLD
    if found.sum() < 2:
        return 0.0
    points = person[found, :2] * np.array([width, height], dtype=np.float64)
    diagonal = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    return float(person[found, 2].sum()) * diagonal


def main_person(people: np.ndarray, width: int, height: int) -> np.ndarray:
    """The ``(18, 3)`` skeleton of the main person among ``(people, 18, 3)``; all-zero when none."""
    if len(people) == 0:
        return np.zeros((NUM_JOINTS, 3))
    scores = [person_score(person, width, height) for person in people]
    return np.asarray(people[int(np.argmax(scores))], dtype=np.float64)
