"""The batch-scan engine: run a per-file check over many files in parallel, each content once.

The engine knows nothing of verdicts. It is given a picklable ``work(path) -> dict`` (the API hands
it :class:`anima.api.core.ScanWork`), hashes every file, sends each new content to a worker once, and
appends one row per file to ``scan.jsonl`` as results arrive, so a crashed scan resumes where it
stopped. At the end it writes ``scan.csv`` and ``report.html`` for the files of this scan.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import itertools
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from anima import media
from anima.errors import AnimaError, BadInput
from anima.scan import MAX_WORKERS, report

JSONL_NAME = "scan.jsonl"
CSV_NAME = "scan.csv"
HTML_NAME = "report.html"
MEDIA_SUFFIXES = media.READ_SUFFIXES  # what a folder search picks up; each file is then known by content
LIST_SUFFIX = ".txt"
ENGINES = ("local", "ray")
MAX_LIST_BYTES = 64 << 20  # a .txt list of paths larger than this is not a list
ERROR_CHARS = 500
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
PARENT_POLL_SECONDS = 1.0

Row = dict[str, Any]
Work = Callable[[str], Row]
RowCallback = Callable[[Row], None]
Progress = Callable[[int, int], None]


# ---------------------------------------------------------------- inputs


def _media_in(folder: Path) -> list[Path]:
    """Media files under ``folder`` by suffix, skipping hidden names (e.g. half-written temp files)."""
    found = []
    for path in folder.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if not hidden and path.suffix.lower() in MEDIA_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def _list_entries(listing: Path) -> list[Path]:
    """Paths in a ``.txt`` list: one per line, blank lines and ``#`` comments skipped, relative
    paths taken from the list's folder."""
    if listing.stat().st_size > MAX_LIST_BYTES:
        raise BadInput(f"{listing}: a list of paths larger than {MAX_LIST_BYTES >> 20} MiB")
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{listing}: cannot read the list of paths ({exc.__class__.__name__})") from None
    entries = [line.strip() for line in lines]
    return [listing.parent / entry for entry in entries if entry and not entry.startswith("#")]


def collect(inputs: Sequence[Path]) -> list[Path]:
    """Expand the scan's inputs into unique absolute file paths, in order.

    A ``.txt`` file is a list of paths; a folder is searched recursively for media files by suffix;
    any other file is scanned whatever its suffix (a non-media file becomes an error row). A missing
    input, or one that is a special file (a FIFO, a device, a socket), is bad input; a missing or
    special entry in a list becomes an error row (lists come from other tools). Special files are
    never opened for reading.
    """
    seen: dict[str, Path] = {}

    def add(path: Path) -> None:
        path = Path(os.path.abspath(path))
        seen.setdefault(str(path), path)

    for item in map(Path, inputs):
        if not item.exists():
            raise BadInput(f"{item}: no such file or folder")
        if not item.is_dir():
            info = item.stat()
            media.check_regular(item, info.st_mode, 0)  # the size limit is the hash's, one row
        if item.is_dir():
            for path in _media_in(item):
                add(path)
        elif item.suffix.lower() == LIST_SUFFIX:
            for entry in _list_entries(item):
                for path in _media_in(entry) if entry.is_dir() else [entry]:
                    add(path)
        else:
            add(item)
    return list(seen.values())


# ---------------------------------------------------------------- the journal


