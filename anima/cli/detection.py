"""``anima scan`` and ``anima detector``: batch scans, and the classifier of this generator's output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from anima.api import MAX_SCAN_WORKERS, Anima
from anima.cli._common import HomeOption, TrustOption, WatermarkKeyOption, console, progress_bar, say
from anima.cli._errors import errors

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
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Dataset folder (default: detector-dataset in the Anima home); a re-run resumes.",
        ),
    ] = None,
    preset: Annotated[
        str, typer.Option(help="small: 260 generated + 440 real clips; full: 1,500 + 2,000 (hours of CPU).")
    ] = "small",
    generated: Annotated[
        int | None, typer.Option(min=0, help="Generated clips in all, split 60/20/20 (overrides the preset).")
    ] = None,
    real: Annotated[
        int | None, typer.Option(min=0, help="Real clips in all, split 60/20/20 (overrides the preset).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Generator (default: the shipped anima-puppets).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Build generated clips under varied sampling settings and real clips, split by seed and picture;
    resumable (`nohup anima detector dataset --preset full &`, then the same command again)."""
    tools = Anima(home).detector
    folder = output if output is not None else tools.default_dataset
    with progress_bar() as bar:
        bar.speed_estimate_period = 1800  # generated clips take 100x longer than real ones: average long
        task = bar.add_task("clips", total=None)

        def report(done: int, total: int) -> None:
            if bar.tasks[task].total is None:  # clips an earlier run made do not count toward the speed
                bar.reset(task, total=total, completed=done)
                if done:
                    say(f"resuming {escape(str(folder))}: {done} of {total} clips already listed")
            else:
                bar.update(task, completed=done)
            if not errors.is_terminal and (done % 25 == 0 or done == total):  # a log for background runs
                left = bar.tasks[task].time_remaining
                eta = f", about {left / 3600:.1f} h left" if left is not None else ""
                errors.print(f"{done}/{total} clips{eta}", highlight=False)

        entries = tools.dataset(
            folder, preset=preset, generated=generated, real=real, model=model, progress=report
        )
    say(f"[green]dataset[/] {escape(str(folder))}: {len(entries)} clips")


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
