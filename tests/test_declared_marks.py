"""Other generators' invisible watermarks, embedded with the very package and messages that Stable
Diffusion's reference scripts, diffusers' SDXL pipelines and Stability AI's generative-models use,
written to H.264 by ``anima.media.write_video`` and read back through ``Anima.verify``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import camera_pan
from skimage import data
from typer.testing import CliRunner

from anima import Anima, Verdict
from anima.cli import app
from anima.detect.declared_marks import KNOWN_MARKS, KnownMark, block_votes, match_tail, read_declared_marks
from anima.media import write_video
from anima.provenance.manifest import ManifestReport
from anima.provenance.verify import decide
from anima.scan import report as scan_report

imwatermark = pytest.importorskip("imwatermark")


def embed(frame: np.ndarray, mark: KnownMark) -> np.ndarray:
    """``frame`` (RGB uint8) marked the way ``mark``'s generator marks its outputs."""
    encoder = imwatermark.WatermarkEncoder()
    encoder.set_watermark("bits", list(mark.bits))
    if mark.precision == "uint8":  # SD 1 and 2 scripts: uint8, RGB -> BGR, encode, flip back
        return np.ascontiguousarray(
            encoder.encode(np.ascontiguousarray(frame[:, :, ::-1]), "dwtDct")[:, :, ::-1]
        )
    picture = frame.astype(np.float32)  # SDXL: float32 in [0, 255]
    if mark.order == "bgr":  # generative-models flips to BGR; diffusers hands RGB over as it is
        picture = np.ascontiguousarray(picture[:, :, ::-1])
    marked = encoder.encode(picture, "dwtDct")
    if mark.order == "bgr":
        marked = marked[:, :, ::-1]
    return np.clip(np.round(marked), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pan() -> np.ndarray:
    """A slow camera move over a photo: 12 frames of 320 x 320, a size no message length divides."""
    return camera_pan(data.astronaut(), frames=12, size=320)


@pytest.mark.parametrize("mark", KNOWN_MARKS, ids=lambda mark: mark.name.split(" (")[0])
def test_reader_agrees_bit_for_bit_with_the_package_decoder(mark: KnownMark) -> None:
    frame = embed(camera_pan(data.astronaut(), frames=1, size=512)[0], mark)
    picture = frame if mark.precision == "uint8" else frame.astype(np.float32)
    if mark.order == "bgr":
        picture = np.ascontiguousarray(picture[:, :, ::-1])
    expected = np.asarray(imwatermark.WatermarkDecoder("bits", len(mark.bits)).decode(picture, "dwtDct"), int)
    votes = block_votes(frame, mark.order, mark.precision)
    position = np.arange(len(votes)) % len(mark.bits)
    share = np.bincount(position, weights=votes) / np.bincount(position)
    assert np.array_equal((share * 255 > 127).astype(int), expected)
    # Even freshly marked, a few bits of a uint8 embedding read wrong (saturated, truncated pixels).
    assert np.mean(expected == mark.bits) >= 0.9
    assert read_declared_marks([frame]).readings[0].mark == mark.name


@pytest.mark.parametrize("mark", KNOWN_MARKS, ids=lambda mark: mark.name.split(" (")[0])
def test_each_generators_mark_survives_h264_and_makes_the_clip_ai_declared(
    studio: Anima, pan: np.ndarray, tmp_path: Path, mark: KnownMark
) -> None:
    """At CRF 18, write_video's default: dwtDct marks do not survive CRF 23 (benchmarks/foreign_marks.py)."""
    path = tmp_path / "generated.mp4"
    write_video(path, [embed(frame, mark) for frame in pan], fps=12, crf=18)
    report = studio.verify(path)
    assert report.verdict == Verdict.AI_DECLARED
    assert report.reasons[0].startswith(f"an invisible watermark of {mark.name} declares AI generation")
    found = report.declared_marks.found
    assert [reading.mark for reading in found] == [mark.name]
    assert found[0].false_positive_bound <= 1e-6 and found[0].frames_voting >= 1
    assert report.to_dict()["declared_marks"]["found"] == [mark.name]
    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code == 0 and "other marks" in result.stdout and mark.name in result.stdout


def test_unmarked_clips_read_no_mark(studio: Anima, clip: Path, tmp_path: Path) -> None:
    path = tmp_path / "unmarked.mp4"
    write_video(path, camera_pan(data.coffee(), frames=12, size=320), fps=12, crf=18)
    for unmarked in (clip, path):
        report = studio.verify(unmarked)
        assert report.verdict == Verdict.NO_EVIDENCE
        assert report.declared_marks is not None and report.declared_marks.found == []
        assert all(reading.false_positive_bound > 1e-3 for reading in report.declared_marks.readings)


def test_flat_and_still_frames_are_not_credited_with_a_message() -> None:
    """A colourless frame reads all zeros; eight copies of one frame count as one reading."""
    grey = np.full((512, 512, 3), 128, np.uint8)
    still = camera_pan(data.chelsea(), frames=1, size=512)[0]
    for frames in ([grey] * 8, [still] * 8):
        assert read_declared_marks(frames).found == []
    assert match_tail(21, 27, 0, 48) == 1.0  # nothing read as 1: matching every 0 is no evidence


def test_frames_smaller_than_any_mark_are_not_read() -> None:
    assert read_declared_marks([np.zeros((128, 128, 3), np.uint8)] * 4) is None
    assert read_declared_marks([]) is None


def test_a_found_mark_is_a_further_reason_beside_stronger_evidence() -> None:
    mark = KNOWN_MARKS[2]
    declared = read_declared_marks([embed(camera_pan(data.astronaut(), frames=1, size=512)[0], mark)])
    reason = f"an invisible watermark of {mark.name} declares AI generation"
    cases = [
        (ManifestReport(present=False), Verdict.AI_DECLARED),
        (ManifestReport(present=True, validation_state="Invalid"), Verdict.TAMPERED),
        (
            ManifestReport(present=True, validation_state="Valid", ai_declared=True, signer="X"),
            Verdict.AI_DECLARED,
        ),
    ]
    for manifest, expected in cases:
        verdict, reasons = decide(manifest, None, None, None, declared=declared)
        assert verdict == expected
        assert sum(line.startswith(reason) for line in reasons) == 1
    assert decide(ManifestReport(present=False), None, None, None)[0] == Verdict.NO_EVIDENCE


def test_found_marks_reach_the_scan_csv_and_page(tmp_path: Path) -> None:
    name = KNOWN_MARKS[0].name
    row = {
        "path": "/clips/sd.mp4",
        "sha256": "ab" * 32,
        "status": "ok",
        "verdict": "ai-declared",
        "report": {"reasons": [], "manifest": {"present": False}, "declared_marks": {"found": [name]}},
    }
    scan_report.write_csv([row], tmp_path / "scan.csv")
    scan_report.write_html([row], tmp_path / "report.html")
    with open(tmp_path / "scan.csv", newline="") as handle:
        assert next(csv.DictReader(handle))["declared_marks"] == name
    assert f"watermark of {name}" in (tmp_path / "report.html").read_text()