def read_rows(journal: Path) -> list[Row]:
    """Rows of ``scan.jsonl`` in order; a line cut short by a crash is ignored."""
    if not journal.exists():
        return []
    rows = []
    with open(journal, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "path" in row:
                rows.append(row)
    return rows


def is_finished(row: Row) -> bool:
    """A row whose file was hashed and examined; rows from crashed workers are tried again."""
    return bool(row.get("sha256")) and not row.get("retry")


class _Journal:
    """Append-only ``scan.jsonl``: one line per row, flushed as soon as it is written."""

    def __init__(self, path: Path) -> None:
        cut_short = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        if cut_short:
            self.handle.write("\n")  # a crash mid-line must not swallow the next row

    def append(self, row: Row) -> None:
        self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


# ---------------------------------------------------------------- engines


def one_line(exc: BaseException) -> str:
    """An error as one line: Anima's own messages as they are, anything else with its type."""
    text = str(exc) if isinstance(exc, AnimaError) else f"{exc.__class__.__name__}: {exc}"
    return " ".join(text.split())[:ERROR_CHARS]


def run_work(work: Work, path: str) -> Row:
    """Run ``work`` on one file inside a worker. Every failure becomes an error result here, so an
    exception never has to cross a process boundary and one bad file never stops a scan."""
    start = time.perf_counter()
    try:
        result = {"status": "ok", **work(path)}
    except Exception as exc:  # a hostile file may break any library below; it is one file's error
        result = {"status": "error", "error": one_line(exc)}
    result["seconds"] = round(time.perf_counter() - start, 4)
    return result


def _crashed(exc: BaseException) -> Row:
    return {"status": "error", "error": f"worker crashed: {one_line(exc)}; re-run to retry", "retry": True}


class Engine(Protocol):
    slots: int  # how many files it checks at once

    def submit(self, work: Work, path: str) -> Any: ...
    def wait(self, handles: list[Any]) -> list[Any]: ...
    def result(self, handle: Any) -> Row: ...
    def close(self) -> None: ...


def _share_cores(workers: int) -> None:
    """Each worker's math libraries get their share of the cores: every torch and OpenCV pool
    sized to the whole machine made 2 workers scan slower than 1 (1.9 against 4.5 files/s). The
    detector's onnxruntime reads ``OMP_NUM_THREADS``; torch, should a worker load it, reads it too
    (it is not imported here: a scan needs none)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import cv2

    cv2.setNumThreads(threads)


def _die_with_parent(parent: int) -> None:
    """End this worker when the scan that started it ends, however it ends: a killed ``anima scan``
    left its workers (about 1 GB each, with the classifier) running for ever. On Linux the kernel
    sends SIGKILL when the parent dies; everywhere a thread also polls the parent's pid."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # the polling thread still covers it
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="anima-parent-watch", daemon=True).start()


def _start_worker(workers: int, parent: int) -> None:
    _die_with_parent(parent)
    _share_cores(workers)


class LocalEngine:
    """A process pool on this machine. Workers are spawned, not forked: they will load torch for
    the classifier, and forking a process that holds torch's threads can deadlock."""

    def __init__(self, workers: int) -> None:
        self.slots = workers
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.slots,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.slots, os.getpid()),
        )

    def submit(self, work: Work, path: str) -> Future[Row]:
        try:
            return self.pool.submit(run_work, work, path)
        except BrokenExecutor:  # a worker died (e.g. out of memory): go on with a fresh pool
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
            return self.pool.submit(run_work, work, path)

    def wait(self, handles: list[Future[Row]]) -> list[Future[Row]]:
        return list(wait(handles, return_when=FIRST_COMPLETED).done)

    def result(self, handle: Future[Row]) -> Row:
        try:
            return handle.result()
        except BrokenExecutor as exc:
            return _crashed(exc)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on: Ray itself retries such an address forever."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", "ray://...": Ray's own forms, left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise BadInput(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc})") from None


def _start_reaper() -> subprocess.Popen[bytes] | None:
    """Start :mod:`anima.scan.reaper` beside this process: a local Ray's agents outlived a killed
    scan. Linux only, as the reaper reads ``/proc``."""
    if not sys.platform.startswith("linux"):
        return None
    script = Path(__file__).with_name("reaper.py")
    return subprocess.Popen(
        [sys.executable, "-I", str(script), str(os.getpid())],
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the terminal's group must not end it before the scan
    )


