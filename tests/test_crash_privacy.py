"""Privacy of the home (modes, ``consent forget`` erasing everywhere) and crash safety (reconcile,
kills at random points, scan workers dying with their parent, one-transaction enrolment)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image
from skimage import data
from sqlalchemy import select

from anima import Anima
from anima.config import Settings
from anima.errors import BadInput, LedgerError
from anima.ledger import Ledger, Stamp
from anima.media import sha256_file, write_video
from anima.provenance import reconcile as reconciling
from anima.scan import engine as scan_engine
from tests.conftest import camera_pan

NAME = "Zephyrine Quackenbush-Oyelaran"
ANIMA = str(Path(sys.executable).parent / "anima")


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "face.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture
def statement(tmp_path: Path) -> Path:
    path = tmp_path / "statement.pdf"
    path.write_bytes(b"%PDF-1.4 I consent to being animated for fashion shows.")
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# ---------------------------------------------------------------- privacy


def test_home_ledger_and_kept_photos_are_owner_only_whatever_the_umask(
    tmp_path: Path, photo: Path, statement: Path
) -> None:
    home = tmp_path / "open-home"
    previous = os.umask(0)
    try:
        studio = Anima(home, actor="casting")
        studio.keys.init()
        record = studio.consent.enroll(NAME, [photo], statement, ["fashion"], keep_photos=True)
    finally:
        os.umask(previous)
    kept = studio.consent.photos_folder / record.id
    assert _mode(home) == 0o700
    database = home / "ledger.db"
    for path in [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))]:
        if path.exists():
            assert _mode(path) == 0o600, path
    assert _mode(kept) == 0o700 and _mode(kept.parent) == 0o700
    assert [_mode(p) for p in _files(kept)] == [0o600]


def test_an_existing_open_home_and_ledger_are_narrowed(tmp_path: Path) -> None:
    home = tmp_path / "old-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    (home / "ledger.db").touch()
    (home / "ledger.db").chmod(0o644)
    Anima(home).audit.verify()
    assert _mode(home) == 0o700 and _mode(home / "ledger.db") == 0o600


def _raw_bytes(home: Path) -> bytes:
    return b"".join(path.read_bytes() for path in _files(home))


def test_forget_erases_name_photos_and_embeddings_from_database_and_home(
    settings: Settings, photo: Path, statement: Path
) -> None:
    studio = Anima(settings.home, actor="casting")
    record = studio.consent.enroll(NAME, [photo], statement, ["fashion"], keep_photos=True)
    studio.consent.grant(record.id, statement, ["education"])  # granted_by: the person, again
    other = studio.consent.grant(record.id, statement, ["research"], granted_by="Legal Guardian Office")
    embedding = studio.registry.identity(record.id).embeddings[0]
    needles = {
        "name": NAME.encode(),
        "photo": photo.read_bytes()[200:1200],
        "embedding": json.dumps(embedding[:3])[1:-1].encode(),
        "photo hash": sha256_file(photo).encode(),
    }
    before = _raw_bytes(settings.home)
    assert all(needle in before for needle in needles.values())  # the probe can find them

    studio.consent.forget(record.id)

    after = _raw_bytes(settings.home)
    assert [what for what, needle in needles.items() if needle in after] == []
    assert not (studio.consent.photos_folder / record.id).exists()
    assert studio.audit.verify().ok
    grants = {g.id: g.granted_by for g in studio.registry.grants(record.id)}
    assert grants[other.id] == "Legal Guardian Office"  # someone else's name is the consent's evidence
    assert sorted(grants.values()).count("(forgotten)") == 2
    assert all(NAME not in json.dumps(e.details) for e in studio.audit.log(limit=None))


# ---------------------------------------------------------------- one-transaction enrolment


def test_enrolment_whose_consent_is_refused_leaves_no_identity(
    settings: Settings, photo: Path, statement: Path
) -> None:
    studio = Anima(settings.home, actor="casting")
    start = dt.date.today() + dt.timedelta(days=10)
    with pytest.raises(BadInput, match="expire"):
        studio.consent.enroll(
            NAME, [photo], statement, ["fashion"], valid_from=start, expires=start - dt.timedelta(days=5)
        )
    assert studio.registry.identities(include_forgotten=True) == []
    record = studio.consent.enroll(NAME, [photo], statement, ["fashion"])  # not "already enrolled"
    assert record.grants[0].status == "active"


def test_enrolment_whose_consent_write_fails_leaves_no_identity(
    settings: Settings, photo: Path, statement: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    studio = Anima(settings.home, actor="casting")
    events_before = len(studio.audit.log(limit=None))
    append = Ledger._append

    def fail_on_consent(self, session, kind, *args):
        if kind == "consent.granted":
            raise LedgerError("disk full (simulated)")
        return append(self, session, kind, *args)

    monkeypatch.setattr(Ledger, "_append", fail_on_consent)
    with pytest.raises(LedgerError):
        studio.consent.enroll(NAME, [photo], statement, ["fashion"])
    monkeypatch.setattr(Ledger, "_append", append)
    assert studio.registry.identities(include_forgotten=True) == []
    assert len(studio.audit.log(limit=None)) == events_before
    assert studio.audit.verify().ok


# ---------------------------------------------------------------- reconcile after kills


def _env(home: Path, temp: Path) -> dict[str, str]:
    temp.mkdir(exist_ok=True)
    return {**os.environ, "ANIMA_HOME": str(home), "TMPDIR": str(temp), "HF_HUB_OFFLINE": "1"}


KILL_AT = """
import os, sys
from anima.ledger import Ledger
from anima.provenance import manifest
from anima import Anima
point = sys.argv[3]
def die_after(owner, name):
    original = getattr(owner, name)
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        os._exit(9)
    setattr(owner, name, wrapped)
