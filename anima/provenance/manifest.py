"""C2PA manifests through c2pa-python: what Anima declares about an output, signing, reading.

The manifest says the asset was created by a trained algorithm (IPTC ``trainedAlgorithmicMedia``),
names Anima and the model as software agent, lists the reference and pose inputs as ``inputTo``
ingredients, forbids AI training and mining (``cawg.training-mining``), and carries an
``org.anima.stamp`` assertion with the stamp id and watermark payload (no personal data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import c2pa

from anima import __version__
from anima.errors import ProvenanceError
from anima.media import MIME_TYPES, mime_type
from anima.provenance.keys import SigningIdentity

AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ANIMA_ASSERTION = "org.anima.stamp"
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
    """An input file named in the manifest (``role`` is e.g. ``reference`` or ``pose``)."""

    role: str
    path: Path

    @property
    def format(self) -> str:
        suffix = self.path.suffix.lower()
        if suffix == ".json":
            return "application/json"
        return MIME_TYPES.get(suffix, "application/octet-stream")


def build_definition(title: str, stamp_info: dict[str, Any], software_agent: str) -> dict[str, Any]:
    """The manifest definition handed to c2pa's Builder."""
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
            {"label": ANIMA_ASSERTION, "data": stamp_info},
        ],
    }


def sign_file(
    source: Path,
    destination: Path,
    definition: dict[str, Any],
    identity: SigningIdentity,
    ingredients: list[Ingredient],
) -> dict[str, Any]:
    """Embed a signed manifest into a copy of ``source`` at ``destination``; returns the manifest
    store as c2pa reads it back (what the ledger keeps for durable credentials)."""
    format_ = mime_type(source)
    try:
        info = c2pa.C2paSignerInfo(b"es256", identity.chain_pem(), identity.key_pem(), None)
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(definition) as builder:
            for ingredient in ingredients:
                with open(ingredient.path, "rb") as handle:
                    builder.add_ingredient(
                        {
                            "title": ingredient.path.name,
                            "relationship": "inputTo",
                            "metadata": {"anima:role": ingredient.role},
                        },
                        ingredient.format,
                        handle,
                    )
            with open(source, "rb") as src, open(destination, "w+b") as dst:
                builder.sign(signer, format_, src, dst)
    except c2pa.C2paError as exc:
        raise ProvenanceError(f"C2PA signing failed: {exc}") from None
    with open(destination, "rb") as handle:
        reader = c2pa.Reader(format_, handle)
        return json.loads(reader.json())


@dataclass
class ManifestReport:
    """What a file's C2PA manifest says, and whether it holds up."""

    present: bool
    validation_state: str | None = None  # "Trusted", "Valid" or "Invalid"
    ai_declared: bool = False
    signer: str | None = None
    ingredients: list[dict[str, str]] = field(default_factory=list)
    anima: dict[str, Any] | None = None
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
    }


def read_manifest(path: Path, trust_anchors: list[Path]) -> ManifestReport:
    """Read and validate the manifest in ``path`` against ``trust_anchors`` (PEM CA files)."""
    format_ = mime_type(path)
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
