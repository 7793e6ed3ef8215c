"""Training and measuring the detector: ``anima detector train`` / ``anima detector eval``.

The training pool holds every training clip as published plus damaged copies (uploads crop,
resize, blur and re-encode); calibration uses the validation split as published, so the threshold
lets 1% of held-out real clips through. (Calibrating on damaged copies as well put the threshold
above every blurred real clip and caught 10% of ours; the false-positive rate after each attack is
reported instead.) Evaluation reports AUC, AP and the true- and false-positive rates at the shipped
threshold and the TPR at 1% FPR, clean and per attack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from anima.detect.classifier import CONFIG_NAME, SyntheticVideoDetector
from anima.detect.dataset import ATTACKS, load_dataset, upload_damage
from anima.errors import BadInput

DAMAGED_COPIES = 2


def with_damaged_copies(
    clips: Sequence[np.ndarray], labels: np.ndarray, copies: int, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    pool, pool_labels = list(clips), list(labels)
    for _ in range(copies):
        pool += [upload_damage(clip, rng) for clip in clips]
        pool_labels += list(labels)
    return pool, np.array(pool_labels)


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """Share of positives above the threshold that lets ``fpr`` of these negatives through."""
    negatives = np.sort(scores[labels == 0])
    allowed = int(np.floor(fpr * len(negatives)))
    threshold = negatives[len(negatives) - allowed - 1]
    return float(np.mean(scores[labels == 1] > threshold))


def metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    if len(set(np.asarray(labels).tolist())) != 2:
        raise BadInput("measuring the detector needs real and generated clips in the split")
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "ap": float(average_precision_score(labels, scores)),
        "tpr_at_1pct_fpr": tpr_at_fpr(scores, labels, 0.01),
        "tpr_at_threshold": float(np.mean(scores[labels == 1] >= threshold)),
        "fpr_at_threshold": float(np.mean(scores[labels == 0] >= threshold)),
    }


def evaluate(
    detector: SyntheticVideoDetector, clips: Sequence[np.ndarray], labels: np.ndarray
) -> dict[str, dict[str, float]]:
    """Metrics on ``clips`` as they are and after each attack."""
    return {
        name: metrics(
            detector.decision_function([attack(clip) for clip in clips]), labels, detector.threshold_
        )
        for name, attack in ATTACKS.items()
    }


def train_detector(
    dataset: Path,
    output: Path,
    detector: SyntheticVideoDetector,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Fit on the train split (+ damaged copies), calibrate on val, save to ``output`` with the test
    metrics in its card; returns those metrics."""
    clips, labels, _ = load_dataset(dataset, "train")
    pool, pool_labels = with_damaged_copies(clips, labels, DAMAGED_COPIES, seed=detector.seed)
    val_clips, val_labels, _ = load_dataset(dataset, "val")
    detector.fit(pool, pool_labels, X_val=val_clips, y_val=val_labels, progress=progress)
    return _save_with_card(dataset, output, detector, labels, val_labels)


def recalibrate(dataset: Path, folder: Path) -> dict[str, dict[str, float]]:
    """Calibrate a trained detector anew on the val split and re-measure it on test (no training)."""
    detector = SyntheticVideoDetector.load(folder)
    card = json.loads((Path(folder) / CONFIG_NAME).read_text())
    detector.loss_history_ = [card["final_loss"]]
    _, train_labels, _ = load_dataset(dataset, "train")
    val_clips, val_labels, _ = load_dataset(dataset, "val")
    detector.calibrate(val_clips, val_labels)
    return _save_with_card(dataset, folder, detector, train_labels, val_labels)


def _save_with_card(
    dataset: Path, output: Path, detector: SyntheticVideoDetector, labels: np.ndarray, val_labels: np.ndarray
) -> dict[str, dict[str, float]]:
    test_clips, test_labels, _ = load_dataset(dataset, "test")
    results = evaluate(detector, test_clips, test_labels)
    card = {
        "data": {
            split: {"real": int(np.sum(split_labels == 0)), "ours": int(np.sum(split_labels == 1))}
            for split, split_labels in (("train", labels), ("val", val_labels), ("test", test_labels))
        },
        "final_loss": float(np.mean(detector.loss_history_[-100:])),
        "test_metrics": results,
    }
    detector.save(output, card)
    return results
