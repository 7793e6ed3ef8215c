"""What a manifest gives away: file names, never folders; small thumbnails, never upscaled, and none
of a real person's reference unless the operator asks; and the ``c2pa.soft-binding`` assertion that
names the watermark. Every copy of an output carries its manifest, so these are read back from real
signed files."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import c2pa
import pytest
from PIL import Image
from skimage import data

from anima import Anima, StampResult
from anima.config import Settings
from anima.media import mime_type
from anima.policy import gate
from anima.policy.gate import Decision, DriftReport, GateReason
from anima.provenance import watermark
from anima.provenance.manifest import SOFT_BINDING_ASSERTION, THUMBNAIL_LONG_EDGE

SECRET_FOLDER = "client-acme-private"  # a folder name that must never reach a manifest
URL = re.compile(r"^([a-z][a-z0-9+.-]*://|self#jumbf=)")
ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")
# c2pa's own hard binding names MP4 boxes by xpath ("/uuid"); a soft-binding value is base64 (may
# hold "/"; it is decoded below); the software agent is "anima" or "anima/<model folder name>"; a
# format is a MIME type.
EXEMPT_LABELS = ("c2pa.hash.",)
SOFTWARE_AGENT = re.compile(r"^anima(/[\w.-]+)?$")
MIME = re.compile(r"^(image|video|application)/[\w.+-]+$")


def read_store(path: Path) -> tuple[str, dict[str, Any], dict[str, tuple[int, int]]]:
    """The manifest store's JSON text, its active manifest, and the pixel size of every thumbnail
    it embeds (``"claim"`` for the asset's own, else the ingredient's title)."""
    with open(path, "rb") as handle, c2pa.Reader(mime_type(path), handle) as reader:
        text = reader.json()
        store = json.loads(text)
        manifest = store["manifests"][store["active_manifest"]]
        wanted = [("claim", manifest.get("thumbnail"))]
        wanted += [(i["title"], i.get("thumbnail")) for i in manifest.get("ingredients", [])]
        sizes = {}
        for name, thumbnail in wanted:
            if thumbnail:
                buffer = io.BytesIO()
                reader.resource_to_stream(thumbnail["identifier"], buffer)
                sizes[name] = Image.open(io.BytesIO(buffer.getvalue())).size
    return text, manifest, sizes


def strings(node: Any, where: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, (*where, str(key)))
    elif isinstance(node, list):
        for value in node:
            yield from strings(value, where)
    elif isinstance(node, str):
        yield where, node


def path_leaks(manifest: dict[str, Any]) -> list[str]:
    """Every assertion or ingredient value that is an absolute path or names a folder."""
    leaks = []
    values = [((a["label"], *w), s) for a in manifest["assertions"] for w, s in strings(a.get("data"), ())]
    values += [(("ingredient", *w), s) for i in manifest.get("ingredients", []) for w, s in strings(i)]
    for where, value in values:
        if where[0].startswith(EXEMPT_LABELS) or URL.match(value):
            continue
        if where[0] == SOFT_BINDING_ASSERTION and where[-1] == "value":
            continue
        if where[-2:] == ("softwareAgent", "name") and SOFTWARE_AGENT.match(value):
            continue
        if where[-1] == "format" and MIME.match(value):
            continue
        if ABSOLUTE.match(value) or "/" in value or "\\" in value:
            leaks.append(f"{'.'.join(where)} = {value!r}")
    return leaks


def check_private(path: Path, sources: dict[str, Path]) -> dict[str, Any]:
    """Fail on a folder or an oversized thumbnail in ``path``'s manifest; ``sources`` maps the
    thumbnail names of :func:`read_store` to the pictures they show. Returns the active manifest."""
    text, manifest, sizes = read_store(path)
    assert SECRET_FOLDER not in text and str(path.parent) not in text
    assert path_leaks(manifest) == []
    for name, (width, height) in sizes.items():
        with Image.open(sources[name]) as source:
            assert max(width, height) <= THUMBNAIL_LONG_EDGE, (name, width, height)
            assert width <= source.width and height <= source.height, (name, (width, height), source.size)
    return manifest


def soft_binding_payload(manifest: dict[str, Any]) -> int:
    """The payload the manifest's one soft-binding assertion names (its alg must be ours)."""
    bindings = [a["data"] for a in manifest["assertions"] if a["label"] == SOFT_BINDING_ASSERTION]
    assert len(bindings) == 1
    assert bindings[0]["alg"] == watermark.ALGORITHM
    (block,) = bindings[0]["blocks"]
    return watermark.payload_from_binding(block["value"])


def picture(path: Path, size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.coffee()).resize(size).save(path)
    return path


def pose_file(path: Path) -> Path:
    from anima.pose import builtin_motion

    path.parent.mkdir(parents=True, exist_ok=True)
    builtin_motion("motion:wave", 4, 12.0, (128, 128)).save(path)
    return path


# ---------------------------------------------------------------- stamping an existing file


