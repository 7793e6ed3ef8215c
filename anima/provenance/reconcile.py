"""What a killed publish leaves behind, and putting it right.

``publish`` writes an intent file (``home/pending/<stamp id>.json``: the output's absolute path,
the process id and host) before it creates any temporary file, and removes it last. Its steps are
then: a work folder ``anima-stamp-<stamp id>-*`` in the temp dir, the signed file staged beside the
output as ``.<stem>.XXXXXXXX<suffix>``, the ledger row, the rename into place. A kill therefore
leaves at worst, next to a dead process's intent:

- no ledger row: temporary files only (a complete signed file among them), removed here;
- a ledger row but no output: the staged file, whose hash the row names, is renamed into place
  (the publish is completed, so no row lacks its file because of a crash);

and ``reconcile`` also lists every ledger row whose output is no longer where it was written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from anima import media
from anima.ledger import Ledger, Stamp

WORK_PREFIX = "anima-stamp-"
# mkstemp's random part: eight characters of [a-z0-9_].
_STAGED_PART = r"[a-z0-9_]{8}"


@dataclass
class ReconcileReport:
    """What ``reconcile`` found and did; ``clean`` is False when it only looked."""

    completed: list[str] = field(default_factory=list)  # outputs renamed into place
    missing: list[tuple[str, str]] = field(default_factory=list)  # (stamp id, output path) with no file
    removed: list[str] = field(default_factory=list)  # temporary files and folders deleted (or to delete)
    in_progress: list[str] = field(default_factory=list)  # stamp ids whose process still runs
    unknown: list[str] = field(default_factory=list)  # temp folders of older versions, left alone
    unchecked: int = 0  # rows from before output paths were recorded
    rows_checked: int = 0
    clean: bool = True

    @property
    def ok(self) -> bool:
        """No ledger row lacks its output."""
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "completed": self.completed,
            "missing": [{"stamp_id": s, "output": p} for s, p in self.missing],
            "removed": self.removed,
            "in_progress": self.in_progress,
            "unknown_temp_folders": self.unknown,
            "rows_checked": self.rows_checked,
            "rows_unchecked": self.unchecked,
            "cleaned": self.clean,
        }


@contextmanager
def pending_publish(folder: Path, stamp_id: str, output: Path) -> Iterator[Path]:
    """Record that this process is publishing ``stamp_id`` to ``output`` for as long as the block
    runs; the record outlives a kill, and ``reconcile`` reads it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    intent = folder / f"{stamp_id}.json"
    record = {
        "stamp_id": stamp_id,
        "output": os.path.abspath(output),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    fd = os.open(intent, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        yield intent
    finally:
        intent.unlink(missing_ok=True)


def staged_files(output: Path) -> list[Path]:
    """Files ``media.atomic_output`` stages beside ``output`` (a killed write leaves one)."""
    pattern = re.compile(re.escape(f".{output.stem}.") + _STAGED_PART + re.escape(output.suffix) + "$")
    try:
        return sorted(p for p in output.parent.iterdir() if pattern.match(p.name) and p.is_file())
    except OSError:
        return []


def _alive(record: dict[str, Any]) -> bool:
    """Whether the publishing process may still run (one on another host is taken to)."""
    if record.get("host") != socket.gethostname():
        return True
    pid = int(record.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path, report: ReconcileReport) -> None:
    report.removed.append(str(path))
    if report.clean:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _finish_intent(intent: Path, ledger: Ledger, temp_dir: Path, report: ReconcileReport) -> None:
    try:
        record = json.loads(intent.read_text(encoding="utf-8"))
        stamp_id, output = str(record["stamp_id"]), Path(record["output"])
    except (OSError, ValueError, KeyError, TypeError):
        _remove(intent, report)  # cut short while written: nothing was staged yet
        return
    if _alive(record):
        report.in_progress.append(stamp_id)
        return
    row = ledger.stamp(stamp_id)
    staged = staged_files(output)
    if row is not None and not output.exists():
        match = next((p for p in staged if media.sha256_file(p) == row.output_sha256), None)
        if match is not None:
            staged.remove(match)
            report.completed.append(str(output))
            if report.clean:
                place_staged(match, output)
    for path in staged:
        _remove(path, report)
    for work in sorted(temp_dir.glob(f"{WORK_PREFIX}{stamp_id}-*")):
        _remove(work, report)
    _remove(intent, report)


def place_staged(staged: Path, output: Path) -> None:
    """Rename a staged output into place with the mode a new file gets under the umask."""
    os.chmod(staged, 0o666 & ~_umask())
    os.replace(staged, output)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def reconcile(
    ledger: Ledger, pending: Path, *, temp_dir: Path | None = None, clean: bool = True
) -> ReconcileReport:
    """Complete or clean up every publish a dead process left unfinished, remove orphaned work
    folders, and list ledger rows whose output is not where it was written."""
    temp_dir = Path(temp_dir or tempfile.gettempdir())
    report = ReconcileReport(clean=clean)
    for intent in sorted(pending.glob("*.json")) if pending.is_dir() else []:
        _finish_intent(intent, ledger, temp_dir, report)
    live = set(report.in_progress)
    ours = re.compile(re.escape(WORK_PREFIX) + r"(anm-[0-9a-f]+)-" + _STAGED_PART + "$")
    for work in sorted(temp_dir.glob(f"{WORK_PREFIX}*")):
        if not work.is_dir() or str(work) in report.removed:
            continue
        found = ours.match(work.name)
        if found is None:
            report.unknown.append(str(work))
        elif found.group(1) not in live and not (pending / f"{found.group(1)}.json").exists():
            _remove(work, report)  # its intent is gone: the publish ended, or its intent was unreadable
    with ledger.session() as session:
        for row in session.scalars(select(Stamp).order_by(Stamp.created_at)):
            written_to = (row.details or {}).get("output_path")
            if not written_to:
                report.unchecked += 1
                continue
            report.rows_checked += 1
            if row.id not in live and not Path(written_to).exists():
                report.missing.append((row.id, written_to))
    return report
