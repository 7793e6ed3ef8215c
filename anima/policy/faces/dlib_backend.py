"""The bundled face backend: dlib's detectors, 5-point alignment and 128-D ResNet descriptor, offline.

Needs ``dlib-bin`` (prebuilt dlib) and ``face-recognition-models`` (the three model files). That
package cannot be imported without ``pkg_resources``, which new setuptools no longer has, so its
files are found without importing it.

Finding faces, for a gate that refuses every face it cannot verify:

1. HOG, upsampled x4 so that faces from ~16 px across are found, on the picture and on the picture
   turned by 90, 180 and 270 degrees (with HOG's own tolerance, every in-plane tilt is covered);
2. weak HOG detections (score < 0.3) are kept only when dlib's CNN confirms them on an enlarged crop:
   false alarms there (a hand) would make the gate refuse a consenting person's picture;
3. when that leaves nothing, dlib's CNN over the four rotations (``cnn_always``: on every picture);
   it also fires on faces turned sideways, so of its detections of one face the one kept is the
   one HOG, asked for even weak scores, finds most upright: only there does the alignment work.

Two descriptors are the same person when their Euclidean distance is below 0.6, dlib's own threshold
(99.38% on LFW). ``benchmarks/faces.py`` measures both sides of it on package-shipped photos.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from anima.policy.faces.base import DetectedFace, FaceBackendError
from anima.policy.faces.distances import euclidean
from anima.policy.faces.search import (
    ROTATIONS,
    Candidate,
    check_image,
    distinct,
    iou,
    pixel_box,
    rotate,
    sharpness,
    unrotate,
    unrotate_box,
)

SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
CNN_MODEL = "mmod_human_face_detector.dat"
MATCH_THRESHOLD = 0.6
# HOG scans an 80 px window; upsampling twice (x4) brings faces of 16-20 px up to it. The cost grows
# with the picture's area: about 1 s per megapixel per rotation (benchmarks/faces.py).
HOG_UPSAMPLE = 2
# dlib's CNN finds faces from ~60 px at x1 and costs about 4 s per scanned megapixel on CPU, so it
# doubles the picture only while the scanned area stays within this (about 1 s per rotation).
CNN_PIXELS = 512 * 512
# Below this score HOG's detections mix hard real faces (looking down, 16-20 px across: 0.05-0.5)
# with false alarms (a hand, a badge, a face seen sideways: 0.01-0.21); the CNN tells them apart on
# the detection's neighbourhood, enlarged so the face is 100 px (about 0.15 s per detection).
WEAK_HOG_SCORE = 0.3
CONFIRM_FACE_PX, CONFIRM_IOU = 100, 0.3
# dlib's CNN also fires on faces turned by up to 90 degrees, where the 5-point alignment fails and the
# descriptor is junk (0.5-0.76 from the same face upright). HOG fires only within ~35 degrees of
# upright, so among the CNN's detections of one face the one HOG scores best, however weakly (down to
# this), is the upright one.
UPRIGHT_HOG_FLOOR = -1.5
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # the alignment dlib's descriptor was trained with


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise FaceBackendError("the dlib face backend needs dlib: pip install dlib-bin") from exc
    return dlib


def default_model_dir() -> Path:
    """Where ``face-recognition-models`` keeps its files, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceBackendError(
            "the dlib face backend needs its model files: pip install face-recognition-models"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def cnn_upsample(shape: tuple[int, ...]) -> int:
    """How many times the CNN pass doubles a picture of ``shape``: small pictures more, large ones never."""
    pixels, times = shape[0] * shape[1], 0
    while pixels * 4 ** (times + 1) <= CNN_PIXELS:
        times += 1
    return times


class DlibBackend:
    """HOG detection (CNN where HOG finds no face, or always), 5-point alignment, 128-D descriptor.

    Args:
        model_dir: folder holding the three ``.dat`` files; default: face-recognition-models' folder.
        match_threshold: Euclidean distance under which two faces are one person (default 0.6).
        cnn_always: run the CNN detector on every image, not only when HOG finds nothing. Slower
            (about 1 s per rotation up to 512x512, 4 s per megapixel per rotation above), but an
            easy face then cannot hide a face only the CNN finds (a face looking down, tilted).
    """

    name = "dlib"  # both detector settings give the same descriptors, so enrolments are shared
    metric = "euclidean"

    def __init__(
        self, model_dir: Path | None = None, *, match_threshold: float | None = None, cnn_always: bool = False
    ) -> None:
        dlib = _import_dlib()
        folder = Path(model_dir).expanduser() if model_dir is not None else default_model_dir()
        missing = [f for f in (SHAPE_MODEL, DESCRIPTOR_MODEL, CNN_MODEL) if not (folder / f).is_file()]
        if missing:
            raise FaceBackendError(f"dlib model files missing in {folder}: {', '.join(missing)}")
        self.match_threshold = MATCH_THRESHOLD if match_threshold is None else match_threshold
        self.cnn_always = cnn_always
        self._dlib = dlib
        try:
            self._hog = dlib.get_frontal_face_detector()
            self._cnn = dlib.cnn_face_detection_model_v1(str(folder / CNN_MODEL))
            self._shapes = dlib.shape_predictor(str(folder / SHAPE_MODEL))
            self._encoder = dlib.face_recognition_model_v1(str(folder / DESCRIPTOR_MODEL))
        except RuntimeError as exc:  # dlib's word for an unreadable model file
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FaceBackendError(f"cannot load dlib models from {folder}: {reason}") from exc

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face in an ``(H, W, 3)`` uint8 RGB image, in any of the four right-angle rotations."""
        image = check_image(image)
        views = [(rotation, rotate(image, rotation)) for rotation in ROTATIONS]
        found = [c for rotation, view in views for c in self._hog_faces(view, rotation, image.shape)]
        found = [c for c in found if c.score >= WEAK_HOG_SCORE or self._confirmed(c)]
        if self.cnn_always or not found:
            found += [c for rotation, view in views for c in self._cnn_faces(view, rotation, image.shape)]
        faces = [self._describe(candidate, image.shape) for candidate in distinct(found)]
        return sorted(faces, key=lambda face: -face.size)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Euclidean distance between two 128-D descriptors."""
        return euclidean(a, b)

    def _hog_faces(self, view: np.ndarray, rotation: int, shape: tuple[int, ...]) -> list[Candidate]:
        """HOG's detections in one view; they outrank the CNN's, being upright in the view."""
        rects, scores, _ = self._hog.run(view, HOG_UPSAMPLE, 0.0)
        return [
            Candidate(
                rotation, unrotate_box(_box(rect), rotation, shape), score, (view, rect), rank=(1, score)
            )
            for rect, score in zip(rects, scores, strict=True)
        ]

    def _cnn_faces(self, view: np.ndarray, rotation: int, shape: tuple[int, ...]) -> list[Candidate]:
        """The CNN's detections in one view, ranked by how upright HOG finds each face there."""
        found = []
        for detection in self._cnn(view, cnn_upsample(view.shape)):
            rect, box = detection.rect, unrotate_box(_box(detection.rect), rotation, shape)
            rank = (0, self._uprightness(view, rect), detection.confidence)
            found.append(Candidate(rotation, box, detection.confidence, (view, rect), rank=rank))
        return found

    def _confirmed(self, candidate: Candidate) -> bool:
        """Whether the CNN also finds a face where HOG weakly did, in the box's enlarged neighbourhood."""
        crop, box = _neighbourhood(*candidate.found)
        return any(iou(box, _box(d.rect)) >= CONFIRM_IOU for d in self._cnn(crop, 0))

    def _uprightness(self, view: np.ndarray, rect: Any) -> float:
        """HOG's best score, however weak, for the face in ``rect``: high when it is upright in ``view``."""
        crop, box = _neighbourhood(view, rect)
        rects, scores, _ = self._hog.run(crop, 0, UPRIGHT_HOG_FLOOR)
        overlapping = [s for r, s in zip(rects, scores, strict=True) if iou(box, _box(r)) >= CONFIRM_IOU]
        return max(overlapping, default=-math.inf)

    def _describe(self, candidate: Candidate, shape: tuple[int, ...]) -> DetectedFace:
        view, rect = candidate.found
        points = self._shapes(view, rect)
        chip = self._dlib.get_face_chip(view, points, size=CHIP_SIZE, padding=CHIP_PADDING)
        descriptor = np.asarray(self._encoder.compute_face_descriptor(chip), dtype=np.float32)
        centres = np.array([(p.x + 0.5, p.y + 0.5) for p in points.parts()], np.float64)
        return DetectedFace(
            box=pixel_box(candidate.box),
            landmarks=unrotate(centres, candidate.rotation, shape) - 0.5,
            embedding=descriptor,
            detection_score=candidate.score,
            sharpness=sharpness(cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)),
            rotation=candidate.rotation,
        )


def _box(rect: Any) -> tuple[int, int, int, int]:
    """A dlib rectangle as (left, top, right, bottom) with right and bottom exclusive (dlib includes them)."""
    return rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1


def _neighbourhood(view: np.ndarray, rect: Any) -> tuple[np.ndarray, list[float]]:
    """A crop twice the size of ``rect`` around it, scaled so the face is 100 px, and the box in it."""
    side = max(rect.width(), rect.height(), 1)
    height, width = view.shape[:2]
    left = min(max(rect.left() - side // 2, 0), width - 1)
    top = min(max(rect.top() - side // 2, 0), height - 1)
    right = max(min(rect.right() + 1 + side // 2, width), left + 1)
    bottom = max(min(rect.bottom() + 1 + side // 2, height), top + 1)
    scale = CONFIRM_FACE_PX / side
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    crop = cv2.resize(view[top:bottom, left:right], None, fx=scale, fy=scale, interpolation=interpolation)
    box = [(edge - origin) * scale for edge, origin in zip(_box(rect), (left, top, left, top), strict=True)]
    return np.ascontiguousarray(crop), box
