"""What the consent gate needs from face analysis: every face in a picture, with an identity descriptor
and the facts (size, sharpness) that decide whether it can be verified at all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from anima.errors import AnimaError, BadInput


class FaceBackendError(AnimaError):
    """A face backend cannot be used: missing model files, a missing package, a pack that does not load."""


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face found in an analysed image.

    Args:
        box: ``(left, top, right, bottom)`` in pixels of the analysed image, right and bottom exclusive
            (``image[top:bottom, left:right]`` is the face), clipped to the image.
        landmarks: ``(5, 2)`` float ``(x, y)`` pixel coordinates in the analysed image; the backend's
            five points (dlib: eye corners and the bottom of the nose; insightface: eye centres, nose tip,
            mouth corners).
        embedding: 1-D float32 identity descriptor; compare two with the backend's ``distance``.
        detection_score: the detector's own score (not comparable between backends).
        sharpness: variance of the Laplacian of the aligned face crop; low means blurred.
        rotation: 0, 90, 180 or 270: the face was found in the image turned counter-clockwise by this
            many degrees (``np.rot90(image, rotation // 90)``); 180 means the face is upside down.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    embedding: np.ndarray
    detection_score: float
    sharpness: float
    rotation: int

    @property
    def size(self) -> int:
        """Pixels across the face: the smaller side of the box."""
        left, top, right, bottom = self.box
        return min(right - left, bottom - top)


@runtime_checkable
class FaceBackend(Protocol):
    """A detector plus an identity descriptor; ``name`` identifies the descriptor space, so enrolments
    made with one backend are only ever compared with faces from a backend of the same name."""

    name: str
    metric: str
    match_threshold: float

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face in an ``(H, W, 3)`` uint8 RGB image, upright or not, largest first."""
        ...

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """How far apart two embeddings are; the same person when below ``match_threshold``."""
        ...


def load_backend(
    name: str = "dlib",
    *,
    model_dir: Path | None = None,
    match_threshold: float | None = None,
    home: Path | None = None,
) -> FaceBackend:
    """Load a face backend by name.

    Args:
        name: ``"dlib"`` (HOG detector, dlib's CNN detector when HOG finds no face),
            ``"dlib:cnn"`` (both detectors on every image: slower, finds more hard faces) or
            ``"insightface:PACK"`` (``"insightface"`` alone means ``buffalo_l``).
        model_dir: for dlib, the folder holding its three ``.dat`` files (default: the
            face-recognition-models package); for insightface, the folder holding pack folders
            (default: ``models/insightface`` under ``home``, else under the configured Anima home).
        match_threshold: distance under which two faces are the same person; default: the backend's.

    Example::

        backend = load_backend("dlib")
        faces = backend.analyze(rgb_image)  # every face, largest first
    """
    if match_threshold is not None and not 0 < match_threshold <= 2:
        raise BadInput(f"match_threshold must be in (0, 2], got {match_threshold}")
    kind, _, variant = name.partition(":")
    if kind == "dlib" and variant in ("", "cnn"):
        from anima.policy.faces.dlib_backend import DlibBackend

        return DlibBackend(model_dir, match_threshold=match_threshold, cnn_always=variant == "cnn")
    if kind == "insightface":
        from anima.policy.faces.insightface_backend import InsightFaceBackend

        return InsightFaceBackend(
            variant or "buffalo_l", model_dir, match_threshold=match_threshold, home=home
        )
    raise FaceBackendError(
        f"unknown face backend {name!r}: use 'dlib', 'dlib:cnn' or 'insightface:PACK' "
        "(e.g. 'insightface:buffalo_l')"
    )
