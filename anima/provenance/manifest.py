"""C2PA manifests through c2pa-python: what Anima declares about an output, signing, reading.

The manifest says the asset was created by a trained algorithm (IPTC ``trainedAlgorithmicMedia``),
names Anima and the model as software agent, lists the reference and pose inputs as ``inputTo``
ingredients, forbids AI training and mining (``cawg.training-mining``), names the watermark in a
``c2pa.soft-binding`` assertion, and carries an ``org.anima.stamp`` assertion with the stamp id and
watermark payload (no personal data).

Manifests travel with the file, so they name input files, never the folders they came from, and
their thumbnails are small: c2pa's own (1024 px, small pictures upscaled) are turned off, and ours
are JPEGs at most :data:`THUMBNAIL_LONG_EDGE` px on the long side, never upscaled.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import c2pa
from PIL import Image

from anima import __version__
from anima.errors import ProvenanceError
from anima.media import IMAGE_SUFFIXES, MIME_TYPES, content_type, mime_type, read_image
from anima.provenance import watermark
from anima.provenance.keys import SigningIdentity

AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ANIMA_ASSERTION = "org.anima.stamp"
SOFT_BINDING_ASSERTION = "c2pa.soft-binding"
THUMBNAIL_LONG_EDGE = 256
THUMBNAIL_QUALITY = 80
# c2pa's automatic thumbnails off: it scales every picture to 1024 px, upscaling small ones.
SIGNING_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}
AI_SOURCE_TYPES = {
    AI_SOURCE_TYPE,
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
    "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia",
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic",
}
TRAINING_MINING_ENTRIES = (
    "cawg.ai_generative_training",
    "cawg.ai_training",
    "cawg.ai_inference",
    "cawg.data_mining",
)


@dataclass(frozen=True)
class Ingredient:
    """An input file named in the manifest (``role`` is e.g. ``reference`` or ``pose``); a picture
    gets a small thumbnail unless ``thumbnail`` is false (a real person's face stays out)."""

    role: str
    path: Path
    thumbnail: bool = True

    @property
    def format(self) -> str:
        suffix = self.path.suffix.lower()
        if suffix == ".json":
            return "application/json"
        return MIME_TYPES.get(suffix, "application/octet-stream")


def soft_binding(watermark_info: dict[str, Any]) -> dict[str, Any]:
    """The ``c2pa.soft-binding`` assertion (C2PA 2.x soft-binding-map) naming the watermark in every
    frame: its algorithm and, over the whole asset (an empty scope), its payload as a binding value."""
    return {
        "label": SOFT_BINDING_ASSERTION,
        "data": {
            "alg": watermark_info.get("algorithm") or watermark.ALGORITHM,
            "blocks": [{"scope": {}, "value": watermark.binding_value(int(watermark_info["payload"]))}],
            "pad": [],
        },
    }


def build_definition(title: str, stamp_info: dict[str, Any], software_agent: str) -> dict[str, Any]:
    """The manifest definition handed to c2pa's Builder; ``stamp_info["watermark"]`` holds the
    watermark's ``payload`` and ``algorithm`` (default: the current one)."""
    return {
        "claim_generator_info": [{"name": "anima", "version": __version__}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": AI_SOURCE_TYPE,
                            "softwareAgent": {"name": software_agent, "version": __version__},
                        }
                    ]
                },
            },
            {
                "label": "cawg.training-mining",
                "data": {"entries": {name: {"use": "notAllowed"} for name in TRAINING_MINING_ENTRIES}},
            },
            soft_binding(stamp_info["watermark"]),
            {"label": ANIMA_ASSERTION, "data": stamp_info},
        ],
    }


