"""``anima stamp``, ``anima verify`` and ``anima keys``: provenance for outputs and suspicious clips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from anima.cli._common import (
    CrfOption,
    HomeOption,
    TrustOption,
    WatermarkKeyOption,
    console,
    open_anima,
    progress_bar,
    say,
)
from anima.provenance.verify import Verdict, VerifyReport, stamp_id_for

if TYPE_CHECKING:
    from anima import WatermarkReading

keys_app = typer.Typer(help="The signing identity used for C2PA manifests.", no_args_is_help=True)

VERDICT_COLOURS = {
    Verdict.ANIMA_GENERATED: "cyan",
    Verdict.TAMPERED: "red",
    Verdict.AI_DECLARED: "yellow",
    Verdict.LIKELY_SYNTHETIC: "magenta",
    Verdict.NO_EVIDENCE: "white",
}


def stamp(
    source: Annotated[Path, typer.Argument(help="Video (.mp4/.mov) or still (.png/.jpg) to stamp.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the stamped file goes.")],
    reference: Annotated[Path | None, typer.Option(help="Reference image, listed as an ingredient.")] = None,
    pose: Annotated[Path | None, typer.Option(help="Pose input file, listed as an ingredient.")] = None,
    crf: CrfOption = 18,
    home: HomeOption = None,
) -> None:
    """Watermark every frame, sign a C2PA manifest and record the output in the ledger."""
    with progress_bar() as bar:
        task = bar.add_task("watermarking", total=None)
        result = open_anima(home).stamp(
            source,
            output,
            reference=reference,
            pose=pose,
            crf=crf,
            progress=lambda done, total: bar.update(task, completed=done, total=total or None),
        )
    say(
        f"[green]stamped[/] {escape(str(result.output))}  id [bold]{result.stamp_id}[/]  "
        f"frames {result.frames}  signer {escape(result.signer)}"
    )


def verify(
    clip: Annotated[Path, typer.Argument(help="Video or still to examine.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    trust: TrustOption = None,
    watermark_key: WatermarkKeyOption = None,
    home: HomeOption = None,
) -> None:
    """Report manifest, watermark, ledger and detector evidence and a verdict. Exits 0 whatever the
    verdict."""
    report = open_anima(home).verify(clip, trust=trust or [], watermark_keys=watermark_key or [])
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print_report(report)


def _geometry(mark: WatermarkReading) -> str:
    """The edits the watermark was found through, as a suffix (empty for an unedited frame)."""
    edits = ["mirrored"] if mark.mirrored else []
    if mark.angle:
        edits.append(f"turned {mark.angle:+.1f} deg")
    if mark.scale != 1.0:
        edits.append(f"scaled {1 / mark.scale:.2f}x")
    if mark.bars_cut:
        edits.append("bars cut")
    if mark.inverted:
        edits.append("inverted (someone subtracted too much of it)")
    return f"; found {', '.join(edits)}" if edits else ""


def _evidence_rows(report: VerifyReport) -> list[tuple[str, str]]:
    manifest, mark, detector = report.manifest, report.watermark, report.detector
    rows: list[tuple[str, str]] = []
    if manifest.present:
        trust = " (trusted signer)" if manifest.trusted else " (signer not trusted)" if manifest.valid else ""
        rows.append(("manifest", f"{manifest.validation_state}{trust}"))
        rows.append(
            ("", f"AI-declared: {'yes' if manifest.ai_declared else 'no'}; signer: {manifest.signer}")
        )
        if manifest.ingredients:
            names = ", ".join(f"{i['title']} ({i['relationship']})" for i in manifest.ingredients)
            rows.append(("", f"ingredients: {names}"))
        if manifest.failures or manifest.error:
            rows.append(("", "failures: " + ", ".join(manifest.failures or [str(manifest.error)])))
    else:
        rows.append(("manifest", "none"))
    if mark is None:
        rows.append(("watermark", "not checked (frames too small)"))
    elif mark.payload is not None:
        rows.append(
            (
                "watermark",
                f"payload {mark.payload} ({stamp_id_for(mark.payload)}), key {mark.key_id}, "
                f"false-positive bound {mark.false_positive_bound:.1e}, {mark.frames_used} frames"
                + _geometry(mark),
            )
        )
    else:
        rows.append(("watermark", f"none found (best sync z {mark.sync_z:.1f})"))
    if report.ledger:
        row = report.ledger
        rows.append(("ledger", f"stamp {row.stamp_id} ({row.kind}) created {row.created_at} by {row.signer}"))
    else:
        rows.append(("ledger", "no matching row"))
    if report.durable_manifest is not None:
        rows.append(
            ("durable", "manifest stripped from the file; the original is in the ledger (--json shows it)")
        )
    rows.extend(_declared_rows(report))
    if detector is None:
        rows.append(("detector", "not installed"))
    else:
        scores = detector.frame_scores
        rows.append(
            (
                "detector",
                f"clip score {detector.clip_score:.2f} (threshold {detector.threshold:.2f}, "
                f"probability {detector.probability:.2f}); {len(scores)} frames, "
                f"scores {min(scores):.2f} to {max(scores):.2f}",
            )
        )
    return rows


def _declared_rows(report: VerifyReport) -> list[tuple[str, str]]:
    """Other generators' invisible watermarks: each one found, or the best reading."""
    declared = report.declared_marks
    if declared is None:
        return [("other marks", "not checked (frames smaller than 256 x 256)")]
    rows = [
        (
            "other marks" if index == 0 else "",
            f"{found.mark}: {found.matched} of {found.bits} bits over {declared.frames} frames "
            f"({found.frames_voting} frames alone significant), "
            f"false-positive bound {found.false_positive_bound:.1e}",
        )
        for index, found in enumerate(declared.found)
    ]
    if not rows:
        best = declared.readings[0]
        rows.append(
            (
                "other marks",
                f"none of {len(declared.readings)} known (Stable Diffusion, SDXL, SVD) found in "
                f"{declared.frames} frames (best: {best.matched} of {best.bits} bits)",
            )
        )
    return rows


