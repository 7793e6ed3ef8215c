"""The trace detector (the shipped detector since v2): its measurements see the decoder's period-4
structure wherever a crop starts, its numpy trees score as scikit-learn's, it keeps the
scikit-learn estimator contract, and it trains, saves, loads and scores without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from anima.cli import app
from anima.detect import runtime, traces
from anima.detect.classifier import DetectorNotFitted, SyntheticVideoDetector, TraceDetector, _forest_of
from anima.detect.dataset import load_dataset
from anima.detect.training import flagged_by_source, measured_pool, train_detector
from anima.errors import BadInput
from anima.media import write_video

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread():
    """Boosting on a few hundred rows: threads only wait for each other (and for other tests)."""
    with threadpool_limits(1):
        yield


def _upsampled(count: int, seed: int, frames: int = 3, side: int = 64) -> list[np.ndarray]:
    """Clips as a decoder makes them: a 4x bilinear upsampling of a small latent picture."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(count):
        small = rng.integers(0, 256, (side // 4, side // 4, 3)).astype(np.uint8)
        frame = cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR)
        clips.append(np.stack([np.roll(frame, shift, axis=1) for shift in range(frames)]))
    return clips


def _filmed(count: int, seed: int, frames: int = 3, side: int = 64) -> list[np.ndarray]:
    """Clips as a camera films them: smooth content and fresh sensor noise in every frame."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(count):
        scene = cv2.GaussianBlur(rng.random((side, side, 3)).astype(np.float32) * 255, (0, 0), 2.0)
        noisy = scene[None] + rng.normal(0, 3, (frames, side, side, 3))
        clips.append(np.clip(noisy, 0, 255).round().astype(np.uint8))
    return clips


def _column(name: str) -> int:
    return traces.feature_names().index(name)


def test_the_phase_grid_sees_period_four_wherever_a_crop_starts() -> None:
    (ours,) = _upsampled(1, 0, frames=1, side=96)
    (filmed,) = _filmed(1, 1, frames=1, side=96)
    period_four = [_column("phase_energy_02"), _column("phase_energy_20")]
    upsampled = traces.frame_features(ours)[0, period_four]
    assert upsampled.min() > 5 * traces.frame_features(filmed)[0, period_four].max()
    for dy, dx in [(1, 2), (3, 1), (2, 3)]:  # a crop moves the phases, not the magnitudes
        shifted = traces.frame_features(ours[:, dy : dy + 88, dx : dx + 88])[0, period_four]
        np.testing.assert_allclose(shifted, upsampled, rtol=0.25)


def test_measurements_of_any_clip_size_are_finite_and_bounded() -> None:
    rng = np.random.default_rng(3)
    names = traces.feature_names()
    for shape in [(1, 8, 8, 3), (2, 7, 13, 3), (3, 300, 520, 3)]:
        rows = traces.frame_features(rng.integers(0, 256, shape, dtype=np.uint8))
        assert rows.shape == (shape[0], len(names)) and np.isfinite(rows).all()
    assert len(set(names)) == len(names)
    # A frame larger than MAX_SIDE is measured on its central square: the rest does not count.
    big = rng.integers(0, 256, (1, 400, 400, 3), dtype=np.uint8)
    edited = big.copy()
    edited[:, :50] = 0
    np.testing.assert_array_equal(traces.frame_features(big), traces.frame_features(edited))


def test_numpy_trees_score_as_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(400, 6))
    labels = (rows[:, 0] + rows[:, 1] * rows[:, 2] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=7, random_state=0).fit(rows, labels)
    fresh = rng.normal(size=(200, 6)).astype(np.float32)
    np.testing.assert_allclose(
        _forest_of(model).decision_function(fresh), model.decision_function(fresh), atol=1e-9
    )


def test_fit_separates_held_out_clips_and_saves_what_verify_scores(tmp_path: Path) -> None:
    clips, labels = _filmed(8, 10) + _upsampled(8, 11), np.array([0] * 8 + [1] * 8)
    val, val_labels = _filmed(6, 12) + _upsampled(6, 13), np.array([0] * 6 + [1] * 6)
    detector = TraceDetector(max_iter=20, min_samples_leaf=5)
    assert detector.fit(clips, labels, X_val=val, y_val=val_labels) is detector
    held_out, held_labels = _filmed(8, 14) + _upsampled(8, 15), np.array([0] * 8 + [1] * 8)
    scores = detector.decision_function(held_out)
    assert scores[held_labels == 1].min() > scores[held_labels == 0].max()
    assert np.array_equal(detector.predict(held_out), (scores >= detector.threshold_).astype(int))
    assert detector.predict(held_out)[held_labels == 0].sum() == 0
    proba = detector.predict_proba(held_out)
    assert proba.shape == (16, 2) and np.allclose(proba.sum(axis=1), 1)
    assert proba[held_labels == 1, 1].min() > proba[held_labels == 0, 1].max()
    np.testing.assert_allclose(detector.frame_scores(held_out[0]).mean(), scores[0], rtol=1e-6)

    detector.save(tmp_path / "det", {"note": "test"})
    config = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert config["kind"] == "traces" and config["note"] == "test"
    loaded = SyntheticVideoDetector.load(tmp_path / "det")  # the one loader reads either kind
    assert isinstance(loaded, TraceDetector) and loaded.get_params() == detector.get_params()
    np.testing.assert_allclose(loaded.decision_function(held_out), scores, atol=1e-9)
    assert loaded.threshold_ == detector.threshold_
    scorer = runtime.load(tmp_path / "det")  # verify's path: numpy only
    assert isinstance(scorer, traces.TraceScorer) and scorer.threshold_ == detector.threshold_
    for clip, score in zip(held_out, scores, strict=True):
        assert float(np.mean(scorer.frame_scores(clip))) == pytest.approx(score, abs=1e-6)
        assert scorer.probability(score) == pytest.approx(detector.probability(score), abs=1e-9)


def test_a_folder_of_other_features_or_a_broken_forest_is_refused(tmp_path: Path) -> None:
    clips, labels = _filmed(4, 20) + _upsampled(4, 21), [0] * 4 + [1] * 4
    TraceDetector(max_iter=5, min_samples_leaf=2, validation_fraction=0.5).fit(clips, labels).save(
        tmp_path / "det"
    )
    config_file = tmp_path / "det" / "detector.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "features": config["features"][:-1]}))
    assert runtime.load(tmp_path / "det") is None
    with pytest.raises(BadInput, match="features are not this version's"):
        SyntheticVideoDetector.load(tmp_path / "det")
    config_file.write_text(json.dumps(config))
    (tmp_path / "det" / traces.FOREST_NAME).write_bytes(b"not a forest")
    assert runtime.load(tmp_path / "det") is None
    with pytest.raises(BadInput, match="not a trace detector folder"):
        SyntheticVideoDetector.load(tmp_path / "det")


def test_training_pools_every_clip_clean_attacked_and_damaged() -> None:
    clips = _filmed(2, 30) + _upsampled(1, 31)
    rows, labels = measured_pool(clips, np.array([0, 0, 1]), copies=2, seed=0)
    # clean, crf28, 0.5x, stamped, 2 damaged
    assert len(rows) == 3 * 6 and labels.tolist() == [0] * 12 + [1] * 6
    assert rows[2].shape[1] == len(traces.feature_names()) and rows[2].shape[0] == rows[0].shape[0]


def test_parameters_are_checked_at_fit_and_unfitted_use_is_refused() -> None:
    detector = TraceDetector(max_iter=0, learning_rate=-1)
    assert clone(detector).get_params() == detector.get_params()
    clips, labels = _filmed(2, 0) + _upsampled(2, 1), [0, 0, 1, 1]
    with pytest.raises(BadInput, match=r"max_iter must be a whole number >= 1, got 0"):
        detector.fit(clips, labels)
    with pytest.raises(NotFittedError):
        check_is_fitted(detector)
    with pytest.raises(DetectorNotFitted, match="not trained"):
        detector.decision_function(clips)
    with pytest.raises(BadInput, match=r"X\[1\] is float64"):
        TraceDetector().fit([clips[0], clips[1] / 255.0], [0, 1])


NO_TORCH = """
import sys
import numpy as np
from anima.detect import evidence
found = evidence.score_frames(list(np.zeros((2, 64, 64, 3), np.uint8)), evidence.DEFAULT_DETECTOR)
assert found is not None
heavy = sorted(name for name in ("torch", "timm", "sklearn") if name in sys.modules)
print(type(evidence.load_detector(evidence.DEFAULT_DETECTOR)).__name__, heavy)
"""


def test_the_shipped_detector_scores_without_torch_or_scikit_learn() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "TraceScorer []", done.stdout


def _tiny_dataset(folder: Path) -> None:
    """A dataset folder as `anima detector dataset` writes it, of tiny synthetic clips."""
    lines = []
    for split, count, seed in (("train", 5, 40), ("val", 4, 50), ("test", 3, 60)):
        for label, clips in (
            (0, _filmed(count, seed, frames=4, side=48)),
            (1, _upsampled(count, seed, 4, 48)),
        ):
            for index, clip in enumerate(clips):
                path = f"{split}/{'ours' if label else 'real'}/clip-{seed}-{index}.mp4"
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                write_video(folder / path, clip, fps=12, crf=18)
                source = "anima-puppets" if label else ("puppet", "texture")[index % 2]
                lines.append({"path": path, "split": split, "label": label, "source": source, "seed": index})
    (folder / "dataset.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_a_trace_detector_trains_on_a_dataset_and_the_cli_prints_the_issue_table(tmp_path: Path) -> None:
    _tiny_dataset(tmp_path / "data")
    results = train_detector(
        tmp_path / "data", tmp_path / "det", TraceDetector(max_iter=20, min_samples_leaf=5)
    )
    assert set(results) == {"clean", "crf28", "resize0.5", "stamped", "upload"}
    config = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert config["kind"] == "traces" and config["data"]["test"] == {"real": 3, "ours": 3}
    assert config["test_metrics"] == results
    flagged = flagged_by_source(
        SyntheticVideoDetector.load(tmp_path / "det"), *load_dataset(tmp_path / "data", "test")[::2]
    )
    assert set(flagged) == {"puppet", "texture"} and flagged["puppet"]["clips"] == 2
    shown = CliRunner().invoke(
        app, ["detector", "eval", str(tmp_path / "data"), "--detector", str(tmp_path / "det")]
    )
    assert shown.exit_code == 0, shown.output
    for text in ("TPR @1% FPR", "caught", "flagged", "H.264 CRF 28", "0.5x resize", "upload chain", "met"):
        assert text in shown.output
