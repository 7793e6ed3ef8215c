"""Opening the ledger, appending to its hash chain, and checking that chain."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from anima.errors import LedgerError
from anima.ledger.models import (
    SCHEMA_VERSION,
    AuditEvent,
    Base,
    ConsentGrant,
    Identity,
    SchemaInfo,
    Stamp,
    Tracked,
    utc_iso,
)

TRACKED_TABLES: tuple[type[Tracked], ...] = (Stamp, Identity, ConsentGrant)

GENESIS_HASH = "0" * 64
APPEND_RETRIES = 5
# Ledger URLs whose tables this process has created: a scan or a server opens the same ledger many
# times, and creating the tables is once-per-database work (the schema version is read every time).
_prepared_urls: set[str] = set()


def canonical_digest(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_digest(event_row: AuditEvent) -> str:
    return canonical_digest(
        {
            "created_at": utc_iso(event_row.created_at),
            "kind": event_row.kind,
            "actor": event_row.actor,
            "subject": event_row.subject,
            "details": event_row.details,
            "prev_hash": event_row.prev_hash,
        }
    )


def row_digest(row: Tracked) -> str:
    return canonical_digest(row.digest_fields())


@dataclass(frozen=True)
class ChainReport:
    """Result of recomputing the chain: ``ok`` or the first broken event and why."""

    ok: bool
    events_checked: int
    rows_checked: int
    head_hash: str
    first_broken_event: int | None = None
    problem: str | None = None


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def with_driver(url: str) -> str:
    """A plain ``postgresql://`` URL means psycopg 3 (the ``postgres`` extra), not SQLAlchemy's
    default psycopg2, which Anima does not install."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url.removeprefix(plain)
    return url


