"""The verdict on a clip from its evidence: the C2PA manifest, the watermark, the ledger row they
lead to, and the detector. The rules live here, once; the API gathers the evidence.

Order of the rules, strongest evidence first: a manifest that does not validate, or a watermark that
contradicts a valid manifest, is ``tampered``; a valid Anima manifest found in the ledger, or an
Anima watermark, is ``anima-generated``; someone else's valid manifest that declares AI, or another
generator's invisible watermark (Stable Diffusion's, see :mod:`anima.detect.declared_marks`), is
``ai-declared``; the detector alone can only say ``likely-synthetic``; otherwise ``no-evidence``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anima.detect.declared_marks import DeclaredMarks, MarkReading
    from anima.detect.evidence import DetectorEvidence
    from anima.ledger import Stamp
    from anima.provenance.manifest import ManifestReport
    from anima.provenance.watermark import WatermarkReading


class Verdict(StrEnum):
    """What a clip is, as far as the evidence shows."""

    ANIMA_GENERATED = "anima-generated"
    AI_DECLARED = "ai-declared"
    TAMPERED = "tampered"
    LIKELY_SYNTHETIC = "likely-synthetic"
    NO_EVIDENCE = "no-evidence"


def stamp_id_for(payload: int) -> str:
    """The stamp id that a watermark payload names."""
    return f"anm-{payload:08x}"


@dataclass(frozen=True)
class LedgerMatch:
    """The ledger row a clip's watermark or manifest leads to (public facts only)."""

    stamp_id: str
    kind: str
    created_at: str
    output_sha256: str
    signer: str
    inputs: dict[str, Any]

    @classmethod
    def from_row(cls, row: Stamp) -> LedgerMatch:
        return cls(row.id, row.kind, row.created_at.isoformat(), row.output_sha256, row.signer, row.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stamp_id": self.stamp_id,
            "kind": self.kind,
            "created_at": self.created_at,
            "output_sha256": self.output_sha256,
            "signer": self.signer,
            "inputs": self.inputs,
        }


@dataclass
class VerifyReport:
    """The evidence about one clip and the verdict it supports."""

    path: str
    sha256: str
    verdict: Verdict
    reasons: list[str]
    manifest: ManifestReport
    watermark: WatermarkReading | None
    ledger: LedgerMatch | None = None
    durable_manifest: dict[str, Any] | None = None
    detector: DetectorEvidence | None = None
    frames: int | None = field(default=None, compare=False)
    declared_marks: DeclaredMarks | None = None  # other generators' watermarks; None: frames too small

    @property
    def stamp_id(self) -> str | None:
        """The stamp this clip traces to: its ledger row, its valid manifest's claim, its watermark."""
        if self.ledger is not None:
            return self.ledger.stamp_id
        claimed = (self.manifest.anima or {}).get("stamp_id") if self.manifest.valid else None
        if claimed:
            return str(claimed)
        payload = self.watermark.payload if self.watermark else None
        return stamp_id_for(payload) if payload is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "verdict": str(self.verdict),
            "reasons": self.reasons,
            "manifest": self.manifest.to_dict(),
            "watermark": self.watermark.to_dict() if self.watermark else None,
            "ledger": self.ledger.to_dict() if self.ledger else None,
            "durable_manifest": self.durable_manifest,
            "classifier": self.detector.to_dict() if self.detector else None,
            "declared_marks": self.declared_marks.to_dict() if self.declared_marks else None,
        }


def claimed_stamp_id(manifest: ManifestReport) -> str | None:
    """The stamp id a valid Anima manifest claims."""
    claimed = (manifest.anima or {}).get("stamp_id") if manifest.valid else None
    return str(claimed) if claimed else None


def decide(
    manifest: ManifestReport,
    watermark: WatermarkReading | None,
    row: Stamp | None,
    detector: DetectorEvidence | None,
    ledger_problem: str | None = None,
    declared: DeclaredMarks | None = None,
) -> tuple[Verdict, list[str]]:
    """The verdict and its reasons, in words, from the evidence gathered about one clip.

    ``ledger_problem`` says why the ledger row the clip leads to was not trusted (then ``row`` is
    None): the clip's own evidence still decides the verdict, which is not ``tampered`` on that
    account, since the clip did not change; the database did. ``declared`` holds the readings of
    other generators' invisible watermarks: one found makes the clip ``ai-declared`` when no
    stronger evidence decides, and is a further reason otherwise."""
    reasons: list[str] = []
    foreign = declared.found if declared is not None else []
    claimed_id = claimed_stamp_id(manifest)
    found_payload = watermark.payload if watermark is not None else None
    claimed_payload = ((manifest.anima or {}).get("watermark") or {}).get("payload")
    if manifest.present and not manifest.valid:
        verdict = Verdict.TAMPERED
        reasons.append(
            "the C2PA manifest does not validate: the file changed after signing"
            + (f" ({', '.join(manifest.failures)})" if manifest.failures else "")
        )
    elif manifest.valid and found_payload is not None and claimed_payload not in (None, found_payload):
        verdict = Verdict.TAMPERED
        reasons.append(f"the watermark payload {found_payload} contradicts the manifest's {claimed_payload}")
    elif manifest.valid and claimed_id and row is not None:
        verdict = Verdict.ANIMA_GENERATED
        reasons.append(f"valid manifest from Anima names stamp {claimed_id}, found in the ledger")
    elif found_payload is not None:
        verdict = Verdict.ANIMA_GENERATED
        if row is not None:
            reasons.append(f"Anima watermark names stamp {row.id}, found in the ledger")
        elif ledger_problem is None:
            reasons.append("Anima watermark found, but its payload is not in this ledger")
        else:
            reasons.append("Anima watermark found")
    elif manifest.valid and manifest.ai_declared:
        verdict = Verdict.AI_DECLARED
        reasons.append(f"valid manifest declares AI-generated content (signer: {manifest.signer})")
    elif foreign:
        verdict = Verdict.AI_DECLARED
    elif detector is not None and detector.fired:
        verdict = Verdict.LIKELY_SYNTHETIC
        reasons.append(
            "no manifest declares AI and no Anima watermark, but the detector scores the clip "
            f"{detector.clip_score:.2f} >= threshold {detector.threshold:.2f} "
            f"(calibrated probability {detector.probability:.2f} of this generator's output)"
        )
    else:
        verdict = Verdict.NO_EVIDENCE
        reasons.append("no valid manifest, no Anima watermark and no other generator's watermark")
        if detector is not None:
            reasons.append(
                f"the detector scores {detector.clip_score:.2f}, below its threshold {detector.threshold:.2f}"
            )
    reasons.extend(_declared_reason(reading) for reading in foreign)
    if ledger_problem:
        reasons.append(f"its ledger row is not used as evidence: {ledger_problem}")
    if manifest.valid and not manifest.trusted:
        reasons.append("the signer is not in the trust anchors given (trust the signer's CA to check it)")
    return verdict, reasons


def _declared_reason(reading: MarkReading) -> str:
    return (
        f"an invisible watermark of {reading.mark} declares AI generation ({reading.matched} of "
        f"{reading.bits} bits match; false-positive bound {reading.false_positive_bound:.1e})"
    )
