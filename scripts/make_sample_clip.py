"""Render the bundled sample clip: a slow camera move over scikit-image's astronaut photo.

Run once by maintainers (needs the dev extra); its output, samples/astronaut_pan.mp4, is committed
so that `make demo` works without scikit-image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from anima.media import write_video


def camera_pan(image: np.ndarray, frames: int, size: int) -> list[np.ndarray]:
    height, width = image.shape[:2]
    side = int(min(height, width) * 0.7)
    out = []
    for index in range(frames):
        t = 0.5 - 0.5 * np.cos(np.pi * index / (frames - 1))
        top, left = int((height - side) * 0.4 * t), int((width - side) * t)
        crop = image[top : top + side, left : left + side]
        out.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "samples/astronaut_pan.mp4")
    write_video(target, camera_pan(data.astronaut(), frames=48, size=384), fps=24, crf=20)
    print(f"wrote {target}")
