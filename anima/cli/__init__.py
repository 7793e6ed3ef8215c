"""The ``anima`` command: one module per command group, each command a call of :class:`anima.Anima`
plus printing; errors become one line and an exit code in one place (:mod:`anima.cli._errors`)."""

from __future__ import annotations

from typing import Annotated

import typer

from anima import __version__
from anima.cli import detection, generation, poses, provenance, records, serve
from anima.cli._common import say
from anima.cli._errors import AnimaGroup

app = typer.Typer(
    cls=AnimaGroup,
    help="Anima: responsible character animation with provenance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        say(f"anima {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Anima: consent-gated character animation; every output signed, watermarked and audited."""


app.command()(provenance.stamp)
app.command()(provenance.verify)
app.command()(generation.generate)
app.command()(detection.scan)
app.command()(generation.train)
app.command()(serve.serve)
app.add_typer(provenance.keys_app, name="keys")
app.add_typer(records.audit_app, name="audit")
app.add_typer(records.consent_app, name="consent")
app.add_typer(records.policy_app, name="policy")
app.add_typer(generation.models_app, name="models")
app.add_typer(poses.pose_app, name="pose")
app.add_typer(poses.puppets_app, name="puppets")
app.add_typer(detection.detector_app, name="detector")
