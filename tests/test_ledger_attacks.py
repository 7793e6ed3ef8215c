"""The insider with SQL on the ledger (DESIGN.md, threat model) against signed events and anchored
checkpoints: each attack is real SQL on a real SQLite ledger made through the API."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from skimage import data
from sqlalchemy import create_engine, text

from anima import Anima
from anima.config import load_settings
from anima.errors import BadInput, LedgerError, ProvenanceError
from anima.ledger import Ledger
from anima.ledger.models import SCHEMA_VERSION, utc_iso
from anima.ledger.store import event_digest, row_digest
from anima.provenance.keys import init_identity, init_watermark_key

REPO = Path(__file__).resolve().parents[1]
ANIMA_CLI = str(Path(sys.executable).parent / "anima")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A home with keys, one enrolled person (consent for fashion, expiring in 30 days) and one
    stamped still; each test attacks its own copy."""
    folder = tmp_path_factory.mktemp("template")
    home = folder / "home"
    init_identity(load_settings(home), org="Test Studio")
    init_watermark_key(load_settings(home))
    photo = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    statement = folder / "statement.pdf"
    statement.write_bytes(b"%PDF-1.4 I consent to being animated for fashion shows. E. Collins")
    still = folder / "coffee.png"
    Image.fromarray(data.coffee()[::2, ::2]).save(still)
    studio = Anima(home, actor="casting")
    expires = dt.date.today() + dt.timedelta(days=30)
    record = studio.consent.enroll("Eileen Collins", [photo], statement, ["fashion"], expires=expires)
    stamped = studio.stamp(still, folder / "stamped.png")
    return {
        "home": str(home),
        "photo": str(photo),
        "identity": record.id,
        "grant": record.grants[0].id,
        "stamp": stamped.stamp_id,
    }


@pytest.fixture
def world(template: dict[str, str], tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    shutil.copytree(template["home"], home)
    return {**template, "home": str(home)}


def _studio(world: dict[str, str]) -> Anima:
    return Anima(world["home"], actor="studio")


def _sql(world: dict[str, str], *statements: str, **params: object) -> None:
    engine = create_engine(f"sqlite:///{Path(world['home']) / 'ledger.db'}")
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), params)
    engine.dispose()


def _gate(world: dict[str, str]) -> list[str]:
    decision = _studio(world).check_reference(world["photo"], "fashion")
    return [] if decision.allow else list(decision.reasons)


def _recompute_chain(world: dict[str, str], keep_signatures: bool) -> None:
    """What an attacker with our source code does after editing rows: recompute every row digest
    in the events and every event hash, so that the chain and the rows agree again."""
    ledger = Ledger(f"sqlite:///{Path(world['home']) / 'ledger.db'}")  # no key: it can only read
    rows = {}
    with ledger.session() as session:
        from anima.ledger.models import AuditEvent, ConsentGrant, Identity, Stamp

        for table in (Identity, ConsentGrant, Stamp):
            rows.update({r.id: row_digest(r) for r in session.query(table)})
        events = list(session.query(AuditEvent).order_by(AuditEvent.id))
    prev = "0" * 64
    engine = create_engine(ledger.url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET prev_hash = 'x' || id, hash = 'y' || id"))
        for event in events:
            details = dict(event.details)
            if "row_digest" in details and event.subject in rows:
                details["row_digest"] = rows[event.subject]
            event.details, event.prev_hash = details, prev
            event.hash = event_digest(event)
            signature = event.signature if keep_signatures else None
            connection.execute(
                text(
                    "UPDATE audit_events SET details = :d, prev_hash = :p, hash = :h, signature = :s "
                    "WHERE id = :i"
                ),
                {"d": json.dumps(details), "p": prev, "h": event.hash, "s": signature, "i": event.id},
            )
            prev = event.hash
    engine.dispose()


# ------------------------------------------------------------------ what holds when nobody attacks


def test_every_event_is_signed_and_the_head_is_checkpointed(world) -> None:
    studio = _studio(world)
    report = studio.audit.verify()
    assert report.ok and report.signatures_checked and report.unsigned_events == 0
    assert report.checkpoint is not None  # the stamp was anchored too
    assert all(entry.hash for entry in studio.audit.log(limit=None))
    folder = Path(world["home"]) / "checkpoints"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.glob("checkpoint-*.json"))
    assert len(files) == 2  # enrolment (identity and grant, one transaction) and the stamp
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    latest = json.loads(files[-1].read_text())
    assert latest["events"] == report.events_checked and latest["head_hash"] == report.head_hash
    assert set(latest["rows"]) == {world["identity"], world["grant"]}