class Ledger:
    """The audit ledger at a SQLAlchemy URL (SQLite file by default, PostgreSQL for teams)."""

    def __init__(self, url: str) -> None:
        self.url = url = with_driver(url)
        sqlite_file = None
        if url.startswith("sqlite:///"):
            sqlite_file = Path(url.removeprefix("sqlite:///")).expanduser()
        try:
            if sqlite_file is not None:
                sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _enable_sqlite_wal)
            if url not in _prepared_urls or (sqlite_file is not None and not sqlite_file.exists()):
                Base.metadata.create_all(self.engine)
                _prepared_urls.add(url)
            self._check_schema()
        except ModuleNotFoundError as exc:
            raise LedgerError(
                f"cannot open ledger {self.engine_url_for_humans()}: its database driver {exc.name} is not "
                "installed (for PostgreSQL: pip install 'anima[postgres]')"
            ) from None
        except (SQLAlchemyError, OSError) as exc:
            reason = str(getattr(exc, "orig", None) or exc)
            raise LedgerError(f"cannot open ledger {self.engine_url_for_humans()}: {reason}") from None

    def engine_url_for_humans(self) -> str:
        """The URL without any password in it."""
        if "@" in self.url and "://" in self.url:
            scheme, rest = self.url.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return self.url

    def _check_schema(self) -> None:
        with Session(self.engine) as session, session.begin():
            info = session.get(SchemaInfo, 1)
            if info is None:
                session.add(SchemaInfo(id=1, version=SCHEMA_VERSION))
            elif info.version > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger schema version {info.version} is newer than this Anima "
                    f"understands ({SCHEMA_VERSION}); upgrade Anima"
                )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits whole on success, rolls back whole on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                with session.begin():
                    yield session
            except OperationalError as exc:
                raise LedgerError(f"ledger write failed: {exc.orig}") from None

    def _append(
        self, session: Session, kind: str, actor: str, subject: str, details: dict[str, Any]
    ) -> AuditEvent:
        head = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).first()
        row = AuditEvent(
            created_at=dt.datetime.now(dt.UTC),
            kind=kind,
            actor=actor,
            subject=subject,
            details=details,
            prev_hash=head.hash if head else GENESIS_HASH,
        )
        row.hash = event_digest(row)
        session.add(row)
        session.flush()
        return row

    def record(
        self, kind: str, actor: str, subject: str, details: dict[str, Any], row: Tracked | None = None
    ) -> AuditEvent:
        """Append one event, and write the row it describes, atomically; the event carries the row's
        digest. Retries if another writer took the chain head first (``prev_hash`` is unique, so the
        chain never forks)."""
        for attempt in range(APPEND_RETRIES):
            try:
                with self.session() as session:
                    if row is not None:
                        row = session.merge(row)
                        session.flush()
                        details = {**details, "row_digest": row_digest(row)}
                    return self._append(session, kind, actor, subject, details)
            except IntegrityError as exc:
                if "prev_hash" not in str(exc.orig) or attempt == APPEND_RETRIES - 1:
                    raise LedgerError(f"ledger write refused: {exc.orig}") from None
        raise AssertionError("unreachable")

    def events(self, limit: int | None = None, kind: str | None = None) -> list[AuditEvent]:
        """Most recent events first."""
        with self.session() as session:
            query = select(AuditEvent).order_by(AuditEvent.id.desc())
            if kind:
                query = query.where(AuditEvent.kind == kind)
            if limit:
                query = query.limit(limit)
            return list(session.scalars(query))

    def stamp_by_payload(self, payload: int) -> Stamp | None:
        with self.session() as session:
            return session.scalars(select(Stamp).where(Stamp.watermark_payload == payload)).first()

    def stamp(self, stamp_id: str) -> Stamp | None:
        with self.session() as session:
            return session.get(Stamp, stamp_id)

    def payload_in_use(self, payload: int) -> bool:
        return self.stamp_by_payload(payload) is not None

    def verify_chain(self) -> ChainReport:
        """Recompute every event hash and link, and every tracked row's digest against the latest
        event that recorded it."""
        with self.session() as session:
            expected_prev = GENESIS_HASH
            checked = 0
            latest_digest: dict[str, tuple[int, str]] = {}
            for event_row in session.scalars(select(AuditEvent).order_by(AuditEvent.id)):
                checked += 1
                if event_row.prev_hash != expected_prev:
                    return ChainReport(
                        False,
                        checked,
                        0,
                        expected_prev,
                        event_row.id,
                        f"event #{event_row.id} does not link to the event before it "
                        "(an event was removed, inserted or reordered)",
                    )
                if event_digest(event_row) != event_row.hash:
                    return ChainReport(
                        False,
                        checked,
                        0,
                        expected_prev,
                        event_row.id,
                        f"event #{event_row.id} ({event_row.kind}) was altered after it was written",
                    )
                if "row_digest" in event_row.details:
                    latest_digest[event_row.subject] = (event_row.id, event_row.details["row_digest"])
                expected_prev = event_row.hash
            rows = 0
            for table in TRACKED_TABLES:
                for row in session.scalars(select(table)):
                    rows += 1
                    problem = _row_problem(row, latest_digest)
                    if problem:
                        event_id = latest_digest.get(row.id, (None, ""))[0]
                        return ChainReport(False, checked, rows, expected_prev, event_id, problem)
            return ChainReport(True, checked, rows, expected_prev)

    def row_problem(self, row: Tracked) -> str | None:
        """Why ``row`` cannot be trusted (edited or inserted outside Anima), or None."""
        with self.session() as session:
            query = select(AuditEvent).where(AuditEvent.subject == row.id).order_by(AuditEvent.id.desc())
            for event_row in session.scalars(query):
                if "row_digest" in event_row.details:
                    if event_digest(event_row) != event_row.hash:
                        return f"event #{event_row.id} about {row.id} was altered after it was written"
                    return _row_problem(row, {row.id: (event_row.id, event_row.details["row_digest"])})
        return _row_problem(row, {})


def _row_problem(row: Tracked, latest_digest: dict[str, tuple[int, str]]) -> str | None:
    noun = row.noun
    if row.id not in latest_digest:
        return f"{noun} {row.id} has no audit event (row inserted outside Anima)"
    event_id, digest = latest_digest[row.id]
    if digest != row_digest(row):
        return f"{noun} {row.id} was altered after event #{event_id} recorded it"
    return None
