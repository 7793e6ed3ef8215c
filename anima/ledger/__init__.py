"""The audit ledger: hash-chained events, the record of every stamped output, and the consent registry."""

from anima.ledger.models import ConsentGrant, Identity, Stamp, Tracked, as_utc
from anima.ledger.store import ChainReport, Ledger

__all__ = ["ChainReport", "ConsentGrant", "Identity", "Ledger", "Stamp", "Tracked", "as_utc"]
