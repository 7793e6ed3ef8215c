"""How close generated frames are to the truth, and pictures that show it.

Frames are (F, H, W, 3) uint8 arrays. Temporal error compares frame-to-frame changes with the
truth's (flicker and lag show there even when every frame alone looks right).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from anima.pose.render import render_pose


def psnr(frames: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio over the whole clip, dB."""
    error = np.mean((frames.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(error, 1e-10)))


def ssim(frames: np.ndarray, truth: np.ndarray) -> float:
    """Mean structural similarity of the frames (colour, 7-px windows)."""
    return float(
        np.mean(
            [
                structural_similarity(a, b, channel_axis=-1, data_range=255)
                for a, b in zip(frames, truth, strict=True)
            ]
        )
    )


def l1(frames: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error, in [0, 1] units."""
    return float(np.mean(np.abs(frames.astype(np.float64) - truth.astype(np.float64))) / 255.0)


def temporal_error(frames: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute difference between the clip's and the truth's frame-to-frame changes, [0, 1] units."""
    if len(frames) < 2:
        return 0.0
    ours = np.diff(frames.astype(np.float64), axis=0)
    theirs = np.diff(truth.astype(np.float64), axis=0)
    return float(np.mean(np.abs(ours - theirs)) / 255.0)


def scores(frames: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {
        "psnr": psnr(frames, truth),
        "ssim": ssim(frames, truth),
        "l1": l1(frames, truth),
        "temporal": temporal_error(frames, truth),
    }


def _label(image: np.ndarray, text: str) -> np.ndarray:
    image = image.copy()
    cv2.putText(image, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def comparison_grid(rows: Sequence[tuple], columns: int = 4) -> np.ndarray:
    """One block per clip: a row each of target pose, truth, ours and warp over ``columns`` frames,
    with the reference picture at the left. ``rows`` holds (clip, frame indices, ours, warp)."""
    blocks = []
    for clip, frames, ours, warp in rows:
        picks = np.linspace(0, len(frames) - 1, columns).round().astype(int)
        height, width = clip.frames.shape[1:3]
        blank = np.zeros((height, width, 3), np.uint8)
        lines = [
            ("pose", [render_pose(clip.keypoints[frames[i]], (width, height)) for i in picks]),
            ("truth", [clip.frames[frames[i]] for i in picks]),
            ("ours", [ours[i] for i in picks]),
            ("warp", [warp[i] for i in picks]),
        ]
        block = []
        for index, (name, images) in enumerate(lines):
            first = _label(clip.frames[0], "reference") if index == 0 else blank
            block.append(np.concatenate([first, *(_label(im, name) for im in images)], axis=1))
        blocks.append(np.concatenate(block, axis=0))
        blocks.append(np.full((4, blocks[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(blocks[:-1], axis=0)
