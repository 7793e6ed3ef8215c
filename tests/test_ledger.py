from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import text

from anima.errors import LedgerError
from anima.ledger import Ledger, Stamp


def _stamp(stamp_id: str, payload: int) -> Stamp:
    return Stamp(
        id=stamp_id,
        watermark_payload=payload,
        created_at=dt.datetime.now(dt.UTC),
        kind="stamp",
        output_name="out.mp4",
        output_sha256="ab" * 32,
        source_sha256="cd" * 32,
        inputs={},
        signer="CN=test",
        signer_fingerprint="ef" * 32,
        manifest={"manifests": {}},
        details={"frames": 3},
    )


@pytest.fixture
def ledger(database_url: str) -> Ledger:
    ledger = Ledger(database_url)
    ledger.record("stamp.stamped", "alice", "s-1", {"n": 1}, row=_stamp("s-1", 1))
    ledger.record("policy.decision", "bob", "req-9", {"allow": False, "reasons": ["unknown face"]})
    ledger.record("stamp.stamped", "alice", "s-2", {"n": 2}, row=_stamp("s-2", 2))
    return ledger


def test_intact_chain_verifies(ledger: Ledger) -> None:
    report = ledger.verify_chain()
    assert report.ok and report.events_checked == 3 and report.rows_checked == 2
    events = ledger.events()
    assert [e.id for e in events] == [3, 2, 1]
    assert events[0].prev_hash == events[1].hash
    if ledger.engine.dialect.name == "sqlite":  # many readers beside one writer
        with ledger.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def _sql(ledger: Ledger, statement: str) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(text(statement))


def test_edited_event_is_named(ledger: Ledger) -> None:
    _sql(ledger, """UPDATE audit_events SET details = '{"allow": true, "reasons": []}' WHERE id = 2""")
    report = ledger.verify_chain()
    assert not report.ok and report.first_broken_event == 2
    assert "altered" in report.problem


def test_removed_event_is_named(ledger: Ledger) -> None:
    _sql(ledger, "DELETE FROM audit_events WHERE id = 2")
    report = ledger.verify_chain()
    assert not report.ok and report.first_broken_event == 3
    assert "does not link" in report.problem


def test_edited_stamp_row_is_named(ledger: Ledger) -> None:
    _sql(ledger, "UPDATE stamps SET output_sha256 = 'ff' WHERE id = 's-2'")
    report = ledger.verify_chain()
    assert not report.ok and report.first_broken_event == 3
    assert "stamp s-2 was altered" in report.problem


def test_forged_stamp_without_event_is_named(ledger: Ledger) -> None:
    with ledger.session() as session:
        session.add(_stamp("s-forged", 99))
    report = ledger.verify_chain()
    assert not report.ok and "s-forged has no audit event" in report.problem


def test_chain_cannot_fork(ledger: Ledger) -> None:
    """Two events may never claim the same predecessor (a unique constraint, not a convention)."""
    head = ledger.events(limit=1)[0]
    with pytest.raises(Exception, match=r"(?i)unique"):
        _sql(
            ledger,
            "INSERT INTO audit_events (created_at, kind, actor, subject, details, prev_hash, hash) "
            f"VALUES ('2026-01-01', 'x', 'y', 'z', '{{}}', '{head.prev_hash}', 'h')",
        )


def test_lookup_by_payload(ledger: Ledger) -> None:
    assert ledger.stamp_by_payload(2).id == "s-2"
    assert ledger.stamp_by_payload(3) is None


def test_newer_schema_is_refused(ledger: Ledger) -> None:
    _sql(ledger, "UPDATE schema_info SET version = 999")
    with pytest.raises(LedgerError, match="newer"):
        Ledger(ledger.url)


def test_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LedgerError, match="cannot open ledger"):
        Ledger(f"sqlite:///{tmp_path / 'file' / 'ledger.db'}")
