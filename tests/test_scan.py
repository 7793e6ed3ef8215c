"""Batch scans as a trust-and-safety team runs them: real clips, real workers, a real ledger."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import camera_pan
from containers import encode
from skimage import data
from typer.testing import CliRunner

from anima import Anima, Verdict
from anima.cli import app
from anima.config import Settings
from anima.errors import BadInput
from anima.ledger import Ledger
from anima.media import read_video, write_video
from anima.scan import engine as scan
from anima.scan import report

HOSTILE = "<img src=x onerror=alert(1)>.mp4"


def tiny_clip(path: Path, image: np.ndarray, frames: int = 12) -> Path:
    """A 96x96 clip panning over ``image``, small enough to keep these tests fast. (At 64x64, the
    watermark reader decoded false payloads from unmarked clips: see the scan report.)"""
    write_video(path, camera_pan(image, frames, 96), 24)
    return path


@pytest.fixture
def folder(settings: Settings, tmp_path: Path) -> Path:
    """Two unmarked clips, a stamped one, a corrupt file, a hostile name and a duplicate in a subfolder."""
    root = tmp_path / "inbox"
    (root / "sub").mkdir(parents=True)
    tiny_clip(root / "astronaut.mp4", data.astronaut())
    tiny_clip(root / "coffee.mp4", data.coffee())
    tiny_clip(tmp_path / "chelsea.mp4", data.chelsea())
    Anima(settings.home).stamp(tmp_path / "chelsea.mp4", root / "stamped.mp4")
    (root / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    tiny_clip(root / HOSTILE, data.rocket())
    shutil.copyfile(root / "astronaut.mp4", root / "sub" / "copy.mp4")
    (root / "notes.md").write_text("not media, not scanned")
    return root


def rows_by_name(summary: scan.ScanSummary) -> dict[str, dict]:
    return {Path(row["path"]).name: row for row in summary.rows}


def journal_lines(out: Path) -> list[str]:
    return (out / scan.JSONL_NAME).read_text().splitlines()


def test_scan_writes_a_row_per_file_to_all_outputs_and_the_ledger(
    settings: Settings, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    summary = Anima(settings.home, actor="analyst").scan([folder], out, workers=2)
    rows = rows_by_name(summary)
    assert sorted(rows) == sorted(
        ["astronaut.mp4", "coffee.mp4", "stamped.mp4", "broken.mp4", HOSTILE, "copy.mp4"]
    )
    assert (summary.scanned, summary.duplicates, summary.resumed) == (5, 1, 0)
    assert rows["stamped.mp4"]["verdict"] == Verdict.ANIMA_GENERATED
    assert rows["stamped.mp4"]["stamp_id"].startswith("anm-")
    assert rows["astronaut.mp4"]["verdict"] == Verdict.NO_EVIDENCE
    assert rows["astronaut.mp4"]["frames"] == 12 and rows["astronaut.mp4"]["thumbnail"]
    broken = rows["broken.mp4"]
    assert broken["status"] == "error" and broken["verdict"] is None
    assert "broken.mp4" in broken["error"] and "\n" not in broken["error"]
    assert summary.counts() == {"no-evidence": 4, "anima-generated": 1, "error": 1}

    assert len(journal_lines(out)) == 6
    with open(out / scan.CSV_NAME, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["path"] for row in table] == [row["path"] for row in summary.rows]
    # The detector scores every readable file (plain numbers, not formula-quoted text); not the broken one.
    scores = {row["path"].rsplit("/", 1)[-1]: row["score"] for row in table}
    assert scores.pop("broken.mp4") == ""
    assert all(re.fullmatch(r"-?\d+\.\d+(e-?\d+)?", score) for score in scores.values())

    page = (out / scan.HTML_NAME).read_text()
    assert "<img src=x" not in page and html.escape(HOSTILE) in page
    assert page.count("<tr data-verdict=") == 6 and "data:image/jpeg;base64," in page

    ledger = Ledger(settings.database_url)
    events = ledger.events(kind="scan")
    assert len(events) == 6 and {event.actor for event in events} == {"analyst"}
    assert {event.details["verdict"] for event in events} == {"no-evidence", "anima-generated", None}
    assert ledger.verify_chain().ok


def test_same_content_is_scanned_once_and_each_path_gets_its_row(
    settings: Settings, folder: Path, tmp_path: Path
) -> None:
    summary = Anima(settings.home).scan([folder], tmp_path / "out", workers=1)
    rows = rows_by_name(summary)
    copy, first = rows["copy.mp4"], rows["astronaut.mp4"]
    assert copy["duplicate_of"] == first["path"] and copy["sha256"] == first["sha256"]
    assert copy["report"] == first["report"] and copy["seconds"] == 0.0


def test_rerun_skips_finished_files_and_resumes_after_a_crash(
    settings: Settings, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    Anima(settings.home).scan([folder], out, workers=1)
    first = journal_lines(out)

    again = Anima(settings.home).scan([folder], out, workers=1)
    assert (again.scanned, again.resumed) == (0, 6) and journal_lines(out) == first

    tiny_clip(folder / "new.mp4", data.camera()[..., None].repeat(3, axis=2))
    more = Anima(settings.home).scan([folder], out, workers=1)
    assert (more.scanned, more.resumed) == (1, 6)
    added = journal_lines(out)[len(first) :]
    assert [Path(json.loads(line)["path"]).name for line in added] == ["new.mp4"]

    # a crash while the last row was being written: the cut line is ignored and that file redone
    journal = out / scan.JSONL_NAME
    journal.write_text("\n".join(journal_lines(out)[:-1]) + "\n" + journal_lines(out)[-1][:40])
    resumed = Anima(settings.home).scan([folder], out, workers=1)
    assert (resumed.scanned, resumed.resumed) == (1, 6)
    assert json.loads(journal_lines(out)[-1])["path"].endswith("new.mp4")


def test_a_folder_search_finds_every_kind_verify_reads(tmp_path: Path) -> None:
    names = {"a.mp4", "b.m4v", "c.MOV", "d.webm", "e.mkv", "f.avi", "g.gif", "h.webp", "i.png", "j.jpg"}
    for name in names | {"notes.md", "k.flv", ".hidden.webm"}:
        (tmp_path / name).write_bytes(b"x")
    assert {path.name for path in scan.collect([tmp_path])} == names


def test_reuploads_in_webm_and_gif_are_scanned_with_thumbnails(settings: Settings, tmp_path: Path) -> None:
    """At 256 px: at the 96 px of the other scan tests, a VP9, AV1 or H.264 re-encode leaves too
    little of the watermark to read reliably."""
    clip = tmp_path / "chelsea.mp4"
    write_video(clip, camera_pan(data.chelsea(), 12, 256), 24)
    stamped = Anima(settings.home).stamp(clip, tmp_path / "stamped.mp4")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("webm-vp9", "gif", "webp"):
        encode(read_video(stamped.output).frames, inbox, name)
    rows = rows_by_name(Anima(settings.home).scan([inbox], tmp_path / "out", workers=1))
    assert sorted(rows) == ["clip.gif", "clip.webm", "clip.webp"]
    for row in rows.values():
        assert (row["status"], row["verdict"]) == ("ok", Verdict.ANIMA_GENERATED)
        assert row["stamp_id"] == stamped.stamp_id
        assert row["frames"] == 12 and row["thumbnail"]


def test_lists_of_paths_and_missing_entries(settings: Settings, folder: Path, tmp_path: Path) -> None:
    listing = folder / "batch.txt"
    listing.write_text("# today's queue\nstamped.mp4\n\nsub\ngone.mp4\n")
    summary = Anima(settings.home).scan([listing], tmp_path / "out", workers=1)
    rows = rows_by_name(summary)
    assert list(rows) == ["stamped.mp4", "copy.mp4", "gone.mp4"]
    assert rows["gone.mp4"]["status"] == "error" and rows["gone.mp4"]["sha256"] is None
    assert not scan.is_finished(rows["gone.mp4"])  # tried again on the next run


def test_ray_engine_gives_the_same_rows_as_local(settings: Settings, folder: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    local = Anima(settings.home).scan([folder], tmp_path / "local", workers=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = Anima(settings.home).scan([folder], tmp_path / "ray", engine="ray")
    finally:
        ray.shutdown()

    def comparable(row: dict) -> dict:
        return {key: value for key, value in row.items() if key not in ("seconds", "scanned_at")}

    assert [comparable(row) for row in remote.rows] == [comparable(row) for row in local.rows]


def test_classifier_fields_reach_csv_and_html(tmp_path: Path) -> None:
    row = {
        "path": "/clips/=cmd|' /C calc'!A0.mp4",
        "sha256": "ab" * 32,
        "status": "ok",
        "verdict": "likely-synthetic",
        "report": {
            "reasons": ["classifier score above the threshold"],
            "manifest": {"present": False},
            "watermark": {"payload": None},
            "classifier": {"clip_score": 2.5, "threshold": 0.42},
        },
    }
    report.write_csv([row], tmp_path / "scan.csv")
    report.write_html([row], tmp_path / "report.html")
    with open(tmp_path / "scan.csv", newline="") as handle:
        written = next(csv.DictReader(handle))
    assert (written["score"], written["threshold"], written["verdict"]) == (
        "2.5",
        "0.42",
        "likely-synthetic",
    )
    page = (tmp_path / "report.html").read_text()
    assert 'data-verdict="likely-synthetic"' in page and "2.500 (threshold 0.420)" in page
    assert 'style="width:92.4%"' in page and 'style="left:60.3%"' in page  # logits on a logistic bar


class _Page(HTMLParser):
    """A page as a browser's tokenizer sees it: its elements with their attributes, and its text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_keeps_hostile_names_and_manifest_fields_as_text(tmp_path: Path) -> None:
    # report.py hands the template raw text; only the template's autoescaping stands between these
    # strings and the page's markup.
    folder = '/in/</td><script>alert("dir")</script>'
    name = """" onmouseover="alert('name')" x='.mp4"""
    verdict = """likely-synthetic" onclick="alert('verdict')"""
    signer = "javascript:alert('signer')"
    payload = "</div><script>alert('mark')</script>"
    reason = "<img src=x onerror=alert('reason')>"
    error = """<iframe src="javascript:alert('error')"></iframe>"""
    rows = [
        {
            "path": f"{folder}/{name}",
            "sha256": '"><script>x</script>',
            "status": "ok",
            "verdict": verdict,
            "thumbnail": """QUJD" onerror="alert('thumb')""",
            "stamp_id": "' onfocus='alert(4)",
            "duplicate_of": "javascript:alert('dup')",
            "report": {
                "reasons": [reason],
                "manifest": {"present": True, "validation_state": "<b>valid</b>", "signer": signer},
                "watermark": {"payload": payload},
                "classifier": {"clip_score": "<svg onload=alert(1)>", "threshold": 0.5},
            },
        },
        {"path": "/in/javascript:alert(3).mp4", "status": "error", "error": error, "thumbnail": "java:x"},
    ]
    report.write_html(rows, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    parsed = _Page(page)

    tags = [tag for tag, _ in parsed.elements]
    assert tags.count("script") == 1 and not {"img", "svg", "iframe", "a", "b"} & set(tags)
    attributes = {key for _, attrs in parsed.elements for key in attrs}
    assert attributes <= {"lang", "charset", "name", "content", "class", "data-verdict", "style"}
    # Each hostile value stays inside its attribute or text node, escaped once (read back intact).
    rows_shown = [attrs["data-verdict"] for tag, attrs in parsed.elements if tag == "tr" and attrs]
    assert rows_shown == [verdict, "error"]
    assert {"background:#374151", "background:#6b21a8"} == {
        attrs["style"] for _, attrs in parsed.elements if attrs.get("class") == "badge"
    }
    text = "".join(parsed.text)
    for shown in (
        name,
        f"{folder}/{name}",
        reason,
        f"manifest: <b>valid</b>; signer: {signer}; watermark payload: {payload}; stamp: ' onfocus='alert(4)",
        error,
        "/in/javascript:alert(3).mp4",
        "same content as javascript:alert('dup')",
        'sha256 "><script>x</scr',
    ):
        assert shown in text, shown
    script = page[page.index("<script>") : page.index("</script>")]
    assert "alert" not in script and "<script>alert" not in page and 'onmouseover="' not in page
    assert 'class="bar"' not in page  # a score that is not a number draws no bar


def test_csv_defuses_spreadsheet_formulas_in_file_names(tmp_path: Path) -> None:
    row = {"path": '=HYPERLINK("http://evil")', "status": "error", "error": "-bad"}
    report.write_csv([row], tmp_path / "scan.csv")
    with open(tmp_path / "scan.csv", newline="") as handle:
        written = next(csv.DictReader(handle))
    assert written["path"].startswith("'=") and written["error"] == "'-bad"


def test_cli_scan_prints_a_summary_and_fails_in_one_line(home: Path, folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["scan", str(folder / "sub"), "--out", str(tmp_path / "out"), "--workers", "1"]
    )
    assert result.exit_code == 0, result.stderr
    assert "no-evidence" in result.stdout and "1 files" in result.stdout
    result = runner.invoke(app, ["scan", str(folder), "--out", str(tmp_path / "o"), "--engine", "spark"])
    assert result.exit_code == 2 and "engine must be one of" in result.stderr
    result = runner.invoke(app, ["scan", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file or folder" in result.stderr


def test_ray_engine_without_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(BadInput, match=r"pip install 'anima\[ray\]'"):
        scan.open_engine("ray", 1, None)
