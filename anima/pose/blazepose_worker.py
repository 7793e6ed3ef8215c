"""Run MediaPipe's BlazePose (the "full" model shipped in the mediapipe 0.10.21 wheel) over raw frames.

This script runs inside the MediaPipe tool environment (numpy<2), never inside Anima's own, so it
imports nothing from Anima. Usage::

    python blazepose_worker.py FRAMES.rgb WIDTH HEIGHT COUNT {video,images}

FRAMES.rgb holds COUNT frames of HEIGHT x WIDTH x 3 uint8 RGB back to back. For each frame it prints
one JSON line: ``null`` when no body is found, else 33 ``[x, y, visibility]`` with x, y normalised.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import mediapipe as mp
    import numpy as np

    frames_path, width, height, count, mode = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    frames = np.memmap(frames_path, dtype=np.uint8, mode="r", shape=(count, height, width, 3))
    # "video" tracks the body from frame to frame (steadier and faster); "images" detects afresh.
    with mp.solutions.pose.Pose(
        static_image_mode=mode == "images", model_complexity=1, enable_segmentation=False
    ) as pose:
        for frame in frames:
            result = pose.process(np.ascontiguousarray(frame))
            landmarks = result.pose_landmarks
            if landmarks is None:
                print("null", flush=True)
            else:
                points = [[mark.x, mark.y, mark.visibility] for mark in landmarks.landmark]
                print(json.dumps(points), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
