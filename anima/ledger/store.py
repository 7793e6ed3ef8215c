"""Opening the ledger, appending to its hash chain, and checking that chain."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from anima.errors import LedgerError
from anima.ledger import checkpoint as checkpoints
from anima.ledger.checkpoint import Checkpoint
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
from anima.ledger.signing import LedgerKey

TRACKED_TABLES: tuple[type[Tracked], ...] = (Stamp, Identity, ConsentGrant)
# The consent registry: a checkpoint holds the digest of each of its rows.
REGISTRY_TABLES: tuple[type[Tracked], ...] = (Identity, ConsentGrant)
# Serialises table creation and migration across PostgreSQL sessions (any fixed 64-bit number).
_SCHEMA_LOCK_KEY = 0x616E696D61
_UNSIGNED_ANY = select(AuditEvent.id).where(AuditEvent.signature.is_(None)).limit(1)
UNANCHORED_LEGACY = (
    "the ledger holds unsigned events and no checkpoint anchors them: if it was upgraded from "
    "version 1 and you trust it, run `anima audit checkpoint`"
)

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
    unsigned_events: int = 0  # written before signing began (a version-1 ledger's events)
    signatures_checked: bool = False  # False when no certificate was given to check them with
    checkpoint: str | None = None  # the checkpoint file the head was compared with


class StaleRow(LedgerError):
    """A conditional write found the row already changed by someone else (nothing was written)."""


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")  # first: switching to WAL itself may wait for a lock
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Overwrite what an update or delete replaces (a forgotten name must not stay in free space).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def with_driver(url: str) -> str:
    """A plain ``postgresql://`` URL means psycopg 3 (the ``postgres`` extra), not SQLAlchemy's
    default psycopg2, which Anima does not install."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url.removeprefix(plain)
    return url


