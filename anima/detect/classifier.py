"""Detectors of this generator's output, for clips that carry no manifest and no watermark.

Both are scikit-learn classifiers whose samples are clips, not rows of features; a clip's score
(``decision_function``) is the mean of its frames' scores, Platt scaling (scikit-learn) turns scores
into ``predict_proba``, and ``predict`` fires at the threshold that lets ``target_fpr`` of the
held-out real clips through.

* :class:`TraceDetector` (shipped since v2): hand-made measurements of the generator's traces
  (:mod:`anima.detect.traces`: noise residuals, their period-4/8 structure, spectra, temporal
  statistics) scored by gradient-boosted trees. No torch; ``anima verify`` scores it with numpy.
* :class:`SyntheticVideoDetector` (v1): a timm backbone trained from scratch (no pretrained weights
  are reachable offline) on patches at the frames' own resolution, exported to ONNX for ``verify``.
  Its :meth:`~SyntheticVideoDetector.load` reads either kind of folder. torch and timm are imported
  only when a CNN is built, trained or loaded.
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
from typing import TYPE_CHECKING

import numpy as np
from safetensors import SafetensorError
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from anima.detect import runtime, traces
from anima.detect.runtime import CONFIG_NAME, ONNX_NAME, WEIGHTS_NAME, grid_patches, network_input
from anima.errors import BadInput

if TYPE_CHECKING:
    import torch

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


def _hold_out(
    items: list, labels: np.ndarray, fraction: float, seed: int
) -> tuple[list, np.ndarray, list, np.ndarray]:
    """A stratified ``fraction`` of the clips (or their measurements) set aside for calibration."""
    try:
        kept, held = train_test_split(
            np.arange(len(items)), test_size=fraction, stratify=labels, random_state=seed
        )
    except ValueError as exc:
        raise BadInput(
            f"cannot hold out validation_fraction={fraction} of {len(items)} clips "
            f"with both labels on each side ({exc}); pass X_val and y_val"
        ) from None
    return [items[i] for i in kept], labels[kept], [items[i] for i in held], labels[held]


def _whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _tensor(patches: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(network_input(patches))


class _ClipClassifier(ClassifierMixin, BaseEstimator):
    """What both detectors share as scikit-learn estimators whose samples are clips: the checks,
    and scoring clips from :meth:`frame_scores` (each detector's own; ``_trained`` names the
    attribute that training sets)."""

    _trained: str

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # samples are clips, not rows of features
        tags.classifier_tags.multi_class = False
        return tags

    def _check_ranges(
        self, smallest: dict[str, int], reals: dict[str, tuple[Callable[[float], bool], str]]
    ) -> None:
        """Whole-number hyper-parameters against their least values, real ones against their rule."""
        for name, least in smallest.items():
            value = getattr(self, name)
            if not _whole(value) or value < least:
                raise BadInput(f"{name} must be a whole number >= {least}, got {value!r}")
        for name, (ok, wanted) in reals.items():
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not ok(value):
                raise BadInput(f"{name} must be {wanted}, got {value!r}")

    def _require(self, *attributes: str) -> None:
        try:
            check_is_fitted(self, attributes)
        except NotFittedError:
            raise DetectorNotFitted("the detector is not trained: call fit() or load()") from None

    def frame_scores(self, frames: Clip) -> np.ndarray:
        """One score per frame of one clip; higher means more likely ours (each detector's own)."""
        raise NotImplementedError

    def decision_function(self, X: Sequence[Clip]) -> np.ndarray:
        """(N,) clip scores, the mean frame score; the higher, the more likely class 1 (ours).
        ``predict`` compares them with ``threshold_`` (not 0)."""
        self._require(self._trained)
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


class SyntheticVideoDetector(_ClipClassifier):
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

    _trained = "network_"

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

    def _check_params(self) -> None:
        """Hyper-parameters are checked when used, not when set (scikit-learn's convention)."""
        smallest = {"patch": 1, "patches_per_frame": 1, "steps": 1, "batch_size": 2, "seed": 0}
        reals = {
            "learning_rate": (lambda v: v > 0, "a number > 0"),
            "target_fpr": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "validation_fraction": (lambda v: 0 < v < 1, "a number in (0, 1)"),
        }
        self._check_ranges(smallest, reals)
        import timm

        if not isinstance(self.backbone, str) or not timm.is_model(self.backbone):
            raise BadInput(f"backbone must be a timm model name, got {self.backbone!r}")

    def _network(self) -> torch.nn.Module:
        import timm

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
            clips, labels, val_clips, val_labels = _hold_out(
                clips, labels, self.validation_fraction, self.seed
            )
        else:
            val_clips = _clips(X_val, "X_val")
            val_labels = _labels(y_val, len(val_clips), "y_val")
        self._train(clips, labels, augment, progress)
        return self.calibrate(val_clips, val_labels)

    def _train(
        self, clips: list[np.ndarray], labels: np.ndarray, augment: Augment | None, progress: Progress | None
    ) -> None:
        import torch

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
        self.calibrator_ = LogisticRegression().fit(scores[:, None], labels)
        self.threshold_ = _threshold(scores[labels == 0], self.target_fpr)
        self.classes_ = np.array(CLASSES)
        return self

    # -- scoring ------------------------------------------------------------------------------
    def frame_scores(self, frames: Clip) -> np.ndarray:
        """One logit per frame of one clip (the mean over its patches); higher means more likely ours."""
        import torch

        self._require("network_")
        frames = _clip(frames, "frames")
        with torch.no_grad():
            logits = self.network_(_tensor(grid_patches(frames, self.patch, self.patches_per_frame)))[:, 0]
        return logits.view(len(frames), -1).mean(dim=1).numpy()

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: Path, card: dict | None = None) -> None:
        """Weights and calibration into ``folder``, written beside it and swapped into place."""
        from safetensors.torch import save_file

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
        import torch

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
    def load(cls, folder: Path) -> SyntheticVideoDetector | TraceDetector:
        """A fitted detector from a folder written by :meth:`save` — or by :meth:`TraceDetector.save`
        (``"kind": "traces"``, the shipped detector since v2), which loads as a :class:`TraceDetector`."""
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG_NAME).read_text())
            if config.get("kind") == traces.KIND:
                return TraceDetector.load(folder)
            detector = cls(**config["params"])
            network = detector._network()
            network.load_state_dict(load_file(folder / WEIGHTS_NAME))
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise BadInput(f"{folder}: not a detector folder ({exc.__class__.__name__}: {exc})") from None
        detector.network_ = network.eval()
        threshold = config["threshold"]
        detector.threshold_ = float("inf") if threshold is None else float(threshold)
        detector.calibrator_ = _platt(config["platt"])
        detector.classes_ = np.array(CLASSES)
        return detector


