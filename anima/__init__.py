"""Anima: responsible character animation with consent, provenance and detection.

    >>> from anima import Anima, Verdict
    >>> studio = Anima(home="/srv/anima")
    >>> studio.verify("clip.mp4").verdict is Verdict.NO_EVIDENCE

The names below load on first use, so ``import anima`` stays quick and never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anima._exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Anima": "anima.api.core",
    "GenerationRequest": "anima.generate.request",
    "StampResult": "anima.provenance.stamp",
    "Verdict": "anima.provenance.verify",
    "VerifyReport": "anima.provenance.verify",
    "LedgerMatch": "anima.provenance.verify",
    "WatermarkKey": "anima.provenance.watermark",
    "WatermarkReading": "anima.provenance.watermark",
    "DetectorEvidence": "anima.detect.evidence",
    "Decision": "anima.policy.gate",
    "GateReason": "anima.policy.gate",
    "IdentityRecord": "anima.api.consent",
    "GrantRecord": "anima.api.consent",
    "AuditEntry": "anima.api.consent",
    "ChainReport": "anima.ledger.store",
    "ScanSummary": "anima.scan.engine",
    "AnimaError": "anima.errors",
    "BadInput": "anima.errors",
    "MediaError": "anima.errors",
    "PolicyDenied": "anima.errors",
    "ProvenanceError": "anima.errors",
    "LedgerError": "anima.errors",
}
__all__ = [
    "Anima",
    "AnimaError",
    "AuditEntry",
    "BadInput",
    "ChainReport",
    "Decision",
    "DetectorEvidence",
    "GateReason",
    "GenerationRequest",
    "GrantRecord",
    "IdentityRecord",
    "LedgerError",
    "LedgerMatch",
    "MediaError",
    "PolicyDenied",
    "ProvenanceError",
    "ScanSummary",
    "StampResult",
    "Verdict",
    "VerifyReport",
    "WatermarkKey",
    "WatermarkReading",
    "__version__",
]

if TYPE_CHECKING:
    from anima.api.consent import AuditEntry, GrantRecord, IdentityRecord
    from anima.api.core import Anima
    from anima.detect.evidence import DetectorEvidence
    from anima.errors import AnimaError, BadInput, LedgerError, MediaError, PolicyDenied, ProvenanceError
    from anima.generate.request import GenerationRequest
    from anima.ledger.store import ChainReport
    from anima.policy.gate import Decision, GateReason
    from anima.provenance.stamp import StampResult
    from anima.provenance.verify import LedgerMatch, Verdict, VerifyReport
    from anima.provenance.watermark import WatermarkKey, WatermarkReading
    from anima.scan.engine import ScanSummary


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
