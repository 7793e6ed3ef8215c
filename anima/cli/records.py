"""``anima consent``, ``anima policy`` and ``anima audit``: the registry, the gate and the ledger."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from anima.api.consent import MAX_LOG_LIMIT, GrantRecord
from anima.cli._common import HomeOption, JsonOption, PolicyOption, console, open_anima, say
from anima.cli._errors import errors

consent_app = typer.Typer(help="The consent registry: who may be animated, for what.", no_args_is_help=True)
policy_app = typer.Typer(help="The consent gate.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit ledger.", no_args_is_help=True)

DAY = ["%Y-%m-%d"]
ExpiresOption = Annotated[
    dt.datetime | None, typer.Option(formats=DAY, help="Last day of consent, YYYY-MM-DD (exclusive).")
]
ValidFromOption = Annotated[
    dt.datetime | None, typer.Option(formats=DAY, help="First day of consent, YYYY-MM-DD.")
]
PurposeOption = Annotated[
    list[str], typer.Option(help="Purpose consented to (fashion, entertainment, ...); repeatable.")
]
StatementOption = Annotated[Path, typer.Option(help="The signed consent statement (its SHA-256 is stored).")]


def _day(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value else None


def _grant_cells(grant: GrantRecord) -> tuple[str, str, str, str, str]:
    cells = grant.to_dict()
    return cells["id"], cells["purposes"], cells["valid_from"], cells["expires"], cells["status"]


@consent_app.command("enroll")
def consent_enroll(
    name: Annotated[str, typer.Argument(help="The person's name, as shown to operators.")],
    photo: Annotated[list[Path], typer.Option(help="Photo showing only this person's face; repeatable.")],
    statement: StatementOption,
    purpose: PurposeOption,
    expires: ExpiresOption = None,
    valid_from: ValidFromOption = None,
    granted_by: Annotated[str | None, typer.Option(help="Who granted it (default: the person).")] = None,
    keep_photos: Annotated[bool, typer.Option(help="Also keep the photos under $ANIMA_HOME.")] = False,
    policy: PolicyOption = None,
    home: HomeOption = None,
) -> None:
    """Enrol a person from their photos and record their consent."""
    record = open_anima(home, policy=policy).consent.enroll(
        name,
        photo,
        statement,
        purpose,
        expires=_day(expires),
        valid_from=_day(valid_from),
        granted_by=granted_by,
        keep_photos=keep_photos,
    )
    grant = record.grants[0]
    say(
        f"[green]enrolled[/] {escape(record.name)} as [bold]{record.id}[/] ({record.photos} photo(s), "
        f"backend {record.backend}); consent [bold]{grant.id}[/] for {escape(', '.join(grant.purposes))}"
    )


@consent_app.command("grant")
def consent_grant(
    identity_id: Annotated[str, typer.Argument(help="Enrolled identity (idn-...).")],
    statement: StatementOption,
    purpose: PurposeOption,
    expires: ExpiresOption = None,
    valid_from: ValidFromOption = None,
    granted_by: Annotated[str | None, typer.Option(help="Who granted it (default: the person).")] = None,
    policy: PolicyOption = None,
    home: HomeOption = None,
) -> None:
    """Record a further consent for an enrolled person."""
    grant = open_anima(home, policy=policy).consent.grant(
        identity_id,
        statement,
        purpose,
        expires=_day(expires),
        valid_from=_day(valid_from),
        granted_by=granted_by,
    )
    say(f"[green]granted[/] {grant.id} for {escape(', '.join(grant.purposes))}")


@consent_app.command("list")
def consent_list(as_json: JsonOption = False, home: HomeOption = None) -> None:
    """List enrolled identities and their consents."""
    records = open_anima(home).consent.list()
    if as_json:
        print(json.dumps([record.to_dict() for record in records], indent=2))
        return
    table = Table("identity", "name", "consent", "purposes", "from", "expires", "status")
    for record in records:
        for index, grant in enumerate(record.grants or [None]):
            cells = _grant_cells(grant) if grant else ("-", "", "", "", "no consent")
            head = (record.id, escape(record.name)) if index == 0 else ("", "")
            table.add_row(*head, *(escape(cell) for cell in cells))
    console.print(table)


@consent_app.command("show")
def consent_show(
    record_id: Annotated[str, typer.Argument(help="An identity (idn-...) or a consent (cns-...).")],
    home: HomeOption = None,
) -> None:
    """Show one identity with its consents, or one consent."""
    record = open_anima(home).consent.show(record_id)
    say(
        f"[bold]{record.id}[/] {escape(record.name)}  backend {record.backend}  "
        f"{record.photos} embedding(s)  "
        f"enrolled {record.enrolled_at:%Y-%m-%d} by {escape(record.enrolled_by)}"
    )
    for grant in record.grants:
        cid, purposes, start, end, status = _grant_cells(grant)
        revoked = f"  revoked: {escape(grant.revoked_reason)}" if grant.revoked_reason else ""
        say(
            f"  {cid}  {escape(purposes)}  {start} .. {end}  [bold]{status}[/]  statement "
            f"sha256 {grant.statement_sha256[:16]}…  granted by {escape(grant.granted_by)}{revoked}"
        )


@consent_app.command("revoke")
def consent_revoke(
    record_id: Annotated[
        str, typer.Argument(help="A consent (cns-...) or an identity (idn-..., all its consents).")
    ],
    reason: Annotated[str, typer.Option(help="Why consent is withdrawn (recorded).")],
    home: HomeOption = None,
) -> None:
    """Revoke consent; generation for it is refused from now on."""
    revoked = open_anima(home).consent.revoke(record_id, reason)
    say(f"[yellow]revoked[/] {', '.join(g.id for g in revoked) or 'nothing (no active consent)'}")


@consent_app.command("extend")
def consent_extend(
    grant_id: Annotated[str, typer.Argument(help="The consent (cns-...).")],
    expires: Annotated[
        dt.datetime | None, typer.Option(formats=DAY, help="New last day, YYYY-MM-DD; omit for no expiry.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Change when a consent expires."""
    grant = open_anima(home).consent.extend(grant_id, _day(expires))
    say(f"[green]extended[/] {grant.id} to {_grant_cells(grant)[3]}")


