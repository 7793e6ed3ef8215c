"""A CNN detector (v1) on onnxruntime (verify and scan) against the same detector on torch
(training): a saved CNN is exported, scores agree within 1e-4, a stale export is never used; and
verifying a clip with the shipped (trace) detector imports no torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from anima.detect import evidence, runtime, traces
from anima.detect.classifier import SyntheticVideoDetector
from anima.detect.evidence import DEFAULT_DETECTOR

REPO = Path(__file__).resolve().parent.parent


def _clips(photo: np.ndarray) -> list[np.ndarray]:
    """Frames of the sizes verify meets (below a patch, odd, 256 px, 720p), of a photo and of
    blurred noise (which the detector fires on)."""
    rng = np.random.default_rng(11)
    noise = rng.integers(0, 256, (4, 96, 128, 3), dtype=np.uint8)
    return [
        photo[:3, :40, :50],
        photo[3:7, 20:91, 30:123],
        photo[:6],
        np.stack([cv2.resize(frame, (1280, 720)) for frame in photo[:2]]),
        np.stack([cv2.GaussianBlur(frame, (0, 0), 2.0) for frame in noise]),
    ]


def _assert_same_scores(folder: Path, photo: np.ndarray) -> None:
    torch_detector = SyntheticVideoDetector.load(folder)
    onnx_detector = runtime.load(folder)
    assert onnx_detector is not None
    assert onnx_detector.threshold_ == torch_detector.threshold_
    for clip in _clips(photo):
        expected = torch_detector.frame_scores(clip)
        np.testing.assert_allclose(onnx_detector.frame_scores(clip), expected, rtol=0, atol=1e-4)
        score = float(np.mean(expected))
        assert onnx_detector.probability(score) == pytest.approx(torch_detector.probability(score), abs=1e-9)


@pytest.fixture(scope="module")
def cnn_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CNN detector trained for a few steps and saved (with its ONNX export)."""
    rng = np.random.default_rng(0)
    sharp = [rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8) for _ in range(4)]
    blurred = [np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in clip]) for clip in sharp]
    detector = SyntheticVideoDetector(patch=32, steps=3, batch_size=4, validation_fraction=0.5)
    folder = tmp_path_factory.mktemp("cnn") / "det"
    detector.fit(sharp + blurred, [0] * 4 + [1] * 4).save(folder)
    return folder


def test_a_saved_cnn_is_exported_and_scores_as_on_torch(
    cnn_folder: Path, astronaut_frames: np.ndarray
) -> None:
    model = onnx.load(str(cnn_folder / runtime.ONNX_NAME))
    recorded = {prop.key: prop.value for prop in model.metadata_props}
    assert recorded[runtime.WEIGHTS_SHA256] == runtime.weights_sha256(cnn_folder)
    _assert_same_scores(cnn_folder, astronaut_frames)


def test_verify_uses_the_onnx_cnn_and_the_numpy_trace_detector(cnn_folder: Path) -> None:
    evidence.load_detector.cache_clear()
    assert isinstance(evidence.load_detector(cnn_folder), runtime.OnnxDetector)
    assert isinstance(evidence.load_detector(DEFAULT_DETECTOR), traces.TraceScorer)


def test_a_stale_or_missing_export_falls_back_to_torch(cnn_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "det"
    shutil.copytree(cnn_folder, folder)
    model = onnx.load(str(folder / runtime.ONNX_NAME))
    onnx.helper.set_model_props(model, {runtime.WEIGHTS_SHA256: "0" * 64})  # other weights
    onnx.save(model, str(folder / runtime.ONNX_NAME))
    assert runtime.load(folder) is None
    assert isinstance(evidence.load_detector(folder), SyntheticVideoDetector)
    (folder / runtime.ONNX_NAME).unlink()
    assert runtime.load(folder) is None


NO_TORCH = """
import sys
from anima import Anima
import anima.cli
report = Anima(home=sys.argv[1]).verify(sys.argv[2])
assert report.detector is not None, "the detector did not run"
heavy = sorted(name for name in ("torch", "torchvision", "timm", "diffusers") if name in sys.modules)
print(report.verdict, heavy)
"""


def test_verify_and_the_cli_import_no_torch(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tmp_path / "home"), str(REPO / "samples" / "astronaut_pan.mp4")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("[]"), done.stdout
