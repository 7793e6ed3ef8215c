"""The consent gate: may this reference picture be animated for this purpose?

Every face in the reference must be verifiable (large and sharp enough) and match exactly one
enrolled identity, unambiguously, whose consent covers the purpose today and whose registry rows
are untampered; and the ledger itself must match its latest signed checkpoint (else nothing is
allowed, faces or not). A picture with no face passes only when the request declares it fictional; a
fictional declaration on a picture with a face is refused. Every decision, allow or deny, is an
audit event. After generation, :func:`check_output` samples the video: any face that does not
match a consented identity (identity drift) fails the job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from anima.errors import PolicyDenied
from anima.ledger import Identity
from anima.policy.faces import DetectedFace, FaceBackend
from anima.policy.registry import ConsentRegistry, grant_status
from anima.policy.rules import PolicyRules


class GateReason(StrEnum):
    """Why the gate decided as it did (machine-readable; :meth:`explain` says it in words)."""

    NO_FACE_FICTIONAL = "no-face-fictional"
    NO_FACE_NOT_DECLARED = "no-face-not-declared"
    FICTIONAL_WITH_FACE = "fictional-with-face"
    FACE_TOO_SMALL = "face-too-small"
    FACE_TOO_BLURRED = "face-too-blurred"
    FACE_UNKNOWN = "face-unknown"
    FACE_AMBIGUOUS = "face-ambiguous"
    CONSENT_REVOKED = "consent-revoked"
    CONSENT_EXPIRED = "consent-expired"
    CONSENT_NOT_YET_VALID = "consent-not-yet-valid"
    CONSENT_WRONG_PURPOSE = "consent-wrong-purpose"
    CONSENT_MISSING = "consent-missing"
    REGISTRY_TAMPERED = "registry-tampered"
    LEDGER_TAMPERED = "ledger-tampered"
    ALL_FACES_VERIFIED = "all-faces-verified"
    IDENTITY_DRIFT = "identity-drift"

    def explain(self) -> str:
        return _REASON_TEXT[self]


_REASON_TEXT = {
    GateReason.NO_FACE_FICTIONAL: "no face found; declared fictional",
    GateReason.NO_FACE_NOT_DECLARED: "no face found: declare the character fictional if it is",
    GateReason.FICTIONAL_WITH_FACE: "declared fictional, but the picture shows a face",
    GateReason.FACE_TOO_SMALL: "a face is too small to verify",
    GateReason.FACE_TOO_BLURRED: "a face is too blurred to verify",
    GateReason.FACE_UNKNOWN: "a face matches no enrolled identity",
    GateReason.FACE_AMBIGUOUS: "a face matches more than one enrolled identity",
    GateReason.CONSENT_REVOKED: "consent was revoked",
    GateReason.CONSENT_EXPIRED: "consent has expired",
    GateReason.CONSENT_NOT_YET_VALID: "consent is not valid yet",
    GateReason.CONSENT_WRONG_PURPOSE: "consent does not cover this purpose",
    GateReason.CONSENT_MISSING: "the person has no consent on record",
    GateReason.REGISTRY_TAMPERED: "the consent registry was changed outside Anima",
    GateReason.LEDGER_TAMPERED: (
        "the ledger does not match its latest signed checkpoint or signatures (run `anima audit verify`)"
    ),
    GateReason.ALL_FACES_VERIFIED: "every face matches a consenting identity",
    GateReason.IDENTITY_DRIFT: "a face in the output matches no consented identity",
}
# A face's status when it passed; otherwise its status is the GateReason it was refused for.
FACE_VERIFIED = "verified"


@dataclass
class FaceMatch:
    """One face of the reference and what the gate made of it."""

    box: tuple[int, int, int, int]
    size: int
    status: str  # FACE_VERIFIED or the GateReason it was refused for
    identity_id: str | None = None
    distance: float | None = None
    grant_id: str | None = None


@dataclass
class Decision:
    """The gate's answer; ``reasons`` are machine-readable codes, ``matches`` one entry per face."""

    allow: bool
    purpose: str
    fictional: bool
    reasons: list[GateReason]
    matches: list[FaceMatch] = field(default_factory=list)
    reference_sha256: str = ""
    event_id: int | None = None

    @property
    def identity_ids(self) -> list[str]:
        return [m.identity_id for m in self.matches if m.status == FACE_VERIFIED and m.identity_id]

    @property
    def grant_ids(self) -> list[str]:
        return [m.grant_id for m in self.matches if m.status == FACE_VERIFIED and m.grant_id]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "identity_ids": self.identity_ids, "grant_ids": self.grant_ids}

    def explain(self) -> str:
        """The reasons in words, for people."""
        return "; ".join(GateReason(code).explain() for code in self.reasons)


def _nearest(
    face: DetectedFace, identities: list[Identity], backend: FaceBackend
) -> list[tuple[float, Identity]]:
    """Each identity's smallest distance to the face, nearest first."""
    ranked = []
    for identity in identities:
        distances = [backend.distance(face.embedding, np.asarray(e, np.float32)) for e in identity.embeddings]
        if distances:
            ranked.append((min(distances), identity))
    return sorted(ranked, key=lambda pair: pair[0])


