"""The audit ledger: hash-chained events and the record of every stamped output."""

from anima.ledger.models import AuditEvent, Stamp
from anima.ledger.store import ChainReport, Ledger

__all__ = ["AuditEvent", "ChainReport", "Ledger", "Stamp"]
