"""The CLI as users run it: exit codes, one-line errors, nothing written on failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from anima.cli import app
from anima.media import read_video, write_video

runner = CliRunner()


def anima(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_keys_stamp_verify_audit(home: Path, clip: Path, tmp_path: Path) -> None:
    code, out, _ = anima("keys", "init", "--org", "CLI Studio")
    assert code == 0 and "CLI Studio" in out
    code, out, _ = anima("keys", "show")
    assert code == 0 and "CLI Studio Anima signer" in out
    output = tmp_path / "out.mp4"
    code, out, _ = anima("stamp", str(clip), "-o", str(output))
    assert code == 0 and "stamped" in out and output.exists()
    code, out, _ = anima("verify", str(output), "--json", "--trust", str(home / "keys" / "ca.pem"))
    assert code == 0
    report = json.loads(out)
    assert report["verdict"] == "anima-generated" and report["manifest"]["validation_state"] == "Trusted"
    code, out, _ = anima("verify", str(output))
    assert code == 0 and "verdict: anima-generated" in out
    code, out, _ = anima("verify", str(clip))
    assert code == 0 and "verdict: no-evidence" in out
    code, out, _ = anima("audit", "log")
    assert code == 0 and "stamp.stamped" in out
    code, out, _ = anima("audit", "verify")
    assert code == 0 and "chain intact" in out


def test_watermark_keys_across_homes(home: Path, clip: Path, tmp_path: Path) -> None:
    """A verifier elsewhere reads a stripped clip's watermark only with the key it was given; a home
    from before the keyed watermark gets one with --watermark-only; a rotated key still reads."""
    code, out, _ = anima("keys", "init")
    assert code == 0 and "watermark key" in out
    output = tmp_path / "out.mp4"
    assert anima("stamp", str(clip), "-o", str(output))[0] == 0
    stripped = tmp_path / "stripped.mp4"
    write_video(stripped, read_video(output).frames, fps=24, crf=23)  # a re-upload: no manifest
    elsewhere = tmp_path / "verifier-home"
    code, out, _ = anima("verify", str(stripped), "--json", "--home", str(elsewhere))
    assert code == 0 and json.loads(out)["watermark"]["payload"] is None
    key_file = home / "keys" / "watermark.key"
    code, out, _ = anima(
        "verify", str(stripped), "--json", "--home", str(elsewhere), "--watermark-key", str(key_file)
    )
    found = json.loads(out)["watermark"]
    assert code == 0 and found["payload"] is not None and found["key_id"] in key_file.read_text()
    code, _, err = anima("verify", str(stripped), "--home", str(elsewhere), "--watermark-key", str(clip))
    assert code != 0 and "not an Anima watermark key" in err and "Traceback" not in err
    code, out, _ = anima("keys", "init", "--watermark-only", "--force")
    assert code == 0
    code, out, _ = anima("verify", str(stripped), "--json")
    assert json.loads(out)["watermark"]["payload"] == found["payload"]  # read with the retired key
    code, out, _ = anima("keys", "show")
    assert code == 0 and "org.anima.watermark.2" in out


def test_audit_verify_names_an_edited_row(home: Path, clip: Path, tmp_path: Path) -> None:
    assert anima("keys", "init")[0] == 0
    for index in range(2):
        assert anima("stamp", str(clip), "-o", str(tmp_path / f"o{index}.mp4"))[0] == 0
    engine = create_engine(f"sqlite:///{home / 'ledger.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE id = 1"))
    code, _, err = anima("audit", "verify")
    assert code == 1 and "event #1" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stamp", "{missing}", "-o", "{out}"], "no such file"),
        (["stamp", "{text}", "-o", "{out}"], "not a readable video"),
        (["stamp", "{clip}", "-o", "{tmp}/out.avi"], "must be a .mp4"),
        (["stamp", "{clip}", "-o", "{tmp}/nofolder/out.mp4"], "output folder does not exist"),
        (["stamp", "{clip}", "-o", "{out}", "--reference", "{missing}"], "no such file"),
        (["stamp", "{clip}", "-o", "{out}", "--crf", "99"], "Invalid value for '--crf'"),
        (["verify", "{missing}"], "no such file"),
        (["verify", "{text}"], "not a readable video or picture"),  # known by content, not suffix
    ],
    ids=[
        "missing",
        "not-media",
        "bad-suffix",
        "no-folder",
        "missing-ingredient",
        "bad-crf",
        "verify-missing",
        "verify-unsupported",
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    home: Path, clip: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    assert anima("keys", "init")[0] == 0
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("not a video " * 100)
    values = {
        "missing": str(tmp_path / "missing.mp4"),
        "out": str(tmp_path / "out.mp4"),
        "text": str(text_file),
        "clip": str(clip),
        "tmp": str(tmp_path),
    }
    before = sorted(tmp_path.iterdir())
    code, out, err = anima(*[a.format(**values) for a in args])
    assert code == 2, (out, err)
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == before


def test_stamp_without_keys_points_at_keys_init(home: Path, clip: Path, tmp_path: Path) -> None:
    code, _, err = anima("stamp", str(clip), "-o", str(tmp_path / "o.mp4"))
    assert code == 4 and "anima keys init" in err
    assert not (tmp_path / "o.mp4").exists()


def test_installed_entry_point_runs(home: Path) -> None:
    exe = shutil.which("anima") or str(Path(sys.executable).parent / "anima")
    result = subprocess.run(
        [exe, "--help"], capture_output=True, text=True, env=dict(os.environ), check=False
    )
    assert result.returncode == 0
    for command in ("stamp", "verify", "keys", "audit"):
        assert command in result.stdout


# What only stamping, consent and scans need; `anima --help` needs none of the API either.
LEDGER_AND_REPORTS = ("sqlalchemy", "jinja2", "torch", "anima.policy.gate", "anima.provenance.stamp")
API_LIBRARIES = ("numpy", "av", "cv2", "PIL", "cryptography", "c2pa", "onnxruntime", "anima.api.core")
IMPORTED = """
import sys
from anima.cli import app
try:
    app(sys.argv[2:])
except SystemExit as exc:
    assert not exc.code, exc.code
print(" ".join(sorted(name for name in sys.argv[1].split(",") if name in sys.modules)))
"""


def _imported_by(args: list[str], names: tuple[str, ...]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED, ",".join(names), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split("\n")[-2].split()


def test_help_and_an_unmarked_verify_import_only_what_they_use(home: Path, clip: Path) -> None:
    """A cold `anima --help` loads none of the API, and a verify of an unmarked clip no database,
    report templates or torch (each was a tenth to a fifth of a cold start)."""
    assert _imported_by(["--help"], API_LIBRARIES + LEDGER_AND_REPORTS) == []
    assert _imported_by(["verify", str(clip), "--home", str(home)], LEDGER_AND_REPORTS) == []