class RayEngine:
    """The same work as Ray tasks: on a cluster at ``address``, else on a local Ray. A Ray that
    the caller already started is used as it is and left running; a local Ray that this engine
    starts ends with it, even when the scan is killed."""

    def __init__(self, workers: int | None, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise BadInput("the ray engine needs Ray: pip install 'anima[ray]'") from None
        self.ray = ray
        self.owned = not ray.is_initialized()
        self.reaper = _start_reaper() if self.owned and not address else None
        if self.owned:
            if address:
                _check_reachable(address)
            try:
                if address:
                    ray.init(address=address)
                else:
                    ray.init(num_cpus=workers, include_dashboard=False)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
                self._stop_reaper()
                raise BadInput(
                    f"cannot start Ray{f' at {address}' if address else ''}: {one_line(exc)}"
                ) from None
        self.slots = workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
        self.task = ray.remote(num_cpus=1)(run_work)

    def submit(self, work: Work, path: str) -> Any:
        return self.task.remote(work, path)

    def wait(self, handles: list[Any]) -> list[Any]:
        ready, _ = self.ray.wait(handles, num_returns=1)
        return list(ready)

    def result(self, handle: Any) -> Row:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayError as exc:  # worker or node died after Ray's own retries
            return _crashed(exc)

    def _stop_reaper(self) -> None:
        if self.reaper is not None:
            self.reaper.kill()
            self.reaper.wait()

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()
        self._stop_reaper()  # after the shutdown: a kill during it still leaves nothing running


def check_options(engine: str, workers: int | None, address: str | None) -> None:
    """The engine's options, checked before any file is looked at."""
    if engine not in ENGINES:
        raise BadInput(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise BadInput(f"workers must be in 1..{MAX_WORKERS}, got {workers}")
    if address and engine != "ray":
        raise BadInput("a cluster address is for the ray engine only")


def open_engine(engine: str, workers: int | None, address: str | None) -> Engine:
    check_options(engine, workers, address)
    if engine == "ray":
        return RayEngine(workers, address)
    return LocalEngine(workers or os.cpu_count() or 1)


def _pipeline(
    engine: Engine, work: Work, items: Iterator[tuple[str, str]], window: int
) -> Iterator[tuple[tuple[str, str], Row]]:
    """Keep ``window`` files in flight and yield each result as it arrives; files are hashed
    (``items`` is lazy) while earlier ones are being checked."""
    pending: dict[Any, tuple[str, str]] = {}
    while True:
        for item in itertools.islice(items, max(window - len(pending), 0)):
            pending[engine.submit(work, item[0])] = item
        if not pending:
            return
        for handle in engine.wait(list(pending)):
            yield pending.pop(handle), engine.result(handle)


# ---------------------------------------------------------------- the scan


@dataclass
class ScanSummary:
    """What one scan did: ``rows`` holds one row per input file, in input order."""

    out: Path
    rows: list[Row]
    scanned: int
    duplicates: int
    resumed: int

    def counts(self) -> dict[str, int]:
        """Files per verdict, with ``error`` for files that could not be checked."""
        return dict(Counter(report.label(row) for row in self.rows).most_common())

    @property
    def outputs(self) -> list[Path]:
        return [self.out / name for name in (JSONL_NAME, CSV_NAME, HTML_NAME)]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _new_row(path: str, sha256: str | None, result: Row) -> Row:
    found = result.get("report") or {}
    return {
        "path": path,
        "sha256": sha256,
        "scanned_at": _now(),
        "verdict": found.get("verdict"),
        "duplicate_of": None,
        "retry": False,
        **result,
    }


def file_result(verified: dict[str, Any], stamp_id: str | None, frames: int | None, frame: np.ndarray) -> Row:
    """What a worker returns for one checked file: the verify report, the stamp it traces to, the
    frame count and a thumbnail of ``frame`` (one of its frames) for the HTML report."""
    thumbnail = report.thumbnail(frame)
    return {"report": verified, "stamp_id": stamp_id, "frames": frames, "thumbnail": thumbnail}


def audit_details(row: Row, out: Path) -> dict[str, Any]:
    """The ledger event of one scan row: enough to find the file and its result again."""
    return {
        "path": row["path"].encode("utf-8", "backslashreplace").decode("utf-8"),
        "sha256": row["sha256"],
        "status": row["status"],
        "verdict": row["verdict"],
        "stamp_id": row.get("stamp_id"),
        "duplicate_of": row["duplicate_of"],
        "error": row.get("error"),
        "out": str(out),
        "scanned_at": row.get("scanned_at"),
    }


def event_key(details: dict[str, Any]) -> tuple[Any, Any, Any]:
    """What tells one scan row's event from another's (events written before ``scanned_at`` was
    recorded have None there)."""
    return details.get("path"), details.get("sha256"), details.get("scanned_at")


def _duplicate(first: Row, path: str) -> Row:
    """The row of a file whose content was already checked: the same result, no work."""
    return {**first, "path": path, "scanned_at": _now(), "duplicate_of": first["path"], "seconds": 0.0}


def run(
    paths: Sequence[Path],
    out: Path,
    work: Work,
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_row: RowCallback | None = None,
    progress: Progress | None = None,
) -> ScanSummary:
    """Check every file of ``paths`` with ``work``, each content once, skipping files that
    ``out/scan.jsonl`` already holds a finished row for; then write ``scan.csv`` and ``report.html``.

    ``on_row`` sees every new row in this process (the single writer for the ledger).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{out}: cannot create the output folder ({exc.strerror})") from None
    journal_path = out / JSONL_NAME
    finished = {(r["path"], r["sha256"]): r for r in read_rows(journal_path) if is_finished(r)}
    checked: dict[str, Row] = {}  # sha256 -> the row that holds its result
    for row in finished.values():
        checked.setdefault(row["sha256"], row)
    rows: dict[str, Row] = {}
    waiting: dict[str, list[str]] = {}  # sha256 in flight -> later paths with the same content
    counts = Counter[str]()
    total = len(paths)
    runner = open_engine(engine, workers, address)
    journal = _Journal(journal_path)

    def emit(row: Row, kind: str) -> None:
        rows[row["path"]] = row
        counts[kind] += 1
        if kind != "resumed":
            # The event first: a crash in between leaves an event whose row is checked again on
            # resume (a second event), never a journal row with no event.
            if on_row:
                on_row(row)
            journal.append(row)
        if progress:
            progress(len(rows), total)

    def to_check() -> Iterator[tuple[str, str]]:
        for path in paths:
            key = str(path)
            try:
                sha256 = media.sha256_file(path)
            except OSError as exc:
                emit(_new_row(key, None, {"status": "error", "error": f"{key}: {exc.strerror}"}), "error")
                continue
            if (key, sha256) in finished:
                emit(finished[key, sha256], "resumed")
            elif sha256 in checked:
                emit(_duplicate(checked[sha256], key), "duplicate")
            elif sha256 in waiting:
                waiting[sha256].append(key)
            else:
                waiting[sha256] = []
                yield key, sha256

    try:
        for (key, sha256), result in _pipeline(runner, work, to_check(), 2 * runner.slots):
            row = _new_row(key, sha256, result)
            emit(row, "scanned")
            if not row["retry"]:
                checked[sha256] = row
            for later in waiting.pop(sha256):
                emit(_duplicate(row, later), "duplicate")
    finally:
        journal.close()
        runner.close()
    ordered = [rows[str(path)] for path in paths]
    with media.atomic_output(out / CSV_NAME) as tmp:
        report.write_csv(ordered, tmp)
    with media.atomic_output(out / HTML_NAME) as tmp:
        report.write_html(ordered, tmp)
    return ScanSummary(out, ordered, counts["scanned"], counts["duplicate"], counts["resumed"])
