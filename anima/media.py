"""Video and image I/O on PyAV: frames as ``(N, H, W, 3)`` uint8 RGB arrays, H.264 MP4 out.

Anima reads MP4, QuickTime, WebM (VP9, AV1), Matroska and AVI videos, animated GIF and WebP, and
PNG, JPEG, GIF and WebP stills, each known by its content (:func:`content_type`), not its suffix.
It writes and stamps the kinds in :data:`MIME_TYPES`. Animated WebP is read with Pillow, since
FFmpeg has no decoder for it; everything else that moves, with PyAV.

Every failure a user can cause (a missing file, a file that is not media, a video without
frames, absurd sizes) becomes a :class:`MediaError` with one readable line.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
import warnings
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.Image import DecompressionBombError, DecompressionBombWarning

from anima.errors import MediaError, MediaTooLarge

MAX_SIDE = 8192
MIN_SIDE = 16
MAX_FRAMES = 100_000
# Bigger files are refused before they are read or hashed (a 100,000-frame clip fits easily).
MAX_FILE_BYTES = 16 << 30
# Frames x width x height of one video made in memory (3 GiB as uint8 RGB); checked before the work.
# An animated GIF or WebP read is held to it too: each of its frames is a whole canvas rebuilt from
# a few bytes, so a small file can promise thousands of 8192x8192 frames.
MAX_VIDEO_PIXELS = 1 << 30
# What Anima writes and stamps, by suffix.
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
# What verify and scan read, by content; the suffixes only find media in a folder.
STILL_TYPES = frozenset({"image/png", "image/jpeg"})
ANIMATION_TYPES = frozenset({"image/gif", "image/webp"})  # a still when they hold one frame
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-msvideo"})
READ_SUFFIXES = VIDEO_SUFFIXES | IMAGE_SUFFIXES | {".webm", ".mkv", ".avi", ".gif", ".webp"}
READ_KINDS = "MP4, QuickTime, WebM, Matroska, AVI, GIF, WebP, PNG or JPEG"
# Top-level boxes a QuickTime file may open with when it has no ``ftyp`` (older writers).
QUICKTIME_BOXES = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
EBML_DOCTYPE = b"\x42\x82"

# FFmpeg's own log callback, silenced: PyAV's Python callback (``set_level`` with a level) makes
# every decoder thread take the GIL to log, and a frame-threaded decoder closed early then
# deadlocks, its threads waiting for the GIL that the closing thread holds while it joins them.
av.logging.set_level(None)
av.logging.set_libav_level(av.logging.PANIC)


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


class UnreadableFile(MediaError, OSError):
    """A path that is not a regular file (a FIFO, a device, a socket, a folder) or is too large to
    read. Bad input to a command; to a scan it is an ``OSError`` like a missing file, so an error row."""

    def __init__(self, path: Path, problem: str) -> None:
        OSError.__init__(self, errno.EINVAL, problem, str(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _special_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a device or other special file")


def check_regular(path: Path, mode: int, size: int) -> None:
    """Refuse a special file (never read: a FIFO or ``/dev/zero`` has no end) or one over
    :data:`MAX_FILE_BYTES`."""
    if not stat.S_ISREG(mode):
        raise UnreadableFile(path, f"not a regular file ({_special_kind(mode)})")
    if size > MAX_FILE_BYTES:
        raise UnreadableFile(path, f"file is larger than {MAX_FILE_BYTES >> 30} GiB")


def mime_type(path: Path) -> str:
    """The MIME type Anima stamps ``path`` as, judged by its suffix (what it reads: :func:`content_type`)."""
    try:
        return MIME_TYPES[path.suffix.lower()]
    except KeyError:
        raise MediaError(
            f"{path}: unsupported file type '{path.suffix or '(none)'}' "
            f"(Anima stamps {', '.join(sorted(MIME_TYPES))})"
        ) from None


def _matroska_type(head: bytes) -> str:
    """WebM or Matroska, from the EBML header's DocType (``webm`` or ``matroska``)."""
    at = head.find(EBML_DOCTYPE)
    size = head[at + 2] if 0 <= at < len(head) - 2 else 0
    doctype = head[at + 3 : at + 3 + (size & 0x7F)] if size & 0x80 else b""  # a one-byte length
    return "video/webm" if doctype == b"webm" else "video/x-matroska"


