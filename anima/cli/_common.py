"""What every command module shares: the consoles, the options every command takes, progress bars,
and opening the API for ``--home``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from anima.cli._errors import errors

if TYPE_CHECKING:
    from anima.api import Anima

console = Console()

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Anima home folder (default $ANIMA_HOME or ~/.anima).")
]
PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", help="Policy file (default $ANIMA_HOME/policy.toml, else safe defaults)."),
]
TrustOption = Annotated[list[Path] | None, typer.Option(help="Trusted CA certificate (PEM); repeatable.")]
WatermarkKeyOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--watermark-key",
        help="Another deployment's watermark key file (the home's own keys are read too); repeatable.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
CrfOption = Annotated[int, typer.Option(min=0, max=51, help="H.264 quality (0-51, lower is better).")]


def progress_bar() -> Progress:
    """A progress bar on stderr that clears itself when done."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    )


def say(text: str) -> None:
    """One line for people on stdout (rich markup allowed, no auto-highlighting, never wrapped)."""
    console.print(text, highlight=False, soft_wrap=True)


def open_anima(home: Path | None = None, **options: Any) -> Anima:
    """``anima.Anima(home, **options)``, imported on first use: the API (numpy, PyAV, OpenCV,
    cryptography) loads for a command that runs, never for ``--help`` or a usage error."""
    from anima.api import Anima

    return Anima(home, **options)
