"""What an operator sets for ``anima serve``: limits, the verify queue, the bearer token. Every default
is the safe one; every value is checked when the server is built, not when a request meets it."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

from anima.errors import BadInput

# A multipart body carries its part headers and boundaries on top of the file itself.
MULTIPART_OVERHEAD = 64 << 10
MIN_TOKEN_CHARS = 16
DEFAULT_TOKEN_FILE = "serve.token"


@dataclass(frozen=True)
class ServeSettings:
    """Limits and access of one server.

    Args:
        max_upload_bytes: largest upload accepted (413 past it), default 100 MiB.
        max_pixels: most pixels in one frame or still (413 past it), default 4096 x 4096.
        max_frames: most frames a video may hold (413 past it), default 18,000 (10 min at 30 fps).
        rate_limit: requests a minute from one client address (429 past it); 0 turns it off.
        workers: verifications running at once (each in a thread).
        queue: requests waiting for a worker beyond those (503 past it); uploads count from their
            first byte, so disk and memory stay bounded by ``(workers + queue) * max_upload_bytes``.
        token: the bearer token that unlocks ledger details; None: they are never served.
        allow_paths: a folder whose files ``POST /v1/verify`` may name by path; None: no paths.
        public_manifests: whether the Soft Binding Resolution API answers without the token.
        trust: CA certificates (PEM) trusted as signers, on top of the deployment's.
    """

    max_upload_bytes: int = 100 << 20
    max_pixels: int = 4096 * 4096
    max_frames: int = 18_000
    rate_limit: int = 60
    workers: int = 2
    queue: int = 8
    token: str | None = field(default=None, repr=False)
    allow_paths: Path | None = None
    public_manifests: bool = True
    trust: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_frames", "workers"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("rate_limit", "queue"):
            if getattr(self, name) < 0:
                raise BadInput(f"{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        if self.workers > 64:
            raise BadInput(f"workers must be at most 64, got {self.workers}")
        if self.token is not None and (len(self.token) < MIN_TOKEN_CHARS or not self.token.isprintable()):
            raise BadInput(f"the bearer token must be at least {MIN_TOKEN_CHARS} printable characters")
        if self.allow_paths is not None and not Path(self.allow_paths).is_dir():
            raise BadInput(f"{self.allow_paths}: no such folder (the folder allowed for server-side paths)")
        for anchor in self.trust:
            if not Path(anchor).is_file():
                raise BadInput(f"{anchor}: no such file (a trusted CA certificate)")

    @property
    def capacity(self) -> int:
        """Verify requests held at once: running plus waiting."""
        return self.workers + self.queue


def load_token(path: Path) -> str:
    """The bearer token in ``path``: one line, readable by its owner only (like an SSH key)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file (the bearer token)") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"{path}: not a regular file (the bearer token)")
    if info.st_mode & 0o077:
        raise BadInput(f"{path}: readable by others (mode {info.st_mode & 0o777:o}); chmod 600 it first")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the bearer token ({exc.__class__.__name__})") from None
    if len(token) < MIN_TOKEN_CHARS or not token.isprintable():
        raise BadInput(f"{path}: the bearer token must be at least {MIN_TOKEN_CHARS} printable characters")
    return token