def _threshold(real_scores: np.ndarray, target_fpr: float) -> float:
    """The smallest score that at most ``target_fpr`` of these real clips reach."""
    real = np.sort(real_scores)
    allowed = math.floor(target_fpr * len(real))
    return float(real[len(real) - allowed - 1]) + 1e-6 if allowed < len(real) else float("inf")


def _platt(values: dict) -> LogisticRegression:
    """A fitted one-feature logistic regression from its saved coefficient and intercept."""
    calibrator = LogisticRegression()
    calibrator.classes_ = np.array(CLASSES)
    calibrator.coef_ = np.array([[values["coef"]]])
    calibrator.intercept_ = np.array([values["intercept"]])
    calibrator.n_features_in_ = 1
    return calibrator


def _atomic_folder(folder: Path, write: Callable[[Path], None]) -> None:
    """``write`` into a folder beside ``folder``, then swap it into place (hand-written ``*.md``
    cards of the old folder are kept)."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    for card_file in folder.glob("*.md") if folder.is_dir() else ():
        shutil.copy2(card_file, partial / card_file.name)
    previous = folder.with_name(folder.name + ".old")
    if folder.exists():
        shutil.rmtree(previous, ignore_errors=True)
        folder.replace(previous)
    partial.replace(folder)
    shutil.rmtree(previous, ignore_errors=True)


Rows = list[np.ndarray]  # per clip, its (frames, features) trace measurements


class TraceDetector(_ClipClassifier):
    """Scores how likely a clip is this generator's output (class 1) rather than real (class 0),
    from the traces the generator leaves (:mod:`anima.detect.traces`: noise residuals, their
    period-4/8 structure, spectra, temporal statistics) with gradient-boosted trees — the shipped
    detector since v2. No torch, at training or at inference.

    Every frame is measured and scored on its own (log odds); a clip's score
    (:meth:`decision_function`) is the mean of its frames' scores. Platt scaling turns scores into
    ``predict_proba``; ``predict`` fires at the threshold that lets ``target_fpr`` of the held-out
    real clips through — pass those clips *with damaged copies* (as ``anima detector train`` does)
    and the threshold holds after upload damage.

    ``X`` is a sequence of clips, each a (frames, H, W, 3) uint8 RGB array (sizes may differ).

    Args:
        max_iter: boosting iterations (trees). Default 300.
        learning_rate: shrinkage of each tree. Default 0.05.
        max_leaf_nodes: leaves per tree. Default 15.
        min_samples_leaf: frames per leaf, at least. Default 20.
        l2_regularization: on the leaf values. Default 1.0.
        target_fpr: false-positive rate on held-out real clips that sets ``threshold_``. Default 0.01.
        validation_fraction: share of ``X`` held out (stratified) for calibration when ``fit`` gets
            no ``X_val``. Default 0.2.
        seed: for the hold-out and the trees. Default 0.

    Example::

        detector = TraceDetector().fit(clips, labels, X_val=val_clips, y_val=val_labels)
        detector.predict_proba(new_clips)[:, 1]  # probability that each is ours
    """

    _trained = "forest_"

    def __init__(
        self,
        max_iter: int = 300,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        l2_regularization: float = 1.0,
        target_fpr: float = 0.01,
        validation_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.seed = seed

    def _check_params(self) -> None:
        smallest = {"max_iter": 1, "max_leaf_nodes": 2, "min_samples_leaf": 1, "seed": 0}
        reals = {
            "learning_rate": (lambda v: v > 0, "a number > 0"),
            "l2_regularization": (lambda v: v >= 0, "a number >= 0"),
            "target_fpr": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "validation_fraction": (lambda v: 0 < v < 1, "a number in (0, 1)"),
        }
        self._check_ranges(smallest, reals)

    @staticmethod
    def measure(X: Sequence[Clip], argument: str = "X") -> Rows:
        """Each clip's trace measurements, (frames, features); what ``fit_rows`` and
        ``calibrate_rows`` take, so that a caller that trains several detectors measures once."""
        return [traces.frame_features(clip) for clip in _clips(X, argument)]

    # -- fitting ------------------------------------------------------------------------------
    def fit(
        self,
        X: Sequence[Clip],
        y: Sequence[int],
        *,
        X_val: Sequence[Clip] | None = None,
        y_val: Sequence[int] | None = None,
    ) -> TraceDetector:
        """Train on ``X`` labelled ``y``, then :meth:`calibrate` on held-out clips.

        Args:
            X: the training clips (add damaged copies of both labels for a detector that holds
                after uploads: see :func:`anima.detect.training.with_damaged_copies`).
            y: one label per clip, 0 (real) or 1 (ours); both must occur.
            X_val, y_val: held-out clips and labels for calibration. Default: a stratified
                ``validation_fraction`` of ``X``, set aside before training.

        Returns:
            ``self``, with ``forest_``, ``calibrator_``, ``threshold_`` and ``classes_``.
        """
        self._check_params()
        if (X_val is None) != (y_val is None):
            raise BadInput("X_val and y_val go together: pass both or neither")
        rows, labels = self.measure(X), _labels(y, len(X))
        val_rows = None if X_val is None else self.measure(X_val, "X_val")
        return self.fit_rows(rows, labels, val_rows, y_val)

    def fit_rows(
        self, rows: Rows, y: Sequence[int], val_rows: Rows | None = None, y_val: Sequence[int] | None = None
    ) -> TraceDetector:
        """:meth:`fit` on clips already measured by :meth:`measure`."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        self._check_params()
        labels = _labels(y, len(rows))
        if val_rows is None:
            rows, labels, val_rows, y_val = _hold_out(rows, labels, self.validation_fraction, self.seed)
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            early_stopping=False,
            random_state=self.seed,
        )
        model.fit(np.concatenate(rows), np.repeat(labels, [len(r) for r in rows]))
        self.forest_ = _forest_of(model)
        return self.calibrate_rows(val_rows, y_val)

    def calibrate(self, X: Sequence[Clip], y: Sequence[int]) -> TraceDetector:
        """Fit Platt scaling on held-out clips and put the threshold at ``target_fpr`` of their real
        ones. ``fit`` ends with this; call it alone to recalibrate a trained detector."""
        self._require("forest_")
        return self.calibrate_rows(self.measure(X), y)

    def calibrate_rows(self, rows: Rows, y: Sequence[int]) -> TraceDetector:
        """:meth:`calibrate` on clips already measured by :meth:`measure`."""
        self._require("forest_")
        self._check_params()
        labels = _labels(y, len(rows))
        scores = self.scores_of_rows(rows)
        self.calibrator_ = LogisticRegression().fit(scores[:, None], labels)
        self.threshold_ = _threshold(scores[labels == 0], self.target_fpr)
        self.classes_ = np.array(CLASSES)
        return self

    # -- scoring ------------------------------------------------------------------------------
    def scores_of_rows(self, rows: Rows) -> np.ndarray:
        """(N,) clip scores of clips already measured by :meth:`measure`."""
        self._require("forest_")
        return np.array([float(np.mean(self.forest_.decision_function(r))) for r in rows])

    def frame_scores(self, frames: Clip) -> np.ndarray:
        """One score (log odds) per frame of one clip; higher means more likely ours."""
        self._require("forest_")
        return self.forest_.decision_function(traces.frame_features(_clip(frames, "frames"))).astype(
            np.float32
        )

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: Path, card: dict | None = None) -> None:
        """Trees (``forest.safetensors``) and ``detector.json`` into ``folder``, written beside it
        and swapped into place; what :func:`anima.detect.runtime.load` reads without torch."""
        from safetensors.numpy import save_file

        self._require("forest_", "calibrator_", "threshold_")

        def write(partial: Path) -> None:
            save_file(self.forest_.arrays(), str(partial / traces.FOREST_NAME))
            config = {
                "kind": traces.KIND,
                "params": self.get_params(),
                "threshold": self.threshold_ if math.isfinite(self.threshold_) else None,
                "platt": {
                    "coef": float(self.calibrator_.coef_[0, 0]),
                    "intercept": float(self.calibrator_.intercept_[0]),
                },
                "baseline": self.forest_.baseline,
                "features": traces.feature_names(),
                **(card or {}),
            }
            (partial / CONFIG_NAME).write_text(json.dumps(config, indent=2))

        _atomic_folder(Path(folder), write)

    @classmethod
    def load(cls, folder: Path) -> TraceDetector:
        """A fitted detector from a folder written by :meth:`save`."""
        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG_NAME).read_text())
            detector = cls(**config["params"])
            scorer = traces.TraceScorer.load(folder, config)
        except (OSError, KeyError, ValueError, TypeError, SafetensorError) as exc:
            problem = f"{exc.__class__.__name__}: {exc}"
            raise BadInput(f"{folder}: not a trace detector folder ({problem})") from None
        detector.forest_ = scorer.forest
        detector.threshold_ = scorer.threshold_
        detector.calibrator_ = _platt(config["platt"])
        detector.classes_ = np.array(CLASSES)
        return detector


def _forest_of(model) -> traces.TraceForest:
    """A fitted binary ``HistGradientBoostingClassifier``'s trees as a
    :class:`~anima.detect.traces.TraceForest`."""
    nodes = [predictor.nodes for (predictor,) in model._predictors]
    if any(node["is_categorical"].any() for node in nodes):
        raise BadInput("categorical splits are not supported")
    offsets = np.cumsum([0] + [len(node) for node in nodes[:-1]])
    flat = np.concatenate(nodes)
    shift = np.repeat(offsets, [len(node) for node in nodes])
    arrays = {
        "feature": flat["feature_idx"].astype(np.int64),
        "threshold": flat["num_threshold"].astype(np.float64),
        "left": flat["left"].astype(np.int64) + shift,
        "right": flat["right"].astype(np.int64) + shift,
        "leaf": flat["is_leaf"].astype(np.uint8),
        "value": flat["value"].astype(np.float64),
        "roots": offsets.astype(np.int64),
    }
    return traces.TraceForest(arrays, float(np.ravel(model._baseline_prediction)[0]))
