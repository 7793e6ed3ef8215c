"""Ledger tables (SQLAlchemy 2.0 typed ORM).

``audit_events`` is the append-only, hash-chained record of every decision and output.
``stamps`` holds what was made (hashes, watermark payload, the signed manifest); each stamp row's
digest is written into the audit event that created it, so editing a stamp breaks the chain check.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    pass


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


class Stamp(Base):
    """A provenance-stamped output: what went in, what came out, and how it was marked."""

    __tablename__ = "stamps"

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
