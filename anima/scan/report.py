"""Scan reports for people: ``scan.csv`` for spreadsheets and a self-contained ``report.html``.

Every string in a row may come from a hostile file (its name, its manifest's signer, an error
message), so the CSV defuses spreadsheet formulas and the HTML is rendered from
``templates/report.html.j2`` with Jinja2's autoescaping: this module hands the template plain
text and the template escapes all of it. Columns come from the row's data: a verdict or
classifier score that the verifier adds shows up without changes here.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import functools
import io
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import jinja2

THUMB_SIDE = 120
CSV_COLUMNS = (
    "path",
    "sha256",
    "status",
    "verdict",
    "reasons",
    "watermark_payload",
    "declared_marks",
    "manifest",
    "stamp_id",
    "seconds",
    "frames",
    "error",
    "score",
    "threshold",
    "duplicate_of",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")  # a thumbnail, checked with fullmatch
TEMPLATE = "report.html.j2"
BADGE_COLOURS = {
    "anima-generated": "#0e7490",
    "ai-declared": "#a16207",
    "likely-synthetic": "#c2410c",
    "tampered": "#b91c1c",
    "no-evidence": "#4b5563",
    "error": "#6b21a8",
}
OTHER_BADGE = "#374151"

Row = dict[str, Any]


def thumbnail(frame: np.ndarray) -> str:
    """A small JPEG of a frame (a scan's is the sampled frame nearest the middle, or the still),
    base64-encoded. Made in the worker from frames verify already decoded: no second pass."""
    image = Image.fromarray(frame)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def label(row: Row) -> str:
    """The row's verdict, or ``error`` for a file that could not be checked."""
    return str(row.get("verdict") or "error") if row.get("status") == "ok" else "error"


def _classifier(row: Row) -> tuple[float | None, float | None]:
    """The classifier's clip score and threshold, when the verifier reported them."""
    found = (row.get("report") or {}).get("classifier") or {}

    def number(key: str) -> float | None:
        value = found.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return number("clip_score"), number("threshold")


def _evidence(row: Row) -> dict[str, Any]:
    found = row.get("report") or {}
    manifest = found.get("manifest") or {}
    mark = found.get("watermark") or {}
    return {
        "reasons": [str(reason) for reason in found.get("reasons") or []],
        "watermark_payload": mark.get("payload"),
        "declared_marks": [str(name) for name in (found.get("declared_marks") or {}).get("found") or []],
        "manifest": (manifest.get("validation_state") or "present") if manifest.get("present") else "none",
        "signer": manifest.get("signer"),
    }


def _cell(value: Any) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula is prefixed with a quote."""
    if value is None:
        return ""
    if isinstance(value, int | float):  # a number, negative or not, is never a formula
        return repr(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """One line per file with the evidence a reviewer sorts by."""
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            evidence = _evidence(row)
            score, threshold = _classifier(row)
            values = {
                **{key: row.get(key) for key in CSV_COLUMNS},
                "verdict": row.get("verdict") if row.get("status") == "ok" else None,
                "reasons": "; ".join(evidence["reasons"]),
                "watermark_payload": evidence["watermark_payload"],
                "declared_marks": "; ".join(evidence["declared_marks"]),
                "manifest": evidence["manifest"] if row.get("status") == "ok" else None,
                "score": score,
                "threshold": threshold,
            }
            writer.writerow([_cell(values[key]) for key in CSV_COLUMNS])


def _bar_position(value: float) -> float:
    """Where a score sits on the bar, in percent. Scores are logits (unbounded), so the bar is on
    the logistic scale; score and threshold go through the same map, so their order is kept."""
    return 100.0 / (1.0 + math.exp(-min(max(value, -50.0), 50.0)))


@dataclass(frozen=True)
class _HtmlRow:
    """What the page shows of one row: plain text and numbers, escaped by the template."""

    verdict: str
    colour: str
    thumbnail: str | None  # base64 JPEG; anything else is dropped, never put in ``src``
    name: str
    path: str
    sha256: str
    ok: bool
    reasons: list[str]
    facts: list[str]
    error: str
    duplicate_of: str | None
    score: float | None
    threshold: float | None

    @property
    def score_at(self) -> float | None:
        return None if self.score is None else _bar_position(self.score)

    @property
    def threshold_at(self) -> float | None:
        return None if self.threshold is None else _bar_position(self.threshold)


def _html_row(row: Row) -> _HtmlRow:
    verdict = label(row)
    evidence = _evidence(row)
    thumb = row.get("thumbnail")
    path = str(row.get("path", ""))
    facts = [f"manifest: {evidence['manifest']}"]
    if evidence["signer"]:
        facts.append(f"signer: {evidence['signer']}")
    if evidence["watermark_payload"] is not None:
        facts.append(f"watermark payload: {evidence['watermark_payload']}")
    for name in evidence["declared_marks"]:
        facts.append(f"watermark of {name}")
    if row.get("stamp_id"):
        facts.append(f"stamp: {row['stamp_id']}")
    score, threshold = _classifier(row)
    return _HtmlRow(
        verdict=verdict,
        colour=BADGE_COLOURS.get(verdict, OTHER_BADGE),
        thumbnail=thumb if isinstance(thumb, str) and thumb and BASE64.fullmatch(thumb) else None,
        name=Path(path).name,
        path=path,
        sha256=str(row.get("sha256") or "")[:16],
        ok=row.get("status") == "ok",
        reasons=evidence["reasons"],
        facts=facts,
        error=str(row.get("error") or "unknown error"),
        duplicate_of=str(row["duplicate_of"]) if row.get("duplicate_of") else None,
        score=score,
        threshold=threshold,
    )


@functools.cache
def _templates() -> jinja2.Environment:
    """The report templates, HTML ones autoescaped; an undefined name in a template is an error."""
    import jinja2  # only the end of a scan renders HTML: workers and `anima --help` never import it

    return jinja2.Environment(
        loader=jinja2.PackageLoader("anima.scan", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def write_html(rows: Sequence[Row], path: Path) -> None:
    """One self-contained page (inline CSS, JS and thumbnails) with filters by verdict."""
    page = (
        _templates()
        .get_template(TEMPLATE)
        .render(
            rows=[_html_row(row) for row in rows],
            counts=Counter(label(row) for row in rows).most_common(),
            written=f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}",
        )
    )
    path.write_text(page, encoding="utf-8", errors="backslashreplace")