def thumbnail_jpeg(picture: Path) -> bytes:
    """A JPEG of ``picture`` at most :data:`THUMBNAIL_LONG_EDGE` px on its long side, never larger
    than the picture itself."""
    image = Image.fromarray(read_image(picture))  # size limits checked before decoding
    image.thumbnail((THUMBNAIL_LONG_EDGE, THUMBNAIL_LONG_EDGE), Image.Resampling.LANCZOS)  # only shrinks
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def _has_thumbnail(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _add_ingredient(builder: c2pa.Builder, ingredient: Ingredient, index: int) -> None:
    definition: dict[str, Any] = {
        "title": ingredient.path.name,  # a file name only: folders say who made it, and where
        "relationship": "inputTo",
        "metadata": {"anima:role": ingredient.role},
    }
    if ingredient.thumbnail and _has_thumbnail(ingredient.path):
        identifier = f"ingredient-{index}-thumbnail.jpg"
        builder.add_resource(identifier, io.BytesIO(thumbnail_jpeg(ingredient.path)))
        definition["thumbnail"] = {"format": "image/jpeg", "identifier": identifier}
    with open(ingredient.path, "rb") as handle:
        builder.add_ingredient(definition, ingredient.format, handle)


def sign_file(
    source: Path,
    destination: Path,
    definition: dict[str, Any],
    identity: SigningIdentity,
    ingredients: list[Ingredient],
) -> tuple[dict[str, Any], bytes]:
    """Embed a signed manifest into a copy of ``source`` at ``destination``; returns the manifest
    store as c2pa reads it back and the store's own bytes (``application/c2pa``, as embedded): what
    the ledger keeps for durable credentials."""
    format_ = mime_type(source)
    definition = dict(definition)
    claim_thumbnail = thumbnail_jpeg(source) if _has_thumbnail(source) else None
    if claim_thumbnail is not None:  # a still's own thumbnail (c2pa makes none for a video)
        definition["thumbnail"] = {"format": "image/jpeg", "identifier": "claim-thumbnail.jpg"}
    try:
        info = c2pa.C2paSignerInfo(b"es256", identity.chain_pem(), identity.key_pem(), None)
        context = c2pa.Context.from_dict(SIGNING_SETTINGS)
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(definition, context=context) as builder:
            if claim_thumbnail is not None:
                builder.add_resource("claim-thumbnail.jpg", io.BytesIO(claim_thumbnail))
            for index, ingredient in enumerate(ingredients):
                _add_ingredient(builder, ingredient, index)
            with open(source, "rb") as src, open(destination, "w+b") as dst:
                store_bytes = builder.sign(signer, format_, src, dst)
    except c2pa.C2paError as exc:
        raise ProvenanceError(f"C2PA signing failed: {exc}") from None
    with open(destination, "rb") as handle:
        reader = c2pa.Reader(format_, handle)
        return json.loads(reader.json()), bytes(store_bytes)


@dataclass
class ManifestReport:
    """What a file's C2PA manifest says, and whether it holds up."""

    present: bool
    validation_state: str | None = None  # "Trusted", "Valid" or "Invalid"
    ai_declared: bool = False
    signer: str | None = None
    ingredients: list[dict[str, str]] = field(default_factory=list)
    anima: dict[str, Any] | None = None
    soft_bindings: list[dict[str, str]] = field(default_factory=list)  # {"alg", "value"} each
    failures: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.validation_state in ("Valid", "Trusted")

    @property
    def trusted(self) -> bool:
        return self.validation_state == "Trusted"

    def to_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "validation_state": self.validation_state,
            "trusted": self.trusted,
            "ai_declared": self.ai_declared,
            "signer": self.signer,
            "ingredients": self.ingredients,
            "anima": self.anima,
            "soft_bindings": self.soft_bindings,
            "failures": self.failures,
            "error": self.error,
        }


def _trust_context(anchors: list[Path]) -> c2pa.Context:
    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if anchors:
        try:
            pem = "".join(Path(a).read_text(encoding="ascii") for a in anchors)
        except (OSError, UnicodeDecodeError) as exc:
            raise ProvenanceError(f"cannot read trust anchor: {exc}") from None
        settings["trust"] = {"user_anchors": pem}
    return c2pa.Context.from_dict(settings)


def summarize_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The facts a report needs from one manifest (as c2pa's JSON has it)."""
    assertions = {a.get("label"): a.get("data", {}) for a in manifest.get("assertions", [])}
    actions = []
    for label in ("c2pa.actions.v2", "c2pa.actions"):
        actions += assertions.get(label, {}).get("actions", [])
    signature = manifest.get("signature_info", {})
    return {
        "ai_declared": any(a.get("digitalSourceType") in AI_SOURCE_TYPES for a in actions),
        "signer": signature.get("common_name") or signature.get("issuer"),
        "ingredients": [
            {"title": i.get("title", ""), "relationship": i.get("relationship", "")}
            for i in manifest.get("ingredients", [])
        ],
        "anima": assertions.get(ANIMA_ASSERTION),
        "soft_bindings": soft_bindings(manifest),
    }


def soft_bindings(manifest: dict[str, Any]) -> list[dict[str, str]]:
    """Every (algorithm, value) pair the manifest's soft-binding assertions name; a second assertion
    of a label reads back as ``c2pa.soft-binding__1``."""
    found = []
    for assertion in manifest.get("assertions", []):
        label = str(assertion.get("label", ""))
        if label.split("__", 1)[0] != SOFT_BINDING_ASSERTION:
            continue
        data = assertion.get("data")
        blocks = data.get("blocks") if isinstance(data, dict) else None  # someone else's file: any shape
        for block in blocks if isinstance(blocks, list) else []:
            if isinstance(block, dict) and isinstance(block.get("value"), str):
                found.append({"alg": str(data.get("alg", "")), "value": block["value"]})
    return found


def read_manifest(path: Path, trust_anchors: list[Path]) -> ManifestReport:
    """Read and validate the manifest in ``path`` against ``trust_anchors`` (PEM CA files)."""
    format_ = content_type(path)  # what the file holds, whatever its suffix
    if format_ not in c2pa.Reader.get_supported_mime_types():
        return ManifestReport(present=False)  # C2PA defines no manifest there (WebM, Matroska)
    context = _trust_context(trust_anchors)
    try:
        with open(path, "rb") as handle:
            reader = c2pa.Reader.try_create(format_, handle, context=context)
            if reader is None:
                return ManifestReport(present=False)
            with reader:
                manifest = reader.get_active_manifest() or {}
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
    except c2pa.C2paError as exc:
        return ManifestReport(present=True, validation_state="Invalid", error=str(exc))
    failures = [item.get("code", "") for item in results.get("activeManifest", {}).get("failure", [])]
    return ManifestReport(
        present=True, validation_state=state, failures=failures, **summarize_manifest(manifest)
    )
