"""The production face backend: an insightface model pack (SCRFD detector, ArcFace descriptor) read
from a local folder through insightface's own loader, which picks each model's role from its ONNX
inputs and outputs (an SCRFD detector has >= 5 outputs; ArcFace takes a square 112 px face).

Installing a pack (nothing is downloaded at run time): ``pip install insightface`` (it brings
onnxruntime; for a GPU, replace that with onnxruntime-gpu), then, on a machine with internet, fetch
the pack (e.g. ``buffalo_l.zip`` from insightface's model-zoo release; mind its licence, which
covers non-commercial research unless you hold a commercial one), unzip it and copy the folder so
that its ONNX files sit directly inside::

    $ANIMA_HOME/models/insightface/buffalo_l/det_10g.onnx     (SCRFD-10G detector)
    $ANIMA_HOME/models/insightface/buffalo_l/w600k_r50.onnx   (ArcFace R50, WebFace600K)

(``antelopev2.zip`` unzips into ``antelopev2/antelopev2/``: copy the inner folder.) The pack's
other models (landmarks, gender/age) may stay; insightface opens them once at load and drops them.
Select it with ``load_backend("insightface:buffalo_l")``, or give ``model_dir`` for another root.

Thresholds: same person when the cosine distance (1 - cosine similarity) is below the pack's
entry in ``PACK_THRESHOLDS``. Every entry is insightface 2.1's own default: similarity 0.40 (the
``DEFAULT_THRESHOLD`` of its evaluation app, ``gui/core/constants.py``, and the calibrated
``similarity_threshold`` of its PrivateFrame config, ``app/privateframe/configs/base.yaml``),
i.e. distance 0.60. That is stricter than the 0.28-0.36 often used with buffalo_l, so errors go
towards refusing a consenting person rather than admitting a stranger. No real pack was available
where this was written: calibrate with ``benchmarks/faces.py --backend insightface:PACK`` before
relying on it. Packs not in the table need an explicit ``match_threshold``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from anima.config import load_settings
from anima.policy.faces.base import DetectedFace, FaceBackendError
from anima.policy.faces.distances import cosine
from anima.policy.faces.search import (
    ROTATIONS,
    Candidate,
    check_image,
    distinct,
    pixel_box,
    rotate,
    sharpness,
    unrotate,
    unrotate_box,
)

PACK_THRESHOLDS = {
    "buffalo_l": 0.60,
    "buffalo_m": 0.60,
    "buffalo_s": 0.60,
    "buffalo_sc": 0.60,
    "antelopev2": 0.60,
}
DETECTION_THRESHOLD = 0.5  # insightface's default SCRFD score threshold
BASE_SIZES = ((128, 128), (640, 640))  # insightface's defaults: 128 catches faces that fill the picture
# SCRFD's smallest anchors are 16 px at its input; a 20 px face must not shrink below that, so large
# pictures get one more, larger detector pass. Sizes come in steps so that few ORT sessions (one per
# size) are ever built.
SMALLEST_FACE, SMALLEST_ANCHOR, SIZE_STEP = 20, 16, 320


def detector_sizes(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Detector input sizes for a picture of ``shape`` that keep a 20 px face at 16 px or more."""
    needed = math.ceil(max(shape[:2]) * SMALLEST_ANCHOR / SMALLEST_FACE / SIZE_STEP) * SIZE_STEP
    return [*BASE_SIZES, (needed, needed)] if needed > BASE_SIZES[-1][0] else list(BASE_SIZES)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class InsightFaceBackend:
    """SCRFD detection with landmarks, ArcFace alignment (``norm_crop``) and descriptor, cosine distance.

    Args:
        pack: the pack's folder name, e.g. ``buffalo_l``.
        model_dir: the folder holding pack folders; default ``$ANIMA_HOME/models/insightface``.
        match_threshold: cosine distance under which two faces are one person; default from
            ``PACK_THRESHOLDS``.
    """

    metric = "cosine"

    def __init__(
        self,
        pack: str,
        model_dir: Path | None = None,
        *,
        match_threshold: float | None = None,
        home: Path | None = None,
    ) -> None:
        if not pack or Path(pack).name != pack:
            raise FaceBackendError(f"insightface pack must be a folder name such as buffalo_l, got {pack!r}")
        root = (
            Path(model_dir).expanduser()
            if model_dir is not None
            else Path(home or load_settings().home) / "models" / "insightface"
        )
        folder = root / pack
        if not any(folder.glob("*.onnx")):
            raise FaceBackendError(
                f"insightface pack {pack!r} not found: no .onnx files in {folder} "
                "(see anima.policy.faces.insightface_backend for how to install one)"
            )
        if match_threshold is None and pack not in PACK_THRESHOLDS:
            raise FaceBackendError(
                f"no calibrated threshold for insightface pack {pack!r}: "
                "give match_threshold (a cosine distance)"
            )
        self.name = f"insightface:{pack}"
        self.match_threshold = PACK_THRESHOLDS[pack] if match_threshold is None else match_threshold
        self._detector, self._recognizer, self._align = self._load(folder)

    @staticmethod
    def _load(folder: Path) -> tuple[Any, Any, Any]:
        try:
            from insightface.app import FaceAnalysis
            from insightface.utils import face_align
        except ImportError as exc:
            raise FaceBackendError(
                "the insightface face backend needs insightface: pip install insightface"
            ) from exc
        try:  # a folder path, never a bare name: insightface would try to download a bare name
            analysis = FaceAnalysis(name=str(folder), allowed_modules=["detection", "recognition"])
            analysis.prepare(ctx_id=0, det_thresh=DETECTION_THRESHOLD)
        except Exception as exc:  # a bad pack surfaces as an assertion, an ORT or a protobuf error alike
            raise FaceBackendError(f"cannot load insightface pack {folder}: {_first_line(exc)}") from exc
        detector, recognizer = analysis.models["detection"], analysis.models.get("recognition")
        if recognizer is None:
            raise FaceBackendError(f"insightface pack {folder} has no recognition (ArcFace) model")
        if not detector.use_kps:
            raise FaceBackendError(
                f"the detector in insightface pack {folder} gives no landmarks to align with"
            )
        return detector, recognizer, face_align.norm_crop

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face in an ``(H, W, 3)`` uint8 RGB image, in any of the four right-angle rotations."""
        image = check_image(image)
        bgr = image[:, :, ::-1]  # insightface works in OpenCV's channel order
        sizes = detector_sizes(image.shape)
        found = []
        for rotation in ROTATIONS:
            view = rotate(bgr, rotation)
            boxes, points = self._detector.detect(view, input_size=sizes)
            for row, kps in zip(boxes, points, strict=True):
                box = unrotate_box(row[:4], rotation, image.shape)
                found.append(Candidate(rotation, box, float(row[4]), (view, kps), rank=(float(row[4]),)))
        faces = [self._describe(candidate, image.shape) for candidate in distinct(found)]
        return sorted(faces, key=lambda face: -face.size)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Cosine distance, 1 - cosine similarity, between two ArcFace embeddings."""
        return cosine(a, b)

    def _describe(self, candidate: Candidate, shape: tuple[int, ...]) -> DetectedFace:
        view, kps = candidate.found
        with warnings.catch_warnings():  # norm_crop calls a scikit-image API deprecated in 0.26
            warnings.simplefilter("ignore", FutureWarning)
            chip = self._align(view, landmark=kps, image_size=self._recognizer.input_size[0])
        embedding = self._recognizer.get_feat(chip).ravel().astype(np.float32)
        return DetectedFace(
            box=pixel_box(candidate.box),
            landmarks=unrotate(np.asarray(kps, np.float64) + 0.5, candidate.rotation, shape) - 0.5,
            embedding=embedding,
            detection_score=candidate.score,
            sharpness=sharpness(cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)),
            rotation=candidate.rotation,
        )