def test_a_consent_change_writes_a_checkpoint_and_the_cli_makes_one_on_demand(world, tmp_path) -> None:
    studio = _studio(world)
    before = len(list((Path(world["home"]) / "checkpoints").iterdir()))
    studio.consent.extend(world["grant"], dt.date.today() + dt.timedelta(days=60))
    assert len(list((Path(world["home"]) / "checkpoints").iterdir())) == before + 1
    archived = studio.audit.checkpoint(to=tmp_path / "archive")
    assert (
        archived.path.parent == tmp_path / "archive"
        and archived.events == studio.audit.verify().events_checked
    )
    out = subprocess.run(
        [
            ANIMA_CLI,
            "audit",
            "checkpoint",
            "--to",
            str(tmp_path / "cli"),
            "--home",
            world["home"],
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert "checkpoint" in out.stdout and len(list((tmp_path / "cli").glob("checkpoint-*.json"))) == 1


def test_without_keys_consent_changes_are_refused(home: Path, tmp_path: Path) -> None:
    studio = Anima(home)
    statement = tmp_path / "s.pdf"
    statement.write_bytes(b"%PDF-1.4 consent")
    photo = tmp_path / "face.png"
    Image.fromarray(data.astronaut()).save(photo)
    with pytest.raises(ProvenanceError, match="anima keys init"):
        studio.consent.enroll("Someone", [photo], statement, ["fashion"])
    with pytest.raises(LedgerError, match="anima keys init"):
        studio.audit.checkpoint()


def test_the_checkpoint_folder_is_the_operators_choice(world, tmp_path) -> None:
    chosen = tmp_path / "other-volume" / "anima"
    (Path(world["home"]) / "config.toml").write_text(f'checkpoint_dir = "{chosen}"\n')
    studio = _studio(world)
    assert studio.settings.checkpoints == chosen
    studio.consent.revoke(world["grant"], "withdrawn")
    assert len(list(chosen.glob("checkpoint-*.json"))) == 1
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o700
    assert studio.audit.verify().checkpoint.startswith("checkpoint-")


def test_an_unsigned_writer_is_refused_once_the_ledger_is_signed(world) -> None:
    keyless = Ledger(f"sqlite:///{Path(world['home']) / 'ledger.db'}")
    with pytest.raises(LedgerError, match="no signing key"):
        keyless.record("consent.granted", "insider", "cns-forged", {})
    assert _studio(world).audit.verify().ok


# ------------------------------------------------------------------ the attacks


def test_row_edit_is_caught(world) -> None:
    _sql(
        world,
        'UPDATE consent_grants SET purposes = \'["advertising", "fashion"]\' WHERE id = :g',
        g=world["grant"],
    )
    report = _studio(world).audit.verify()
    assert not report.ok and world["grant"] in report.problem and "altered" in report.problem


def test_event_edit_is_caught_even_with_its_hash_recomputed(world) -> None:
    studio = _studio(world)
    _sql(
        world,
        "UPDATE audit_events SET actor = 'someone else' WHERE kind = 'consent.granted'",
    )
    assert "altered after it was written" in studio.audit.verify().problem
    # The attacker recomputes that event's hash: its signature no longer matches.
    ledger = Ledger(studio.settings.database_url)
    event = ledger.events(kind="consent.granted")[0]
    _sql(world, "UPDATE audit_events SET hash = :h WHERE id = :i", h=event_digest(event), i=event.id)
    report = studio.audit.verify()
    assert (
        not report.ok and "operator's signature" in report.problem and report.first_broken_event == event.id
    )


def test_tail_truncation_is_caught(world) -> None:
    _sql(
        world,
        "DELETE FROM audit_events WHERE kind = 'stamp.stamped'",
        "DELETE FROM stamps WHERE id = :s",
        s=world["stamp"],
    )
    report = _studio(world).audit.verify()
    assert not report.ok and "fewer than" in report.problem and "tail was cut" in report.problem
    out = subprocess.run(
        [ANIMA_CLI, "audit", "verify", "--home", world["home"]],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 1 and "tail was cut" in out.stdout + out.stderr
    assert len((out.stdout + out.stderr).strip().splitlines()) == 1


def _undo_revocation(world: dict[str, str]) -> None:
    """The insider's two statements: the grant's revocation cleared, its events deleted."""
    revocation = Ledger(_studio(world).settings.database_url).events(kind="consent.revoked")[0].id
    _sql(
        world,
        "UPDATE consent_grants SET revoked_at = NULL, revoked_reason = NULL WHERE id = :g",
        "DELETE FROM audit_events WHERE id >= :first",
        g=world["grant"],
        first=revocation,
    )


def _revoke_then_undo(world: dict[str, str]) -> None:
    _studio(world).consent.revoke(world["grant"], "withdrew consent by email")
    _undo_revocation(world)


def test_revoke_undo_is_caught_by_verify_and_refused_by_the_gate(world) -> None:
    _revoke_then_undo(world)
    report = _studio(world).audit.verify()
    assert not report.ok and "checkpoint" in report.problem
    assert _gate(world) == ["ledger-tampered"]


def test_full_recompute_after_adding_a_purpose_and_removing_the_expiry_is_caught(world) -> None:
    _sql(
        world,
        'UPDATE consent_grants SET purposes = \'["advertising", "fashion"]\', expires_at = NULL '
        "WHERE id = :g",
        g=world["grant"],
    )
    _recompute_chain(world, keep_signatures=True)
    report = _studio(world).audit.verify()
    # The first event the recompute changed (the grant's: its row digest) no longer verifies.
    assert not report.ok and "(consent.granted) does not carry the operator's signature" in report.problem
    assert _gate(world) == ["ledger-tampered"]
    # Stripping the signatures instead (to pass as events from before signing) meets the checkpoint.
    _recompute_chain(world, keep_signatures=False)
    report = _studio(world).audit.verify()
    assert not report.ok and "checkpoint" in report.problem
    assert _gate(world) == ["ledger-tampered"]


def test_an_attacker_who_also_deletes_the_checkpoints(world, tmp_path) -> None:
    """What still holds without the checkpoint folder, and what cannot (said in README)."""
    studio = _studio(world)
    archive = tmp_path / "archive"  # the operator's copy on another volume
    studio.consent.revoke(world["grant"], "withdrew consent")
    studio.audit.checkpoint(to=archive)
    shutil.rmtree(Path(world["home"]) / "checkpoints")
    _undo_revocation(world)
    # Cannot hold: a cut tail (this revoke-undo) is a valid, signed, shorter chain.
    assert _studio(world).audit.verify().ok
    assert _gate(world) == []
    # The archived checkpoint still catches it (the gate's allow above reused the cut event ids).
    report = _studio(world).audit.verify(checkpoints=archive)
    assert not report.ok and "checkpoint" in report.problem
    # Still holds: edits and recomputes need the operator's key.
    _sql(world, "UPDATE consent_grants SET expires_at = NULL WHERE id = :g", g=world["grant"])
    _recompute_chain(world, keep_signatures=True)
    assert "operator's signature" in _studio(world).audit.verify().problem
    _recompute_chain(world, keep_signatures=False)  # all unsigned: no checkpoint anchors that
    assert "no checkpoint anchors them" in _studio(world).audit.verify().problem
    assert _gate(world) == ["ledger-tampered"]


def test_a_forged_checkpoint_is_refused(world) -> None:
    folder = Path(world["home"]) / "checkpoints"
    latest = sorted(folder.glob("checkpoint-*.json"))[-1]
    forged = json.loads(latest.read_text())
    forged["events"] -= 1
    (folder / "checkpoint-999999999999-forged.json").write_text(json.dumps(forged))
    report = _studio(world).audit.verify()
    assert not report.ok and "not signed by the operator's key" in report.problem
    assert _gate(world) == ["ledger-tampered"]


def test_verify_does_not_present_an_edited_ledger_row_as_evidence(world, tmp_path) -> None:
    stamped = Path(world["home"]).parent.parent / "template0" / "stamped.png"
    if not stamped.exists():
        stamped = next(Path(world["home"]).parent.parent.glob("template*/stamped.png"))
    studio = _studio(world)
    assert "Test Studio" in studio.verify(stamped).ledger.signer
    _sql(world, "UPDATE stamps SET signer = 'CN=Trusted News Agency' WHERE id = :s", s=world["stamp"])
    report = studio.verify(stamped)
    assert report.ledger is None and report.durable_manifest is None
    assert str(report.verdict) == "anima-generated"  # the clip's own watermark and manifest still say so
    assert any("not used as evidence" in reason and world["stamp"] in reason for reason in report.reasons)


# ------------------------------------------------------------------ schema migration


def test_a_version_1_ledger_is_migrated_and_its_events_reported_as_unsigned(settings, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    Ledger(url).record("policy.decision", "old", "x", {"allow": False})
    _sql_url(url, "ALTER TABLE audit_events DROP COLUMN signature", "UPDATE schema_info SET version = 1")
    studio = Anima(settings.home, database_url=url, actor="operator")
    report = studio.audit.verify()
    assert not report.ok and "anima audit checkpoint" in report.problem  # not anchored on its own
    assert _scalar(url, "SELECT version FROM schema_info") == SCHEMA_VERSION == 2
    studio.audit.checkpoint()
    studio.ledger.record("note", "operator", "y", {})
    report = studio.audit.verify()
    assert report.ok and report.unsigned_events == 1 and report.events_checked == 2
    # The legacy event is anchored by the signed one after it: editing it breaks the chain.
    _sql_url(url, "UPDATE audit_events SET actor = 'forger' WHERE id = 1")
    assert not studio.audit.verify().ok


def _sql_url(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def _scalar(url: str, statement: str) -> object:
    engine = create_engine(url)
    with engine.connect() as connection:
        value = connection.execute(text(statement)).scalar()
    engine.dispose()
    return value


# ------------------------------------------------------------------ concurrency


def test_six_processes_opening_a_fresh_ledger_at_once(database_url: str) -> None:
    """Table creation races on SQLite (a file lock) and PostgreSQL (an advisory lock)."""
    url = database_url
    start = time.time() + 3.0
    script = textwrap.dedent(
        f"""
        import sys, time
        from anima.ledger import Ledger
        while time.time() < {start}:
            time.sleep(0.001)
        Ledger({url!r}).record("test", "p", sys.argv[1], {{}})
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(n)], cwd=REPO, stderr=subprocess.PIPE, text=True)
        for n in range(6)
    ]
    failures = [p.stderr.read() for p in processes if p.wait(timeout=60) != 0]
    assert not failures, failures[0]
    report = Ledger(url).verify_chain()
    assert report.ok and report.events_checked == 6


def test_a_stale_revocation_records_nothing(world, monkeypatch) -> None:
    """The interleaving of two concurrent revokes, made deterministic: the loser read the grant
    before the winner committed, and writes after."""
    studio = _studio(world)
    registry = studio.registry
    stale = registry.consent(world["grant"])
    _studio(world).consent.revoke(world["grant"], "first")
    monkeypatch.setattr(type(registry), "consent", lambda self, grant_id: stale)
    with pytest.raises(BadInput, match="already revoked"):
        registry.revoke(world["grant"], "second", "studio")
    with pytest.raises(BadInput, match="is revoked"):
        registry.extend(world["grant"], dt.datetime.now(dt.UTC) + dt.timedelta(days=90), "studio")
    monkeypatch.undo()
    assert len(Ledger(studio.settings.database_url).events(kind="consent.revoked")) == 1
    assert registry.consent(world["grant"]).revoked_reason == "first"
    assert studio.audit.verify().ok


def test_concurrent_revokes_record_one_revocation(world) -> None:
    results: list[str] = []
    barrier = threading.Barrier(4)

    def revoke() -> None:
        studio = _studio(world)
        assert studio.ledger.key is not None  # opened before the race
        barrier.wait()
        try:
            studio.consent.revoke(world["grant"], "withdrawn")
            results.append("revoked")
        except BadInput as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=revoke) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("revoked") == 1 and all("already revoked" in r for r in results if r != "revoked")
    studio = _studio(world)
    assert len(Ledger(studio.settings.database_url).events(kind="consent.revoked")) == 1
    assert studio.audit.verify().ok


def test_utc_iso_is_the_form_digests_use() -> None:
    assert utc_iso(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "2026-01-02T03:04:05.000000"
