"""Malformed input and refusals, one table row each: the command as a user types it, the exit code,
a fragment of the one line it prints. Every row must fail before any work starts (no model loads,
nothing is written); a new case is one more row in CASES (or API_CASES for the Python API).

Placeholders in the arguments are files the ``inputs`` fixture makes: a 30000x30000 PNG header
(``{bomb}``), a FIFO, a socket, a 17 GiB sparse file, a read-only folder, a file in place of a home.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
from skimage import data
from typer.testing import CliRunner

from anima import Anima
from anima.cli import app
from anima.config import Settings
from anima.errors import BadInput
from anima.generate.request import GenerationRequest
from anima.media import MAX_FILE_BYTES, atomic_output

runner = CliRunner()


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int
    message: str


def generate(*extra: str, reference: str = "{face}", output: str = "{out}") -> tuple[str, ...]:
    """An ``anima generate`` that would animate ``reference`` but for ``extra``."""
    base = ("generate", "--reference", reference, "--pose", "motion:wave", "-o", output)
    return (*base, "--purpose", "education", *extra)


BAD_INPUT = 2
REFUSED = 3
CASES: dict[str, Case] = {
    # pictures whose header promises more pixels than Anima decodes (Pillow's bomb error and warning)
    "verify-pixel-bomb": Case(("verify", "{bomb}"), BAD_INPUT, "too many pixels"),
    "verify-pixel-bomb-warning": Case(("verify", "{big}"), BAD_INPUT, "too many pixels"),
    "verify-too-wide": Case(("verify", "{wide}"), BAD_INPUT, "outside 16..8192"),
    "stamp-pixel-bomb": Case(("stamp", "{bomb}", "-o", "{tmp}/o.png"), BAD_INPUT, "too many pixels"),
    "generate-pixel-bomb": Case(generate(reference="{bomb}"), BAD_INPUT, "too many pixels"),
    "policy-check-pixel-bomb": Case(
        ("policy", "check", "--reference", "{bomb}", "--purpose", "education"), BAD_INPUT, "too many pixels"
    ),
    "enroll-pixel-bomb": Case(
        (
            "consent",
            "enroll",
            "Ada",
            "--photo",
            "{bomb}",
            "--statement",
            "{statement}",
            "--purpose",
            "education",
        ),
        BAD_INPUT,
        "too many pixels",
    ),
    # absurd or zero sizes, lengths and rates (never taken for "the default")
    "generate-frames-1e9": Case(generate("--frames", "1000000000"), BAD_INPUT, "'--frames'"),
    "generate-width-1e9": Case(generate("--width", "1000000000"), BAD_INPUT, "'--width'"),
    "generate-width-0": Case(generate("--width", "0"), BAD_INPUT, "'--width'"),
    "generate-fps-0": Case(generate("--fps", "0"), BAD_INPUT, "'--fps'"),
    "generate-over-pixel-budget": Case(
        generate("--frames", "100000", "--width", "8192", "--height", "8192"), BAD_INPUT, "over the limit"
    ),
    "pose-render-frames-1e9": Case(
        ("pose", "render", "motion:wave", "-o", "{out}", "--frames", "1000000000"), BAD_INPUT, "'--frames'"
    ),
    "pose-render-over-pixel-budget": Case(
        ("pose", "render", "motion:wave", "-o", "{out}", "--frames", "100000", "--width", "8192"),
        BAD_INPUT,
        "over the limit",
    ),
    # outputs that cannot be written: found before the work, not after it
    "generate-read-only-folder": Case(generate(output="{ro}/o.mp4"), BAD_INPUT, "cannot write in"),
    "generate-no-folder": Case(generate(output="{tmp}/none/o.mp4"), BAD_INPUT, "does not exist"),
    "generate-bad-crf": Case(generate("--crf", "99"), BAD_INPUT, "'--crf'"),
    "stamp-read-only-folder": Case(("stamp", "{clip}", "-o", "{ro}/o.mp4"), BAD_INPUT, "cannot write in"),
    "pose-render-read-only-folder": Case(
        ("pose", "render", "motion:wave", "-o", "{ro}/o.mp4"), BAD_INPUT, "cannot write in"
    ),
    # homes that are not homes
    "home-is-a-file": Case(("audit", "log", "--home", "{file}"), BAD_INPUT, "is not a folder"),
    "home-under-a-file": Case(("keys", "init", "--home", "{file}/home"), BAD_INPUT, "is not a folder"),
    "home-read-only": Case(("audit", "log", "--home", "{ro}"), BAD_INPUT, "not writable"),
    # limits on numbers
    "audit-limit-float": Case(("audit", "log", "--limit", "1e30"), BAD_INPUT, "'--limit'"),
    "audit-limit-huge": Case(("audit", "log", "--limit", str(10**30)), BAD_INPUT, "'--limit'"),
    "audit-limit-0": Case(("audit", "log", "--limit", "0"), BAD_INPUT, "'--limit'"),
    "scan-workers-huge": Case(
        ("scan", "{clip}", "--out", "{scan}", "--workers", "100000"), BAD_INPUT, "'--workers'"
    ),
    "scan-unknown-engine": Case(
        ("scan", "{clip}", "--out", "{scan}", "--engine", "nope"), BAD_INPUT, "engine"
    ),
    # a signing key is never replaced behind the operator's back
    "keys-init-over-a-key": Case(("keys", "init", "--home", "{half_keys}"), BAD_INPUT, "signing.key"),
    # special files: refused from their mode, never opened for reading
    "scan-fifo": Case(("scan", "{fifo}", "--out", "{scan}"), BAD_INPUT, "not a regular file (a FIFO)"),
    "scan-dev-zero": Case(
        ("scan", "/dev/zero", "--out", "{scan}"), BAD_INPUT, "not a regular file (a device"
    ),
    "scan-socket": Case(("scan", "{socket}", "--out", "{scan}"), BAD_INPUT, "not a regular file (a socket)"),
    "scan-fifo-list": Case(("scan", "{fifo_list}", "--out", "{scan}"), BAD_INPUT, "(a FIFO)"),
    "verify-fifo": Case(("verify", "{fifo}"), BAD_INPUT, "not a regular file (a FIFO)"),
    "stamp-fifo": Case(("stamp", "{fifo}", "-o", "{out}"), BAD_INPUT, "not a regular file (a FIFO)"),
    "verify-folder": Case(("verify", "{folder}"), BAD_INPUT, "not a regular file (a folder)"),
    "verify-huge-file": Case(("verify", "{huge}"), BAD_INPUT, "larger than 16 GiB"),
    "stamp-huge-file": Case(("stamp", "{huge}", "-o", "{out}"), BAD_INPUT, "larger than 16 GiB"),
}
# Refusals by the consent gate: the home records the decision, nothing else is written.
GATE_CASES: dict[str, Case] = {
    "generate-fictional-real-face": Case(generate("--fictional"), REFUSED, "fictional"),
    "generate-face-without-consent": Case(generate(), REFUSED, "refused"),
    "policy-check-fictional-real-face": Case(
        ("policy", "check", "--reference", "{face}", "--purpose", "education", "--fictional"), REFUSED, ""
    ),
}


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims ``width`` x ``height`` pixels (holding none): what Pillow reads on open."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder no file can be created in. Root writes through permission bits, so as root it is a
    folder of /proc, where creating a file fails for everyone."""
    if os.geteuid() == 0:
        yield Path("/proc/self")
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.fixture
def inputs(settings: Settings, tmp_path: Path, clip: Path, read_only: Path) -> Iterator[dict[str, str]]:
    files = tmp_path / "in"
    files.mkdir()
    face = files / "astronaut.png"
    cv2.imwrite(str(face), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    (files / "statement.txt").write_text("I agree.")
    (files / "a-file").write_text("not a folder")
    os.mkfifo(files / "fifo.mp4")
    (files / "fifo-list.txt").write_text("# a FIFO named like a list\n")
    os.mkfifo(files / "list.txt")
    (files / "folder.mp4").mkdir()
    with open(files / "huge.mp4", "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + (1 << 30))  # sparse: no disk used
    half_keys = tmp_path / "half-keys"
    shutil.copytree(settings.keys_dir, half_keys / "keys")
    (half_keys / "keys" / "chain.pem").unlink()
    # A socket path must be short (108 bytes), so it lives in its own short folder.
    sockets = Path(tempfile.mkdtemp(prefix="anima-"))
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sockets / "s.mp4"))
    yield {
        "bomb": str(_png_header(files / "bomb.png", 30000, 30000)),
        "big": str(_png_header(files / "big.png", 10000, 10000)),
        "wide": str(_png_header(files / "wide.png", 9000, 16)),
        "face": str(face),
        "statement": str(files / "statement.txt"),
        "file": str(files / "a-file"),
        "fifo": str(files / "fifo.mp4"),
        "fifo_list": str(files / "list.txt"),
        "folder": str(files / "folder.mp4"),
        "huge": str(files / "huge.mp4"),
        "socket": str(sockets / "s.mp4"),
        "half_keys": str(half_keys),
        "clip": str(clip),
        "out": str(tmp_path / "out.mp4"),
        "scan": str(tmp_path / "scan"),
        "ro": str(read_only),
        "tmp": str(tmp_path),
    }
    server.close()
    shutil.rmtree(sockets)


