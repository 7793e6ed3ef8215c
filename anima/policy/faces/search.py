"""Searching a picture under the four right-angle rotations and merging what each search finds.

Detectors are trained on upright faces (dlib's HOG tolerates about 30 degrees of tilt), so a face
turned on its side or upside down would slip past the consent gate unless the picture is searched
turned as well. A face found in a turned copy is reported in the original picture's pixels, and a
face found in several copies is reported once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import cv2
import numpy as np

from anima.errors import BadInput

ROTATIONS = (0, 90, 180, 270)
SAME_FACE_IOU = 0.4  # boxes of one face found in two rotations overlap well above this

Found = TypeVar("Found")


@dataclass(frozen=True)
class Candidate(Generic[Found]):
    """A detection before description: where it is in the original picture, the detector's score,
    what the backend needs to describe it, and its claim to be the one kept when detections of one
    face overlap (``rank``: highest wins)."""

    rotation: int
    box: tuple[float, float, float, float]
    score: float
    found: Found
    rank: tuple[float, ...]


def check_image(image: object) -> np.ndarray:
    """The image itself when it is what every backend expects: ``(H, W, 3)`` uint8 RGB."""
    if not isinstance(image, np.ndarray):
        raise BadInput(f"face analysis needs a numpy image, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise BadInput(f"face analysis needs an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    """``image`` turned counter-clockwise by ``rotation`` degrees, contiguous (dlib and ORT need that)."""
    return np.ascontiguousarray(np.rot90(image, rotation // 90))


def unrotate(points: np.ndarray, rotation: int, shape: Sequence[int]) -> np.ndarray:
    """Map ``(N, 2)`` continuous ``(x, y)`` coordinates in ``rotate(image, rotation)`` back to ``image``.

    ``shape`` is the original image's ``(height, width, ...)``. Continuous means pixel ``i`` spans
    ``[i, i + 1)``, so box edges map exactly; add 0.5 to pixel indices before mapping them.
    """
    height, width = shape[0], shape[1]
    x, y = points[:, 0], points[:, 1]
    mapped = {0: (x, y), 90: (width - y, x), 180: (width - x, height - y), 270: (y, height - x)}
    return np.stack(mapped[rotation], axis=1).astype(np.float64)


def unrotate_box(
    box: Sequence[float], rotation: int, shape: Sequence[int]
) -> tuple[float, float, float, float]:
    """A ``(left, top, right, bottom)`` box in the turned image as a box in the original, clipped to it."""
    left, top, right, bottom = box
    corners = unrotate(np.array([[left, top], [right, bottom]], np.float64), rotation, shape)
    (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    height, width = shape[0], shape[1]
    return (
        float(np.clip(x0, 0, width)),
        float(np.clip(y0, 0, height)),
        float(np.clip(x1, 0, width)),
        float(np.clip(y1, 0, height)),
    )


def pixel_box(box: Sequence[float]) -> tuple[int, int, int, int]:
    """Whole-pixel box that covers ``box``."""
    left, top, right, bottom = box
    return int(np.floor(left)), int(np.floor(top)), int(np.ceil(right)), int(np.ceil(bottom))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def distinct(candidates: list[Candidate[Found]]) -> list[Candidate[Found]]:
    """One candidate per face: the best-ranked of those whose boxes overlap (the first one wins ties)."""
    kept: list[Candidate[Found]] = []
    for candidate in sorted(candidates, key=lambda c: c.rank, reverse=True):
        if all(iou(candidate.box, other.box) < SAME_FACE_IOU for other in kept):
            kept.append(candidate)
    return kept


def sharpness(gray_chip: np.ndarray) -> float:
    """Variance of the Laplacian of an aligned grayscale face crop: the usual blur measure (low = blurred)."""
    return float(cv2.Laplacian(gray_chip, cv2.CV_64F).var())
