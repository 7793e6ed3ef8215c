"""The ``anima`` command: parses, calls flows, prints. Errors become one line and an exit code:
2 bad input, 4 provenance failure, 5 ledger failure, 1 anything else Anima reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from anima import __version__, flows
from anima.config import Settings, load_settings
from anima.errors import AnimaError
from anima.ledger import Ledger
from anima.provenance import keys

app = typer.Typer(
    help="Anima: responsible character animation with provenance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="The signing identity used for C2PA manifests.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit ledger.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")

console = Console()
errors = Console(stderr=True, soft_wrap=True)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Anima home folder (default $ANIMA_HOME or ~/.anima).")
]


def _settings(home: Path | None) -> Settings:
    return load_settings(home)


def _fail(exc: AnimaError) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(exc.exit_code)


def _version(value: bool) -> None:
    if value:
        console.print(f"anima {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Anima: consent-gated character animation; every output signed, watermarked and audited."""


@app.command()
def stamp(
    source: Annotated[Path, typer.Argument(help="Video (.mp4/.mov) or still (.png/.jpg) to stamp.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the stamped file goes.")],
    reference: Annotated[Path | None, typer.Option(help="Reference image, listed as an ingredient.")] = None,
    pose: Annotated[Path | None, typer.Option(help="Pose input file, listed as an ingredient.")] = None,
    crf: Annotated[int, typer.Option(help="H.264 quality for the output (0-51, lower is better).")] = 18,
    home: HomeOption = None,
) -> None:
    """Watermark every frame, sign a C2PA manifest and record the output in the ledger."""
    try:
        settings = _settings(home)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=errors,
            transient=True,
        ) as bar:
            task = bar.add_task("watermarking", total=None)
            result = flows.stamp(
                settings,
                source,
                output,
                reference=reference,
                pose=pose,
                crf=crf,
                progress=lambda done, total: bar.update(task, completed=done, total=total or None),
            )
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(
        f"[green]stamped[/] {result.output}  id [bold]{result.stamp_id}[/]  "
        f"frames {result.frames}  signer {result.signer}",
        highlight=False,
        soft_wrap=True,
    )


def _print_report(report: flows.VerifyReport) -> None:
    manifest, mark = report.manifest, report.watermark
    console.print(f"[bold]{report.path}[/]  sha256 {report.sha256[:16]}…", highlight=False)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    if manifest.present:
        table.add_row(
            "manifest",
            f"{manifest.validation_state}"
            + (
                " (trusted signer)" if manifest.trusted else " (signer not trusted)" if manifest.valid else ""
            ),
        )
        table.add_row(
            "", f"AI-declared: {'yes' if manifest.ai_declared else 'no'}; signer: {manifest.signer}"
        )
        if manifest.ingredients:
            table.add_row(
                "",
                "ingredients: "
                + ", ".join(f"{i['title']} ({i['relationship']})" for i in manifest.ingredients),
            )
        if manifest.failures or manifest.error:
            table.add_row("", "failures: " + ", ".join(manifest.failures or [str(manifest.error)]))
    else:
        table.add_row("manifest", "none")
    if mark is None:
        table.add_row("watermark", "not checked (frames too small)")
    elif mark.payload is not None:
        table.add_row(
            "watermark",
            f"payload {mark.payload} ({flows.stamp_id_for(mark.payload)}), "
            f"false-positive bound {mark.false_positive_bound:.1e}, {mark.frames_used} frames",
        )
    else:
        table.add_row("watermark", f"none found (best sync z {mark.sync_z:.1f})")
    if report.ledger:
        table.add_row(
            "ledger",
            f"stamp {report.ledger['stamp_id']} ({report.ledger['kind']}) "
            f"created {report.ledger['created_at']} by {report.ledger['signer']}",
        )
    else:
        table.add_row("ledger", "no matching row")
    if report.durable_manifest is not None:
        table.add_row(
            "durable", "manifest stripped from the file; the original is in the ledger (--json shows it)"
        )
    console.print(table)
    colour = {"anima-generated": "cyan", "tampered": "red", "ai-declared": "yellow"}.get(
        report.verdict, "white"
    )
    console.print(f"verdict: [bold {colour}]{report.verdict}[/]", highlight=False)
    for reason in report.reasons:
        console.print(f"  - {reason}", highlight=False)


