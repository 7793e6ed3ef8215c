"""Hand-made measurements of the traces a generator leaves, one row of numbers per frame (numpy and
OpenCV only: no torch, no scikit-learn).

The detector's inputs keep what a CNN on resized patches would wash out:

* the **noise residual** (the frame minus its local prediction), its energy per colour channel, its
  tails and how the channels' residuals correlate;
* **periodic structure**: the VAE decoder upsamples its latent by 4 (then 8 over the whole stack),
  so the residual's energy and sign repeat with period 4/8 px. The residual is folded onto an 8x8
  phase grid and the grid's 2-D spectrum is kept — its magnitudes do not depend on where a crop
  starts, and after a 0.5x resize the period-8 structure moves to period 4, still on the grid;
  the residual's autocorrelation at lags 1-8 says the same in another way;
* the **spectrum** of the picture (azimuthally averaged, as a shape) — blur, and upsampling's
  missing top octave;
* **temporal evidence**: how a frame's residual correlates with the next one's (a sensor's noise is
  new every frame, a decoder's is tied to the content), frame differences and flicker.

A frame larger than :data:`MAX_SIDE` is measured on its central ``MAX_SIDE`` square, so the cost per
frame is bounded (about 3 ms on one core for a 256-px frame).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import cv2
import numpy as np

MAX_SIDE = 256
PHASE = 8  # the phase grid: the decoder's period 4 and the stack's period 8
LAGS = 8
SPECTRUM_BINS = 12
_EPS = 1e-6
_LAPLACE = np.array([[0, -0.25, 0], [-0.25, 1, -0.25], [0, -0.25, 0]], np.float32)
# The 8x8 phase grid's spectrum is conjugate-symmetric: rows 0..4 hold every distinct magnitude.
_HALF = [(u, v) for u in range(PHASE // 2 + 1) for v in range(PHASE) if (u, v) != (0, 0)]
_HALF = [(u, v) for u, v in _HALF if not (u in (0, PHASE // 2) and v > PHASE // 2)]


def feature_names() -> list[str]:
    """The name of each column :func:`frame_features` returns, in order."""
    names = ["log_energy_y", "log_energy_cb", "log_energy_cr", "kurtosis", "corr_rg", "corr_gb", "corr_rb"]
    names += [f"phase_energy_{u}{v}" for u, v in _HALF] + [f"phase_sign_{u}{v}" for u, v in _HALF]
    names += [f"acf_x{k}" for k in range(1, LAGS + 1)] + [f"acf_y{k}" for k in range(1, LAGS + 1)]
    names += [f"spectrum_{b}" for b in range(SPECTRUM_BINS)]
    names += ["clipped", "chroma", "log_side"]
    names += ["next_residual_corr", "next_diff", "next_brightness", "flicker", "energy_wobble"]
    return names


def _central(frames: np.ndarray) -> np.ndarray:
    height, width = frames.shape[1:3]
    y, x = max(0, (height - MAX_SIDE) // 2), max(0, (width - MAX_SIDE) // 2)
    return frames[:, y : y + MAX_SIDE, x : x + MAX_SIDE]


def _residual(plane: np.ndarray) -> np.ndarray:
    return cv2.filter2D(plane, -1, _LAPLACE, borderType=cv2.BORDER_REFLECT)


def _phase_spectrum(values: np.ndarray) -> np.ndarray:
    """``values`` folded onto the 8x8 phase grid (mean per phase), the grid's 2-D DFT magnitudes."""
    height, width = values.shape
    height, width = height - height % PHASE, width - width % PHASE
    if height == 0 or width == 0:
        return np.zeros(len(_HALF), np.float32)
    grid = values[:height, :width].reshape(height // PHASE, PHASE, width // PHASE, PHASE).mean(axis=(0, 2))
    spectrum = np.abs(np.fft.fft2(grid)) / PHASE**2
    return np.array([spectrum[u, v] for u, v in _HALF], np.float32)


@functools.lru_cache(maxsize=16)
def _spectrum_layout(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Hann window, each rfft2 bin's radial band, and the bins per band, for one frame size."""
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    radius = np.sqrt(np.fft.fftfreq(height)[:, None] ** 2 + np.fft.rfftfreq(width)[None, :] ** 2) / 0.5
    bands = np.minimum((radius * SPECTRUM_BINS).astype(np.int64), SPECTRUM_BINS).ravel()
    counts = np.maximum(np.bincount(bands, minlength=SPECTRUM_BINS + 1)[:SPECTRUM_BINS], 1)
    return window, bands, counts


def _spectrum_shape(plane: np.ndarray) -> np.ndarray:
    """Log power in SPECTRUM_BINS radial bands of normalised frequency, less their mean."""
    window, bands, counts = _spectrum_layout(*plane.shape)
    spectrum = np.fft.rfft2((plane - plane.mean()) * window)
    power = (spectrum.real**2 + spectrum.imag**2).ravel()
    totals = np.bincount(bands, power, SPECTRUM_BINS + 1)[:SPECTRUM_BINS]
    logs = np.log(totals / counts + _EPS)
    return (logs - logs.mean()).astype(np.float32)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / (np.sqrt((a * a).mean() * (b * b).mean()) + _EPS))


def frame_features(frames: np.ndarray) -> np.ndarray:
    """(frames, features) float32 for one clip, a (frames, H, W, 3) uint8 RGB array; see
    :func:`feature_names`. Each frame's temporal columns compare it with the next frame (the last
    with the one before); a one-frame clip has zeros there."""
    frames = _central(np.asarray(frames))
    rgb = frames.astype(np.float32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    cb, cr = rgb[..., 2] - luma, rgb[..., 0] - luma
    side = np.log(min(frames.shape[1:3]))
    rows, residuals = [], []
    for index in range(len(frames)):
        r = _residual(luma[index])
        residuals.append(r)
        squared = r * r
        energy = float(squared.mean()) + _EPS
        channels = [_residual(rgb[index, ..., c]) for c in range(3)]
        chroma = [_residual(cb[index]), _residual(cr[index])]
        lags = range(1, LAGS + 1)
        acf_x = [(r[:, :-k] * r[:, k:]).mean() / energy if k < r.shape[1] else 0.0 for k in lags]
        acf_y = [(r[:-k] * r[k:]).mean() / energy if k < r.shape[0] else 0.0 for k in lags]
        row = [
            np.log(energy),
            np.log(float((chroma[0] ** 2).mean()) + _EPS),
            np.log(float((chroma[1] ** 2).mean()) + _EPS),
            float((squared * squared).mean() / energy**2),
            _correlation(channels[0], channels[1]),
            _correlation(channels[1], channels[2]),
            _correlation(channels[0], channels[2]),
            *_phase_spectrum(squared / energy),
            *_phase_spectrum(r / np.sqrt(energy)),
            *acf_x,
            *acf_y,
            *_spectrum_shape(luma[index]),
            float(np.mean((frames[index] == 0) | (frames[index] == 255))),
            float(np.sqrt((cb[index] ** 2 + cr[index] ** 2).mean()) / 255),
            side,
        ]
        rows.append(row)
    brightness = luma.mean(axis=(1, 2))
    energies = np.log(np.array([(r * r).mean() for r in residuals]) + _EPS)
    flicker = float(np.std(brightness) / (np.mean(brightness) + 1.0))
    wobble = float(np.std(energies))
    scale = float(luma.std()) + 1.0
    for index, row in enumerate(rows):
        other = index + 1 if index + 1 < len(frames) else index - 1
        if other < 0:
            row += [0.0, 0.0, 0.0, flicker, wobble]
            continue
        row += [
            _correlation(residuals[index], residuals[other]),
            float(np.abs(luma[index] - luma[other]).mean() / scale),
            float(abs(brightness[index] - brightness[other]) / (brightness.mean() + 1.0)),
            flicker,
            wobble,
        ]
    return np.nan_to_num(np.array(rows, np.float32), nan=0.0, posinf=0.0, neginf=0.0)


# -- the fitted model at inference: gradient-boosted trees in numpy ---------------------------------
FOREST_NAME = "forest.safetensors"
KIND = "traces"  # detector.json's "kind" for a detector of this module
_FOREST_KEYS = ("feature", "threshold", "left", "right", "leaf", "value", "roots")


class TraceForest:
    """Gradient-boosted trees as flat arrays (written by
    :meth:`~anima.detect.classifier.TraceDetector.save`), evaluated with numpy: the raw score (log
    odds) scikit-learn's ``HistGradientBoostingClassifier.decision_function`` gives, without
    importing scikit-learn. A sample goes left where ``x[feature] <= threshold``."""

    def __init__(self, arrays: dict[str, np.ndarray], baseline: float) -> None:
        missing = [key for key in _FOREST_KEYS if key not in arrays]
        if missing:
            raise ValueError(f"the forest lacks {', '.join(missing)}")
        self.feature = arrays["feature"].astype(np.int64)
        self.threshold = arrays["threshold"].astype(np.float64)
        self.left = arrays["left"].astype(np.int64)
        self.right = arrays["right"].astype(np.int64)
        self.leaf = arrays["leaf"].astype(bool)
        self.value = arrays["value"].astype(np.float64)
        self.roots = arrays["roots"].astype(np.int64)
        self.baseline = float(baseline)

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: np.ascontiguousarray(getattr(self, key)) for key in _FOREST_KEYS}

    def decision_function(self, rows: np.ndarray) -> np.ndarray:
        """(N,) raw scores of (N, features) rows."""
        rows = np.asarray(rows, np.float64)
        node = np.broadcast_to(self.roots, (len(rows), len(self.roots))).copy()
        sample = np.arange(len(rows))[:, None]
        while not self.leaf[node].all():
            go_left = rows[sample, self.feature[node]] <= self.threshold[node]
            node = np.where(self.leaf[node], node, np.where(go_left, self.left[node], self.right[node]))
        return self.baseline + self.value[node].sum(axis=1)


class SavedCalibration:
    """A saved detector's threshold and Platt scaling, read from its ``detector.json``: what the
    scoring halves that ``verify`` and ``scan`` load (this module's :class:`TraceScorer`, a CNN's
    :class:`~anima.detect.runtime.OnnxDetector`) carry beside their ``frame_scores``."""

    def __init__(self, config: dict) -> None:
        threshold = config["threshold"]
        self.threshold_ = float("inf") if threshold is None else float(threshold)
        self.coef = float(config["platt"]["coef"])
        self.intercept = float(config["platt"]["intercept"])

    def probability(self, score: float) -> float:
        """Platt scaling, as the fitted logistic regression computes it."""
        return float(1.0 / (1.0 + math.exp(-(self.coef * score + self.intercept))))


class TraceScorer(SavedCalibration):
    """A saved trace detector's scoring half, torch- and scikit-learn-free, for ``verify`` and
    ``scan``: ``frame_scores``, ``probability`` and ``threshold_``, as
    :class:`~anima.detect.classifier.TraceDetector` has them."""

    def __init__(self, forest: TraceForest, config: dict) -> None:
        if config.get("features") != feature_names():
            raise ValueError("its features are not this version's (retrain it)")
        super().__init__(config)
        self.forest = forest

    @classmethod
    def load(cls, folder: Path, config: dict) -> TraceScorer:
        from safetensors.numpy import load_file

        arrays = load_file(str(folder / FOREST_NAME))
        return cls(TraceForest(arrays, config["baseline"]), config)

    def frame_scores(self, frames: np.ndarray) -> np.ndarray:
        """One score (log odds) per frame."""
        return self.forest.decision_function(frame_features(frames)).astype(np.float32)