@consent_app.command("forget")
def consent_forget(
    identity_id: Annotated[str, typer.Argument(help="The identity (idn-...) to erase.")],
    home: HomeOption = None,
) -> None:
    """Erase a person's face data and name, revoking their consents (the audit trail keeps the ids)."""
    say(f"[yellow]forgotten[/] {open_anima(home).consent.forget(identity_id)}")


@policy_app.command("check")
def policy_check(
    reference: Annotated[Path, typer.Option(help="The picture to be animated.")],
    purpose: Annotated[str, typer.Option(help="What the video would be for.")],
    fictional: Annotated[bool, typer.Option(help="Declare the character fictional.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    policy: PolicyOption = None,
    home: HomeOption = None,
) -> None:
    """Ask the consent gate without generating (the decision is recorded). Exits 3 when refused."""
    decision = open_anima(home, policy=policy).check_reference(reference, purpose, fictional=fictional)
    if as_json:
        print(json.dumps(decision.to_dict(), indent=2))
    else:
        verdict = "[green]allowed[/]" if decision.allow else "[bold red]refused[/]"
        say(f"{verdict}: {decision.explain()}")
        for match in decision.matches:
            say(
                f"  face at {match.box} ({match.size} px): {match.status}"
                + (f", {match.identity_id} at distance {match.distance}" if match.identity_id else "")
                + (f", consent {match.grant_id}" if match.grant_id else "")
            )
    if not decision.allow:
        raise typer.Exit(3)


@audit_app.command("log")
def audit_log(
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LOG_LIMIT, help="How many recent events to show.")
    ] = 20,
    kind: Annotated[str | None, typer.Option(help="Only events of this kind (e.g. stamp.stamped).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print events as JSON lines.")] = False,
    home: HomeOption = None,
) -> None:
    """Show recent audit events, newest first."""
    entries = open_anima(home).audit.log(limit=limit, kind=kind)
    if as_json:
        for entry in entries:
            print(json.dumps(entry.to_dict()))
        return
    table = Table("#", "when (UTC)", "kind", "actor", "subject", "hash")
    for entry in entries:
        table.add_row(
            str(entry.id),
            f"{entry.created_at:%Y-%m-%d %H:%M:%S}",
            escape(entry.kind),
            escape(entry.actor),
            escape(entry.subject),
            entry.hash[:12],
        )
    console.print(table)


@audit_app.command("verify")
def audit_verify(
    checkpoints: Annotated[
        Path | None,
        typer.Option(help="Compare with the latest checkpoint in this folder (e.g. an archived copy)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Recompute the hash chain, check every event's signature and compare the head with the latest
    signed checkpoint; name the first problem. Exits 1 if the ledger does not hold."""
    report = open_anima(home).audit.verify(checkpoints)
    if not report.ok:
        where = f" at event #{report.first_broken_event}" if report.first_broken_event is not None else ""
        errors.print(f"[bold red]ledger broken[/]{where}: {escape(report.problem or '')}", highlight=False)
        raise typer.Exit(1)
    signed = "signatures checked" if report.signatures_checked else "[yellow]no key: signatures unchecked[/]"
    legacy = (
        f"; {report.unsigned_events} unsigned events from before signing began"
        if report.unsigned_events
        else ""
    )
    anchor = "; no checkpoint yet"
    if report.checkpoint:
        anchor = f"; head matches checkpoint {escape(report.checkpoint)}"
    say(
        f"[green]chain intact[/]: {report.events_checked} events, {report.rows_checked} "
        f"tracked rows; head {report.head_hash[:16]}; {signed}{legacy}{anchor}"
    )


@audit_app.command("checkpoint")
def audit_checkpoint(
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Folder for the checkpoint file (default: the configured checkpoint_dir)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Sign the ledger's current head and write it as a checkpoint file outside the database."""
    checkpoint = open_anima(home).audit.checkpoint(to)
    say(
        f"checkpoint {escape(str(checkpoint.path))}: {checkpoint.events} events, "
        f"head {checkpoint.head_hash[:16]}"
    )


@audit_app.command("reconcile")
def audit_reconcile(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Put right what killed stamps left: complete publishes whose ledger row committed, remove
    temporary files, and list ledger rows whose output is missing. Exits 1 if any row lacks its file."""
    report = open_anima(home).reconcile(clean=not dry_run)
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        done = "to remove" if dry_run else "removed"
        for output in report.completed:
            say(f"completed   {escape(output)} (its ledger row had committed)")
        for path in report.removed:
            say(f"{done:<11} {escape(path)}")
        for stamp_id in report.in_progress:
            say(f"in progress {escape(stamp_id)} (its process still runs; left alone)")
        for path in report.unknown:
            say(f"unknown     {escape(path)} (an older Anima's temp folder; left alone)")
        for stamp_id, output in report.missing:
            say(f"[red]missing[/]     {escape(output)} (ledger row {escape(stamp_id)})")
        unchecked = f", {report.unchecked} from before output paths were recorded" if report.unchecked else ""
        say(f"{report.rows_checked} ledger rows checked{unchecked}; {len(report.missing)} without their file")
    if not report.ok:
        raise typer.Exit(1)
