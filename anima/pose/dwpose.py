"""DWPose through onnxruntime, for users who have its two ONNX files in a local folder: the YOLOX
person detector (``yolox_l.onnx``) and the whole-body keypoint model (``dw-ll_ucoco_384.onnx``).

These are the models Moore-AnimateAnyone and MusePose extract their training poses with, so poses
from them match the public checkpoints best. Pre- and post-processing follow the public ONNX port:
the detector sees the BGR frame letterboxed onto a grey square; the keypoint model sees each person's
box (padded by 1.25, widened to its aspect ratio), normalised by the ImageNet mean and deviation, and
answers SimCC vectors whose peaks, at twice the input resolution, are the keypoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from anima.errors import BadInput, MediaError
from anima.pose.blazepose import PoseExtractionError
from anima.pose.sequence import NECK, PoseSequence, main_person

DETECTOR_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
DETECTOR_STRIDES = (8, 16, 32)
LETTERBOX_GREY = 114
PERSON_MIN_SCORE = 0.3
NMS_IOU = 0.45
BOX_PADDING = 1.25
# Applied to BGR pixels as the public ONNX port does, though the numbers are ImageNet's RGB ones.
PIXEL_MEAN = np.array([123.675, 116.28, 103.53])
PIXEL_STD = np.array([58.395, 57.12, 57.375])
SIMCC_SPLIT_RATIO = 2.0
# OpenPose-18 joint <- COCO-WholeBody keypoint; the neck (index 1, a placeholder here) is the
# shoulders' midpoint.
COCO_SHOULDERS = (5, 6)
OPENPOSE_FROM_COCO = (0, 0, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)


def _non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the boxes kept, best first, dropping any that overlaps a better one too much."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(scores)[::-1]
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        overlap = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = overlap / (areas[best] + areas[rest] - overlap + 1e-9)
        order = rest[iou <= NMS_IOU]
    return np.asarray(keep, dtype=int)


class DWPoseExtractor:
    """The main person's OpenPose-18 pose per frame, from the DWPose ONNX models in ``models_dir``."""

    def __init__(self, models_dir: Path, providers: list[str] | None = None) -> None:
        models_dir = Path(models_dir)
        missing = [name for name in (DETECTOR_FILE, POSE_FILE) if not (models_dir / name).is_file()]
        if missing:
            raise BadInput(f"{models_dir}: DWPose folder lacks {', '.join(missing)}")
        try:
            import onnxruntime
        except ImportError:
            raise PoseExtractionError("DWPose needs onnxruntime: pip install onnxruntime") from None
        providers = providers or ["CPUExecutionProvider"]
        self.detector = onnxruntime.InferenceSession(str(models_dir / DETECTOR_FILE), providers=providers)
        self.pose_model = onnxruntime.InferenceSession(str(models_dir / POSE_FILE), providers=providers)
        self.detector_size = self._input_size(self.detector)
        self.pose_size = self._input_size(self.pose_model)

    @staticmethod
    def _input_size(session: Any) -> tuple[int, int]:
        """(width, height) of a model's fixed ``(1, 3, H, W)`` input."""
        shape = session.get_inputs()[0].shape
        if len(shape) != 4 or not all(isinstance(side, int) for side in shape[2:]):
            raise BadInput(f"a DWPose model must take a fixed (1, 3, H, W) input, this one takes {shape}")
        return int(shape[3]), int(shape[2])

    def detect_people(self, bgr: np.ndarray) -> np.ndarray:
        """``(people, 4)`` person boxes (x0, y0, x1, y1) in frame pixels, best first."""
        width, height = self.detector_size
        ratio = min(width / bgr.shape[1], height / bgr.shape[0])
        resized = cv2.resize(bgr, (int(bgr.shape[1] * ratio), int(bgr.shape[0] * ratio)))
        canvas = np.full((height, width, 3), LETTERBOX_GREY, dtype=np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        batch = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        predictions = self.detector.run(None, {self.detector.get_inputs()[0].name: batch})[0][0]

        grids, strides = [], []
        for stride in DETECTOR_STRIDES:
            xs, ys = np.meshgrid(np.arange(width // stride), np.arange(height // stride))
            grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
            strides.append(np.full((grids[-1].shape[0], 1), stride))
        grid, stride_column = np.concatenate(grids), np.concatenate(strides)
        if predictions.shape[0] != grid.shape[0]:
            raise BadInput(f"DWPose detector gave {predictions.shape[0]} anchors, expected {grid.shape[0]}")
        centres = (predictions[:, :2] + grid) * stride_column
        sizes = np.exp(predictions[:, 2:4]) * stride_column
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1) / ratio
        scores = predictions[:, 4] * predictions[:, 5]  # objectness x "person" class
        people = scores > PERSON_MIN_SCORE
        boxes, scores = boxes[people], scores[people]
        return boxes[_non_maximum_suppression(boxes, scores)]

    def estimate_keypoints(self, bgr: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(133, 2)`` whole-body keypoints in frame pixels and their ``(133,)`` scores, for one box."""
        width, height = self.pose_size
        centre = (box[:2] + box[2:]) / 2
        scale = (box[2:] - box[:2]) * BOX_PADDING
        scale = np.array([max(scale[0], scale[1] * width / height), max(scale[1], scale[0] * height / width)])
        zoom = width / scale[0]
        warp = np.array([[zoom, 0, width / 2 - zoom * centre[0]], [0, zoom, height / 2 - zoom * centre[1]]])
        crop = cv2.warpAffine(bgr, warp, (width, height), flags=cv2.INTER_LINEAR)
        batch = ((crop - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)[None].astype(np.float32)
        simcc_x, simcc_y = self.pose_model.run(None, {self.pose_model.get_inputs()[0].name: batch})[:2]
        simcc_x, simcc_y = simcc_x[0], simcc_y[0]
        locations = np.stack([simcc_x.argmax(axis=1), simcc_y.argmax(axis=1)], axis=-1) / SIMCC_SPLIT_RATIO
        scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
        keypoints = locations / np.array([width, height]) * scale + centre - scale / 2
        return keypoints, scores

    def frame_people(self, rgb: np.ndarray) -> np.ndarray:
        """``(people, 18, 3)`` normalised OpenPose-18 skeletons of everyone found in an RGB frame."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        height, width = rgb.shape[:2]
        boxes = self.detect_people(bgr)
        if len(boxes) == 0:  # as the public port does: look for a body in the whole frame
            boxes = np.array([[0.0, 0.0, width, height]])
        people = []
        for box in boxes:
            keypoints, scores = self.estimate_keypoints(bgr, box)
            whole_body = np.concatenate([keypoints, scores[:, None]], axis=1)
            skeleton, shoulders = whole_body[list(OPENPOSE_FROM_COCO)], whole_body[list(COCO_SHOULDERS)]
            skeleton[NECK, :2] = shoulders[:, :2].mean(axis=0)
            skeleton[NECK, 2] = shoulders[:, 2].min()
            skeleton[:, :2] /= np.array([width, height])
            people.append(skeleton)
        return np.stack(people)

    def extract(self, frames: Iterable[np.ndarray], fps: float, source: str = "the frames") -> PoseSequence:
        """The main person's pose in each frame (the most confident, largest one)."""
        keypoints, size = [], None
        for frame in frames:
            if size is None:
                size = (frame.shape[1], frame.shape[0])
            keypoints.append(main_person(self.frame_people(frame), *size))
        if size is None:
            raise MediaError(f"{source}: no frames to extract a pose from")
        sequence = PoseSequence(np.stack(keypoints), fps=fps, width=size[0], height=size[1])
        if not sequence.has_person():
            raise BadInput(f"{source}: no person found")
        return sequence
