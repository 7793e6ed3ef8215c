"""The consent gate: may this reference picture be animated for this purpose?

Every face in the reference must be verifiable (large and sharp enough) and match exactly one
enrolled identity, unambiguously, whose consent covers the purpose today and whose registry rows
are untampered. A picture with no face passes only when the request declares it fictional; a
fictional declaration on a picture with a face is refused. Every decision, allow or deny, is an
audit event. After generation, :func:`check_output` samples the video: any face that does not
match a consented identity (identity drift) fails the job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from anima.errors import PolicyDenied
from anima.ledger import Identity
from anima.policy.faces import DetectedFace, FaceBackend
from anima.policy.registry import ConsentRegistry, grant_status
from anima.policy.rules import PolicyRules


@dataclass
class FaceMatch:
    """One face of the reference and what the gate made of it."""

    box: tuple[int, int, int, int]
    size: int
    status: str  # "verified" or the reason code it was refused for
    identity_id: str | None = None
    distance: float | None = None
    grant_id: str | None = None


@dataclass
class Decision:
    """The gate's answer; ``reasons`` are machine-readable codes, ``matches`` one entry per face."""

    allow: bool
    purpose: str
    fictional: bool
    reasons: list[str]
    matches: list[FaceMatch] = field(default_factory=list)
    reference_sha256: str = ""
    event_id: int | None = None

    @property
    def identity_ids(self) -> list[str]:
        return [m.identity_id for m in self.matches if m.status == "verified" and m.identity_id]

    @property
    def grant_ids(self) -> list[str]:
        return [m.grant_id for m in self.matches if m.status == "verified" and m.grant_id]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "identity_ids": self.identity_ids, "grant_ids": self.grant_ids}

    def explain(self) -> str:
        """The reasons in words, for people."""
        return "; ".join(REASON_TEXT.get(code, code) for code in self.reasons)


REASON_TEXT = {
    "no-face-fictional": "no face found; declared fictional",
    "no-face-not-declared": "no face found: declare the character fictional (--fictional) if it is",
    "fictional-with-face": "declared fictional, but the picture shows a face",
    "face-too-small": "a face is too small to verify",
    "face-too-blurred": "a face is too blurred to verify",
    "face-unknown": "a face matches no enrolled identity",
    "face-ambiguous": "a face matches more than one enrolled identity",
    "consent-revoked": "consent was revoked",
    "consent-expired": "consent has expired",
    "consent-not-yet-valid": "consent is not valid yet",
    "consent-wrong-purpose": "consent does not cover this purpose",
    "consent-missing": "the person has no consent on record",
    "registry-tampered": "the consent registry was changed outside Anima",
    "all-faces-verified": "every face matches a consenting identity",
}


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
    match = FaceMatch(box=face.box, size=face.size, status="verified")
    if face.size < rules.min_face_size:
        match.status = "face-too-small"
        return match
    if face.sharpness < rules.min_sharpness:
        match.status = "face-too-blurred"
        return match
    ranked = _nearest(face, identities, backend)
    if not ranked or ranked[0][0] >= threshold:
        match.status = "face-unknown"
        match.distance = ranked[0][0] if ranked else None
        return match
    distance, identity = ranked[0]
    match.identity_id, match.distance = identity.id, round(distance, 4)
    if len(ranked) > 1 and ranked[1][0] < threshold and ranked[1][0] - distance < rules.ambiguity_margin:
        match.status = "face-ambiguous"
        return match
    if registry.ledger.row_problem(identity):
        match.status = "registry-tampered"
        return match
    statuses = [grant_status(g, purpose, now) for g in registry.grants(identity.id)]
    for status in statuses:
        if status.active:
            if registry.ledger.row_problem(status.grant):
                match.status = "registry-tampered"
                return match
            match.grant_id = status.grant.id
            return match
    if not statuses:
        match.status = "consent-missing"
    else:  # the most telling reason among the grants: purpose beats time beats revocation
        order = ["wrong-purpose", "not-yet-valid", "expired", "revoked"]
        match.status = "consent-" + min((s.code for s in statuses), key=order.index)
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
    faces = backend.analyze(reference)
    decision = Decision(
        allow=False,
        purpose=purpose,
        fictional=fictional,
        reasons=[],
        reference_sha256=hashlib.sha256(np.ascontiguousarray(reference).tobytes()).hexdigest(),
    )
    if not faces:
        decision.allow = fictional
        decision.reasons = ["no-face-fictional" if fictional else "no-face-not-declared"]
    else:
        identities = registry.identities(backend=backend.name)
        decision.matches = [
            _verify_face(face, purpose, identities, registry, backend, rules, threshold, now)
            for face in faces
        ]
        refused = sorted({m.status for m in decision.matches if m.status != "verified"})
        if fictional:
            refused = ["fictional-with-face", *refused]
        decision.allow = not refused
        decision.reasons = refused or ["all-faces-verified"]
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