@app.command()
def verify(
    clip: Annotated[Path, typer.Argument(help="Video or still to examine.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    trust: Annotated[
        list[Path] | None, typer.Option(help="Trusted CA certificate (PEM); repeatable.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Report manifest, watermark and ledger evidence and a verdict. Exits 0 whatever the verdict."""
    try:
        report = flows.verify(_settings(home), clip, trust=trust or [])
    except AnimaError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_report(report)


@keys_app.command("init")
def keys_init(
    org: Annotated[str, typer.Option(help="Organisation named in the certificates.")] = "Anima local studio",
    force: Annotated[bool, typer.Option(help="Replace an existing identity.")] = False,
    home: HomeOption = None,
) -> None:
    """Create a local CA and an ES256 signing certificate (keys mode 0600)."""
    try:
        settings = _settings(home)
        identity = keys.init_identity(settings, org=org, force=force)
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(f"[green]created[/] signing identity {identity.subject}", highlight=False)
    console.print(
        f"  chain {identity.chain_path}\n  key   {identity.key_path}\n"
        f"  CA    {settings.local_ca_cert}  (give this to verifiers who should trust you)",
        highlight=False,
    )


@keys_app.command("show")
def keys_show(home: HomeOption = None) -> None:
    """Show the signing identity in use."""
    try:
        identity = keys.identity_from_settings(_settings(home))
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(
        f"subject      {identity.subject}\nissuer       {identity.issuer}\n"
        f"expires      {identity.not_after:%Y-%m-%d}\nsha256       {identity.fingerprint_sha256}\n"
        f"chain        {identity.chain_path}\nkey          {identity.key_path}",
        highlight=False,
    )


@audit_app.command("log")
def audit_log(
    limit: Annotated[int, typer.Option(help="How many recent events to show.")] = 20,
    kind: Annotated[str | None, typer.Option(help="Only events of this kind (e.g. stamp.stamped).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print events as JSON lines.")] = False,
    home: HomeOption = None,
) -> None:
    """Show recent audit events, newest first."""
    try:
        events = Ledger(_settings(home).database_url).events(limit=limit, kind=kind)
    except AnimaError as exc:
        raise _fail(exc) from None
    if as_json:
        for row in events:
            print(
                json.dumps(
                    {
                        "id": row.id,
                        "created_at": row.created_at.isoformat(),
                        "kind": row.kind,
                        "actor": row.actor,
                        "subject": row.subject,
                        "details": row.details,
                        "prev_hash": row.prev_hash,
                        "hash": row.hash,
                    }
                )
            )
        return
    table = Table("#", "when (UTC)", "kind", "actor", "subject", "hash")
    for row in events:
        table.add_row(
            str(row.id),
            f"{row.created_at:%Y-%m-%d %H:%M:%S}",
            row.kind,
            row.actor,
            row.subject,
            row.hash[:12],
        )
    console.print(table)


@audit_app.command("verify")
def audit_verify(home: HomeOption = None) -> None:
    """Recompute the hash chain; name the first broken event. Exits 1 if the chain is broken."""
    try:
        report = Ledger(_settings(home).database_url).verify_chain()
    except AnimaError as exc:
        raise _fail(exc) from None
    if report.ok:
        console.print(
            f"[green]chain intact[/]: {report.events_checked} events, {report.stamps_checked} "
            f"stamps; head {report.head_hash[:16]}",
            highlight=False,
        )
        return
    errors.print(
        f"[bold red]chain broken[/] at event #{report.first_broken_event}: {report.problem}", highlight=False
    )
    raise typer.Exit(1)
