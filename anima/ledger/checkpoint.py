"""Signed checkpoints of the ledger's head, kept as files outside the database.

A hash chain proves order, not completeness: whoever can write the database can cut its tail.
A checkpoint (event count, head hash, the digest of every consent-registry row, time) signed with
the operator's key and kept where the database writer cannot reach (another volume, an archive)
pins the head: a ledger shorter than, or diverging from, the latest checkpoint is refused.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anima.errors import LedgerError
from anima.ledger.signing import LedgerKey

PREFIX = "checkpoint-"


@dataclass(frozen=True)
class Checkpoint:
    """The ledger's head as the operator signed it."""

    events: int  # events in the chain up to and including the head
    head_id: int
    head_hash: str
    unsigned_events: int  # events written before signing began (a v1 ledger's), all before the head
    rows: dict[str, str]  # identity and consent-grant id -> row digest
    created_at: str
    signer: str  # the certificate's SHA-256 fingerprint
    signature: str = ""
    path: Path | None = field(default=None, compare=False)

    def payload(self) -> bytes:
        fields = {k: v for k, v in asdict(self).items() if k not in ("signature", "path")}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def name(self) -> str:
        return self.path.name if self.path else "(unsaved checkpoint)"


def write(folder: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` into ``folder`` (made 0700) as a 0600 file, atomically. File names
    sort by event count, so the latest is found without reading them all."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    stamp = checkpoint.created_at.replace(":", "").replace("-", "")
    path = folder / f"{PREFIX}{checkpoint.events:012d}-{stamp}-{secrets.token_hex(3)}.json"
    data = {k: v for k, v in asdict(checkpoint).items() if k != "path"}
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def read(path: Path, key: LedgerKey) -> Checkpoint:
    """A checkpoint file, its signature checked; :class:`LedgerError` if it does not hold."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        checkpoint = Checkpoint(**data, path=path)
    except (OSError, ValueError, TypeError) as exc:
        raise LedgerError(f"checkpoint {path.name} cannot be read: {exc}") from None
    if not key.verifies(checkpoint.payload(), checkpoint.signature):
        raise LedgerError(f"checkpoint {path.name} is not signed by the operator's key (forged or edited)")
    return checkpoint


def latest(folder: Path, key: LedgerKey) -> Checkpoint | None:
    """The checkpoint with the most events in ``folder`` (None if there is none)."""
    if not folder.is_dir():
        return None
    names = sorted(p.name for p in folder.glob(f"{PREFIX}*.json"))
    return read(folder / names[-1], key) if names else None
