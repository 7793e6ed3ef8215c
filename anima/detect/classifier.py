"""A detector of this generator's output, for clips that carry no manifest and no watermark.

:class:`SyntheticVideoDetector` follows scikit-learn's estimator API (``fit`` -> self,
``decision_function``, ``predict_proba``, ``predict``): a timm backbone trained from scratch (no
pretrained weights are reachable offline) on patches at the frames' own resolution — the traces a
VAE decoder leaves are fine detail that resizing would wash out. Frames are scored patch by patch,
a clip's score is the mean of its frames' logits, and :meth:`calibrate` fits Platt scaling
(scikit-learn) and sets the threshold at a chosen false-positive rate on held-out real clips.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression

from anima.errors import BadInput

Clip = np.ndarray  # (frames, H, W, 3) uint8 RGB
Augment = Callable[[Clip, np.random.Generator], Clip]
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "detector.json"


def _patches(frames: np.ndarray, patch: int, per_frame: int) -> np.ndarray:
    """``per_frame`` patches per frame on a fixed grid (deterministic), (N, patch, patch, 3); frames
    smaller than a patch are padded by reflection."""
    frames = np.asarray(frames)
    height, width = frames.shape[1:3]
    if height < patch or width < patch:
        pad = ((0, 0), (0, max(0, patch - height)), (0, max(0, patch - width)), (0, 0))
        frames = np.pad(frames, pad, mode="reflect")
        height, width = frames.shape[1:3]
    side = max(1, math.isqrt(per_frame))
    ys = np.linspace(0, height - patch, side).round().astype(int)
    xs = np.linspace(0, width - patch, side).round().astype(int)
    return np.stack([frame[y : y + patch, x : x + patch] for frame in frames for y in ys for x in xs])


def _tensor(patches: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class SyntheticVideoDetector:
    """Scores how likely a clip is this generator's output.

    Args:
        backbone: a timm model name (built with ``pretrained=False``).
        patch: side of the square patches the network sees, pixels.
        patches_per_frame: patches scored per frame at inference (a square grid).
        steps, batch_size, learning_rate: training length and optimiser settings.
        target_fpr: false-positive rate on held-out real clips that sets the threshold.
        seed: for patch sampling and initialisation.
    """

    def __init__(
        self,
        backbone: str = "mobilenetv3_small_050",
        patch: int = 64,
        patches_per_frame: int = 4,
        steps: int = 1500,
        batch_size: int = 48,
        learning_rate: float = 2e-3,
        target_fpr: float = 0.01,
        seed: int = 0,
    ) -> None:
        self.backbone = backbone
        self.patch = patch
        self.patches_per_frame = patches_per_frame
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.target_fpr = target_fpr
        self.seed = seed

    def _network(self) -> torch.nn.Module:
        return timm.create_model(self.backbone, pretrained=False, num_classes=1)

    def fit(
        self,
        clips: Sequence[Clip],
        labels: Sequence[int],
        augment: Augment | None = None,
        progress: Callable[[int, float], None] | None = None,
    ) -> SyntheticVideoDetector:
        """Train on clips labelled 1 (ours) or 0 (real); ``augment`` degrades a clip as uploads do
        (it is applied to about half the samples)."""
        labels = np.asarray(labels, dtype=np.int64)
        if len(clips) != len(labels) or len(set(labels.tolist())) != 2:
            raise BadInput("the detector needs clips of both labels, one label per clip")
        if self.steps < 1:
            raise BadInput(f"training needs at least one step, got {self.steps}")
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        network = self._network()
        optimizer = torch.optim.AdamW(network.parameters(), lr=self.learning_rate, weight_decay=0.05)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, self.learning_rate, total_steps=self.steps)
        positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        self.loss_history_: list[float] = []
        network.train()
        for step in range(self.steps):
            half = self.batch_size // 2
            chosen = np.concatenate(
                [rng.choice(positives, half), rng.choice(negatives, self.batch_size - half)]
            )
            patches = []
            for index in chosen:
                clip = clips[index]
                if augment is not None and rng.random() < 0.5:
                    clip = augment(clip, rng)
                frame = clip[rng.integers(len(clip))]
                if rng.random() < 0.5:
                    frame = frame[:, ::-1]
                patches.append(self._random_patch(frame, rng))
            logits = network(_tensor(np.stack(patches)))[:, 0]
            target = torch.from_numpy(labels[chosen]).float()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            self.loss_history_.append(float(loss.detach()))
            if progress is not None:
                progress(step + 1, float(np.mean(self.loss_history_[-50:])))
        self.network_ = network.eval()
        return self

    def _random_patch(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = frame.shape[:2]
        if height < self.patch or width < self.patch:
            return _patches(frame[None], self.patch, 1)[0]
        y = rng.integers(0, height - self.patch + 1)
        x = rng.integers(0, width - self.patch + 1)
        return frame[y : y + self.patch, x : x + self.patch]

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise BadInput("the detector is not trained: call fit() or load()")

    @torch.no_grad()
    def frame_scores(self, frames: Clip) -> np.ndarray:
        """One logit per frame (the mean over its patches); higher means more likely ours."""
        self._check_fitted()
        frames = np.asarray(frames)
        logits = self.network_(_tensor(_patches(frames, self.patch, self.patches_per_frame)))[:, 0]
        return logits.view(len(frames), -1).mean(dim=1).numpy()

    def decision_function(self, clips: Sequence[Clip]) -> np.ndarray:
        """Clip scores: the mean frame logit."""
        return np.array([float(np.mean(self.frame_scores(clip))) for clip in clips])

    def calibrate(self, clips: Sequence[Clip], labels: Sequence[int]) -> SyntheticVideoDetector:
        """Fit Platt scaling on held-out clips and put the threshold at ``target_fpr`` of their real ones."""
        scores = self.decision_function(clips)
        labels = np.asarray(labels)
        if len(set(labels.tolist())) != 2:
            raise BadInput("calibration needs held-out real and generated clips")
        self.calibrator_ = LogisticRegression().fit(scores[:, None], labels)
        real = np.sort(scores[labels == 0])
        # The smallest score that at most target_fpr of the real clips reach.
        allowed = math.floor(self.target_fpr * len(real))
        self.threshold_ = float(real[len(real) - allowed - 1]) + 1e-6 if allowed < len(real) else float("inf")
        return self

    def predict_proba(self, clips: Sequence[Clip]) -> np.ndarray:
        """(N, 2) calibrated probabilities of [real, ours]."""
        if not hasattr(self, "calibrator_"):
            raise BadInput("the detector is not calibrated: call calibrate()")
        return self.calibrator_.predict_proba(self.decision_function(clips)[:, None])

    def predict(self, clips: Sequence[Clip]) -> np.ndarray:
        """1 where the clip score reaches the threshold."""
        return (self.decision_function(clips) >= self.threshold_).astype(int)

    def probability(self, score: float) -> float:
        """The calibrated probability for one clip score."""
        return float(self.calibrator_.predict_proba(np.array([[score]]))[0, 1])

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: Path, card: dict | None = None) -> None:
        """Weights and calibration into ``folder``, written beside it and swapped into place."""
        self._check_fitted()
        if not hasattr(self, "calibrator_"):
            raise BadInput("calibrate the detector before saving it")
        folder = Path(folder)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in self.network_.state_dict().items()}, partial / WEIGHTS_NAME)
        config = {
            "params": {
                "backbone": self.backbone,
                "patch": self.patch,
                "patches_per_frame": self.patches_per_frame,
                "steps": self.steps,
                "batch_size": self.batch_size,
                "learning_rate": self.learning_rate,
                "target_fpr": self.target_fpr,
                "seed": self.seed,
            },
            "threshold": self.threshold_ if math.isfinite(self.threshold_) else None,
            "platt": {
                "coef": float(self.calibrator_.coef_[0, 0]),
                "intercept": float(self.calibrator_.intercept_[0]),
            },
            **(card or {}),
        }
        (partial / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        for card_file in folder.glob("*.md") if folder.is_dir() else ():  # hand-written cards stay
            shutil.copy2(card_file, partial / card_file.name)
        previous = folder.with_name(folder.name + ".old")
        if folder.exists():
            shutil.rmtree(previous, ignore_errors=True)
            folder.replace(previous)
        partial.replace(folder)
        shutil.rmtree(previous, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> SyntheticVideoDetector:
        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG_NAME).read_text())
            detector = cls(**config["params"])
            network = detector._network()
            network.load_state_dict(load_file(folder / WEIGHTS_NAME))
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise BadInput(f"{folder}: not a detector folder ({exc.__class__.__name__}: {exc})") from None
        detector.network_ = network.eval()
        threshold = config["threshold"]
        detector.threshold_ = float("inf") if threshold is None else float(threshold)
        calibrator = LogisticRegression()
        calibrator.classes_ = np.array([0, 1])
        calibrator.coef_ = np.array([[config["platt"]["coef"]]])
        calibrator.intercept_ = np.array([config["platt"]["intercept"]])
        calibrator.n_features_in_ = 1
        detector.calibrator_ = calibrator
        return detector
