from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from anima import media
from anima.errors import MediaError


def test_write_then_read_round_trip(tmp_path: Path, astronaut_frames: np.ndarray) -> None:
    path = tmp_path / "out.mp4"
    assert media.write_video(path, astronaut_frames[:10], fps=Fraction(30000, 1001), crf=18) == 10
    video = media.read_video(path)
    assert video.num_frames == 10
    assert video.size == (256, 256)
    assert abs(float(video.fps) - 29.97) < 0.01
    error = np.abs(video.frames.astype(int) - astronaut_frames[:10]).mean()
    assert error < 4  # CRF 18 is close to lossless
    info = media.probe_video(path)
    assert (info.width, info.height, info.codec) == (256, 256, "h264")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    frames = np.zeros((3, 33, 47, 3), np.uint8)
    media.write_video(tmp_path / "odd.mp4", frames, fps=24)
    assert media.read_video(tmp_path / "odd.mp4").size == (48, 34)


def _zero_frame_mp4(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height = 64, 64
        container.start_encoding()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not a video at all " * 50), "not a readable video"),
        (_zero_frame_mp4, "no decodable frames|no video stream"),
    ],
    ids=["missing", "empty", "not-media", "zero-frames"],
)
def test_bad_videos_raise_one_clear_error(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(MediaError, match=message) as info:
        media.read_video(path)
    assert "\n" not in str(info.value)


def test_absurd_dimensions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (9000, 20)).save(path)
    with pytest.raises(MediaError, match="outside"):
        media.read_image(path)
    with pytest.raises(MediaError, match="outside"):
        media.write_video(tmp_path / "tiny.mp4", np.zeros((2, 8, 8, 3), np.uint8), fps=24)


def test_unsupported_container_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"unsupported file type .\.avi."):
        media.mime_type(tmp_path / "clip.avi")
    with pytest.raises(MediaError, match=r"must be an \.mp4"):
        media.write_video(tmp_path / "clip.webm", np.zeros((2, 64, 64, 3), np.uint8), fps=24)


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "final.mp4"
    with pytest.raises(RuntimeError), media.atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("encoder died")
    assert list(tmp_path.iterdir()) == []
    with media.atomic_output(target) as tmp:
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["final.mp4"]