def print_report(report: VerifyReport) -> None:
    """The evidence first, then the verdict and its reasons."""
    say(f"[bold]{escape(report.path)}[/]  sha256 {report.sha256[:16]}…")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in _evidence_rows(report):
        table.add_row(label, escape(value))
    console.print(table)
    say(f"verdict: [bold {VERDICT_COLOURS[report.verdict]}]{report.verdict}[/]")
    for reason in report.reasons:
        say(f"  - {escape(reason)}")


@keys_app.command("init")
def keys_init(
    org: Annotated[str, typer.Option(help="Organisation named in the certificates.")] = "Anima local studio",
    force: Annotated[
        bool, typer.Option(help="Replace existing keys (an old watermark key is retired).")
    ] = False,
    watermark_only: Annotated[
        bool, typer.Option(help="Create only the secret watermark key (homes made before it existed).")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Create a local CA, an ES256 signing certificate and a secret watermark key (keys mode 0600)."""
    anima = open_anima(home)
    if not watermark_only:
        identity = anima.keys.init(org=org, force=force)
        say(f"[green]created[/] signing identity {escape(identity.subject)}")
        say(
            f"  chain {identity.chain_path}\n  key   {identity.key_path}\n"
            f"  CA    {anima.settings.local_ca_cert}  (give this to verifiers who should trust you)"
        )
        mark = anima.keys.watermark()
    else:
        mark = anima.keys.init_watermark(force=force)
    say(
        f"watermark key {mark.key_id}  {anima.keys.watermark_path}\n"
        "  (secret: whoever holds it can read and remove the watermark; share it only with verifiers "
        "you trust, who pass it to `verify --watermark-key`)"
    )


@keys_app.command("show")
def keys_show(home: HomeOption = None) -> None:
    """Show the signing identity and watermark key in use."""
    anima = open_anima(home)
    identity = anima.keys.show()
    say(
        f"subject      {escape(identity.subject)}\nissuer       {escape(identity.issuer)}\n"
        f"expires      {identity.not_after:%Y-%m-%d}\nsha256       {identity.fingerprint_sha256}\n"
        f"chain        {identity.chain_path}\nkey          {identity.key_path}"
    )
    mark = anima.keys.watermark()
    say(f"watermark    {mark.algorithm} key {mark.key_id}  {anima.keys.watermark_path}")
