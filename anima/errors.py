"""Error types raised where a fault is found and turned into one line (and an exit code) by the CLI."""

from __future__ import annotations


class AnimaError(Exception):
    """Base of every error Anima reports to a user; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class BadInput(AnimaError):
    """The user gave something Anima cannot use (a missing file, a wrong argument)."""

    exit_code = 2


class MediaError(BadInput):
    """A file is not readable media, or not media Anima can handle."""


class MediaTooLarge(MediaError):
    """Readable media over a size limit (pixels, frames), refused from its header before decoding:
    the server answers 413 for it where other media errors are 415."""


class ProvenanceError(AnimaError):
    """Signing, manifest or watermark work failed (missing keys, a c2pa failure)."""

    exit_code = 4


class LedgerError(AnimaError):
    """The audit ledger cannot be opened or written."""

    exit_code = 5


class PolicyDenied(AnimaError):
    """The consent gate refused the request (or the output drifted from the consented identity).

    ``reasons`` are machine-readable codes; the message says them in words.
    """

    exit_code = 3

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons
