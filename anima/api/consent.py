"""The API's record-keeping namespaces: ``anima.consent`` (who may be animated, for what),
``anima.audit`` (the hash-chained ledger) and ``anima.keys`` (the signing identity)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anima.errors import BadInput, ProvenanceError

# Media, keys, the database and the consent gate load where they are used: the CLI imports this
# module for its names, and `anima --help` should not pay for them.
if TYPE_CHECKING:
    from anima.api.core import Anima
    from anima.ledger import ChainReport, Checkpoint, ConsentGrant, Identity
    from anima.provenance.keys import SigningIdentity
    from anima.provenance.watermark import WatermarkKey

# More events than anyone reads on a screen; a bigger number overflows the database's integer.
MAX_LOG_LIMIT = 1_000_000


@dataclass(frozen=True)
class GrantRecord:
    """One consent as an operator sees it: what it covers, when, and its state today."""

    id: str
    purposes: list[str]
    valid_from: dt.date
    expires: dt.date | None
    status: str  # "active", "revoked", "expired", "not-yet-valid" (for its first purpose)
    statement_sha256: str
    granted_by: str
    revoked_reason: str | None

    @classmethod
    def of(cls, grant: ConsentGrant, now: dt.datetime | None = None) -> GrantRecord:
        from anima.ledger import as_utc  # the database's names load with the database
        from anima.policy.registry import grant_status

        now = now or dt.datetime.now(dt.UTC)
        expires = as_utc(grant.expires_at)
        return cls(
            id=grant.id,
            purposes=list(grant.purposes),
            valid_from=as_utc(grant.valid_from).date(),
            expires=expires.date() if expires else None,
            status=grant_status(grant, grant.purposes[0] if grant.purposes else "", now).code,
            statement_sha256=grant.statement_sha256,
            granted_by=grant.granted_by,
            revoked_reason=grant.revoked_reason,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "purposes": ", ".join(self.purposes),
            "valid_from": self.valid_from.isoformat(),
            "expires": self.expires.isoformat() if self.expires else "never",
            "status": self.status,
        }


@dataclass(frozen=True)
class IdentityRecord:
    """An enrolled person (no face data) with their consents."""

    id: str
    name: str
    backend: str
    photos: int
    enrolled_at: dt.date
    enrolled_by: str
    grants: list[GrantRecord]

    @classmethod
    def of(cls, identity: Identity, grants: list[ConsentGrant]) -> IdentityRecord:
        from anima.ledger import as_utc

        now = dt.datetime.now(dt.UTC)
        return cls(
            id=identity.id,
            name=identity.display_name,
            backend=identity.backend,
            photos=len(identity.embeddings),
            enrolled_at=as_utc(identity.created_at).date(),
            enrolled_by=identity.enrolled_by,
            grants=[GrantRecord.of(grant, now) for grant in grants],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "backend": self.backend,
            "grants": [grant.to_dict() for grant in self.grants],
        }


class Consent:
    """``anima.consent``: enrol people, grant, revoke, extend and forget their consent."""

    def __init__(self, anima: Anima) -> None:
        self._anima = anima

    def enroll(
        self,
        name: str,
        photos: list[str | Path],
        statement: str | Path,
        purposes: list[str],
        *,
        expires: dt.date | None = None,
        valid_from: dt.date | None = None,
        granted_by: str | None = None,
        keep_photos: bool = False,
    ) -> IdentityRecord:
        """Enrol a person from photos that each show exactly their face, with a first consent;
        ``keep_photos`` also copies the photos under the home's ``consent/photos``."""
        from anima import media
        from anima.policy import enrol

        anima = self._anima
        for photo in photos:  # kind and pixel count from the header, before the ledger is opened
            media.probe_image(Path(photo))
        anima.private_home()
        self._require_signing()
        identity, grant = enrol.enroll(
            anima.registry,
            anima.face_backend,
            anima.rules,
            name,
            [Path(p) for p in photos],
            Path(statement),
            purposes,
            anima.actor,
            expires=expires,
            valid_from=valid_from,
            granted_by=granted_by,
            keep_photos_in=self.photos_folder if keep_photos else None,
        )
        return IdentityRecord.of(identity, [grant])

    def grant(
        self,
        identity_id: str,
        statement: str | Path,
        purposes: list[str],
        *,
        expires: dt.date | None = None,
        valid_from: dt.date | None = None,
        granted_by: str | None = None,
    ) -> GrantRecord:
        """Record a further consent for an enrolled person."""
        from anima.policy import enrol

        anima = self._anima
        self._require_signing()
        grant = enrol.grant(
            anima.registry,
            anima.rules,
            identity_id,
            Path(statement),
            purposes,
            anima.actor,
            expires=expires,
            valid_from=valid_from,
            granted_by=granted_by,
        )
        return GrantRecord.of(grant)

    def list(self) -> list[IdentityRecord]:
        """Every enrolled identity with its consents."""
        registry = self._anima.registry
        return [IdentityRecord.of(i, registry.grants(i.id)) for i in registry.identities()]

    def show(self, record_id: str) -> IdentityRecord:
        """One identity (``idn-...``) with its consents, or one consent (``cns-...``) with its identity."""
        registry = self._anima.registry
        grant = registry.consent(record_id) if record_id.startswith("cns-") else None
        identity = registry.identity(grant.identity_id if grant else record_id)
        return IdentityRecord.of(identity, [grant] if grant else registry.grants(identity.id))

    def revoke(self, record_id: str, reason: str) -> list[GrantRecord]:
        """Revoke a consent, or every consent of an identity; returns what was revoked."""
        self._require_signing()
        return [GrantRecord.of(g) for g in self._anima.registry.revoke(record_id, reason, self._anima.actor)]

    def extend(self, grant_id: str, expires: dt.date | None) -> GrantRecord:
        """Change when a consent expires (``None``: never)."""
        from anima.policy import enrol

        self._require_signing()
        grant = self._anima.registry.extend(grant_id, enrol.start_of_day_utc(expires), self._anima.actor)
        return GrantRecord.of(grant)

    def forget(self, identity_id: str) -> str:
        """Erase a person's face data, name and kept photos, revoking their consents (the audit
        trail keeps the ids); returns the identity id."""
        from anima.policy import enrol

        self._require_signing()
        registry = self._anima.registry
        registry.identity(identity_id)  # an unknown id is bad input before anything is erased
        # Photos first: a crash in between leaves a person not yet forgotten (forget again), never
        # a forgotten person's photos on disk (and `anima audit reconcile` removes those too).
        enrol.erase_kept_photos(self.photos_folder, identity_id)
        return registry.forget(identity_id, self._anima.actor).id

    def _require_signing(self) -> None:
        """Consent changes are signed and anchored by a checkpoint; without the operator's key they
        could be forged by anyone who can write the database, so they are refused."""
        if self._anima.ledger.key is None:
            raise ProvenanceError(
                "consent changes are signed with the operator's key, and there is none yet: "
                "run `anima keys init` (or set ANIMA_SIGNING_CERT and ANIMA_SIGNING_KEY)"
            )

    @property
    def photos_folder(self) -> Path:
        """Where ``keep_photos`` keeps enrolment photos, one folder per identity."""
        return self._anima.settings.home / "consent" / "photos"