def _type_of(head: bytes) -> str | None:
    """The MIME type a file's first bytes announce, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF":
        return {b"WEBP": "image/webp", b"AVI ": "video/x-msvideo"}.get(head[8:12])
    if head.startswith(EBML_MAGIC):
        return _matroska_type(head)
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head[4:8] in QUICKTIME_BOXES:
        return "video/quicktime"
    return None


def content_type(path: Path) -> str:
    """The MIME type of what ``path`` holds, judged by its first bytes, whatever its suffix: one of
    :data:`STILL_TYPES`, :data:`ANIMATION_TYPES` or :data:`VIDEO_TYPES`."""
    path = Path(path)
    found = _type_of(_head(path))
    if found is None:
        raise MediaError(f"{path}: not a readable video or picture (its content is not {READ_KINDS})")
    return found


def sha256_file(path: Path) -> str:
    """SHA-256 of a regular file; a special file raises :class:`UnreadableFile` without a read."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; the mode is judged on the open file.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as handle:
        info = os.fstat(fd)
        check_regular(Path(path), info.st_mode, info.st_size)
        digest = hashlib.sha256()
        read = 0
        for block in iter(lambda: handle.read(1 << 20), b""):
            read += len(block)
            if read > MAX_FILE_BYTES:  # a file that grows while it is read
                raise UnreadableFile(Path(path), f"file is larger than {MAX_FILE_BYTES >> 30} GiB")
            digest.update(block)
    return digest.hexdigest()


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    info = path.stat()
    check_regular(path, info.st_mode, info.st_size)
    if info.st_size == 0:
        raise MediaError(f"{path}: empty file")


def _head(path: Path) -> bytes:
    """The first bytes of an existing, non-empty regular file (enough to tell its kind)."""
    _check_exists(path)
    with open(path, "rb") as handle:
        return handle.read(64)


def _check_size(path: Path, width: int, height: int) -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        error = MediaTooLarge if max(width, height) > MAX_SIDE else MediaError
        raise error(f"{path}: frame size {width}x{height} is outside {MIN_SIDE}..{MAX_SIDE} pixels per side")


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


def _check_length(path: Path, frames: int, width: int, height: int, *, animation: bool) -> None:
    """A frame count from a header, checked before any frame is decoded."""
    if frames > MAX_FRAMES:
        raise MediaTooLarge(f"{path}: more than {MAX_FRAMES} frames")
    if animation and frames * width * height > MAX_VIDEO_PIXELS:
        raise MediaTooLarge(
            f"{path}: {frames} frames of {width}x{height} is over the limit of {MAX_VIDEO_PIXELS:,} "
            "pixels in one animation; not decoded"
        )


def _count_packets(path: Path, container: av.container.InputContainer, stream: av.VideoStream) -> int:
    """Frames in a stream whose header does not say, counted without decoding (one packet a frame)."""
    count = 0
    try:
        for packet in container.demux(stream):
            count += packet.size > 0  # the demuxer ends with an empty packet
            if count > MAX_FRAMES:
                raise MediaTooLarge(f"{path}: more than {MAX_FRAMES} frames")
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: video data is corrupt ({exc.__class__.__name__})") from None
    return count


def _is_webp(path: Path) -> bool:
    return _type_of(_head(path)) == "image/webp"


def _probe_webp(path: Path) -> VideoInfo:
    """An (animated) WebP's canvas, frame count and first frame's rate, by Pillow."""
    with _open_image(path) as image:
        frames = getattr(image, "n_frames", 1)
        _check_length(path, frames, image.width, image.height, animation=True)
        try:
            image.load()  # the first frame: its duration is the rate
        except OSError as exc:
            raise MediaError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
        duration = int(image.info.get("duration") or 100)  # 0 ms plays as 100 ms in browsers
        return VideoInfo(image.width, image.height, Fraction(1000, max(duration, 1)), frames, "webp")


def probe_video(path: Path) -> VideoInfo:
    """Read a video's (or animation's) size, rate and frame count from its header and refuse one
    over the limits, decoding nothing; where the header has no count (WebM, Matroska, GIF), the
    packets are counted."""
    path = Path(path)
    if _is_webp(path):
        return _probe_webp(path)
    with _open_video(path) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_size(path, width, height)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        animation = container.format.name == "gif"
        frames = int(stream.frames or 0)
        _check_length(path, frames, width, height, animation=animation)
        if frames == 0 or animation:  # a GIF's count is the demuxer's guess: cheap to fake
            frames = _count_packets(path, container, stream)
            _check_length(path, frames, width, height, animation=animation)
        return VideoInfo(width, height, Fraction(rate), frames, stream.codec_context.name)