def _owner_only(sqlite_file: Path) -> None:
    """Create the SQLite file (and so its -wal and -shm, which SQLite gives the same mode) readable
    by its owner only, whatever the umask; an existing file of ours is narrowed too.

    An existing file is never opened here: closing any descriptor of a SQLite file drops every
    POSIX lock this process holds on it, also those of other open ledgers, and a kill then
    corrupted the database ("database disk image is malformed")."""
    try:
        fd = os.open(sqlite_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        os.fchmod(fd, 0o600)
        os.close(fd)
    for path in (sqlite_file, *(sqlite_file.with_name(sqlite_file.name + s) for s in ("-wal", "-shm"))):
        with suppress(FileNotFoundError):
            info = path.stat()
            if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != 0o600:
                path.chmod(0o600)


@contextmanager
def _file_lock(sqlite_file: Path) -> Iterator[None]:
    """An exclusive lock beside a SQLite file, held while its tables are created or migrated: SQLite
    creates tables outside any transaction, so processes opening a fresh ledger at once would race."""
    fd = os.open(sqlite_file.with_name(sqlite_file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _migrate(connection: Connection) -> None:
    """Stamp a new ledger with this schema version, or bring an older one up to it."""
    version = connection.execute(select(SchemaInfo.version).where(SchemaInfo.id == 1)).scalar()
    if version is None:
        connection.execute(insert(SchemaInfo).values(id=1, version=SCHEMA_VERSION))
        return
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"ledger schema version {version} is newer than this Anima understands ({SCHEMA_VERSION}); "
            "upgrade Anima"
        )
    if version < 2:  # 1 -> 2: events gain the operator's signature; older ones stay unsigned
        columns = {column["name"] for column in inspect(connection).get_columns("audit_events")}
        if "signature" not in columns:
            connection.execute(text("ALTER TABLE audit_events ADD COLUMN signature TEXT"))
        connection.execute(update(SchemaInfo).where(SchemaInfo.id == 1).values(version=2))


class Ledger:
    """The audit ledger at a SQLAlchemy URL (SQLite file by default, PostgreSQL for teams).

    Args:
        url: the SQLAlchemy URL.
        key: the operator's key: events are signed with it and checked against its certificate.
            Without one, events are written unsigned (refused once the ledger holds signed ones)
            and signatures are not checked.
        checkpoints: the folder of signed checkpoints (written on every consent-registry change).
    """

    def __init__(self, url: str, key: LedgerKey | None = None, checkpoints: Path | None = None) -> None:
        self.key = key
        self.checkpoints = checkpoints
        self.url = url = with_driver(url)
        sqlite_file = None
        if url.startswith("sqlite:///"):
            sqlite_file = Path(url.removeprefix("sqlite:///")).expanduser()
        try:
            if sqlite_file is not None:
                sqlite_file.parent.mkdir(parents=True, exist_ok=True)
                _owner_only(sqlite_file)
            self.engine: Engine = create_engine(url)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _enable_sqlite_wal)
            self._prepare(sqlite_file)
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

    def _prepare(self, sqlite_file: Path | None) -> None:
        """Create the tables (once per database and process) and migrate the schema, one process at
        a time: a file lock for SQLite, an advisory lock for PostgreSQL."""
        with _file_lock(sqlite_file) if sqlite_file else nullcontext(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            if self.url not in _prepared_urls or not inspect(connection).has_table(SchemaInfo.__tablename__):
                Base.metadata.create_all(connection)
                _prepared_urls.add(self.url)
            _migrate(connection)

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
        if self.key is not None and self.key.can_sign:
            row.signature = self.key.sign(row.hash.encode("ascii"))
        elif head is not None and head.signature:
            raise LedgerError(
                "this ledger's events are signed, but no signing key was given: run `anima keys init`, "
                "or set ANIMA_SIGNING_CERT and ANIMA_SIGNING_KEY to the operator's chain and key"
            )
        session.add(row)
        session.flush()
        return row

    def record(
        self,
        kind: str,
        actor: str,
        subject: str,
        details: dict[str, Any],
        row: Tracked | None = None,
        only_if: Any = None,
    ) -> AuditEvent:
        """Append one event, and write the row it describes, atomically; the event carries the row's
        digest. Retries if another writer took the chain head first (``prev_hash`` is unique, so the
        chain never forks).

        ``only_if`` (a SQL condition on the row's table, e.g. ``ConsentGrant.revoked_at.is_(None)``)
        makes the write conditional: it is one ``UPDATE ... WHERE`` in the same transaction, and if
        another writer changed the row first, nothing is written and :class:`StaleRow` is raised.
        A change to a consent-registry row is followed by a signed checkpoint."""
        for attempt in range(APPEND_RETRIES):
            try:
                with self.session() as session:
                    if row is not None:
                        if only_if is not None:
                            _update_if(session, row, only_if)
                        row = session.merge(row)
                        session.flush()
                        details = {**details, "row_digest": row_digest(row)}
                    written = self._append(session, kind, actor, subject, details)
                self._after_commit([row])
                return written
            except IntegrityError as exc:
                if "prev_hash" not in str(exc.orig) or attempt == APPEND_RETRIES - 1:
                    raise LedgerError(f"ledger write refused: {exc.orig}") from None
        raise AssertionError("unreachable")

    def record_all(
        self, entries: list[tuple[str, str, str, dict[str, Any], Tracked | None]]
    ) -> list[AuditEvent]:
        """Several ``record`` calls, ``(kind, actor, subject, details, row)`` each, as one transaction:
        all their rows and events commit, or none."""
        for attempt in range(APPEND_RETRIES):
            try:
                with self.session() as session:
                    written = []
                    for kind, actor, subject, details, row in entries:
                        if row is not None:
                            merged = session.merge(row)
                            session.flush()
                            details = {**details, "row_digest": row_digest(merged)}
                        written.append(self._append(session, kind, actor, subject, details))
                self._after_commit([entry[4] for entry in entries])
                return written
            except IntegrityError as exc:
                if "prev_hash" not in str(exc.orig) or attempt == APPEND_RETRIES - 1:
                    raise LedgerError(f"ledger write refused: {exc.orig}") from None
        raise AssertionError("unreachable")

    def _after_commit(self, rows: list[Tracked | None]) -> None:
        """Anchor every change to a tracked row (a consent change, a stamp) outside the database,
        where a folder and a key are set. Unsigned events with no checkpoint yet (a version-1
        ledger's) are anchored only by the operator on purpose (``anima audit checkpoint``): doing
        it here would also anchor a ledger whose signatures an attacker stripped."""
        signing = self.checkpoints is not None and self.key is not None and self.key.can_sign
        if signing and any(isinstance(row, TRACKED_TABLES) for row in rows) and not self._unanchored_legacy():
            try:
                self.checkpoint()
            except LedgerError as exc:
                raise LedgerError(f"the change was recorded, but not anchored: {exc}") from None

    def checkpoint(self, folder: Path | None = None) -> Checkpoint:
        """Sign the current head (event count, head hash, every registry row's digest) and write it
        as a file in ``folder`` (default: the configured checkpoint folder)."""
        folder = folder or self.checkpoints
        if folder is None:
            raise LedgerError("no checkpoint folder configured")
        if self.key is None or not self.key.can_sign:
            raise LedgerError("checkpoints are signed with the operator's key: run `anima keys init` first")
        with self.session() as session:
            head = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).first()
            head_id, head_hash = (head.id, head.hash) if head else (0, GENESIS_HASH)
            up_to_head = select(func.count()).select_from(AuditEvent).where(AuditEvent.id <= head_id)
            count = session.scalar(up_to_head) or 0
            unsigned = session.scalar(up_to_head.where(AuditEvent.signature.is_(None))) or 0
            rows = {r.id: row_digest(r) for table in REGISTRY_TABLES for r in session.scalars(select(table))}
        unsigned_checkpoint = Checkpoint(
            events=count,
            head_id=head_id,
            head_hash=head_hash,
            unsigned_events=unsigned,
            rows=rows,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            signer=self.key.fingerprint,
        )
        signed = replace(unsigned_checkpoint, signature=self.key.sign(unsigned_checkpoint.payload()))
        try:
            return replace(signed, path=checkpoints.write(folder, signed))
        except OSError as exc:
            raise LedgerError(f"cannot write a checkpoint in {folder}: {exc.strerror or exc}") from None

    def _unanchored_legacy(self) -> bool:
        """Unsigned events, and no checkpoint to say how many of them there were."""
        if self.latest_checkpoint() is not None:
            return False
        with self.session() as session:
            return session.scalar(_UNSIGNED_ANY) is not None

    def latest_checkpoint(self, folder: Path | None = None) -> Checkpoint | None:
        """The newest checkpoint in ``folder`` (default: the configured one), its signature checked;
        :class:`LedgerError` if that file is not the operator's."""
        folder = folder or self.checkpoints
        if folder is None or self.key is None:
            return None
        return checkpoints.latest(folder, self.key)

    def scrub(self) -> None:
        """Move everything written so far into the SQLite file and empty its write-ahead log, so that
        erased values (overwritten in the file by ``secure_delete``) leave no old copy in the log."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

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

    def stamp_by_manifest(self, manifest_id: str) -> Stamp | None:
        """The stamp whose kept manifest store has ``manifest_id`` (a C2PA manifest label,
        ``urn:c2pa:...``) as its active manifest."""
        with self.session() as session:
            label = Stamp.manifest["active_manifest"].as_string()
            return session.scalars(select(Stamp).where(label == manifest_id)).first()

    def payload_in_use(self, payload: int) -> bool:
        return self.stamp_by_payload(payload) is not None

    def verify_chain(self, checkpoints_in: Path | None = None) -> ChainReport:
        """Recompute every event hash and link, check every signature (with the key given), compare
        the chain with the latest checkpoint (in ``checkpoints_in``, default the configured folder),
        and every tracked row's digest with the latest event that recorded it."""
        try:
            anchor = self.latest_checkpoint(checkpoints_in)
        except LedgerError as exc:
            return ChainReport(False, 0, 0, GENESIS_HASH, None, str(exc))
        walk = _ChainWalk(self.key, anchor)
        with self.session() as session:
            for event_row in session.scalars(select(AuditEvent).order_by(AuditEvent.id)):
                problem = walk.step(event_row)
                if problem:
                    return walk.report(problem, event_row.id)
            problem = walk.finish()
            if problem:
                return walk.report(problem, None)
            for table in TRACKED_TABLES:
                for row in session.scalars(select(table)):
                    walk.rows += 1
                    problem = _row_problem(row, walk.latest_digest)
                    if problem:
                        return walk.report(problem, walk.latest_digest.get(row.id, (None, ""))[0])
            return walk.report(None, None)

    def row_problem(self, row: Tracked) -> str | None:
        """Why ``row`` cannot be trusted, or None: edited or inserted outside Anima, the event that
        recorded it unsigned or not signed by the operator, or (a registry row) different from the
        latest checkpoint though no later event changed it."""
        with self.session() as session:
            query = select(AuditEvent).where(AuditEvent.subject == row.id).order_by(AuditEvent.id.desc())
            for event_row in session.scalars(query):
                if "row_digest" in event_row.details:
                    if event_digest(event_row) != event_row.hash:
                        return f"event #{event_row.id} about {row.id} was altered after it was written"
                    problem = self._signature_problem(session, event_row) or _row_problem(
                        row, {row.id: (event_row.id, event_row.details["row_digest"])}
                    )
                    return problem or self._checkpoint_row_problem(row, event_row.id)
        return _row_problem(row, {})

    def anchor_problem(self) -> str | None:
        """The gate's cheap check, or None: the latest checkpoint is the operator's, the ledger still
        holds its head (signed, unaltered) with exactly as many events and unsigned events up to it.
        A few indexed queries and two signature checks, whatever the ledger's length."""
        with self.session() as session:
            if self.key is None:
                signed_query = select(AuditEvent.id).where(AuditEvent.signature.is_not(None)).limit(1)
                signed = session.scalar(signed_query)
                return "the ledger is signed, but no certificate was given to check it" if signed else None
            try:
                anchor = self.latest_checkpoint()
            except LedgerError as exc:
                return str(exc)
            if anchor is None:
                return UNANCHORED_LEGACY if session.scalar(_UNSIGNED_ANY) is not None else None
            if anchor.events == 0:
                return None
            head = session.scalars(select(AuditEvent).where(AuditEvent.hash == anchor.head_hash)).first()
            if head is None:
                return (
                    f"the ledger no longer holds the head of checkpoint {anchor.name()} "
                    "(events were removed or rewritten)"
                )
            if event_digest(head) != head.hash:
                return f"event #{head.id}, the head of checkpoint {anchor.name()}, was altered"
            if anchor.events > anchor.unsigned_events and not self.key.verifies(
                head.hash.encode("ascii"), head.signature
            ):
                return f"event #{head.id}, head of checkpoint {anchor.name()}, lacks the operator's signature"
            up_to_head = select(func.count()).select_from(AuditEvent).where(AuditEvent.id <= head.id)
            count = session.scalar(up_to_head) or 0
            if count != anchor.events:
                return (
                    f"the ledger holds {count} events up to the head of checkpoint {anchor.name()}, "
                    f"which counts {anchor.events} (events were removed or inserted)"
                )
            unsigned = session.scalar(up_to_head.where(AuditEvent.signature.is_(None))) or 0
            if unsigned != anchor.unsigned_events:
                return (
                    f"{unsigned} events up to checkpoint {anchor.name()} are unsigned, "
                    f"not {anchor.unsigned_events} (signatures were removed)"
                )
        return None

    def _signature_problem(self, session: Session, event_row: AuditEvent) -> str | None:
        if self.key is None:
            return None
        if event_row.signature is None:
            earlier_signed = session.scalar(
                select(AuditEvent.id)
                .where(AuditEvent.id < event_row.id, AuditEvent.signature.is_not(None))
                .limit(1)
            )
            if earlier_signed is not None:
                return _unsigned_after_signed(event_row)
            return None  # written before signing began
        if not self.key.verifies(event_row.hash.encode("ascii"), event_row.signature):
            return f"event #{event_row.id} ({event_row.kind}) does not carry the operator's signature"
        return None

    def _checkpoint_row_problem(self, row: Tracked, event_id: int) -> str | None:
        if not isinstance(row, REGISTRY_TABLES):
            return None
        try:
            anchor = self.latest_checkpoint()
        except LedgerError as exc:
            return str(exc)
        if anchor is None or event_id > anchor.head_id:
            return None  # changed after the checkpoint, by an event the operator signed
        if anchor.rows.get(row.id) != row_digest(row):
            return (
                f"{row.noun} {row.id} is not as checkpoint {anchor.name()} recorded it "
                "(the events that changed it were removed)"
            )
        return None


class _ChainWalk:
    """State while walking the chain from genesis: links, hashes, signatures, the checkpoint."""

    def __init__(self, key: LedgerKey | None, anchor: Checkpoint | None) -> None:
        self.key, self.anchor = key, anchor
        self.expected_prev = GENESIS_HASH
        self.checked = self.unsigned = self.rows = 0
        self.signed_seen = False
        self.latest_digest: dict[str, tuple[int, str]] = {}

    def step(self, event_row: AuditEvent) -> str | None:
        self.checked += 1
        if event_row.prev_hash != self.expected_prev:
            return (
                f"event #{event_row.id} does not link to the event before it "
                "(an event was removed, inserted or reordered)"
            )
        if event_digest(event_row) != event_row.hash:
            return f"event #{event_row.id} ({event_row.kind}) was altered after it was written"
        if event_row.signature is None:
            if self.signed_seen:
                return _unsigned_after_signed(event_row)
            self.unsigned += 1
        else:
            self.signed_seen = True
            message = event_row.hash.encode("ascii")
            if self.key is not None and not self.key.verifies(message, event_row.signature):
                return (
                    f"event #{event_row.id} ({event_row.kind}) does not carry the operator's signature "
                    "(forged, or the chain was recomputed)"
                )
        anchor = self.anchor
        if anchor is not None and self.checked == anchor.events and event_row.hash != anchor.head_hash:
            return (
                f"event #{event_row.id} differs from the head of checkpoint {anchor.name()} "
                "(the ledger was rewritten)"
            )
        if "row_digest" in event_row.details:
            self.latest_digest[event_row.subject] = (event_row.id, event_row.details["row_digest"])
        self.expected_prev = event_row.hash
        return None

    def finish(self) -> str | None:
        anchor = self.anchor
        if anchor is None:
            return UNANCHORED_LEGACY if self.unsigned and self.key is not None else None
        if self.checked < anchor.events:
            return (
                f"the ledger holds {self.checked} events, fewer than the {anchor.events} of checkpoint "
                f"{anchor.name()} (its tail was cut)"
            )
        if self.unsigned > anchor.unsigned_events:
            return (
                f"{self.unsigned} events are unsigned, but checkpoint {anchor.name()} counts "
                f"{anchor.unsigned_events} (signatures were removed)"
            )
        return None

    def report(self, problem: str | None, event_id: int | None) -> ChainReport:
        return ChainReport(
            problem is None,
            self.checked,
            self.rows,
            self.expected_prev,
            event_id,
            problem,
            unsigned_events=self.unsigned,
            signatures_checked=self.key is not None,
            checkpoint=self.anchor.name() if self.anchor else None,
        )


def _unsigned_after_signed(event_row: AuditEvent) -> str:
    return f"event #{event_row.id} is unsigned, but events before it are signed (written outside Anima)"


def _update_if(session: Session, row: Tracked, condition: Any) -> None:
    """Write ``row`` with one conditional UPDATE; :class:`StaleRow` if the condition no longer holds."""
    table = type(row)
    values = {column.key: getattr(row, column.key) for column in table.__table__.columns}  # type: ignore[attr-defined]
    result = session.execute(
        update(table).where(table.id == row.id, condition).values(values),  # type: ignore[attr-defined]
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != 1:
        raise StaleRow(f"{row.noun} {row.id} was changed by someone else first; nothing was written")


def _row_problem(row: Tracked, latest_digest: dict[str, tuple[int, str]]) -> str | None:
    noun = row.noun
    if row.id not in latest_digest:
        return f"{noun} {row.id} has no audit event (row inserted outside Anima)"
    event_id, digest = latest_digest[row.id]
    if digest != row_digest(row):
        return f"{noun} {row.id} was altered after event #{event_id} recorded it"
    return None
