"""Video and image I/O on PyAV: frames as ``(N, H, W, 3)`` uint8 RGB arrays, H.264 MP4 out.

Every failure a user can cause (a missing file, a file that is not media, a video without
frames, absurd sizes) becomes a :class:`MediaError` with one readable line.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from anima.errors import MediaError

MAX_SIDE = 8192
MIN_SIDE = 16
MAX_FRAMES = 100_000
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MIME_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}

av.logging.set_level(av.logging.PANIC)


@dataclass
class Video:
    """Decoded frames and their rate."""

    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    fps: Fraction

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


@dataclass(frozen=True)
class VideoInfo:
    """What probing a video's header tells, without decoding it."""

    width: int
    height: int
    fps: Fraction
    num_frames: int
    codec: str


def mime_type(path: Path) -> str:
    """The MIME type Anima uses for ``path``, judged by its suffix."""
    try:
        return MIME_TYPES[path.suffix.lower()]
    except KeyError:
        raise MediaError(
            f"{path}: unsupported file type '{path.suffix or '(none)'}' "
            f"(Anima handles {', '.join(sorted(MIME_TYPES))})"
        ) from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file")


def _check_size(path: Path, width: int, height: int) -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise MediaError(
            f"{path}: frame size {width}x{height} is outside {MIN_SIDE}..{MAX_SIDE} pixels per side"
        )


@contextmanager
def _open_video(path: Path) -> Iterator[av.container.InputContainer]:
    _check_exists(path)
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"{path}: not a readable video ({exc.__class__.__name__})") from None
    try:
        if not container.streams.video:
            raise MediaError(f"{path}: contains no video stream")
        yield container
    finally:
        container.close()


def probe_video(path: Path) -> VideoInfo:
    """Read a video's size, rate and frame count from its header."""
    path = Path(path)
    with _open_video(path) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_size(path, width, height)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        return VideoInfo(width, height, Fraction(rate), int(stream.frames or 0), stream.codec_context.name)


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """Decode a video frame by frame as RGB arrays (constant memory)."""
    path = Path(path)
    with _open_video(path) as container:
        stream = container.streams.video[0]
        count = 0
        try:
            for frame in container.decode(stream):
                if count == 0:
                    _check_size(path, frame.width, frame.height)
                count += 1
                if count > MAX_FRAMES:
                    raise MediaError(f"{path}: more than {MAX_FRAMES} frames")
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: video data is corrupt ({exc.__class__.__name__})") from None
        if count == 0:
            raise MediaError(f"{path}: video has no decodable frames")


def read_video(path: Path) -> Video:
    """Decode a whole video into memory."""
    path = Path(path)
    info = probe_video(path)
    frames = list(iter_frames(path))
    shapes = {frame.shape for frame in frames}
    if len(shapes) != 1:
        raise MediaError(f"{path}: frame size changes inside the video, which Anima does not handle")
    return Video(np.stack(frames), info.fps)


def sample_frames(path: Path, count: int) -> tuple[list[np.ndarray], int]:
    """Up to ``count`` frames spread evenly over a video (the one picture of a still), and the
    number of frames the file holds."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [read_image(path)], 1
    total = probe_video(path).num_frames
    wanted = set(np.linspace(0, max(total - 1, 0), count).round().astype(int)) if total else None
    frames = []
    seen = 0
    for index, frame in enumerate(iter_frames(path)):
        seen = index + 1
        if wanted is None or index in wanted:
            frames.append(frame)
    return frames, seen


def read_image(path: Path) -> np.ndarray:
    """Read a still image as an (H, W, 3) uint8 RGB array."""
    path = Path(path)
    _check_exists(path)
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise MediaError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    _check_size(path, rgb.width, rgb.height)
    return np.asarray(rgb)


def check_crf(crf: int) -> None:
    """H.264's quality scale; checked before long work, not after it."""
    if not 0 <= crf <= 51:
        raise MediaError(f"crf must be in 0..51, got {crf}")


def write_video(path: Path, frames: Iterable[np.ndarray], fps: Fraction | float | int, crf: int = 18) -> int:
    """Encode RGB frames as H.264 (yuv420p) MP4 at ``crf``; returns the frame count.

    Odd sizes are padded by one edge pixel, since yuv420p needs even dimensions.
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise MediaError(f"{path}: output must be an .mp4 file")
    check_crf(crf)
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise MediaError(f"fps must be positive, got {fps}")
    container = av.open(str(path), "w", format="mp4")
    count = 0
    try:
        stream = None
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise MediaError(f"frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
            height, width = frame.shape[:2]
            if stream is None:
                _check_size(path, width, height)
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = width + width % 2, height + height % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "medium"}
            if width % 2 or height % 2:
                frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is None:
            raise MediaError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return count


def check_output_folder(path: Path) -> None:
    """The folder ``path`` goes in exists (checked before long work, and again when writing)."""
    if not Path(path).parent.exists():
        raise MediaError(f"{Path(path).parent}: output folder does not exist")


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    A failure leaves no half-written file behind, and never the old file half-overwritten.
    """
    path = Path(path)
    check_output_folder(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
