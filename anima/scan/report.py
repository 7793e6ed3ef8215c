"""Scan reports for people: ``scan.csv`` for spreadsheets and a self-contained ``report.html``.

Every string in a row may come from a hostile file (its name, its manifest's signer, an error
message), so the HTML escapes all of it and the CSV defuses spreadsheet formulas. Columns come
from the row's data: a verdict or classifier score that the verifier adds shows up without
changes here.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from anima import media
from anima.errors import MediaError

THUMB_SIDE = 120
CSV_COLUMNS = (
    "path",
    "sha256",
    "status",
    "verdict",
    "reasons",
    "watermark_payload",
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
BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
BADGE_COLOURS = {
    "anima-generated": "#0e7490",
    "ai-declared": "#a16207",
    "likely-synthetic": "#c2410c",
    "tampered": "#b91c1c",
    "no-evidence": "#4b5563",
    "error": "#6b21a8",
}

Row = dict[str, Any]


def thumbnail(path: Path) -> str | None:
    """A small JPEG of the middle frame (or the still), base64-encoded; None if it cannot be read.
    Made in the worker, next to the decoding, so the report needs no second pass over the files."""
    try:
        if path.suffix.lower() in media.IMAGE_SUFFIXES:
            frame = media.read_image(path)
        else:
            middle = media.probe_video(path).num_frames // 2
            frames = media.iter_frames(path)
            try:
                for index, frame in enumerate(frames):  # noqa: B007 (the loop finds the frame)
                    if index >= middle:
                        break
            finally:
                frames.close()
    except MediaError:
        return None
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
                "manifest": evidence["manifest"] if row.get("status") == "ok" else None,
                "score": score,
                "threshold": threshold,
            }
            writer.writerow([_cell(values[key]) for key in CSV_COLUMNS])


STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#111}
h1{font-size:20px;margin:0 0 4px}.meta{color:#555;margin-bottom:12px}
.filters button{border:1px solid #bbb;background:#fff;border-radius:14px;padding:4px 10px;margin:0 4px 8px 0;
cursor:pointer}.filters button.on{background:#111;color:#fff;border-color:#111}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #e5e5e5;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6}img{display:block;max-width:120px;max-height:120px}
.noimg{width:120px;height:68px;background:#eee}.name{font-weight:600;word-break:break-all}
.path{color:#666;font-size:12px;word-break:break-all}
.badge{display:inline-block;color:#fff;border-radius:4px;padding:2px 6px;font-size:12px;white-space:nowrap}
ul{margin:0;padding-left:18px}.err{color:#6b21a8}.small{color:#555;font-size:12px}
.bar{position:relative;width:140px;height:10px;background:#eee;border-radius:5px}
.bar span{position:absolute;left:0;top:0;bottom:0;background:#c2410c;border-radius:5px}
.bar i{position:absolute;top:-3px;bottom:-3px;width:2px;background:#111}
"""

SCRIPT = """
document.querySelectorAll('.filters button').forEach(function (button) {
  button.addEventListener('click', function () {
    var wanted = button.dataset.verdict;
    document.querySelectorAll('.filters button').forEach(function (b) {
      b.classList.toggle('on', b === button);
    });
    document.querySelectorAll('tbody tr').forEach(function (tr) {
      tr.hidden = wanted !== '*' && tr.dataset.verdict !== wanted;
    });
  });
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _bar_position(value: float) -> float:
    """Where a score sits on the bar, in percent. Scores are logits (unbounded), so the bar is on
    the logistic scale; score and threshold go through the same map, so their order is kept."""
    return 100.0 / (1.0 + math.exp(-min(max(value, -50.0), 50.0)))


def _score_bar(score: float | None, threshold: float | None) -> str:
    if score is None:
        return ""
    marker = "" if threshold is None else f'<i style="left:{_bar_position(threshold):.1f}%"></i>'
    caption = f"{score:.3f}" + ("" if threshold is None else f" (threshold {threshold:.3f})")
    return (
        f'<div class="bar"><span style="width:{_bar_position(score):.1f}%"></span>{marker}</div>'
        f'<div class="small">{_e(caption)}</div>'
    )


def _table_row(row: Row) -> str:
    verdict = label(row)
    evidence = _evidence(row)
    thumb = row.get("thumbnail")
    image = (
        f'<img alt="" src="data:image/jpeg;base64,{thumb}">'
        if isinstance(thumb, str) and thumb and BASE64.match(thumb)
        else '<div class="noimg"></div>'
    )
    path = str(row.get("path", ""))
    if row.get("status") == "ok":
        details = "".join(f"<li>{_e(reason)}</li>" for reason in evidence["reasons"])
        facts = [f"manifest: {evidence['manifest']}"]
        if evidence["signer"]:
            facts.append(f"signer: {evidence['signer']}")
        if evidence["watermark_payload"] is not None:
            facts.append(f"watermark payload: {evidence['watermark_payload']}")
        if row.get("stamp_id"):
            facts.append(f"stamp: {row['stamp_id']}")
        body = f'<ul>{details}</ul><div class="small">{_e("; ".join(facts))}</div>'
    else:
        body = f'<div class="err">{_e(row.get("error") or "unknown error")}</div>'
    if row.get("duplicate_of"):
        body += f'<div class="small">same content as {_e(row["duplicate_of"])}</div>'
    colour = BADGE_COLOURS.get(verdict, "#374151")
    return (
        f'<tr data-verdict="{_e(verdict)}"><td>{image}</td>'
        f'<td><div class="name">{_e(Path(path).name)}</div><div class="path">{_e(path)}</div>'
        f'<div class="small">sha256 {_e(str(row.get("sha256") or "")[:16])}</div></td>'
        f'<td><span class="badge" style="background:{colour}">{_e(verdict)}</span></td>'
        f"<td>{body}</td><td>{_score_bar(*_classifier(row))}</td></tr>"
    )


def write_html(rows: Sequence[Row], path: Path) -> None:
    """One self-contained page (inline CSS, JS and thumbnails) with filters by verdict."""
    counts = Counter(label(row) for row in rows).most_common()
    buttons = [f'<button class="on" data-verdict="*">all ({len(rows)})</button>'] + [
        f'<button data-verdict="{_e(verdict)}">{_e(verdict)} ({count})</button>' for verdict, count in counts
    ]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Anima scan report</title><style>{STYLE}</style></head><body>"
        f'<h1>Anima scan report</h1><div class="meta">{len(rows)} files, written '
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC</div>"
        f'<div class="filters">{"".join(buttons)}</div>'
        "<table><thead><tr><th></th><th>file</th><th>verdict</th><th>evidence</th><th>classifier score</th>"
        f"</tr></thead><tbody>{''.join(_table_row(row) for row in rows)}</tbody></table>"
        f"<script>{SCRIPT}</script></body></html>"
    )
    path.write_text(page, encoding="utf-8", errors="backslashreplace")
