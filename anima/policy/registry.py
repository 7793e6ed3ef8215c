"""The consent registry: enrolled identities and their consent grants, kept in the ledger.

Every change (enrol, grant, revoke, extend, forget) is one audit event carrying the changed row's
digest, written in the same transaction as the row. Rows are never deleted: a revoked grant keeps
its history, and forgetting a person erases their face embeddings and name but keeps the fact
that consent existed and was withdrawn.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from anima.errors import BadInput
from anima.ledger import ConsentGrant, Identity, Ledger, StaleRow, as_utc

FORGOTTEN_NAME = "(forgotten)"


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class GrantStatus:
    """Whether a grant covers a purpose now, and if not, why (a machine-readable code)."""

    grant: ConsentGrant
    code: str  # "active", "revoked", "expired", "not-yet-valid", "wrong-purpose"

    @property
    def active(self) -> bool:
        return self.code == "active"


def grant_status(grant: ConsentGrant, purpose: str, now: dt.datetime) -> GrantStatus:
    if grant.revoked_at is not None:
        return GrantStatus(grant, "revoked")
    expires = as_utc(grant.expires_at)
    if expires is not None and now >= expires:
        return GrantStatus(grant, "expired")
    if now < as_utc(grant.valid_from):
        return GrantStatus(grant, "not-yet-valid")
    if purpose not in grant.purposes:
        return GrantStatus(grant, "wrong-purpose")
    return GrantStatus(grant, "active")


def _new_identity(
    display_name: str, embeddings: list[np.ndarray], backend: str, photo_sha256: list[str], actor: str
) -> Identity:
    if not display_name.strip():
        raise BadInput("the enrolled person's name must not be empty")
    return Identity(
        id=_new_id("idn"),
        display_name=display_name.strip(),
        backend=backend,
        embeddings=[[float(v) for v in e] for e in embeddings],
        photo_sha256=photo_sha256,
        created_at=dt.datetime.now(dt.UTC),
        enrolled_by=actor,
        forgotten_at=None,
    )


def _enrolled_event(identity: Identity) -> tuple[str, str, str, dict[str, object]]:
    # Never the name: an event cannot be erased without breaking the chain.
    details = {"backend": identity.backend, "photos": len(identity.photo_sha256)}
    return "identity.enrolled", identity.enrolled_by, identity.id, details


def _new_grant(
    identity_id: str,
    purposes: list[str],
    statement_sha256: str,
    granted_by: str,
    valid_from: dt.datetime | None,
    expires_at: dt.datetime | None,
) -> ConsentGrant:
    """A grant checked for its terms (purposes, a period that ends after it starts); not yet stored."""
    if not purposes:
        raise BadInput("give at least one purpose")
    now = dt.datetime.now(dt.UTC)
    valid_from = valid_from or now
    if expires_at is not None and expires_at <= valid_from:
        raise BadInput(
            f"consent would expire ({expires_at:%Y-%m-%d}) before it starts ({valid_from:%Y-%m-%d})"
        )
    return ConsentGrant(
        id=_new_id("cns"),
        identity_id=identity_id,
        purposes=sorted(set(purposes)),
        valid_from=valid_from,
        expires_at=expires_at,
        statement_sha256=statement_sha256,
        granted_by=granted_by,
        created_at=now,
        revoked_at=None,
        revoked_reason=None,
    )


def _granted_event(grant: ConsentGrant, actor: str) -> tuple[str, str, str, dict[str, object]]:
    return "consent.granted", actor, grant.id, {"identity": grant.identity_id, "purposes": grant.purposes}


class ConsentRegistry:
    """Identities and grants in ``ledger``; every method that changes something records who did."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def enroll(
        self,
        display_name: str,
        embeddings: list[np.ndarray],
        backend: str,
        photo_sha256: list[str],
        actor: str,
    ) -> Identity:
        identity = _new_identity(display_name, embeddings, backend, photo_sha256, actor)
        self.ledger.record(*_enrolled_event(identity), row=identity)
        return identity

    def enroll_with_grant(
        self,
        display_name: str,
        embeddings: list[np.ndarray],
        backend: str,
        photo_sha256: list[str],
        actor: str,
        *,
        purposes: list[str],
        statement_sha256: str,
        granted_by: str | None = None,
        valid_from: dt.datetime | None = None,
        expires_at: dt.datetime | None = None,
    ) -> tuple[Identity, ConsentGrant]:
        """Enrol a person and record their first consent in one transaction: a refused consent
        leaves no identity behind. ``granted_by`` defaults to the person."""
        identity = _new_identity(display_name, embeddings, backend, photo_sha256, actor)
        granted_by = granted_by or identity.display_name
        grant = _new_grant(identity.id, purposes, statement_sha256, granted_by, valid_from, expires_at)
        self.ledger.record_all(
            [(*_enrolled_event(identity), identity), (*_granted_event(grant, actor), grant)]
        )
        return identity, grant

    def grant(
        self,
        identity_id: str,
        purposes: list[str],
        statement_sha256: str,
        granted_by: str,
        actor: str,
        valid_from: dt.datetime | None = None,
        expires_at: dt.datetime | None = None,
    ) -> ConsentGrant:
        identity = self.identity(identity_id)
        if identity.forgotten_at is not None:
            raise BadInput(f"{identity_id} was forgotten; enrol the person again")
        grant = _new_grant(identity_id, purposes, statement_sha256, granted_by, valid_from, expires_at)
        self.ledger.record(*_granted_event(grant, actor), row=grant)
        return grant

    def revoke(self, grant_or_identity_id: str, reason: str, actor: str) -> list[ConsentGrant]:
        """Revoke one grant, or every grant of an identity; returns what was revoked."""
        if not reason.strip():
            raise BadInput("a revocation must say why consent is revoked")
        if grant_or_identity_id.startswith("idn-"):
            targets = [g for g in self.grants(self.identity(grant_or_identity_id).id) if g.revoked_at is None]
        else:
            targets = [self.consent(grant_or_identity_id)]
            if targets[0].revoked_at is not None:
                raise BadInput(f"{grant_or_identity_id} is already revoked")
        now = dt.datetime.now(dt.UTC)
        revoked = []
        for grant in targets:
            grant.revoked_at, grant.revoked_reason = now, reason.strip()
            try:  # one conditional UPDATE: of two concurrent revocations, exactly one is recorded
                self.ledger.record(
                    "consent.revoked",
                    actor,
                    grant.id,
                    {"reason": reason.strip()},
                    row=grant,
                    only_if=ConsentGrant.revoked_at.is_(None),
                )
            except StaleRow:
                if not grant_or_identity_id.startswith("idn-"):
                    raise BadInput(f"{grant_or_identity_id} is already revoked") from None
                continue  # revoked meanwhile by someone else: not ours to report
            revoked.append(grant)
        return revoked

    def extend(self, grant_id: str, expires_at: dt.datetime | None, actor: str) -> ConsentGrant:
        """Move a grant's expiry (``None``: no expiry). Revoked grants cannot be revived."""
        grant = self.consent(grant_id)
        if grant.revoked_at is not None:
            raise BadInput(f"{grant_id} is revoked; record a new grant instead")
        if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
            raise BadInput("the new expiry is in the past")
        previous = as_utc(grant.expires_at)
        grant.expires_at = expires_at
        try:  # conditional: an extension read before a concurrent revocation must not undo it
            self.ledger.record(
                "consent.extended",
                actor,
                grant.id,
                {
                    "from": previous.isoformat() if previous else None,
                    "to": expires_at.isoformat() if expires_at else None,
                },
                row=grant,
                only_if=ConsentGrant.revoked_at.is_(None),
            )
        except StaleRow:
            raise BadInput(f"{grant_id} is revoked; record a new grant instead") from None
        return grant

    def forget(self, identity_id: str, actor: str) -> Identity:
        """Erase a person's face embeddings and name and revoke their grants (right to erasure).

        The name goes from every row (the identity, and ``granted_by`` of their grants where it is
        their name) in one transaction; events never held it (they carry ids, and row digests that
        cannot be reversed), so the hash chain stays whole. Then the SQLite write-ahead log is
        emptied so no old copy of the rows survives there."""
        identity = self.identity(identity_id)
        self.revoke(identity_id, "identity forgotten", actor)
        name = identity.display_name
        entries: list[tuple[str, str, str, dict[str, object], ConsentGrant | Identity]] = []
        for grant in self.grants(identity_id):
            if grant.granted_by.strip() == name:
                grant.granted_by = FORGOTTEN_NAME
                entries.append(("consent.name-erased", actor, grant.id, {"identity": identity_id}, grant))
        identity.embeddings, identity.display_name = [], FORGOTTEN_NAME
        identity.photo_sha256 = []  # a photo's hash would still tell that this photo was enrolled
        identity.forgotten_at = dt.datetime.now(dt.UTC)
        entries.append(("identity.forgotten", actor, identity.id, {}, identity))
        self.ledger.record_all(entries)
        self.ledger.scrub()
        return identity

    def _fetch(self, table: type[Identity] | type[ConsentGrant], row_id: str, what: str):
        with self.ledger.session() as session:
            row = session.get(table, row_id)
        if row is None:
            raise BadInput(f"no {what} {row_id}")
        return row

    def identity(self, identity_id: str) -> Identity:
        return self._fetch(Identity, identity_id, "enrolled identity")

    def consent(self, grant_id: str) -> ConsentGrant:
        return self._fetch(ConsentGrant, grant_id, "consent grant")

    def identities(self, backend: str | None = None, include_forgotten: bool = False) -> list[Identity]:
        with self.ledger.session() as session:
            query = select(Identity).order_by(Identity.created_at)
            if backend:
                query = query.where(Identity.backend == backend)
            if not include_forgotten:
                query = query.where(Identity.forgotten_at.is_(None))
            return list(session.scalars(query))

    def grants(self, identity_id: str) -> list[ConsentGrant]:
        with self.ledger.session() as session:
            query = select(ConsentGrant).where(ConsentGrant.identity_id == identity_id)
            return list(session.scalars(query.order_by(ConsentGrant.created_at)))