die_after(manifest, "sign_file") if point == "signed" else die_after(Ledger, "record")
Anima().stamp(sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("point", ["signed", "recorded"])
def test_reconcile_cleans_or_completes_a_publish_killed_at_each_step(
    settings: Settings, still: Path, tmp_path: Path, point: str
) -> None:
    out, temp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    env = _env(settings.home, temp)
    target = out / "marked.png"
    killed = subprocess.run([sys.executable, "-c", KILL_AT, str(still), str(target), point], env=env)
    assert killed.returncode == 9
    assert not target.exists()
    assert len(reconciling.staged_files(target)) == 1 and len(list(temp.glob("anima-stamp-*"))) == 1
    assert len(list((settings.home / "pending").glob("*.json"))) == 1

    result = subprocess.run(
        [ANIMA, "audit", "reconcile", "--json"], env=env, capture_output=True, text=True, check=False
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"], result.stdout + result.stderr
    assert reconciling.staged_files(target) == []
    assert list(temp.iterdir()) == [] and list((settings.home / "pending").iterdir()) == []
    if point == "signed":  # no ledger row: the complete signed file was a temp file, now gone
        assert report["completed"] == [] and not target.exists()
        assert Anima(settings.home).audit.log(kind="stamp.stamped") == []
    else:  # the row committed: the publish is completed, and the file is the one the row names
        assert report["completed"] == [str(target)]
        verdict = Anima(settings.home).verify(target)
        assert verdict.ledger is not None and verdict.ledger.output_sha256 == verdict.sha256
    assert Anima(settings.home).audit.verify().ok


def test_reconcile_reports_a_row_whose_output_is_gone_and_leaves_live_publishes_alone(
    studio: Anima, still: Path, tmp_path: Path
) -> None:
    result = studio.stamp(still, tmp_path / "a.png")
    studio.stamp(still, tmp_path / "b.png")
    result.output.unlink()
    live = studio.settings.home / "pending" / "anm-0000beef.json"
    target = tmp_path / "c.png"
    live.write_text(
        json.dumps(
            {
                "stamp_id": "anm-0000beef",
                "output": str(target),
                "pid": os.getpid(),
                "host": os.uname().nodename,
            }
        )
    )
    staged = target.with_name(".c.abcd1234.png")
    staged.write_bytes(b"half written")
    report = studio.reconcile()
    assert report.missing == [(result.stamp_id, str(result.output))] and not report.ok
    assert report.rows_checked == 2 and report.in_progress == ["anm-0000beef"]
    assert staged.exists() and live.exists()  # a running publish is not touched


def test_cli_reconcile_lists_missing_outputs_and_exits_1(
    home: Path, studio: Anima, still: Path, tmp_path: Path
) -> None:
    result = studio.stamp(still, tmp_path / "gone.png")
    result.output.unlink()
    run = subprocess.run(
        [ANIMA, "audit", "reconcile"],
        env=_env(home, tmp_path / "tmp"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1 and "gone.png" in run.stdout and "1 without their file" in run.stdout


def _start_stamp(still: Path, target: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [ANIMA, "stamp", str(still), "-o", str(target)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _publish_started(process: subprocess.Popen, pending: Path) -> float:
    """Wait until the stamp's publish intent appears (or it ends); the moment it was seen."""
    while process.poll() is None and not (pending.is_dir() and any(pending.iterdir())):
        time.sleep(0.002)
    return time.monotonic()


def test_stamp_killed_at_random_points_keeps_the_invariants(
    settings: Settings, still: Path, tmp_path: Path
) -> None:
    """Kill ``anima stamp`` at seeded random moments: mostly inside its publish window (intent ->
    temp files -> ledger row -> rename), some anywhere in its run. After each kill no output exists
    without its ledger row naming exactly that file, reconcile leaves no temporary file or intent
    and no row without its file, and the chain holds."""
    out, temp, pending = tmp_path / "out", tmp_path / "tmp", settings.home / "pending"
    out.mkdir()
    env = _env(settings.home, temp)
    started = time.monotonic()
    timing = _start_stamp(still, out / "timing.png", env)
    seen = _publish_started(timing, pending)
    while timing.poll() is None and not (out / "timing.png").exists():
        time.sleep(0.001)
    window = time.monotonic() - seen  # intent written -> output in place
    assert timing.wait() == 0
    whole = time.monotonic() - started
    rng = random.Random(16)
    outcomes = []
    for attempt in range(12):
        target = out / f"k{attempt}.png"
        process = _start_stamp(still, target, env)
        if attempt % 4 == 3:
            time.sleep(rng.uniform(0.0, whole))
        else:
            _publish_started(process, pending)
            time.sleep(rng.uniform(0.3, 1.6) * window)
        process.send_signal(signal.SIGKILL)
        process.wait()
        ledger = Ledger(settings.database_url)
        if target.exists():  # published: its row must be there, naming exactly this file
            assert _row_for(ledger, target) is not None
        report = subprocess.run(
            [ANIMA, "audit", "reconcile", "--json"], env=env, capture_output=True, text=True, check=False
        )
        found = json.loads(report.stdout)
        assert found["ok"] and found["in_progress"] == [], found
        if found["completed"]:
            outcomes.append("row, completed by reconcile")
        elif target.exists():
            outcomes.append("published")
        else:
            outcomes.append("temp files removed" if found["removed"] else "nothing written")
        assert not found["completed"] or _row_for(ledger, target) is not None
        assert reconciling.staged_files(target) == [] and list(temp.iterdir()) == []
        assert list(pending.iterdir()) == []
    assert Anima(settings.home).audit.verify().ok
    print(f"window {window:.3f}s of {whole:.2f}s; kill outcomes: {outcomes}")


def _row_for(ledger: Ledger, path: Path) -> Stamp | None:
    with ledger.session() as session:
        query = select(Stamp).where(Stamp.output_sha256 == sha256_file(path))
        row = session.scalars(query).first()
    return row if row is not None and row.details["output_path"] == str(path) else None


# ---------------------------------------------------------------- scans


def _clips(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    images = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    paths = []
    for index in range(count):
        path = folder / f"clip{index}.mp4"
        write_video(path, camera_pan(images[index % len(images)], 24, 128 + 8 * index), 24)
        paths.append(path)
    return paths


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def test_killed_scan_leaves_no_worker_alive(home: Path, tmp_path: Path) -> None:
    _clips(tmp_path / "in", 6)
    env = _env(home, tmp_path / "tmp")
    process = subprocess.Popen(
        [ANIMA, "scan", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = [p for p in parent.children(recursive=True) if "resource_tracker" not in _cmdline(p)]
    assert len(workers) >= 2, "the scan never started its workers"
    everything = parent.children(recursive=True)
    process.send_signal(signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(everything, timeout=5)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for survivor in alive:  # do not leave them running if the test fails
        survivor.kill()
    assert alive == []


def test_a_journal_row_without_its_event_is_recorded_on_resume(settings: Settings, tmp_path: Path) -> None:
    clips = _clips(tmp_path / "in", 2)
    out = tmp_path / "out"
    Anima(tmp_path / "other-home").scan(clips, out, workers=1)  # rows whose events are elsewhere
    studio = Anima(settings.home)
    summary = studio.scan(clips, out, workers=1)
    assert summary.resumed == 2 and summary.scanned == 0
    events = studio.audit.log(limit=None, kind="scan")
    assert sorted(e.details["path"] for e in events) == sorted(str(c) for c in clips)
    studio.scan(clips, out, workers=1)  # nothing new: no second event
    assert len(studio.audit.log(limit=None, kind="scan")) == 2


def test_a_crash_writing_the_scan_event_loses_no_row(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips = _clips(tmp_path / "in", 1)
    out = tmp_path / "out"
    record = Ledger.record

    def crash_on_scan(self, kind, *args, **kwargs):
        if kind == "scan":
            raise KeyboardInterrupt  # the process stops here
        return record(self, kind, *args, **kwargs)

    monkeypatch.setattr(Ledger, "record", crash_on_scan)
    with pytest.raises(KeyboardInterrupt):
        Anima(settings.home).scan(clips, out, workers=1)
    monkeypatch.setattr(Ledger, "record", record)
    assert [r for r in scan_engine.read_rows(out / scan_engine.JSONL_NAME)] == []  # no row without event
    summary = Anima(settings.home).scan(clips, out, workers=1)
    assert summary.scanned == 1
    assert len(Anima(settings.home).audit.log(limit=None, kind="scan")) == 1


def test_parent_watch_ends_an_orphaned_worker() -> None:
    """The portable half of dying with the parent (the thread), without prctl."""
    code = (
        "import os, sys, time\n"
        "from anima.scan import engine\n"
        "engine.sys.platform = 'other'\n"
        "engine._die_with_parent(int(sys.argv[1]))\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(os.getpid() + 10**6)])
    assert child.wait(timeout=20) == 1
    assert np.isfinite(1.0)


def test_reconcile_removes_photos_of_a_person_forgotten_half_way(
    settings: Settings, photo: Path, statement: Path
) -> None:
    studio = Anima(settings.home, actor="casting")
    gone = studio.consent.enroll(NAME, [photo], statement, ["fashion"], keep_photos=True)
    studio.registry.forget(gone.id, "dpo")  # as if `consent forget` was killed before the photos went
    kept = studio.consent.photos_folder
    stays = studio.consent.enroll("Someone Else", [photo], statement, ["fashion"], keep_photos=True)
    assert (kept / gone.id).exists()
    report = studio.reconcile()
    assert str(kept / gone.id) in report.removed and not (kept / gone.id).exists()
    assert (kept / stays.id).exists()


def test_scan_killed_at_random_points_loses_no_event(settings: Settings, tmp_path: Path) -> None:
    """Kill ``anima scan`` at seeded random moments; every row its journal holds has its ledger
    event, and a final resume finishes with one row per file and the chain intact."""
    clips = _clips(tmp_path / "in", 6)
    out = tmp_path / "out"
    env = _env(settings.home, tmp_path / "tmp")
    command = [ANIMA, "scan", str(tmp_path / "in"), "--out", str(out), "--workers", "1"]
    journal = out / scan_engine.JSONL_NAME
    rng = random.Random(4)
    journal_sizes = []
    for _ in range(4):
        # Kill just after a random number of further rows (0-2), a random fraction of a file later.
        target = len(scan_engine.read_rows(journal)) + rng.randint(0, 2)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and len(scan_engine.read_rows(journal)) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        rows = scan_engine.read_rows(out / scan_engine.JSONL_NAME)
        journal_sizes.append(len(rows))
        studio = Anima(settings.home)
        recorded = {scan_engine.event_key(e.details) for e in studio.audit.log(limit=None, kind="scan")}
        assert [
            r["path"]
            for r in rows
            if scan_engine.event_key(scan_engine.audit_details(r, out)) not in recorded
        ] == []
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    finished = [r for r in scan_engine.read_rows(out / scan_engine.JSONL_NAME) if scan_engine.is_finished(r)]
    assert sorted({r["path"] for r in finished}) == sorted(str(c) for c in clips)
    assert Anima(settings.home).audit.verify().ok
    print("journal rows after each kill:", journal_sizes)


def test_a_failed_ledger_write_leaves_no_file_and_a_committed_row_always_gets_its_file(
    studio: Anima, still: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()

    def refuse(self, *args, **kwargs):
        raise LedgerError("ledger write failed: disk I/O error (simulated)")

    monkeypatch.setattr(Ledger, "_append", refuse)
    with pytest.raises(LedgerError, match="simulated"):
        studio.stamp(still, out / "refused.png")
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == []  # no output, no staged file

    def unanchored(self, rows):
        raise LedgerError("the change was recorded, but not anchored: (simulated)")

    monkeypatch.setattr(Ledger, "_after_commit", unanchored)
    with pytest.raises(LedgerError, match="not anchored"):
        studio.stamp(still, out / "recorded.png")
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["recorded.png"]
    assert _row_for(studio.ledger, out / "recorded.png") is not None
    assert studio.reconcile().ok


def test_enrol_killed_at_random_points_keeps_identity_and_consent_together(
    settings: Settings, photo: Path, statement: Path, tmp_path: Path
) -> None:
    """Kill ``anima consent enroll`` at seeded random moments of its run: an identity is never on
    record without its consent, the chain holds, and enrolling again after the kill either succeeds
    or finds the person already enrolled (never half of them)."""
    env = _env(settings.home, tmp_path / "tmp")
    command = [ANIMA, "consent", "enroll", NAME, "--photo", str(photo), "--statement", str(statement),
               "--purpose", "fashion"]  # fmt: skip
    started = time.monotonic()
    assert subprocess.run(command, env=env, capture_output=True, check=False).returncode == 0
    whole = time.monotonic() - started
    Anima(settings.home).consent.forget(Anima(settings.home).consent.list()[0].id)
    rng = random.Random(10)
    for _ in range(4):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.1) * whole)
        process.send_signal(signal.SIGKILL)
        process.wait()
        studio = Anima(settings.home)
        enrolled = [record for record in studio.consent.list() if record.name == NAME]
        assert all(record.grants for record in enrolled)
        assert studio.audit.verify().ok
        again = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert again.returncode == 0 or (enrolled and "already enrolled" in again.stderr), again.stderr
        studio.consent.forget(next(r for r in studio.consent.list() if r.name == NAME).id)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray engine needs Ray")
def test_killed_ray_scan_leaves_no_ray_process_alive(home: Path, tmp_path: Path) -> None:
    """A local Ray's GCS and raylet died with a killed scan; its agents lived on for a minute."""
    _clips(tmp_path / "in", 4)
    out = tmp_path / "out"
    ray_temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    env = {**_env(home, tmp_path / "tmp"), "RAY_TMPDIR": ray_temp}
    process = subprocess.Popen(
        [ANIMA, "scan", str(tmp_path / "in"), "--out", str(out), "--engine", "ray", "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if scan_engine.read_rows(out / scan_engine.JSONL_NAME):
                break
            time.sleep(0.2)
        assert process.poll() is None, "the scan ended before it could be killed"
        started = psutil.Process(process.pid).children(recursive=True)
        assert any("raylet" in _cmdline(p) for p in started), "the scan started no Ray of its own"
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed = time.monotonic()
        _, alive = psutil.wait_procs(started, timeout=10)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        survivors = [_cmdline(p) for p in alive]
        for survivor in alive:  # do not leave them running if the test fails
            survivor.kill()
        assert survivors == []
        print(f"{len(started)} processes, all gone {time.monotonic() - killed:.1f}s after the kill")
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
