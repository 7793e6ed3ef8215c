"""``anima scan`` and ``anima detector``: batch scans, and the classifier of this generator's output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from anima.api import MAX_SCAN_WORKERS, Anima
from anima.cli._common import HomeOption, TrustOption, WatermarkKeyOption, console, progress_bar, say

detector_app = typer.Typer(
    help="The detector of this generator's output: its data, training and evaluation.", no_args_is_help=True
)
DatasetArgument = Annotated[Path, typer.Argument(help="Folder made by `anima detector dataset`.")]
DetectorOption = Annotated[Path | None, typer.Option(help="Detector folder (default: the shipped one).")]


def scan(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files, folders (searched recursively for media) or .txt lists of paths."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for scan.jsonl, scan.csv, report.html; reuse it to resume.")
    ],
    workers: Annotated[
        int | None, typer.Option(min=1, max=MAX_SCAN_WORKERS, help="Parallel workers (default: CPU count).")
    ] = None,
    engine: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address for --engine ray (default: a local Ray).")
    ] = None,
    trust: TrustOption = None,
    watermark_key: WatermarkKeyOption = None,
    home: HomeOption = None,
) -> None:
    """Verify many files in parallel, each content once; resumable. Exits 0 whatever the verdicts."""
    with progress_bar() as bar:
        task = bar.add_task("scanning", total=None)
        summary = Anima(home, trust=trust or [], watermark_keys=watermark_key or []).scan(
            paths,
            out,
            engine=engine,
            workers=workers,
            address=address,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = Table("verdict", "files")
    for verdict, count in summary.counts().items():
        table.add_row(verdict, str(count))
    console.print(table)
    say(
        f"{len(summary.rows)} files: {summary.scanned} checked, {summary.duplicates} duplicate contents, "
        f"{summary.resumed} already done; " + ", ".join(escape(str(path)) for path in summary.outputs)
    )


@detector_app.command("dataset")
def detector_dataset(
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder (a re-run resumes).")],
    model: Annotated[
        Path | None, typer.Option(help="Generator (default: the shipped anima-puppets).")
    ] = None,
    train_puppets: Annotated[
        int, typer.Option(min=0, help="Puppet characters in train (a real + an ours clip each).")
    ] = 150,
    val_puppets: Annotated[int, typer.Option(min=0, help="Puppet characters in val.")] = 50,
    test_puppets: Annotated[int, typer.Option(min=0, help="Puppet characters in test.")] = 60,
    photos: Annotated[int, typer.Option(min=0, help="Real camera moves over photographs, per split.")] = 60,
    frames: Annotated[int, typer.Option(min=1, max=1000, help="Frames per clip.")] = 12,
) -> None:
    """Build real and generated clips, split by character and motion."""
    puppets = {"train": train_puppets, "val": val_puppets, "test": test_puppets}
    with progress_bar() as bar:
        task = bar.add_task("clips", total=sum(puppets.values()) + 3 * photos)
        entries = Anima().detector.dataset(
            output,
            puppets=puppets,
            photos=photos,
            frames=frames,
            model=model,
            progress=lambda _: bar.advance(task),
        )
    say(f"[green]dataset[/] {escape(str(output))}: {len(entries)} clips")


def _metrics_table(results: dict[str, dict[str, float]]) -> Table:
    keys = ("auc", "ap", "tpr_at_1pct_fpr", "tpr_at_threshold", "fpr_at_threshold")
    table = Table("attack", "AUC", "AP", "TPR @1% FPR", "TPR @threshold", "FPR @threshold")
    for attack, values in results.items():
        table.add_row(attack, *(f"{values[key]:.4f}" for key in keys))
    return table


@detector_app.command("train")
def detector_train(
    dataset: DatasetArgument,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the trained detector.")],
    backbone: Annotated[
        str, typer.Option(help="timm model name (trained from scratch).")
    ] = "mobilenetv3_small_050",
    steps: Annotated[int, typer.Option(min=1, help="Training steps.")] = 1500,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train on the train split, calibrate on val (threshold at 1% FPR), report test metrics."""
    with progress_bar() as bar:
        task = bar.add_task("training", total=steps)
        results = Anima().detector.train(
            dataset,
            output,
            backbone=backbone,
            steps=steps,
            seed=seed,
            progress=lambda step, loss: bar.update(task, completed=step, description=f"loss {loss:.3f}"),
        )
    console.print(_metrics_table(results))
    say(f"[green]saved[/] {escape(str(output))}")


@detector_app.command("calibrate")
def detector_calibrate(dataset: DatasetArgument, detector: DetectorOption = None) -> None:
    """Set a trained detector's calibration and 1%-FPR threshold anew on val; report test metrics."""
    console.print(_metrics_table(Anima().detector.calibrate(dataset, detector)))


@detector_app.command("eval")
def detector_eval(
    dataset: DatasetArgument,
    detector: DetectorOption = None,
    split: Annotated[str, typer.Option(help="Which split to measure on (train, val, test).")] = "test",
) -> None:
    """AUC, AP and TPR at 1% FPR, clean and after each attack (CRF 28, 0.5x resize)."""
    console.print(_metrics_table(Anima().detector.evaluate(dataset, detector, split)))
