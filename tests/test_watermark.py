from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from anima.errors import ProvenanceError
from anima.media import read_video, write_video
from anima.provenance import watermark

PAYLOAD = 0xC0FFEE42


def _through_h264(frames: np.ndarray, path: Path, crf: int) -> np.ndarray:
    write_video(path, frames, fps=24, crf=crf)
    return read_video(path).frames


@pytest.fixture(scope="module")
def marked_crf28(tmp_path_factory, astronaut_frames: np.ndarray) -> np.ndarray:
    embedder = watermark.WatermarkEmbedder(PAYLOAD)
    marked = np.stack([embedder.embed(f) for f in astronaut_frames])
    return _through_h264(marked, tmp_path_factory.mktemp("wm") / "m.mp4", crf=28)


def test_embedding_is_invisible_enough(astronaut_frames: np.ndarray) -> None:
    embedder = watermark.WatermarkEmbedder(PAYLOAD)
    marked = np.stack([embedder.embed(f) for f in astronaut_frames[:4]])
    mse = np.mean((marked.astype(float) - astronaut_frames[:4]) ** 2)
    assert 10 * np.log10(255**2 / mse) > 36


def test_payload_survives_h264_crf28(marked_crf28: np.ndarray) -> None:
    reading = watermark.extract(marked_crf28)
    assert reading.payload == PAYLOAD
    assert reading.detected and reading.false_positive_bound < 1e-6
    assert reading.confidence > 0.999999


def test_payload_survives_half_resize_and_crop(marked_crf28: np.ndarray) -> None:
    half = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in marked_crf28])
    assert watermark.extract(half).payload == PAYLOAD
    cropped = marked_crf28[:, 13:243, 13:243]  # 10% crop: 90% of each side kept
    reading = watermark.extract(cropped)
    assert reading.payload == PAYLOAD
    assert abs(reading.scale - 0.9) < 0.02


def test_unmarked_video_yields_no_payload(tmp_path: Path, astronaut_frames: np.ndarray) -> None:
    reading = watermark.extract(_through_h264(astronaut_frames, tmp_path / "u.mp4", crf=23))
    assert reading.payload is None
    assert not reading.detected
    assert reading.false_positive_bound > 1e-6


def test_different_payloads_do_not_collide(astronaut_frames: np.ndarray) -> None:
    for payload in (0, 1, 2**32 - 1):
        embedder = watermark.WatermarkEmbedder(payload)
        assert watermark.extract([embedder.embed(f) for f in astronaut_frames[:8]]).payload == payload


def test_bad_payloads_and_tiny_frames_fail_clearly() -> None:
    with pytest.raises(ProvenanceError, match="32 bits"):
        watermark.WatermarkEmbedder(2**32).embed(np.zeros((128, 128, 3), np.uint8))
    with pytest.raises(ProvenanceError, match="too small"):
        watermark.WatermarkEmbedder(1).embed(np.zeros((40, 300, 3), np.uint8))
    with pytest.raises(ProvenanceError, match="no frames"):
        watermark.extract([])


@pytest.mark.parametrize("size", [64, 128])
def test_small_unmarked_clips_stay_unmarked_and_marked_ones_read(size: int) -> None:
    """Frames smaller than the working grid once faked sync (pixel blocks lined up with the chip
    lattice: 14 of 30 unmarked 64 px clips "carried" a payload); the null must hold there too."""
    from anima.detect.dataset import photo_pan

    clips = [photo_pan(10_000 + i, 12, size) for i in range(12)]
    readings = [watermark.extract(list(clip)) for clip in clips]
    assert all(r.payload is None for r in readings)
    assert max(r.sync_z for r in readings) < 6.0
    embedder = watermark.WatermarkEmbedder(4242)
    assert watermark.extract([embedder.embed(f) for f in clips[0]]).payload == 4242
