"""What the detector says about one clip, as evidence for a verdict (torch-free: the shipped trace
detector runs on numpy and a CNN on onnxruntime, see :mod:`anima.detect.runtime`; torch is imported
only for a CNN folder without a current ``model.onnx``)."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anima.detect import runtime
from anima.detect.runtime import DEFAULT_DETECTOR

if TYPE_CHECKING:
    from anima.detect.classifier import SyntheticVideoDetector


@dataclass(frozen=True)
class DetectorEvidence:
    """Per-frame scores, their mean (the clip score), the calibrated probability of this generator's
    output, and the threshold (set at 1% false positives on held-out real clips)."""

    model: str
    frame_scores: list[float]
    clip_score: float
    probability: float
    threshold: float

    @property
    def fired(self) -> bool:
        return self.clip_score >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fired": self.fired}


def is_installed(folder: Path) -> bool:
    return (Path(folder) / "detector.json").is_file()


@functools.cache
def load_detector(folder: Path) -> runtime.OnnxDetector | runtime.TraceScorer | SyntheticVideoDetector:
    """The detector saved in ``folder``, loaded once per process: a trace detector on numpy, a CNN on
    onnxruntime where the folder has a current ONNX export, else on torch."""
    exported = runtime.load(folder)
    if exported is not None:
        return exported
    from anima.detect.classifier import SyntheticVideoDetector

    return SyntheticVideoDetector.load(folder)


def score_frames(frames: list[np.ndarray], folder: Path = DEFAULT_DETECTOR) -> DetectorEvidence | None:
    """The detector's evidence for these frames; ``None`` where no detector is installed there."""
    folder = Path(folder)
    if not frames or not is_installed(folder):
        return None
    detector = load_detector(folder)
    frame_scores = detector.frame_scores(np.stack(frames))
    clip_score = float(np.mean(frame_scores))
    return DetectorEvidence(
        model=folder.name,
        frame_scores=[round(float(score), 4) for score in frame_scores],
        clip_score=clip_score,
        probability=float(detector.probability(clip_score)),
        threshold=float(detector.threshold_),
    )
