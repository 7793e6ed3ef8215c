"""The audit ledger: hash-chained events, the record of every stamped output, and the consent registry.

The names below load on first use: SQLAlchemy (a fifth of a cold ``anima verify``) is imported
only by what reads or writes the database, not by ``anima.ledger.signing`` or ``--help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anima._exports import lazy_exports

_EXPORTS = {
    "ChainReport": "anima.ledger.store",
    "Checkpoint": "anima.ledger.checkpoint",
    "ConsentGrant": "anima.ledger.models",
    "Identity": "anima.ledger.models",
    "Ledger": "anima.ledger.store",
    "LedgerKey": "anima.ledger.signing",
    "StaleRow": "anima.ledger.store",
    "Stamp": "anima.ledger.models",
    "Tracked": "anima.ledger.models",
    "as_utc": "anima.ledger.models",
}
__all__ = [
    "ChainReport",
    "Checkpoint",
    "ConsentGrant",
    "Identity",
    "Ledger",
    "LedgerKey",
    "StaleRow",
    "Stamp",
    "Tracked",
    "as_utc",
]

if TYPE_CHECKING:
    from anima.ledger.checkpoint import Checkpoint
    from anima.ledger.models import ConsentGrant, Identity, Stamp, Tracked, as_utc
    from anima.ledger.signing import LedgerKey
    from anima.ledger.store import ChainReport, Ledger, StaleRow


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