@dataclass(frozen=True)
class AuditEntry:
    """One audit event as stored, with its place in the hash chain."""

    id: int
    created_at: dt.datetime
    kind: str
    actor: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "kind": self.kind,
            "actor": self.actor,
            "subject": self.subject,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


class Audit:
    """``anima.audit``: read the ledger's events and check its hash chain."""

    def __init__(self, anima: Anima) -> None:
        self._anima = anima

    def log(self, limit: int | None = 20, kind: str | None = None) -> list[AuditEntry]:
        """The most recent events first; ``limit`` ``None`` means all."""
        if limit is not None and not 1 <= limit <= MAX_LOG_LIMIT:
            raise BadInput(f"limit must be in 1..{MAX_LOG_LIMIT}, got {limit}")
        return [
            AuditEntry(e.id, e.created_at, e.kind, e.actor, e.subject, e.details, e.prev_hash, e.hash)
            for e in self._anima.ledger.events(limit=limit, kind=kind)
        ]

    def verify(self, checkpoints: str | Path | None = None) -> ChainReport:
        """Recompute the hash chain, check every event's signature, compare the head with the
        latest signed checkpoint (in ``checkpoints``, default the configured folder: give an
        archived copy to check against it) and every tracked row's digest; names the first problem."""
        return self._anima.ledger.verify_chain(Path(checkpoints) if checkpoints else None)

    def checkpoint(self, to: str | Path | None = None) -> Checkpoint:
        """Sign the ledger's current head (event count, head hash, registry row digests) and write
        it as a file in ``to`` (default: the configured checkpoint folder, ``checkpoint_dir``)."""
        return self._anima.ledger.checkpoint(Path(to) if to else None)


class Keys:
    """``anima.keys``: the signing identity used for C2PA manifests and the secret watermark key."""

    def __init__(self, anima: Anima) -> None:
        self._anima = anima

    def init(self, org: str = "Anima local studio", force: bool = False) -> SigningIdentity:
        """Create a local CA, an ES256 signing certificate and a secret watermark key (mode 0600).
        With ``force`` both are replaced; the old watermark key is retired, still read by verify."""
        from anima.provenance import keys

        self._anima.private_home()
        settings = self._anima.settings
        identity = keys.init_identity(settings, org=org, force=force)
        if force or not keys.watermark_key_path(settings).exists():
            keys.init_watermark_key(settings, force=force)
        return identity

    def init_watermark(self, force: bool = False) -> WatermarkKey:
        """Create only the secret watermark key (a home made before the keyed watermark has none);
        with ``force`` a new key replaces it and the old one is retired, still read by verify."""
        from anima.provenance import keys

        self._anima.private_home()
        return keys.init_watermark_key(self._anima.settings, force=force)

    def show(self) -> SigningIdentity:
        """The signing identity in use."""
        return self._anima.signing_identity()

    def watermark(self) -> WatermarkKey:
        """The watermark key new outputs are marked with."""
        from anima.provenance import keys

        return keys.marking_key(self._anima.settings)

    @property
    def watermark_path(self) -> Path:
        """The file of the watermark key (secret; give it only to verifiers you trust)."""
        from anima.provenance import keys

        return keys.watermark_key_path(self._anima.settings)
