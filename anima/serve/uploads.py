"""Uploads: streamed to a private folder (never whole in memory), counted against the size limit as
they arrive, known by their content as :mod:`anima.media` knows every file ``Anima.verify`` reads
(never by their name or declared type), and measured from their headers against the pixel and
frame limits before anything is decoded."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from anima import media
from anima.errors import MediaError, MediaTooLarge
from anima.serve.guards import Refused
from anima.serve.settings import MULTIPART_OVERHEAD, ServeSettings

FILE_FIELD = "file"
MAX_FIELD_BYTES = 4096
RAW_TYPES = ("video/", "image/", "application/octet-stream")


@dataclass
class Upload:
    """A received file: where it lies, and the name its sender gave it."""

    path: Path
    filename: str
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
    into ``folder``; what it holds is judged later, by :func:`check_limits`."""
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
    if not upload.path.exists() or upload.path.stat().st_size == 0:
        raise Refused(400, "the uploaded file is empty")
    return upload


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


def check_limits(path: Path, settings: ServeSettings, name: str = "upload") -> media.MediaInfo:
    """Know ``path`` by its content and measure it from its header as ``Anima.verify`` does
    (:func:`anima.media.probe`), decoding nothing: 413 past Anima's or the server's size limits,
    415 for what Anima does not read, with ``anima.media``'s one line (``name`` in place of the path)."""
    try:
        info = media.probe(path)
    except MediaTooLarge as exc:
        raise Refused(413, str(exc).replace(str(path), name)) from None
    except MediaError as exc:
        raise Refused(415, str(exc).replace(str(path), name)) from None
    if info.width * info.height > settings.max_pixels:
        raise Refused(
            413, f"{info.width}x{info.height} is over the limit of {settings.max_pixels} pixels a frame"
        )
    if info.num_frames > settings.max_frames:
        raise Refused(413, f"{info.num_frames} frames is over the limit of {settings.max_frames}")
    return info
