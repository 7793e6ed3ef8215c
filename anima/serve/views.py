"""What the server says about a report, to whom. Anyone gets the verdict and the evidence read from
the file they sent; the ledger row's details need the operator's token; consent fields are never
echoed (not even those a manifest carries); a row's private details are never served at all."""

from __future__ import annotations

import base64
import copy
import io
from pathlib import Path
from typing import Any

from PIL import Image

from anima import media
from anima.errors import AnimaError
from anima.ledger import Stamp
from anima.provenance.verify import LedgerMatch, VerifyReport

ANIMA_ASSERTION = "org.anima.stamp"
# Keys of Anima's own manifest assertion that name consent records: never echoed by the server.
PRIVATE_ASSERTION_KEYS = ("consent",)
THUMBNAILS = 4
THUMB_SIDE = 160
PLOT_WIDTH, PLOT_HEIGHT = 480, 120


def without_consent(anima_assertion: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(anima_assertion, dict):
        return anima_assertion
    return {k: v for k, v in anima_assertion.items() if k not in PRIVATE_ASSERTION_KEYS}


def redacted_store(store: dict[str, Any] | None) -> dict[str, Any] | None:
    """A manifest store (c2pa's JSON) with Anima's consent fields taken out of every manifest."""
    if not isinstance(store, dict):
        return store
    store = copy.deepcopy(store)
    for manifest in (store.get("manifests") or {}).values():
        for assertion in manifest.get("assertions", []) if isinstance(manifest, dict) else []:
            if isinstance(assertion, dict) and assertion.get("label") == ANIMA_ASSERTION:
                assertion["data"] = without_consent(assertion.get("data"))
    return store


def active_manifest(store: dict[str, Any]) -> dict[str, Any] | None:
    """The active manifest of a manifest store (c2pa's JSON), consent fields taken out; None if the
    store names none."""
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) if isinstance(label, str) else None
    if not isinstance(manifest, dict):
        return None
    return redacted_store({"manifests": {label: manifest}})["manifests"][label]


def manifest_id(row: Stamp) -> str | None:
    """The C2PA manifest id (the active manifest's label) of a stamp's kept manifest store."""
    label = (row.manifest or {}).get("active_manifest")
    return label if isinstance(label, str) else None


def report_document(
    report: VerifyReport, filename: str, *, authorized: bool, durable_public: bool, manifest_id: str | None
) -> dict[str, Any]:
    """The ``anima verify --json`` document as this client may see it."""
    document = report.to_dict()
    document["path"] = filename
    document["stamp_id"] = report.stamp_id
    document["manifest"]["anima"] = without_consent(document["manifest"].get("anima"))
    if report.ledger is not None and not authorized:
        document["ledger"] = {"stamp_id": report.ledger.stamp_id, "details": "need the operator's token"}
    if document["durable_manifest"] is not None:
        visible = authorized or durable_public
        document["durable_manifest"] = redacted_store(document["durable_manifest"]) if visible else None
    document["durable_manifest_id"] = manifest_id if report.ledger is not None else None
    return document


def stamp_document(row: Stamp, problem: str | None) -> dict[str, Any]:
    """A ledger row's public-safe facts (for token holders): never its details (paths, consent)."""
    return {
        **LedgerMatch.from_row(row).to_dict(),
        "manifest_id": manifest_id(row),
        "integrity": problem or "ok",
    }


def store_summary(store: dict[str, Any] | None) -> dict[str, Any] | None:
    """The facts a person reads from a kept manifest store: its id, signer, time, title, assertions."""
    if not isinstance(store, dict):
        return None
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) or {}
    signature = manifest.get("signature_info") or {}
    return {
        "id": label,
        "title": manifest.get("title"),
        "signer": signature.get("common_name") or signature.get("issuer"),
        "signed_at": signature.get("time"),
        "assertions": [a.get("label") for a in manifest.get("assertions", []) if isinstance(a, dict)],
        "ingredients": [i.get("title") for i in manifest.get("ingredients", []) if isinstance(i, dict)],
    }


def score_plot(scores: list[float], threshold: float) -> dict[str, Any] | None:
    """An SVG polyline of the detector's per-frame scores, scaled to their range and the threshold's
    (the scores are the classifier's margins, not probabilities)."""
    if not scores:
        return None
    low, high = min(*scores, threshold), max(*scores, threshold)
    pad = (high - low) * 0.1 or 1.0
    low, high = low - pad, high + pad

    def y(value: float) -> str:
        return f"{(high - value) / (high - low) * PLOT_HEIGHT:.1f}"

    step = PLOT_WIDTH / max(len(scores) - 1, 1)
    return {
        "width": PLOT_WIDTH,
        "height": PLOT_HEIGHT,
        "points": " ".join(f"{i * step:.1f},{y(s)}" for i, s in enumerate(scores)),
        "threshold_y": y(threshold),
        "low": f"{low:.1f}",
        "high": f"{high:.1f}",
    }


def thumbnails(path: Path) -> list[str]:
    """A few frames spread over the clip (or the still) as base64 JPEGs; none if unreadable."""
    try:
        frames, _ = media.sample_frames(path, THUMBNAILS)
    except AnimaError:
        return []
    encoded = []
    for frame in frames:
        image = Image.fromarray(frame)
        image.thumbnail((THUMB_SIDE, THUMB_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=75)
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return encoded
