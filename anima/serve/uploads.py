"""Uploads: streamed to a private folder (never whole in memory), counted against the size limit as
they arrive, judged by their first bytes (never by their name or declared type), and measured from
their headers against the pixel and frame limits before anything is decoded."""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from anima.serve.guards import Refused
from anima.serve.settings import MULTIPART_OVERHEAD, ServeSettings

FILE_FIELD = "file"
MAX_FIELD_BYTES = 4096
SNIFF_BYTES = 16
MOV_BRANDS = {b"qt  "}
RAW_TYPES = ("video/", "image/", "application/octet-stream")


@dataclass
class Upload:
    """A received file: where it lies, the name its sender gave it, and what its bytes say it is."""

    path: Path
    filename: str
    suffix: str = ""
    fields: dict[str, str] | None = None


@contextmanager
def private_folder(root: Path) -> Iterator[Path]:
    """A folder only this user can read (``mkdtemp`` makes it 0700), removed with everything in it
    when the request ends, however it ends: an answer, an error, or a client gone mid-upload."""
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def safe_name(name: str) -> str:
    """The sender's file name as a label: no folders, no control characters, at most 200 characters."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:200] or "upload"


def sniff(head: bytes) -> str | None:
    """The suffix Anima reads a file by, judged from its first bytes; None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return ".mov" if head[8:12] in MOV_BRANDS else ".mp4"
    return None


class _Body:
    """Counts the bytes of a request body as they stream in, refusing past the limit."""

    def __init__(self, request: Request, limit: int) -> None:
        self.request, self.limit, self.seen = request, limit, 0

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.request.stream():
            self.seen += len(chunk)
            if self.seen > self.limit:
                raise Refused(413, f"upload larger than {self.limit} bytes")
            yield chunk


async def receive(request: Request, folder: Path, settings: ServeSettings) -> Upload:
    """Stream the request's file (a multipart ``file`` field, or a raw ``video/*``/``image/*`` body)
    into ``folder``, then name it by what its bytes are."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    target = folder / "upload.bin"
    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise Refused(400, "multipart body without a boundary")
        upload = await _receive_multipart(request, boundary, target, settings)
    elif content_type.decode("latin-1").startswith(RAW_TYPES):
        body = _Body(request, settings.max_upload_bytes)
        with open(target, "wb") as out:
            async for chunk in body.chunks():
                out.write(chunk)
        upload = Upload(target, "upload")
    else:
        raise Refused(415, "send the file as multipart/form-data (field 'file') or a video/image body")
    return _named_by_content(upload)


async def _receive_multipart(
    request: Request, boundary: bytes, target: Path, settings: ServeSettings
) -> Upload:
    parts = _Parts(target)
    parser = MultipartParser(boundary, parts.callbacks(), max_header_count=8)
    body = _Body(request, settings.max_upload_bytes + MULTIPART_OVERHEAD)
    try:
        async for chunk in body.chunks():
            parser.write(chunk)
            if parts.file_bytes > settings.max_upload_bytes:
                raise Refused(413, f"upload larger than {settings.max_upload_bytes} bytes")
        parser.finalize()
    except Refused:
        raise
    except Exception as exc:  # the parser's errors: a malformed body
        raise Refused(400, f"malformed multipart body ({exc.__class__.__name__})") from None
    finally:
        parts.close()
    if parts.filename is None:
        raise Refused(400, f"no file in the upload (send it as the field '{FILE_FIELD}')")
    return Upload(target, safe_name(parts.filename), fields=parts.fields)


class _Parts:
    """python-multipart callbacks: the ``file`` part goes to disk, small text fields are kept."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.file_bytes = 0
        self._out = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._value = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add("_header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _part_begin(self) -> None:
        self._headers, self._name, self._value = {}, None, bytearray()

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name == FILE_FIELD and filename is not None and self.filename is None:
            self.filename = filename.decode("utf-8", "replace")
            self._out = open(self.target, "wb")  # noqa: SIM115 (closed in _part_end or close)
        elif filename is None:
            self._name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._out.write(data[start:end])
            self.file_bytes += end - start
        elif self._name is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise Refused(413, f"form field '{self._name}' is over {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        elif self._name is not None:
            self.fields[self._name] = self._value.decode("utf-8", "replace")
        self._name = None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _named_by_content(upload: Upload) -> Upload:
    """Rename the upload by what its first bytes say it is (415 for anything Anima cannot read)."""
    if not upload.path.exists() or upload.path.stat().st_size == 0:
        raise Refused(400, "the uploaded file is empty")
    with open(upload.path, "rb") as handle:
        suffix = sniff(handle.read(SNIFF_BYTES))
    if suffix is None:
        raise Refused(415, "not a video or still Anima reads (MP4, MOV, PNG or JPEG, judged by content)")
    named = upload.path.with_name(f"upload{suffix}")
    upload.path.rename(named)
    upload.path, upload.suffix = named, suffix
    return upload


def check_limits(path: Path, settings: ServeSettings) -> None:
    """Frame size and frame count from the header, against the server's limits (413), before any
    frame is decoded; a header that cannot be read is not media Anima reads (415)."""
    with open(path, "rb") as handle:
        kind = sniff(handle.read(SNIFF_BYTES))
    if kind is None:
        raise Refused(415, "not a video or still Anima reads (MP4, MOV, PNG or JPEG, judged by content)")
    if kind in (".png", ".jpg"):
        width, height, frames = *_image_size(path), 1
    else:
        width, height, frames = _video_size(path)
    if width * height > settings.max_pixels:
        raise Refused(413, f"{width}x{height} is over the limit of {settings.max_pixels} pixels a frame")
    if frames > settings.max_frames:
        raise Refused(413, f"{frames} frames is over the limit of {settings.max_frames}")


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                return image.width, image.height
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Refused(413, "the picture has too many pixels; not decoded") from None
    except Exception:
        raise Refused(415, "the picture's header cannot be read") from None


def _video_size(path: Path) -> tuple[int, int, int]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise Refused(415, "the file holds no video stream")
            stream = container.streams.video[0]
            frames = int(stream.frames or 0)
            if not frames and stream.duration and stream.time_base and stream.average_rate:
                frames = int(stream.duration * stream.time_base * stream.average_rate)
            return stream.codec_context.width, stream.codec_context.height, frames
    except Refused:
        raise
    except Exception:
        raise Refused(415, "the video's header cannot be read") from None
