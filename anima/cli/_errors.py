"""The one place where errors become what a user sees: one line on stderr and an exit code.

| exit | meaning                                                        |
|------|----------------------------------------------------------------|
| 0    | done (``verify`` and ``scan`` exit 0 whatever the verdicts)    |
| 1    | anything else Anima reports; ``audit verify``: chain broken    |
| 2    | bad input: a missing file, a bad argument or option            |
| 3    | refused by the consent gate                                    |
| 4    | provenance failure (missing keys, signing)                     |
| 5    | the ledger cannot be opened or written                         |
"""

from __future__ import annotations

import typer
from rich.console import Console

# Typer carries its own click; its usage errors are not re-exported under a public name.
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from anima.errors import AnimaError, BadInput

errors = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


class AnimaGroup(TyperGroup):
    """The top-level command group: maps Anima's errors and click's usage errors (also those of
    sub-commands, which are parsed inside this group's ``invoke``) to one line and an exit code."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except AnimaError as exc:
            raise fail(_escape(str(exc)), exc.exit_code) from None
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            raise fail(_escape(exc.format_message()), BadInput.exit_code) from None


def _escape(text: str) -> str:
    """User text (file names, values) printed verbatim, never read as rich markup."""
    return text.replace("[", r"\[")
