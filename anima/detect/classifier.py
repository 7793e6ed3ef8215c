"""A detector of this generator's output, for clips that carry no manifest and no watermark.

:class:`SyntheticVideoDetector` is a scikit-learn classifier whose samples are clips, not rows of
features. ``fit(X, y)`` trains a timm backbone from scratch (no pretrained weights are reachable
offline) on patches at the frames' own resolution — the traces a VAE decoder leaves are fine
detail that resizing would wash out — and then calibrates it on held-out clips. Frames are scored
patch by patch and a clip's score (:meth:`~SyntheticVideoDetector.decision_function`) is the mean
of its frames' logits; Platt scaling (scikit-learn) turns scores into ``predict_proba``, and
``predict`` fires at the threshold that lets ``target_fpr`` of the held-out real clips through.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from anima.detect import runtime
from anima.detect.runtime import CONFIG_NAME, ONNX_NAME, WEIGHTS_NAME, grid_patches, network_input
from anima.errors import BadInput

Clip = np.ndarray  # (frames, H, W, 3) uint8 RGB
Augment = Callable[[Clip, np.random.Generator], Clip]
Progress = Callable[[int, float], None]
CLASSES = (0, 1)  # real, this generator's output


class DetectorNotFitted(BadInput, NotFittedError):
    """The detector was used before ``fit`` or ``load``: a ``BadInput`` to the CLI, a
    ``NotFittedError`` to scikit-learn code. (Defined here so that :mod:`anima.errors`, which
    everything imports, does not import scikit-learn.)"""


def _clip(frames: object, argument: str) -> np.ndarray:
    """``frames`` as one (frames, H, W, 3) uint8 clip; the message names the argument."""
    clip = np.asarray(frames)
    if clip.ndim != 4 or clip.shape[-1] != 3 or 0 in clip.shape:
        raise BadInput(f"{argument} has shape {clip.shape}; a clip is (frames, height, width, 3)")
    if clip.dtype != np.uint8:
        raise BadInput(f"{argument} is {clip.dtype}; a clip is uint8 RGB")
    return clip


def _clips(X: Sequence[Clip], argument: str = "X") -> list[np.ndarray]:
    """A sequence of clips (sizes may differ) checked one by one."""
    clips = [_clip(clip, f"{argument}[{index}]") for index, clip in enumerate(X)]
    if not clips:
        raise BadInput(f"{argument} holds no clips")
    return clips


def _labels(y: Sequence[int], count: int, argument: str = "y") -> np.ndarray:
    """One label per clip, 0 (real) or 1 (ours), with both present."""
    labels = np.asarray(y)
    if labels.shape != (count,):
        raise BadInput(f"{argument} has shape {labels.shape}; expected one label for each of {count} clips")
    unknown = set(labels.tolist()) - set(CLASSES)
    if unknown:
        raise BadInput(f"{argument} holds {sorted(map(repr, unknown))}; labels are 0 (real) and 1 (ours)")
    if len(np.unique(labels)) != len(CLASSES):
        raise BadInput(f"{argument} needs clips of both labels, 0 (real) and 1 (ours)")
    return labels.astype(np.int64)


def _whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _tensor(patches: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(network_input(patches))


class SyntheticVideoDetector(ClassifierMixin, BaseEstimator):
    """Scores how likely a clip is this generator's output (class 1) rather than real (class 0).

    ``X`` is a sequence of clips, each a (frames, H, W, 3) uint8 RGB array (sizes may differ); so
    scikit-learn's generic estimator checks, which feed 2-D tables of floats, do not apply, while
    cloning, parameters, fitting and the prediction methods follow its contract.

    Args:
        backbone: a timm model name (built with ``pretrained=False``). Default ``"mobilenetv3_small_050"``.
        patch: side of the square patches the network sees, pixels. Default 64.
        patches_per_frame: patches scored per frame at inference (a square grid). Default 4.
        steps: training steps. Default 1500.
        batch_size: patches per step, half from each label. Default 48.
        learning_rate: peak of the one-cycle schedule (AdamW). Default 2e-3.
        target_fpr: false-positive rate on held-out real clips that sets ``threshold_``. Default 0.01.
        validation_fraction: share of ``X`` held out (stratified) for calibration when ``fit`` gets
            no ``X_val``. Default 0.2.
        seed: for the hold-out, patch sampling and initialisation. Default 0.

    Example::

        detector = SyntheticVideoDetector(steps=3500).fit(clips, labels, X_val=val_clips, y_val=val_labels)
        detector.predict_proba(new_clips)[:, 1]  # probability that each is ours
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
        validation_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.backbone = backbone
        self.patch = patch
        self.patches_per_frame = patches_per_frame
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # samples are clips, not rows of features
        tags.classifier_tags.multi_class = False
        return tags

    def _check_params(self) -> None:
        """Hyper-parameters are checked when used, not when set (scikit-learn's convention)."""
        smallest = {"patch": 1, "patches_per_frame": 1, "steps": 1, "batch_size": 2, "seed": 0}
        for name, least in smallest.items():
            value = getattr(self, name)
            if not _whole(value) or value < least:
                raise BadInput(f"{name} must be a whole number >= {least}, got {value!r}")
        reals = {
            "learning_rate": (lambda v: v > 0, "a number > 0"),
            "target_fpr": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "validation_fraction": (lambda v: 0 < v < 1, "a number in (0, 1)"),
        }
        for name, (ok, wanted) in reals.items():
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not ok(value):
                raise BadInput(f"{name} must be {wanted}, got {value!r}")
        if not isinstance(self.backbone, str) or not timm.is_model(self.backbone):
            raise BadInput(f"backbone must be a timm model name, got {self.backbone!r}")

    def _require(self, *attributes: str) -> None:
        try:
            check_is_fitted(self, attributes)
        except NotFittedError:
            raise DetectorNotFitted("the detector is not trained: call fit() or load()") from None

    def _network(self) -> torch.nn.Module:
        return timm.create_model(self.backbone, pretrained=False, num_classes=1)

    # -- fitting ------------------------------------------------------------------------------
    def fit(
        self,
        X: Sequence[Clip],
        y: Sequence[int],
        *,
        X_val: Sequence[Clip] | None = None,
        y_val: Sequence[int] | None = None,
        augment: Augment | None = None,
        progress: Progress | None = None,
    ) -> SyntheticVideoDetector:
        """Train on ``X`` labelled ``y``, then :meth:`calibrate` on held-out clips.

        Args:
            X: the training clips.
            y: one label per clip, 0 (real) or 1 (ours); both must occur.
            X_val, y_val: held-out clips and labels for calibration. Default: a stratified
                ``validation_fraction`` of ``X``, set aside before training.
            augment: degrades a clip as uploads do; applied to about half the training samples.
            progress: called after each step with the step number and the recent mean loss.

        Returns:
            ``self``, with ``network_``, ``loss_history_``, ``calibrator_``, ``threshold_`` and ``classes_``.
        """
        self._check_params()
        clips = _clips(X)
        labels = _labels(y, len(clips))
        if (X_val is None) != (y_val is None):
            raise BadInput("X_val and y_val go together: pass both or neither")
        if X_val is None:
            clips, labels, val_clips, val_labels = self._hold_out(clips, labels)
        else:
            val_clips = _clips(X_val, "X_val")
            val_labels = _labels(y_val, len(val_clips), "y_val")
        self._train(clips, labels, augment, progress)
        return self.calibrate(val_clips, val_labels)

    def _hold_out(
        self, clips: list[np.ndarray], labels: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
        """A stratified ``validation_fraction`` of the clips, for calibration."""
        try:
            kept, held = train_test_split(
                np.arange(len(clips)),
                test_size=self.validation_fraction,
                stratify=labels,
                random_state=self.seed,
            )
        except ValueError as exc:
            raise BadInput(
                f"cannot hold out validation_fraction={self.validation_fraction} of {len(clips)} clips "
                f"with both labels on each side ({exc}); pass X_val and y_val"
            ) from None
        return [clips[i] for i in kept], labels[kept], [clips[i] for i in held], labels[held]

    def _train(
        self, clips: list[np.ndarray], labels: np.ndarray, augment: Augment | None, progress: Progress | None
    ) -> None:
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        network = self._network()
        optimizer = torch.optim.AdamW(network.parameters(), lr=self.learning_rate, weight_decay=0.05)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, self.learning_rate, total_steps=self.steps)
        losses: list[float] = []
        network.train()
        for step in range(self.steps):
            patches, chosen = self._batch(clips, labels, augment, rng)
            logits = network(_tensor(patches))[:, 0]
            target = torch.from_numpy(labels[chosen]).float()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step + 1, float(np.mean(losses[-50:])))
        self.loss_history_ = losses
        self.network_ = network.eval()

    def _batch(
        self, clips: list[np.ndarray], labels: np.ndarray, augment: Augment | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """One random patch from each of ``batch_size`` clips, half of them ours; and those clips."""
        half = self.batch_size // 2
        chosen = np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == 1), half),
                rng.choice(np.flatnonzero(labels == 0), self.batch_size - half),
            ]
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
        return np.stack(patches), chosen

    def _random_patch(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = frame.shape[:2]
        if height < self.patch or width < self.patch:
            return grid_patches(frame[None], self.patch, 1)[0]
        y = rng.integers(0, height - self.patch + 1)
        x = rng.integers(0, width - self.patch + 1)
        return frame[y : y + self.patch, x : x + self.patch]

    def calibrate(self, X: Sequence[Clip], y: Sequence[int]) -> SyntheticVideoDetector:
        """Fit Platt scaling on held-out clips and put the threshold at ``target_fpr`` of their real
        ones. ``fit`` ends with this; call it alone to recalibrate a trained network."""
        self._require("network_")
        self._check_params()
        clips = _clips(X)
        labels = _labels(y, len(clips))
        scores = self.decision_function(clips)
        calibrator = LogisticRegression().fit(scores[:, None], labels)
        real = np.sort(scores[labels == 0])
        # The smallest score that at most target_fpr of the real clips reach.
        allowed = math.floor(self.target_fpr * len(real))
        threshold = float(real[len(real) - allowed - 1]) + 1e-6 if allowed < len(real) else float("inf")
        self.calibrator_, self.threshold_, self.classes_ = calibrator, threshold, np.array(CLASSES)
        return self

    # -- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def frame_scores(self, frames: Clip) -> np.ndarray:
        """One logit per frame of one clip (the mean over its patches); higher means more likely ours."""
        self._require("network_")
        frames = _clip(frames, "frames")
        logits = self.network_(_tensor(grid_patches(frames, self.patch, self.patches_per_frame)))[:, 0]
        return logits.view(len(frames), -1).mean(dim=1).numpy()

    def decision_function(self, X: Sequence[Clip]) -> np.ndarray:
        """(N,) clip scores, the mean frame logit; the higher, the more likely class 1 (ours).
        ``predict`` compares them with ``threshold_`` (not 0)."""
        self._require("network_")
        return np.array([float(np.mean(self.frame_scores(clip))) for clip in _clips(X)])

    def predict_proba(self, X: Sequence[Clip]) -> np.ndarray:
        """(N, 2) calibrated probabilities of ``classes_``: [real, ours]."""
        self._require("calibrator_")
        return self.calibrator_.predict_proba(self.decision_function(X)[:, None])

    def predict(self, X: Sequence[Clip]) -> np.ndarray:
        """(N,) 1 where the clip score reaches ``threshold_``, else 0."""
        self._require("threshold_", "classes_")
        return self.classes_[(self.decision_function(X) >= self.threshold_).astype(int)]

    def probability(self, score: float) -> float:
        """The calibrated probability that a clip with this score (from :meth:`frame_scores`'
        mean or :meth:`decision_function`) is ours."""
        self._require("calibrator_")
        return float(self.calibrator_.predict_proba(np.array([[score]]))[0, 1])

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: Path, card: dict | None = None) -> None:
        """Weights and calibration into ``folder``, written beside it and swapped into place."""
        self._require("network_", "calibrator_", "threshold_")
        folder = Path(folder)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in self.network_.state_dict().items()}, partial / WEIGHTS_NAME)
        config = {
            "params": self.get_params(),
            "threshold": self.threshold_ if math.isfinite(self.threshold_) else None,
            "platt": {
                "coef": float(self.calibrator_.coef_[0, 0]),
                "intercept": float(self.calibrator_.intercept_[0]),
            },
            **(card or {}),
        }
        (partial / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        with contextlib.suppress(ImportError):  # no onnx installed: verify scores with torch
            self.export_onnx(partial / ONNX_NAME, runtime.weights_sha256(partial))
        for card_file in folder.glob("*.md") if folder.is_dir() else ():  # hand-written cards stay
            shutil.copy2(card_file, partial / card_file.name)
        previous = folder.with_name(folder.name + ".old")
        if folder.exists():
            shutil.rmtree(previous, ignore_errors=True)
            folder.replace(previous)
        partial.replace(folder)
        shutil.rmtree(previous, ignore_errors=True)

    def export_onnx(self, path: Path, weights_sha256: str) -> None:
        """The network as ONNX for :mod:`anima.detect.runtime` (inference without torch), any
        number of patches a batch; ``weights_sha256`` names the ``model.safetensors`` it is."""
        import onnx

        self._require("network_")
        example = torch.zeros(1, 3, self.patch, self.patch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                self.network_.eval(),
                (example,),
                str(path),
                input_names=[runtime.INPUT_NAME],
                output_names=["logits"],
                dynamic_axes={runtime.INPUT_NAME: {0: "patches"}, "logits": {0: "patches"}},
                opset_version=17,
                dynamo=False,  # the torch.export-based exporter needs onnxscript, not installed
            )
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, {runtime.WEIGHTS_SHA256: weights_sha256})
        onnx.save(model, str(path))

    @classmethod
    def load(cls, folder: Path) -> SyntheticVideoDetector:
        """A fitted detector from a folder written by :meth:`save`."""
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
        calibrator.classes_ = np.array(CLASSES)
        calibrator.coef_ = np.array([[config["platt"]["coef"]]])
        calibrator.intercept_ = np.array([config["platt"]["intercept"]])
        calibrator.n_features_in_ = 1
        detector.calibrator_ = calibrator
        detector.classes_ = np.array(CLASSES)
        return detector