def _decoding_threads() -> str:
    """Frame threads (several frames decoded at once) unless a Python log callback is installed
    (torchvision installs one on import): then a decoder closed early could deadlock, see above."""
    return "AUTO" if av.logging.get_level() is None else "SLICE"


def _decode_webp(path: Path, wanted: Collection[int] | None) -> Iterator[tuple[int, np.ndarray | None]]:
    with _open_image(path) as image:
        frames = getattr(image, "n_frames", 1)
        _check_length(path, frames, image.width, image.height, animation=True)
        try:
            for index in range(frames):
                if wanted is None or index in wanted:  # Pillow seeks by index: the others are skipped
                    image.seek(index)
                    yield index, np.asarray(image.convert("RGB"))
                else:
                    yield index, None
        except (OSError, EOFError) as exc:
            raise MediaError(f"{path}: video data is corrupt ({exc.__class__.__name__})") from None


def _decode(path: Path, wanted: Collection[int] | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
    """Every decoded frame's index and the frame as RGB; with ``wanted``, the frame only at those
    indices (None elsewhere: decoded, not converted), and decoding stops after the last one wanted.
    All of Anima's decoding passes here."""
    if _is_webp(path):
        yield from _decode_webp(path, wanted)
        return
    last = max(wanted, default=-1) if wanted is not None else None
    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = _decoding_threads()
        count = 0
        try:
            for frame in container.decode(stream):
                if count == 0:
                    _check_size(path, frame.width, frame.height)
                count += 1
                if count > MAX_FRAMES:
                    raise MediaTooLarge(f"{path}: more than {MAX_FRAMES} frames")
                keep = wanted is None or count - 1 in wanted
                yield count - 1, frame.to_ndarray(format="rgb24") if keep else None
                if last is not None and count > last:
                    break
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: video data is corrupt ({exc.__class__.__name__})") from None
        if count == 0:
            raise MediaError(f"{path}: video has no decodable frames")


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """Decode a video frame by frame as RGB arrays (constant memory)."""
    for _, frame in _decode(Path(path)):
        assert frame is not None  # every frame is wanted
        yield frame


def read_video(path: Path) -> Video:
    """Decode a whole video into memory."""
    path = Path(path)
    info = probe_video(path)
    frames = list(iter_frames(path))
    shapes = {frame.shape for frame in frames}
    if len(shapes) != 1:
        raise MediaError(f"{path}: frame size changes inside the video, which Anima does not handle")
    return Video(np.stack(frames), info.fps)


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns of a file: its type by content, and from its header its size and
    length."""

    mime: str
    width: int
    height: int
    num_frames: int

    @property
    def is_still(self) -> bool:
        """One picture: a PNG or JPEG, or a GIF or WebP that does not move."""
        return self.mime in STILL_TYPES or (self.mime in ANIMATION_TYPES and self.num_frames <= 1)


def probe(path: Path) -> MediaInfo:
    """Know ``path`` by its content and check it against every limit from its header, before any
    frame is decoded: a video, an animated GIF or WebP, or a still."""
    path = Path(path)
    mime = content_type(path)
    if mime in STILL_TYPES:
        return MediaInfo(mime, *probe_image(path), 1)
    info = probe_video(path)
    if mime in ANIMATION_TYPES and info.num_frames <= 1:
        probe_image(path)  # a still is read by Pillow: its checks too
    return MediaInfo(mime, info.width, info.height, info.num_frames)


@dataclass(frozen=True)
class Sample:
    """Frames spread evenly over a file, from one pass: what verify, the detector and a scan's
    thumbnail look at."""

    info: MediaInfo
    frames: list[np.ndarray]
    indices: list[int]  # of each frame in the file
    total: int  # frames the file holds

    @property
    def middle(self) -> np.ndarray:
        """The sampled frame nearest the middle of the file."""
        nearest = np.argmin([abs(index - self.total // 2) for index in self.indices])
        return self.frames[int(nearest)]


def sample(path: Path, count: int, info: MediaInfo | None = None) -> Sample:
    """Up to ``count`` frames spread evenly over a video or animation (the one picture of a still).
    The file is known by its content and checked against every limit from its header first (``info``:
    what :func:`probe` already said of it); then it is decoded once, as far as the last sampled
    frame."""
    path = Path(path)
    info = info if info is not None else probe(path)
    if info.is_still:
        return Sample(info, [read_image(path)], [0], 1)
    wanted = set(np.linspace(0, max(info.num_frames - 1, 0), count).round().astype(int).tolist())
    indices, frames, seen = [], [], 0
    for index, frame in _decode(path, wanted):
        seen = index + 1
        if frame is not None:
            indices.append(index)
            frames.append(frame)
    # Every sampled frame found: the decoder stopped at the last one and the header's count holds;
    # else the file ended before its header said.
    total = info.num_frames if len(indices) == len(wanted) else seen
    return Sample(info, frames, indices, total)


def sample_frames(path: Path, count: int) -> tuple[list[np.ndarray], int]:
    """:func:`sample`'s frames and the number of frames the file holds."""
    sampled = sample(path, count)
    return sampled.frames, sampled.total


@contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """An image whose header is read and whose size is checked; nothing is decoded yet."""
    _check_exists(path)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 89M and 179M pixels; the size check below refuses both.
            warnings.simplefilter("error", DecompressionBombWarning)
            image = Image.open(path)
    except (DecompressionBombError, DecompressionBombWarning):
        raise MediaTooLarge(
            f"{path}: image has too many pixels (over {MAX_SIDE}x{MAX_SIDE}); not decoded"
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise MediaError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    with image:
        _check_size(path, image.width, image.height)
        yield image


def probe_image(path: Path) -> tuple[int, int]:
    """A still's (width, height) from its header, checked against the size limits."""
    path = Path(path)
    with _open_image(path) as image:
        return image.width, image.height


def read_image(path: Path) -> np.ndarray:
    """Read a still image as an (H, W, 3) uint8 RGB array (its size checked before decoding)."""
    path = Path(path)
    with _open_image(path) as image:
        try:
            image.load()
            rgb = image.convert("RGB")
        except OSError as exc:
            raise MediaError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    _check_size(path, rgb.width, rgb.height)
    return np.asarray(rgb)


def check_video_size(frames: int, width: int | None = None, height: int | None = None) -> None:
    """Limits on a video to be made in memory, checked before any work; ``None`` is a size still to
    be chosen (by the model), checked again once it is known."""
    if not 1 <= frames <= MAX_FRAMES:
        raise MediaError(f"frames must be in 1..{MAX_FRAMES}, got {frames}")
    for name, side in (("width", width), ("height", height)):
        if side is not None and not MIN_SIDE <= side <= MAX_SIDE:
            raise MediaError(f"{name} must be in {MIN_SIDE}..{MAX_SIDE} pixels, got {side}")
    if width is not None and height is not None and frames * width * height > MAX_VIDEO_PIXELS:
        raise MediaError(
            f"{frames} frames of {width}x{height} is over the limit of {MAX_VIDEO_PIXELS:,} pixels "
            "in one video; make it shorter or smaller"
        )


def check_fps(fps: float | None) -> None:
    """A frame rate, when one is given (``None`` is the source's); 0 is refused, not a default."""
    if fps is not None and not 0 < fps <= 240:
        raise MediaError(f"fps must be in (0, 240], got {fps}")


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


def _temp_beside(path: Path) -> Path:
    """An empty temporary file in ``path``'s folder (a folder we cannot write in is bad input)."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise MediaError(
            f"{path.parent}: cannot write in the output folder ({exc.strerror or exc.__class__.__name__})"
        ) from None
    os.close(fd)
    return Path(tmp_name)


def check_output_folder(path: Path) -> None:
    """The folder ``path`` goes in exists and takes a new file (checked before long work, and again
    when writing)."""
    folder = Path(path).parent
    if not folder.exists():
        raise MediaError(f"{folder}: output folder does not exist")
    if not folder.is_dir():
        raise MediaError(f"{folder}: output folder is not a folder")
    _temp_beside(Path(path)).unlink()  # permissions, ACLs, read-only mounts: only a write tells


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (no window for threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    A failure leaves no half-written file behind, and never the old file half-overwritten. The
    file gets ``mode`` (default: what the umask allows a new file, as ``open`` would give it).
    """
    path = Path(path)
    check_output_folder(path)
    tmp = _temp_beside(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
