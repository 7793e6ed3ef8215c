"""The provenance story end to end, with real files, real signatures and a real SQLite ledger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import c2pa
import pytest
from containers import CONTAINERS, encode
from PIL import Image

from anima import Anima, StampResult, Verdict
from anima.config import Settings, load_settings
from anima.errors import MediaError
from anima.ledger import Ledger
from anima.media import read_video, write_video
from anima.provenance.keys import identity_from_settings, init_identity


@pytest.fixture
def stamped(studio: Anima, settings: Settings, long_clip: Path, still: Path, tmp_path: Path) -> StampResult:
    return studio.stamp(long_clip, tmp_path / "stamped.mp4", reference=still)


def test_stamped_clip_verifies_as_anima_generated_and_trusted(
    studio: Anima, settings: Settings, stamped: StampResult
) -> None:
    report = studio.verify(stamped.output, trust=[settings.local_ca_cert])
    assert report.verdict == Verdict.ANIMA_GENERATED
    assert report.manifest.validation_state == "Trusted"
    assert report.manifest.ai_declared
    assert report.manifest.anima["stamp_id"] == stamped.stamp_id
    assert report.manifest.ingredients == [{"title": "coffee.png", "relationship": "inputTo"}]
    assert report.watermark.payload == stamped.payload
    assert report.ledger.stamp_id == stamped.stamp_id
    assert report.ledger.output_sha256 == report.sha256 == stamped.output_sha256


def test_manifest_declares_what_the_design_requires(stamped: StampResult) -> None:
    with open(stamped.output, "rb") as handle, c2pa.Reader("video/mp4", handle) as reader:
        manifest = reader.get_active_manifest()
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    action = assertions["c2pa.actions.v2"]["actions"][0]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    assert action["softwareAgent"]["name"] == "anima"
    mining = assertions["cawg.training-mining"]["entries"]
    assert {entry["use"] for entry in mining.values()} == {"notAllowed"}
    assert assertions["org.anima.stamp"]["watermark"]["payload"] == stamped.payload


def test_untrusted_signer_is_valid_but_not_trusted(
    studio: Anima, settings: Settings, stamped: StampResult
) -> None:
    report = studio.verify(stamped.output)
    assert report.manifest.validation_state == "Valid"
    assert report.verdict == Verdict.ANIMA_GENERATED
    assert any("not in the trust anchors" in reason for reason in report.reasons)


def test_flipped_media_byte_is_tampered(
    studio: Anima, settings: Settings, stamped: StampResult, tmp_path: Path
) -> None:
    data = bytearray(stamped.output.read_bytes())
    data[data.find(b"mdat") + 500] ^= 0x01
    forged = tmp_path / "forged.mp4"
    forged.write_bytes(bytes(data))
    report = studio.verify(forged, trust=[settings.local_ca_cert])
    assert report.manifest.validation_state == "Invalid"
    assert report.verdict == Verdict.TAMPERED


def test_reencoded_clip_is_traced_through_watermark_to_ledger_manifest(
    studio: Anima, settings: Settings, stamped: StampResult, tmp_path: Path
) -> None:
    reencoded = tmp_path / "reupload.mp4"
    write_video(reencoded, read_video(stamped.output).frames, fps=24, crf=28)
    report = studio.verify(reencoded)
    assert not report.manifest.present
    assert report.watermark.payload == stamped.payload
    assert report.verdict == Verdict.ANIMA_GENERATED
    assert report.ledger.stamp_id == stamped.stamp_id
    original = report.durable_manifest
    active = original["manifests"][original["active_manifest"]]
    assert any(a["label"] == "org.anima.stamp" for a in active["assertions"])


def test_reuploads_in_other_containers_are_traced_through_the_watermark(
    studio: Anima, stamped: StampResult, tmp_path: Path
) -> None:
    """WebM (VP9, AV1), Matroska, QuickTime, AVI, animated GIF and WebP, as a site or a chat app
    re-encodes them: the manifest is gone (or, for WebM and Matroska, has no place), the watermark
    and the ledger remain."""
    frames = read_video(stamped.output).frames
    found = {}
    for name in CONTAINERS:
        (tmp_path / name).mkdir()
        report = studio.verify(encode(frames, tmp_path / name, name))
        found[name] = (report.watermark.payload, report.manifest.present, report.verdict, report.frames)
    assert found == {name: (stamped.payload, False, Verdict.ANIMA_GENERATED, 48) for name in CONTAINERS}


def test_a_gif_named_mp4_is_read_as_a_gif(studio: Anima, stamped: StampResult, tmp_path: Path) -> None:
    disguised = encode(read_video(stamped.output).frames, tmp_path, "gif").rename(tmp_path / "clip.mp4")
    report = studio.verify(disguised)
    assert (report.frames, report.manifest.present, report.manifest.error) == (48, False, None)
    assert report.watermark.payload == stamped.payload


def test_a_stamped_mp4_named_webm_keeps_its_manifest(
    studio: Anima, settings: Settings, stamped: StampResult, tmp_path: Path
) -> None:
    renamed = tmp_path / "upload.webm"
    shutil.copyfile(stamped.output, renamed)
    report = studio.verify(renamed, trust=[settings.local_ca_cert])
    assert report.manifest.validation_state == "Trusted"
    assert report.verdict == Verdict.ANIMA_GENERATED


@pytest.mark.parametrize("suffix", [".webm", ".gif", ".mkv"])
def test_noise_named_like_a_video_is_one_line_of_bad_input(
    studio: Anima, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"reupload{suffix}"
    path.write_bytes(b"\x00\xffnot a video " * 300)
    with pytest.raises(MediaError, match="not a readable video or picture") as info:
        studio.verify(path)
    assert "\n" not in str(info.value)


def test_unmarked_clip_has_no_evidence(studio: Anima, settings: Settings, clip: Path) -> None:
    report = studio.verify(clip)
    assert report.verdict == Verdict.NO_EVIDENCE
    assert report.watermark.payload is None and not report.manifest.present
    assert report.ledger is None


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_stills_are_stamped_and_verified(
    studio: Anima, settings: Settings, still: Path, tmp_path: Path, suffix: str
) -> None:
    source = tmp_path / f"source{suffix}"
    Image.open(still).save(source)
    result = studio.stamp(source, tmp_path / f"stamped{suffix}")
    report = studio.verify(result.output, trust=[settings.local_ca_cert])
    assert report.verdict == Verdict.ANIMA_GENERATED
    assert report.manifest.validation_state == "Trusted"
    assert report.watermark.payload == result.payload


@pytest.mark.parametrize("container", ["mp4", "mov-h264", "avi-mpeg4", "gif", "webp"])
def test_someone_elses_ai_manifest_is_ai_declared(
    studio: Anima, settings: Settings, clip: Path, tmp_path: Path, container: str
) -> None:
    """Also in the other containers C2PA defines a manifest for (WebM and Matroska have none)."""
    source, format_ = clip, "video/mp4"
    if container != "mp4":
        source, format_ = encode(read_video(clip).frames, tmp_path, container), CONTAINERS[container][1]
    other = load_settings(tmp_path / "other")
    identity = init_identity(other, org="Other Generator")
    definition = {
        "claim_generator_info": [{"name": "othergen", "version": "1"}],
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                        }
                    ]
                },
            }
        ],
    }
    signed = tmp_path / f"other{source.suffix}"
    info = c2pa.C2paSignerInfo(b"es256", identity.chain_pem(), identity.key_pem(), None)
    with (
        c2pa.Signer.from_info(info) as signer,
        c2pa.Builder(definition) as builder,
        open(source, "rb") as src,
        open(signed, "w+b") as dst,
    ):
        builder.sign(signer, format_, src, dst)
    report = studio.verify(signed)
    assert report.verdict == Verdict.AI_DECLARED
    assert report.manifest.signer == "Other Generator Anima signer"


def test_every_stamp_is_in_the_chain(settings: Settings, stamped: StampResult) -> None:
    ledger = Ledger(settings.database_url)
    report = ledger.verify_chain()
    assert report.ok and report.rows_checked == 1
    event = ledger.events(limit=1)[0]
    assert (event.kind, event.actor, event.subject) == ("stamp.stamped", "tester", stamped.stamp_id)
    row = ledger.stamp(stamped.stamp_id)
    assert row.signer_fingerprint == identity_from_settings(settings).fingerprint_sha256
    assert row.inputs["reference"]["name"] == "coffee.png"
    assert json.dumps(row.manifest)  # the full manifest store is kept for durable credentials
