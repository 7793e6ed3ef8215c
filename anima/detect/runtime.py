"""The detector at inference, without torch.

A trace detector (``"kind": "traces"`` in ``detector.json``, the shipped one since v2) is numpy
through and through: hand-made trace measurements and gradient-boosted trees as arrays
(:class:`~anima.detect.traces.TraceScorer`). A CNN detector (v1) has its network exported to ONNX
(``model.onnx``, written by :meth:`~anima.detect.classifier.SyntheticVideoDetector.export_onnx`)
and run with onnxruntime.

Importing torch, torchvision and timm took 9 of the 11 seconds of a cold ``anima verify``; the
exported network gives the same frame scores (within 1e-4) in a fraction of that. The ONNX file
records the SHA-256 of the ``model.safetensors`` it was exported from, so a detector retrained
without a new export is never scored by a stale network: :func:`load` then says no, and the torch
path is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError

from anima.detect import traces
from anima.detect.traces import TraceScorer

DEFAULT_DETECTOR = Path(__file__).resolve().parent.parent / "weights" / "anima-detector"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "detector.json"
ONNX_NAME = "model.onnx"
WEIGHTS_SHA256 = "anima.weights_sha256"  # metadata key of the ONNX model
INPUT_NAME = "patches"


def grid_patches(frames: np.ndarray, patch: int, per_frame: int) -> np.ndarray:
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


def network_input(patches: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) patches as the network's float32 (N, 3, H, W) input in [-1, 1]."""
    return np.ascontiguousarray(patches.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(127.5) - 1


def weights_sha256(folder: Path) -> str:
    return hashlib.sha256((Path(folder) / WEIGHTS_NAME).read_bytes()).hexdigest()


class OnnxDetector(traces.SavedCalibration):
    """A saved detector's scoring half: ``frame_scores``, ``probability`` and ``threshold_``, as
    :class:`~anima.detect.classifier.SyntheticVideoDetector` has them."""

    def __init__(self, session: object, config: dict) -> None:
        super().__init__(config)
        self.session = session
        params = config["params"]
        self.patch = int(params.get("patch", 64))
        self.patches_per_frame = int(params.get("patches_per_frame", 4))

    def frame_scores(self, frames: np.ndarray) -> np.ndarray:
        """One logit per frame (the mean over its patches)."""
        inputs = network_input(grid_patches(frames, self.patch, self.patches_per_frame))
        logits = self.session.run(None, {INPUT_NAME: inputs})[0][:, 0]
        return logits.reshape(len(frames), -1).mean(axis=1)


def _threads() -> int:
    """A scan worker's share of the cores (its ``OMP_NUM_THREADS``); 0 lets onnxruntime choose."""
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "0")), 0)
    except ValueError:
        return 0


def load(folder: Path) -> OnnxDetector | TraceScorer | None:
    """The detector in ``folder`` without torch, or None where it cannot be: a trace detector whose
    files do not load, or a CNN without ``model.onnx``, with one exported from other weights than
    the folder's, or without onnxruntime installed (the caller then loads it on torch)."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return None
    if config.get("kind") == traces.KIND:
        try:
            return traces.TraceScorer.load(folder, config)
        except (OSError, KeyError, ValueError, TypeError, SafetensorError):
            return None
    if not (folder / ONNX_NAME).is_file():
        return None
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(
        str(folder / ONNX_NAME), options, providers=["CPUExecutionProvider"]
    )
    exported_from = session.get_modelmeta().custom_metadata_map.get(WEIGHTS_SHA256)
    if exported_from != weights_sha256(folder):
        return None
    return OnnxDetector(session, config)