def _verify_face(
    face: DetectedFace,
    purpose: str,
    identities: list[Identity],
    registry: ConsentRegistry,
    backend: FaceBackend,
    rules: PolicyRules,
    threshold: float,
    now: dt.datetime,
) -> FaceMatch:
    match = FaceMatch(box=face.box, size=face.size, status=FACE_VERIFIED)
    if face.size < rules.min_face_size:
        match.status = GateReason.FACE_TOO_SMALL
        return match
    if face.sharpness < rules.min_sharpness:
        match.status = GateReason.FACE_TOO_BLURRED
        return match
    ranked = _nearest(face, identities, backend)
    if not ranked or ranked[0][0] >= threshold:
        match.status = GateReason.FACE_UNKNOWN
        match.distance = ranked[0][0] if ranked else None
        return match
    distance, identity = ranked[0]
    match.identity_id, match.distance = identity.id, round(distance, 4)
    if len(ranked) > 1 and ranked[1][0] < threshold and ranked[1][0] - distance < rules.ambiguity_margin:
        match.status = GateReason.FACE_AMBIGUOUS
        return match
    if registry.ledger.row_problem(identity):
        match.status = GateReason.REGISTRY_TAMPERED
        return match
    statuses = [grant_status(g, purpose, now) for g in registry.grants(identity.id)]
    for status in statuses:
        if status.active:
            if registry.ledger.row_problem(status.grant):
                match.status = GateReason.REGISTRY_TAMPERED
                return match
            match.grant_id = status.grant.id
            return match
    if not statuses:
        match.status = GateReason.CONSENT_MISSING
    else:  # the most telling reason among the grants: purpose beats time beats revocation
        order = ["wrong-purpose", "not-yet-valid", "expired", "revoked"]
        match.status = GateReason("consent-" + min((s.code for s in statuses), key=order.index))
    return match


def check(
    reference: np.ndarray,
    purpose: str,
    requester: str,
    *,
    registry: ConsentRegistry,
    backend: FaceBackend,
    rules: PolicyRules,
    fictional: bool = False,
) -> Decision:
    """Decide whether ``reference`` (an RGB picture) may be animated for ``purpose``; record it."""
    rules.check_purpose(purpose)
    now = dt.datetime.now(dt.UTC)
    threshold = rules.threshold_for(backend)
    # First, and cheaply: nothing in a ledger cut short or rewritten can vouch for consent.
    ledger_problem = registry.ledger.anchor_problem()
    faces = [] if ledger_problem else backend.analyze(reference)
    decision = Decision(
        allow=False,
        purpose=purpose,
        fictional=fictional,
        reasons=[],
        reference_sha256=hashlib.sha256(np.ascontiguousarray(reference).tobytes()).hexdigest(),
    )
    if ledger_problem:
        decision.reasons = [GateReason.LEDGER_TAMPERED]
    elif not faces:
        decision.allow = fictional
        decision.reasons = [GateReason.NO_FACE_FICTIONAL if fictional else GateReason.NO_FACE_NOT_DECLARED]
    else:
        identities = registry.identities(backend=backend.name)
        decision.matches = [
            _verify_face(face, purpose, identities, registry, backend, rules, threshold, now)
            for face in faces
        ]
        refused = sorted({GateReason(m.status) for m in decision.matches if m.status != FACE_VERIFIED})
        if fictional:
            refused = [GateReason.FICTIONAL_WITH_FACE, *refused]
        decision.allow = not refused
        decision.reasons = refused or [GateReason.ALL_FACES_VERIFIED]
    event = registry.ledger.record(
        "policy.decision",
        requester,
        decision.reference_sha256[:16],
        {
            "allow": decision.allow,
            "purpose": purpose,
            "fictional": fictional,
            "reasons": decision.reasons,
            "backend": backend.name,
            "matches": [asdict(m) for m in decision.matches],
            **({"ledger_problem": ledger_problem} if ledger_problem else {}),
        },
    )
    decision.event_id = event.id
    return decision


def require(decision: Decision) -> None:
    """Raise :class:`PolicyDenied` unless the decision allows."""
    if not decision.allow:
        raise PolicyDenied(f"refused by the consent gate: {decision.explain()}", decision.reasons)


@dataclass(frozen=True)
class DriftReport:
    frames_checked: int
    faces_found: int
    drifted: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.drifted


def require_no_drift(report: DriftReport) -> None:
    """Raise :class:`PolicyDenied` if a face in the output matched no consented identity."""
    if not report.ok:
        raise PolicyDenied(
            f"identity drift: {len(report.drifted)} face(s) in the output match no consented "
            "identity; nothing was written",
            [GateReason.IDENTITY_DRIFT],
        )


def check_output(
    frames: np.ndarray,
    decision: Decision,
    requester: str,
    *,
    registry: ConsentRegistry,
    backend: FaceBackend,
    rules: PolicyRules,
) -> DriftReport:
    """Sample generated frames: every face found must match an identity the decision verified."""
    threshold = rules.threshold_for(backend)
    consented = [registry.identity(i) for i in decision.identity_ids]
    picks = np.unique(
        np.linspace(0, len(frames) - 1, min(rules.drift_sample_frames, len(frames))).astype(int)
    )
    drifted, found = [], 0
    for index in picks:
        for face in backend.analyze(frames[index]):
            found += 1
            ranked = _nearest(face, consented, backend)
            if face.size >= rules.min_face_size and (not ranked or ranked[0][0] >= threshold):
                drifted.append(
                    {
                        "frame": int(index),
                        "box": list(face.box),
                        "distance": round(ranked[0][0], 4) if ranked else None,
                    }
                )
    report = DriftReport(len(picks), found, drifted)
    registry.ledger.record(
        "policy.output-check",
        requester,
        decision.reference_sha256[:16],
        {
            "decision_event": decision.event_id,
            "frames_checked": len(picks),
            "faces_found": found,
            "drifted": drifted,
            "ok": report.ok,
        },
    )
    return report
