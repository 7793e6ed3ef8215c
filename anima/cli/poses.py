"""``anima pose`` and ``anima puppets``: pose sequences, and the procedural puppets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from anima.cli._common import HomeOption, open_anima, say
from anima.cli._errors import errors

pose_app = typer.Typer(help="Pose sequences: extract from videos, render as skeletons.", no_args_is_help=True)
puppets_app = typer.Typer(help="Procedural puppet clips with exact poses.", no_args_is_help=True)


@pose_app.command("extract")
def pose_extract(
    video: Annotated[Path, typer.Argument(help="Driving video with one person.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the pose .json goes.")],
    render: Annotated[Path | None, typer.Option(help="Also write the rendered skeleton as .mp4.")] = None,
    dwpose: Annotated[
        Path | None, typer.Option(help="Folder with DWPose ONNX models (else MediaPipe).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Extract an OpenPose-18 pose sequence from a video (offline)."""
    if dwpose is None:
        errors.print("extracting with MediaPipe BlazePose (its tool environment is built on first use)")
    sequence = open_anima(home).pose.extract(video, output, render=render, dwpose=dwpose)
    say(
        f"[green]extracted[/] {sequence.num_frames} frames -> {escape(str(output))}"
        + (f" and {escape(str(render))}" if render else "")
    )


@pose_app.command("render")
def pose_render(
    pose: Annotated[str, typer.Argument(help="Pose .json (Anima, OpenPose or DWPose) or motion:NAME.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the skeleton .mp4 goes.")],
    width: Annotated[
        int | None, typer.Option(min=16, max=8192, help="Output width (default: the pose's canvas).")
    ] = None,
    height: Annotated[
        int | None, typer.Option(min=16, max=8192, help="Output height (default: the pose's canvas).")
    ] = None,
    frames: Annotated[
        int, typer.Option(min=1, max=100_000, help="Length of a built-in motion, in frames.")
    ] = 48,
) -> None:
    """Render a pose sequence as a skeleton video, as the pose guider sees it."""
    count = open_anima().pose.render(pose, output, width=width, height=height, frames=frames)
    say(f"[green]rendered[/] {count} frames -> {escape(str(output))}")


@puppets_app.command("sheet")
def puppets_sheet(
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the contact sheet .png goes.")],
    seed: Annotated[int, typer.Option(help="Seed of the first clip; the others follow it.")] = 0,
    count: Annotated[int, typer.Option(min=1, max=1000, help="Number of clips (rows).")] = 6,
    frames: Annotated[int, typer.Option(min=1, max=100, help="Frames shown per clip (columns).")] = 6,
    size: Annotated[int, typer.Option(min=32, max=1024, help="Side of each frame in pixels.")] = 128,
) -> None:
    """Draw a contact sheet of puppet clips: one clip of a random kind per row, frames across."""
    open_anima().puppets.sheet(output, seed=seed, count=count, frames=frames, size=size)
    say(f"[green]drew[/] {count} clips x {frames} frames -> {escape(str(output))}")