def _tree(root: Path, skip: Path | None = None) -> list[tuple[str, int]]:
    return sorted(
        (str(p), p.lstat().st_size) for p in root.rglob("*") if skip is None or skip not in (p, *p.parents)
    )


def _run(case: Case, values: dict[str, str]) -> tuple[int, str]:
    result = runner.invoke(app, [arg.format(**values) for arg in case.args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stderr


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_before_any_work(
    case: Case, inputs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anima.api import core

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded for bad input")

    monkeypatch.setattr(core.Anima, "load_model", no_model)
    before = _tree(tmp_path)
    code, err = _run(case, inputs)
    assert code == case.code, err
    assert case.message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("case", GATE_CASES.values(), ids=GATE_CASES.keys())
def test_gate_refusals_exit_3_and_write_no_output(
    case: Case, inputs: dict[str, str], settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anima.api import core

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded for a refused request")

    monkeypatch.setattr(core.Anima, "load_model", no_model)
    before = _tree(tmp_path, skip=settings.home)
    code, err = _run(case, inputs)
    assert code == case.code, err
    assert case.message in err and "Traceback" not in err
    assert _tree(tmp_path, skip=settings.home) == before


# The same limits through the Python API, which the CLI's own option checks do not cover.
API_CASES: dict[str, tuple[Callable[[Anima, Path], object], str]] = {
    "request-width-0": (lambda a, t: GenerationRequest(t / "r.png", "motion:wave", width=0), "width must be"),
    "request-height-1e9": (
        lambda a, t: GenerationRequest(t / "r.png", "motion:wave", height=10**9),
        "height must be",
    ),
    "request-fps-0": (lambda a, t: GenerationRequest(t / "r.png", "motion:wave", fps=0), "fps must be"),
    "request-frames-1e9": (
        lambda a, t: GenerationRequest(t / "r.png", "motion:wave", frames=10**9),
        "frames must be",
    ),
    "generate-fps-0": (
        lambda a, t: a.generate(t / "r.png", "motion:wave", t / "o.mp4", purpose="x", fps=0),
        "fps must be",
    ),
    "pose-render-width-0": (lambda a, t: a.pose.render("motion:wave", t / "o.mp4", width=0), "width must be"),
    "pose-render-frames-1e9": (
        lambda a, t: a.pose.render("motion:wave", t / "o.mp4", frames=10**9),
        "frames must be",
    ),
    "scan-workers-1e6": (lambda a, t: a.scan([t], t / "scan", workers=10**6), "workers must be"),
    "audit-limit-1e30": (lambda a, t: a.audit.log(limit=10**30), "limit must be"),
    "puppets-count-1e6": (lambda a, t: a.puppets.sheet(t / "s.png", count=10**6), "count must be"),
    "home-is-a-file": (lambda a, t: Anima(t / "r.png"), "not a folder"),
}


@pytest.mark.parametrize(("call", "message"), API_CASES.values(), ids=API_CASES.keys())
def test_api_refuses_bad_values_before_any_work(
    call: Callable[[Anima, Path], object], message: str, studio: Anima, tmp_path: Path
) -> None:
    picture = tmp_path / "r.png"
    cv2.imwrite(str(picture), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    before = _tree(tmp_path, skip=studio.settings.home)
    with pytest.raises(BadInput, match=message):
        call(studio, tmp_path)
    assert not studio._models
    assert _tree(tmp_path, skip=studio.settings.home) == before


def test_special_entries_of_a_list_become_error_rows_unread(studio: Anima, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text("fifo.mp4\n/dev/zero\n")

    def hung(*_: object) -> None:
        raise TimeoutError("the scan is reading a special file")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)  # reading the FIFO or /dev/zero would never end
    try:
        summary = studio.scan([listing], tmp_path / "scan", workers=1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    errors = {Path(row["path"]).name: row["error"] for row in summary.rows}
    assert errors == {
        "fifo.mp4": f"{tmp_path / 'fifo.mp4'}: not a regular file (a FIFO)",
        "zero": "/dev/zero: not a regular file (a device or other special file)",
    }
    assert all(row["status"] == "error" and row["sha256"] is None for row in summary.rows)


def test_keys_init_with_force_replaces_a_half_identity(settings: Settings) -> None:
    settings.signing_cert.unlink()
    old_key = settings.signing_key.read_bytes()
    with pytest.raises(BadInput, match=r"signing\.key"):
        Anima(settings.home).keys.init()
    assert settings.signing_key.read_bytes() == old_key
    Anima(settings.home).keys.init(force=True)
    assert settings.signing_key.read_bytes() != old_key and settings.signing_cert.exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        with atomic_output(tmp_path / "out.txt") as tmp:
            tmp.write_text("made")
        with atomic_output(tmp_path / "secret.txt", mode=0o600) as tmp:
            tmp.write_text("kept")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "secret.txt").stat().st_mode) == 0o600
