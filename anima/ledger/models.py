"""Ledger tables (SQLAlchemy 2.0 typed ORM).

``audit_events`` is the append-only, hash-chained record of every decision and output. The other
tables hold current state (stamps, enrolled identities, consent grants); every write to one of
them is an audit event carrying the row's digest, so a row edited outside Anima no longer matches
the latest event about it, and both ``anima audit verify`` and the consent gate notice. Events are
signed with the operator's key, and signed checkpoints of the head are kept outside the database
(``anima.ledger.checkpoint``), so a database writer can neither recompute nor cut the chain.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# 2: audit events carry the operator's signature (``signature``); events of a version-1 ledger
# stay unsigned and are reported as legacy by ``anima audit verify``.
SCHEMA_VERSION = 2


def utc_iso(moment: dt.datetime | None) -> str | None:
    """One text form for a timestamp, whether or not the database kept its zone (SQLite does not)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def as_utc(moment: dt.datetime | None) -> dt.datetime | None:
    """A timestamp read back from any database, as an aware UTC datetime."""
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class Tracked:
    """A row whose every change is recorded, with its digest, in an audit event about ``id``."""

    id: Any
    noun: str  # how messages name a row of this table

    def digest_fields(self) -> dict[str, Any]:
        """Every column, in a form that survives a database round trip."""
        fields: dict[str, Any] = {}
        for column in self.__table__.columns:  # type: ignore[attr-defined]
            value = getattr(self, column.key)
            fields[column.key] = utc_iso(value) if isinstance(value, dt.datetime) else value
        return fields


class SchemaInfo(Base):
    """One row naming the schema version, so later releases can migrate older ledgers."""

    __tablename__ = "schema_info"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class AuditEvent(Base):
    """One audited fact. ``hash`` = SHA-256 over the canonical event fields and ``prev_hash``."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(256))
    subject: Mapped[str] = mapped_column(String(256), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)  # unique: the chain cannot fork
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # ES256 over ``hash`` with the operator's key (base64 DER); NULL only for pre-signing events.
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)


class Stamp(Tracked, Base):
    """A provenance-stamped output: what went in, what came out, and how it was marked."""

    __tablename__ = "stamps"
    noun = "stamp"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    watermark_payload: Mapped[int] = mapped_column(BigInteger, unique=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(32))  # "stamp" or "generation"
    output_name: Mapped[str] = mapped_column(String(1024))
    output_sha256: Mapped[str] = mapped_column(String(64), index=True)
    source_sha256: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)  # role -> {name, sha256}
    signer: Mapped[str] = mapped_column(String(512))
    signer_fingerprint: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class Identity(Tracked, Base):
    """An enrolled person: a display name and face embeddings (no photo unless kept on request)."""

    __tablename__ = "identities"
    noun = "identity"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(256))
    backend: Mapped[str] = mapped_column(String(64))  # embeddings only compare within one backend
    embeddings: Mapped[list[list[float]]] = mapped_column(JSON)
    photo_sha256: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    enrolled_by: Mapped[str] = mapped_column(String(256))
    forgotten_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ConsentGrant(Tracked, Base):
    """Consent by one identity for some purposes and a period, with the evidence's hash."""

    __tablename__ = "consent_grants"
    noun = "consent grant"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    identity_id: Mapped[str] = mapped_column(String(32), index=True)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    statement_sha256: Mapped[str] = mapped_column(String(64))
    granted_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
