"""Benchmark the detector of this generator's output (issue 11): the issue's table for each detector
on the same held-out clips, the generalisation test, and the cost per frame.

Why: the detector is the only evidence left when someone runs the open code with the safeguards
removed; a trust-and-safety team needs to know what it catches after uploads, what it wrongly flags,
whether it holds for sampling settings it never saw, and what it costs per frame.

    OMP_NUM_THREADS=1 python benchmarks/detector.py DATASET [--detector DIR ...] [--generalisation] [--json F]

* the table: per detector folder (default: the shipped one), on the test split, clean / CRF 28 /
  0.5x / a random upload chain: AUC, TPR at 1% FPR, caught and flagged at its own threshold;
* ``--generalisation``: trace detectors trained on the train split without one slice of the
  sampling configurations (steps >= 15, strength >= 0.8, guidance > 1, 64-px clips, 24-frame clips;
  the two shape slices also leave out real clips of that shape), calibrated on val without it, and
  measured on the test split: AUC of its real clips against generated clips of the configurations
  seen and of those left out;
* the cost: ms per 256-px frame of the trace measurements and trees, on one core.

Targets (issue 11): AUC >= 0.995 clean; TPR at 1% FPR >= 95% clean, >= 90% after CRF 28 and 0.5x;
<= 1% of real clips flagged at the threshold; unseen configurations AUC >= 0.95; <= 20 ms a frame.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from anima.detect import traces
from anima.detect.classifier import SyntheticVideoDetector, TraceDetector
from anima.detect.dataset import ClipEntry, load_dataset
from anima.detect.evidence import load_detector
from anima.detect.runtime import DEFAULT_DETECTOR
from anima.detect.training import (
    CALIBRATION_DAMAGED_COPIES,
    TRACE_DAMAGED_COPIES,
    evaluate,
    flagged_by_source,
    measured_pool,
)

HOLD_OUTS: dict[str, tuple[Callable[[dict], bool], bool]] = {  # unseen?, also real clips of that shape?
    "steps >= 15": (lambda c: c["steps"] >= 15, False),
    "strength >= 0.8": (lambda c: c["strength"] >= 0.8, False),
    "guidance > 1": (lambda c: c["guidance"] > 1, False),
    "64x64 px": (lambda c: (c["width"], c["height"]) == (64, 64), True),
    "24 frames": (lambda c: c["frames"] == 24, True),
}
# The order of training.damaged_versions.
ATTACK_INDEX = {"clean": 0, "crf28": 1, "resize0.5": 2, "stamped": 3}


def cost_per_frame(folder: Path, repeats: int = 5) -> float:
    """ms per 256x256 frame of the detector in ``folder`` as ``verify`` runs it (numpy trees for a
    trace detector, onnxruntime for a CNN), on one core."""
    import cv2

    cv2.setNumThreads(1)
    detector = load_detector(folder)
    frames = np.random.default_rng(0).integers(0, 256, (12, 256, 256, 3), dtype=np.uint8)
    detector.frame_scores(frames)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector.frame_scores(frames)
        times.append((time.perf_counter() - start) / len(frames) * 1000)
    return float(np.median(times))


def table(dataset: Path, folders: list[Path]) -> dict[str, dict]:
    clips, labels, entries = load_dataset(dataset, "test")
    results = {}
    for folder in folders:
        detector = SyntheticVideoDetector.load(folder)
        results[str(folder)] = {
            "threshold": detector.threshold_,
            "metrics": evaluate(detector, clips, labels),
            "flagged_by_source": flagged_by_source(detector, clips, entries),
        }
    return results


def _measured(dataset: Path, split: str, copies: int, seed: int) -> tuple[list, np.ndarray, list[ClipEntry]]:
    """Measurements of every clip of a split in each version, grouped per clip."""
    clips, labels, entries = load_dataset(dataset, split)
    rows, _ = measured_pool(clips, labels, copies, seed)
    versions = 3 + copies
    return [rows[i : i + versions] for i in range(0, len(rows), versions)], labels, entries


def generalisation(dataset: Path) -> dict[str, dict]:
    train = _measured(dataset, "train", TRACE_DAMAGED_COPIES, 0)
    val = _measured(dataset, "val", CALIBRATION_DAMAGED_COPIES, 1)
    test = _measured(dataset, "test", 0, 2)
    found = {}
    for name, (unseen, shapes_too) in HOLD_OUTS.items():

        def keep(entry: ClipEntry, unseen: Callable = unseen, shapes_too: bool = shapes_too) -> bool:
            return not unseen(entry.config) if entry.label == 1 or shapes_too else True

        def pool(split: tuple, keep: Callable = keep) -> tuple[list, np.ndarray]:
            grouped, labels, entries = split
            chosen = [i for i, entry in enumerate(entries) if keep(entry)]
            rows = [row for i in chosen for row in grouped[i]]
            return rows, np.repeat(labels[chosen], [len(grouped[i]) for i in chosen])

        detector = TraceDetector().fit_rows(*pool(train), *pool(val))
        grouped, _, entries = test
        real = [i for i, e in enumerate(entries) if e.label == 0]
        groups = {
            "seen": [i for i, e in enumerate(entries) if e.label == 1 and not unseen(e.config)],
            "unseen": [i for i, e in enumerate(entries) if e.label == 1 and unseen(e.config)],
        }
        row: dict[str, object] = {
            "train_generated": sum(1 for e in train[2] if e.label == 1 and keep(e)),
            "test_generated": {group: len(chosen) for group, chosen in groups.items()},
        }
        for group, chosen in groups.items():
            if not chosen:
                continue
            for attack, index in ATTACK_INDEX.items():
                scores = detector.scores_of_rows([grouped[i][index] for i in real + chosen])
                truth = np.array([0] * len(real) + [1] * len(chosen))
                row[f"{group} {attack}"] = {
                    "auc": float(roc_auc_score(truth, scores)),
                    "caught": float(np.mean(scores[truth == 1] >= detector.threshold_)),
                }
        found[name] = row
    return found


def _print_table(results: dict[str, dict]) -> None:
    for folder, result in results.items():
        print(f"\n{folder} (threshold {result['threshold']:.3f})")
        print("| | AUC | TPR @1% FPR | caught @threshold | flagged @threshold |\n|---|---|---|---|---|")
        for attack, m in result["metrics"].items():
            print(
                f"| {attack} | {m['auc']:.4f} | {m['tpr_at_1pct_fpr']:.1%} | {m['tpr_at_threshold']:.1%} "
                f"| {m['fpr_at_threshold']:.1%} |"
            )
        print("| real footage | clips | flagged | flagged after upload chain |\n|---|---|---|---|")
        for source, f in result["flagged_by_source"].items():
            print(f"| {source} | {int(f['clips'])} | {f['clean']:.1%} | {f['upload']:.1%} |")


def _print_generalisation(found: dict[str, dict]) -> None:
    print(
        "\n| left out of training | generated: train / test seen / test unseen | "
        + " | ".join(
            f"{group} {attack} AUC (caught)" for group in ("seen", "unseen") for attack in ATTACK_INDEX
        )
        + " |"
    )
    print("|---" * 8 + "|")
    for name, row in found.items():
        counts = row["test_generated"]
        cells = [
            f"{row[key]['auc']:.3f} ({row[key]['caught']:.0%})" if key in row else "-"
            for key in (f"{group} {attack}" for group in ("seen", "unseen") for attack in ATTACK_INDEX)
        ]
        print(
            f"| {name} | {row['train_generated']} / {counts['seen']} / {counts['unseen']} | "
            + " | ".join(cells)
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="Folder made by `anima detector dataset`.")
    parser.add_argument(
        "--detector", type=Path, action="append", help="Detector folder(s) (default: shipped)."
    )
    parser.add_argument("--generalisation", action="store_true", help="Run the generalisation test too.")
    parser.add_argument("--json", type=Path, help="Write every number here as JSON.")
    args = parser.parse_args()
    folders = args.detector or [DEFAULT_DETECTOR]
    report: dict[str, object] = {
        "features": len(traces.feature_names()),
        "ms_per_256px_frame": {str(folder): cost_per_frame(folder) for folder in folders},
    }
    for folder, cost in report["ms_per_256px_frame"].items():
        print(f"cost: {cost:.1f} ms per 256-px frame on one core (target <= 20): {folder}")
    report["table"] = table(args.dataset, folders)
    _print_table(report["table"])
    if args.generalisation:
        report["generalisation"] = generalisation(args.dataset)
        _print_generalisation(report["generalisation"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
