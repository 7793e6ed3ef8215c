"""The audit ledger: hash-chained events, the record of every stamped output, and the consent registry."""

from anima.ledger.checkpoint import Checkpoint
from anima.ledger.models import ConsentGrant, Identity, Stamp, Tracked, as_utc
from anima.ledger.signing import LedgerKey
from anima.ledger.store import ChainReport, Ledger, StaleRow

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