@pytest.mark.parametrize("size", [(128, 128), (640, 480)])
def test_stamped_clip_names_files_only_with_small_thumbnails(
    studio: Anima, clip: Path, tmp_path: Path, size: tuple[int, int]
) -> None:
    reference = picture(tmp_path / SECRET_FOLDER / "ref.png", size)
    pose = pose_file(tmp_path / SECRET_FOLDER / "dance.json")
    result = studio.stamp(clip, tmp_path / "stamped.mp4", reference=reference, pose=pose)
    manifest = check_private(result.output, {"ref.png": reference})
    titles = {i["title"]: i.get("thumbnail") is not None for i in manifest["ingredients"]}
    assert titles == {"ref.png": True, "dance.json": False}
    _, _, sizes = read_store(result.output)
    expected = size if max(size) <= THUMBNAIL_LONG_EDGE else (256, 192)
    assert sizes == {"ref.png": expected}  # a 128-px picture stays 128 px; a video has no claim one


def test_stamped_still_has_its_own_small_thumbnail(studio: Anima, still: Path, tmp_path: Path) -> None:
    result = studio.stamp(still, tmp_path / "stamped.png")
    check_private(result.output, {"claim": result.output})
    _, _, sizes = read_store(result.output)
    assert sizes == {"claim": (256, 171)}  # 384x256 scaled down, aspect kept


def test_soft_binding_names_the_watermark_and_its_payload(
    studio: Anima, settings: Settings, clip: Path, tmp_path: Path
) -> None:
    result: StampResult = studio.stamp(clip, tmp_path / "stamped.mp4")
    _, manifest, _ = read_store(result.output)
    assert soft_binding_payload(manifest) == result.payload
    report = studio.verify(result.output, trust=[settings.local_ca_cert])
    assert report.manifest.trusted
    assert report.manifest.soft_bindings == [
        {"alg": watermark.ALGORITHM, "value": watermark.binding_value(result.payload)}
    ]
    assert report.to_dict()["manifest"]["soft_bindings"] == report.manifest.soft_bindings


# ---------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def pipe():
    from tiny import tiny_pipeline

    return tiny_pipeline(seed=0)


def generate(studio: Anima, pipe, tmp_path: Path, **kwargs: Any) -> tuple[StampResult, Path]:
    reference = picture(tmp_path / SECRET_FOLDER / "puppet.png", (128, 128))
    pose = pose_file(tmp_path / SECRET_FOLDER / "wave.json")
    result = studio.generate(
        reference, pose, tmp_path / "out.mp4", purpose="education", model=pipe, steps=1, **kwargs
    )
    return result, reference


def test_generated_clip_names_files_only_and_binds_its_watermark(studio: Anima, pipe, tmp_path: Path) -> None:
    result, reference = generate(studio, pipe, tmp_path, fictional=True)
    manifest = check_private(result.output, {"puppet.png": reference})
    stamp = next(a["data"] for a in manifest["assertions"] if a["label"] == "org.anima.stamp")
    assert stamp["pose"] == "wave.json"
    assert {i["title"] for i in manifest["ingredients"]} == {"puppet.png", "wave.json"}
    _, _, sizes = read_store(result.output)
    assert sizes == {"puppet.png": (128, 128)}  # a fictional character's thumbnail, never upscaled
    assert soft_binding_payload(manifest) == result.payload


@pytest.mark.parametrize("asked", [False, True])
def test_real_persons_reference_thumbnail_only_when_asked(
    studio: Anima, pipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asked: bool
) -> None:
    """A reference that passed the gate as a consented real person (the face machinery is stood in
    for: what is tested is what the manifest carries after an allow)."""
    allowed = Decision(
        allow=True, purpose="education", fictional=False, reasons=[GateReason.ALL_FACES_VERIFIED]
    )
    monkeypatch.setattr(studio, "_gate", lambda picture, purpose, fictional: allowed)
    monkeypatch.setattr(gate, "check_output", lambda *args, **kwargs: DriftReport(1, 1, []))
    result, reference = generate(studio, pipe, tmp_path, reference_thumbnail=asked)
    manifest = check_private(result.output, {"puppet.png": reference})
    assert "puppet.png" in {i["title"] for i in manifest["ingredients"]}
    _, _, sizes = read_store(result.output)
    assert ("puppet.png" in sizes) is asked


def test_cli_passes_reference_thumbnail(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from anima.cli import app

    seen = []

    def fake_generate(self, *args: Any, **kwargs: Any) -> StampResult:
        seen.append(kwargs["reference_thumbnail"])
        return StampResult("anm-00000000", 0, Path("out.mp4"), "0" * 64, 1, "tester")

    monkeypatch.setattr(Anima, "generate", fake_generate)
    base = ["generate", "--reference", "r.png", "--pose", "motion:wave", "-o", "o.mp4", "--purpose", "x"]
    for extra in ([], ["--reference-thumbnail"]):
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 0, result.stdout + result.stderr
    assert seen == [False, True]
