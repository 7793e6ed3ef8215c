"""The ``anima`` command: parses, calls flows, prints. Errors become one line and an exit code:
2 bad input, 3 refused by the consent gate, 4 provenance failure, 5 ledger failure, 1 anything else."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from anima import __version__, flows
from anima.config import Settings, load_settings
from anima.errors import AnimaError, BadInput
from anima.generate.request import GenerationRequest
from anima.ledger import ConsentGrant, Ledger, as_utc
from anima.media import atomic_output
from anima.policy.registry import ConsentRegistry, grant_status
from anima.provenance import keys

app = typer.Typer(
    help="Anima: responsible character animation with provenance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="The signing identity used for C2PA manifests.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit ledger.", no_args_is_help=True)
consent_app = typer.Typer(help="The consent registry: who may be animated, for what.", no_args_is_help=True)
policy_app = typer.Typer(help="The consent gate.", no_args_is_help=True)
models_app = typer.Typer(help="Animation models: import published weights.", no_args_is_help=True)
pose_app = typer.Typer(help="Pose sequences: extract from videos, render as skeletons.", no_args_is_help=True)
puppets_app = typer.Typer(help="Procedural puppet clips with exact poses.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(consent_app, name="consent")
app.add_typer(policy_app, name="policy")
app.add_typer(models_app, name="models")
app.add_typer(pose_app, name="pose")
detector_app = typer.Typer(
    help="The detector of this generator's output: its data, training and evaluation.", no_args_is_help=True
)
app.add_typer(detector_app, name="detector")
app.add_typer(puppets_app, name="puppets")

console = Console()
errors = Console(stderr=True, soft_wrap=True)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Anima home folder (default $ANIMA_HOME or ~/.anima).")
]


DatasetArgument = Annotated[Path, typer.Argument(help="Folder made by `anima detector dataset`.")]
DetectorOption = Annotated[Path | None, typer.Option(help="Detector folder (default: the shipped one).")]

PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", help="Policy file (default $ANIMA_HOME/policy.toml, else safe defaults)."),
]


def _settings(home: Path | None) -> Settings:
    return load_settings(home)


def _progress() -> Progress:
    """A progress bar on stderr that clears itself when done."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    )


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
        with _progress() as bar:
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
    detector = report.classifier
    if detector is None:
        table.add_row("detector", "not installed")
    else:
        scores = detector["frame_scores"]
        table.add_row(
            "detector",
            f"clip score {detector['clip_score']:.2f} (threshold {detector['threshold']:.2f}, "
            f"probability {detector['probability']:.2f}); {len(scores)} frames, "
            f"scores {min(scores):.2f} to {max(scores):.2f}",
        )
    console.print(table)
    colour = {
        "anima-generated": "cyan",
        "tampered": "red",
        "ai-declared": "yellow",
        "likely-synthetic": "magenta",
    }.get(report.verdict, "white")
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
            f"[green]chain intact[/]: {report.events_checked} events, {report.rows_checked} "
            f"tracked rows; head {report.head_hash[:16]}",
            highlight=False,
        )
        return
    errors.print(
        f"[bold red]chain broken[/] at event #{report.first_broken_event}: {report.problem}", highlight=False
    )
    raise typer.Exit(1)


@app.command()
def generate(
    reference: Annotated[Path, typer.Option(help="Picture of the character to animate (.png/.jpg).")],
    pose: Annotated[str, typer.Option(help="pose.json, skeleton.mp4, driving.mp4 or motion:NAME.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the stamped .mp4 goes.")],
    purpose: Annotated[str, typer.Option(help="What the video is for (must be covered by consent).")],
    fictional: Annotated[
        bool, typer.Option(help="Declare the character fictional (only pictures with no face pass).")
    ] = False,
    policy: PolicyOption = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Model folder (a saved AnimationPipeline; default: the shipped anima-puppets)."),
    ] = None,
    reference_pose: Annotated[
        Path | None,
        typer.Option(help="The reference's one-frame pose .json (default: extracted from the picture)."),
    ] = None,
    frames: Annotated[int, typer.Option(help="Length of a built-in motion, in frames.")] = 48,
    steps: Annotated[int | None, typer.Option(help="DDIM steps (default: the model's).")] = None,
    guidance: Annotated[
        float | None, typer.Option(help="Classifier-free guidance scale (default: the model's).")
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option(help="1 starts from noise, less from the noised limb warp (default: the model's)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same video).")] = 0,
    width: Annotated[int | None, typer.Option(help="Output width (default: the model's).")] = None,
    height: Annotated[
        int | None, typer.Option(help="Output height (default: the reference's aspect).")
    ] = None,
    fps: Annotated[
        float | None, typer.Option(help="Frame rate (default: the pose source's, else 24).")
    ] = None,
    align: Annotated[bool, typer.Option(help="Re-proportion the motion to the reference's body.")] = False,
    device: Annotated[
        str | None, typer.Option(help="cuda, cuda:1 or cpu (default: cuda if present).")
    ] = None,
    crf: Annotated[int, typer.Option(help="H.264 quality (0-51, lower is better).")] = 18,
    home: HomeOption = None,
) -> None:
    """Animate a reference picture with a pose sequence; the video is always stamped."""
    request = GenerationRequest(
        model=model,
        reference=reference,
        pose=pose,
        frames=frames,
        steps=steps,
        guidance=guidance,
        strength=strength,
        seed=seed,
        width=width,
        height=height,
        fps=fps,
        align=align,
        reference_pose=reference_pose,
    )
    try:
        result = flows.generate(
            _settings(home),
            request,
            output,
            purpose=purpose,
            fictional=fictional,
            policy=policy,
            device=device,
            crf=crf,
        )
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(
        f"[green]generated[/] {result.output}  id [bold]{result.stamp_id}[/]  frames {result.frames}",
        highlight=False,
        soft_wrap=True,
    )


@models_app.command("import-moore")
def models_import_moore(
    weights_dir: Annotated[Path, typer.Argument(help="Moore-AnimateAnyone's pretrained_weights folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the converted model.")],
    half: Annotated[bool, typer.Option(help="Store weights in float16 (half the size).")] = False,
) -> None:
    """Convert Moore-AnimateAnyone weights into an Anima model folder, mapping every key.

    WEIGHTS_DIR must hold denoising_unet.pth, reference_unet.pth, pose_guider.pth, motion_module.pth,
    stable-diffusion-v1-5/unet/config.json, sd-vae-ft-mse/ and image_encoder/.
    """
    from anima.generate.moore import import_moore

    try:
        report = import_moore(weights_dir, output, half=half)
    except AnimaError as exc:
        raise _fail(exc) from None
    counts = ", ".join(f"{name} {count}" for name, count in report.tensors.items())
    console.print(
        f"[green]imported[/] {report.output}: tensors {counts}; "
        f"{report.recomputed_buffers} position buffers recomputed",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def train(
    config: Annotated[
        Path, typer.Option("--config", help="Training config (.toml), e.g. configs/anima-puppets.toml.")
    ],
) -> None:
    """Train the default model on puppets (resumes from the last checkpoint in the config's work_dir)."""
    from anima.training.trainer import TrainConfig
    from anima.training.trainer import train as run_training

    try:
        settings = TrainConfig.from_toml(config)
        console.print(f"training; checkpoints, samples and train.log in {settings.work_dir}", highlight=False)
        output = run_training(settings)
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(f"[green]trained[/] {output}", highlight=False)


@detector_app.command("dataset")
def detector_dataset(
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder (a re-run resumes).")],
    model: Annotated[
        Path | None, typer.Option(help="Generator (default: the shipped anima-puppets).")
    ] = None,
    train_puppets: Annotated[
        int, typer.Option(help="Puppet characters in train (a real + an ours clip each).")
    ] = 150,
    val_puppets: Annotated[int, typer.Option(help="Puppet characters in val.")] = 50,
    test_puppets: Annotated[int, typer.Option(help="Puppet characters in test.")] = 60,
    photos: Annotated[int, typer.Option(help="Real camera moves over photographs, per split.")] = 60,
    frames: Annotated[int, typer.Option(help="Frames per clip.")] = 12,
) -> None:
    """Build real and generated clips, split by character and motion."""
    from anima.detect.dataset import DatasetPlan, build_dataset

    plan = DatasetPlan(
        puppets={"train": train_puppets, "val": val_puppets, "test": test_puppets},
        photos={"train": photos, "val": photos, "test": photos},
        frames=frames,
    )
    total = train_puppets + val_puppets + test_puppets + 3 * photos
    try:
        with _progress() as bar:
            task = bar.add_task("clips", total=total)
            entries = build_dataset(output, plan, model, progress=lambda _: bar.advance(task))
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(f"[green]dataset[/] {output}: {len(entries)} clips", highlight=False)


def _metrics_table(results: dict[str, dict[str, float]]) -> Table:
    table = Table("attack", "AUC", "AP", "TPR @1% FPR", "TPR @threshold", "FPR @threshold")
    for attack, values in results.items():
        table.add_row(
            attack,
            *(
                f"{values[key]:.4f}"
                for key in ("auc", "ap", "tpr_at_1pct_fpr", "tpr_at_threshold", "fpr_at_threshold")
            ),
        )
    return table


@detector_app.command("train")
def detector_train(
    dataset: DatasetArgument,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the trained detector.")],
    backbone: Annotated[
        str, typer.Option(help="timm model name (trained from scratch).")
    ] = "mobilenetv3_small_050",
    steps: Annotated[int, typer.Option(help="Training steps.")] = 1500,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train on the train split, calibrate on val (threshold at 1% FPR), report test metrics."""
    from anima.detect.classifier import SyntheticVideoDetector
    from anima.detect.training import train_detector

    try:
        with _progress() as bar:
            task = bar.add_task("training", total=steps)
            results = train_detector(
                dataset,
                output,
                SyntheticVideoDetector(backbone=backbone, steps=steps, seed=seed),
                progress=lambda step, loss: bar.update(task, completed=step, description=f"loss {loss:.3f}"),
            )
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(_metrics_table(results))
    console.print(f"[green]saved[/] {output}", highlight=False)


@detector_app.command("calibrate")
def detector_calibrate(
    dataset: DatasetArgument,
    detector: DetectorOption = None,
) -> None:
    """Set a trained detector's calibration and 1%-FPR threshold anew on val; report test metrics."""
    from anima.detect.training import recalibrate

    try:
        results = recalibrate(dataset, detector or flows.DEFAULT_DETECTOR)
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(_metrics_table(results))


@detector_app.command("eval")
def detector_eval(
    dataset: DatasetArgument,
    detector: DetectorOption = None,
    split: Annotated[str, typer.Option(help="Which split to measure on.")] = "test",
) -> None:
    """AUC, AP and TPR at 1% FPR, clean and after each attack (CRF 28, 0.5x resize)."""
    from anima.detect.classifier import SyntheticVideoDetector
    from anima.detect.dataset import load_dataset
    from anima.detect.training import evaluate

    try:
        model = SyntheticVideoDetector.load(detector or flows.DEFAULT_DETECTOR)
        clips, labels, _ = load_dataset(dataset, split)
        results = evaluate(model, clips, labels)
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(_metrics_table(results))


@pose_app.command("extract")
def pose_extract(
    video: Annotated[Path, typer.Argument(help="Driving video with one person.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the pose .json goes.")],
    render: Annotated[Path | None, typer.Option(help="Also write the rendered skeleton as .mp4.")] = None,
    dwpose: Annotated[
        Path | None, typer.Option(help="Folder with DWPose ONNX models (else MediaPipe).")
    ] = None,
) -> None:
    """Extract an OpenPose-18 pose sequence from a video (offline)."""
    from anima.pose import extract_driving_pose, render_video

    if dwpose is None:
        errors.print("extracting with MediaPipe BlazePose (its tool environment is built on first use)")
    try:
        sequence = extract_driving_pose(video, dwpose_models=dwpose)
        with atomic_output(output) as tmp:
            sequence.save(tmp)
        if render is not None:
            with atomic_output(render) as tmp:
                render_video(sequence, tmp)
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(
        f"[green]extracted[/] {sequence.num_frames} frames -> {output}"
        + (f" and {render}" if render else ""),
        highlight=False,
        soft_wrap=True,
    )


@pose_app.command("render")
def pose_render(
    pose: Annotated[Path, typer.Argument(help="Pose .json (Anima, OpenPose or DWPose) or motion:NAME.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the skeleton .mp4 goes.")],
    width: Annotated[int | None, typer.Option(help="Output width (default: the pose's canvas).")] = None,
    height: Annotated[int | None, typer.Option(help="Output height (default: the pose's canvas).")] = None,
    frames: Annotated[int, typer.Option(help="Length of a built-in motion, in frames.")] = 48,
) -> None:
    """Render a pose sequence as a skeleton video, as the pose guider sees it."""
    from anima.pose import builtin_motion, read_pose_json, render_video

    try:
        spec = str(pose)
        if spec.startswith("motion:"):
            sequence = builtin_motion(spec, frames, 24.0, (width or 512, height or 512))
        else:
            sequence = read_pose_json(pose)
        size = (width or sequence.width, height or sequence.height)
        with atomic_output(output) as tmp:
            count = render_video(sequence, tmp, size=size)
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(f"[green]rendered[/] {count} frames -> {output}", highlight=False, soft_wrap=True)


@puppets_app.command("sheet")
def puppets_sheet(
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the contact sheet .png goes.")],
    seed: Annotated[int, typer.Option(help="Seed of the first clip; the others follow it.")] = 0,
    count: Annotated[int, typer.Option(help="Number of clips (rows).")] = 6,
    frames: Annotated[int, typer.Option(help="Frames shown per clip (columns).")] = 6,
    size: Annotated[int, typer.Option(help="Side of each frame in pixels.")] = 128,
) -> None:
    """Draw a contact sheet of puppet clips: one clip of a random kind per row, frames across."""
    import cv2

    from anima.puppets import contact_sheet

    try:
        for name, value, low in (("--count", count, 1), ("--frames", frames, 1), ("--size", size, 32)):
            if value < low:
                raise BadInput(f"{name} must be at least {low}, got {value}")
        if output.suffix.lower() != ".png":
            raise BadInput(f"{output}: the contact sheet is written as .png")
        sheet = contact_sheet(range(seed, seed + count), frames_per_clip=frames, size=(size, size))
        with atomic_output(output) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
                raise BadInput(f"{output}: cannot write the image")
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(
        f"[green]drew[/] {count} clips x {frames} frames -> {output}", highlight=False, soft_wrap=True
    )


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _fail(BadInput(f"{option} must be a date like 2027-06-30, got {value!r}")) from None


@consent_app.command("enroll")
def consent_enroll(
    name: Annotated[str, typer.Argument(help="The person's name, as shown to operators.")],
    photo: Annotated[list[Path], typer.Option(help="Photo showing only this person's face; repeatable.")],
    statement: Annotated[Path, typer.Option(help="The signed consent statement (its SHA-256 is stored).")],
    purpose: Annotated[list[str], typer.Option(help="Purpose consented to (fashion, entertainment, ...).")],
    expires: Annotated[str | None, typer.Option(help="Last day of consent, YYYY-MM-DD (exclusive).")] = None,
    valid_from: Annotated[str | None, typer.Option(help="First day of consent, YYYY-MM-DD.")] = None,
    granted_by: Annotated[str | None, typer.Option(help="Who granted it (default: the person).")] = None,
    keep_photos: Annotated[bool, typer.Option(help="Also keep the photos under $ANIMA_HOME.")] = False,
    policy: PolicyOption = None,
    home: HomeOption = None,
) -> None:
    """Enrol a person from their photos and record their consent."""
    try:
        identity, grant = flows.enroll(
            _settings(home),
            name,
            photo,
            statement,
            purpose,
            expires=_date(expires, "--expires"),
            valid_from=_date(valid_from, "--valid-from"),
            granted_by=granted_by,
            keep_photos=keep_photos,
            policy=policy,
        )
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(
        f"[green]enrolled[/] {identity.display_name} as [bold]{identity.id}[/] "
        f"({len(identity.embeddings)} photo(s), backend {identity.backend}); consent [bold]{grant.id}[/] "
        f"for {', '.join(grant.purposes)}",
        highlight=False,
        soft_wrap=True,
    )


def _registry(home: Path | None) -> ConsentRegistry:
    return ConsentRegistry(Ledger(_settings(home).database_url))


def _grant_row(grant: ConsentGrant) -> tuple[str, str, str, str, str]:
    status = grant_status(grant, grant.purposes[0] if grant.purposes else "", dt.datetime.now(dt.UTC)).code
    expires = as_utc(grant.expires_at)
    return (
        grant.id,
        ", ".join(grant.purposes),
        f"{as_utc(grant.valid_from):%Y-%m-%d}",
        f"{expires:%Y-%m-%d}" if expires else "never",
        status,
    )


@consent_app.command("grant")
def consent_grant(
    identity_id: Annotated[str, typer.Argument(help="Enrolled identity (idn-...).")],
    statement: Annotated[Path, typer.Option(help="The signed consent statement (its SHA-256 is stored).")],
    purpose: Annotated[list[str], typer.Option(help="Purpose consented to; repeatable.")],
    expires: Annotated[str | None, typer.Option(help="Last day of consent, YYYY-MM-DD (exclusive).")] = None,
    valid_from: Annotated[str | None, typer.Option(help="First day of consent, YYYY-MM-DD.")] = None,
    granted_by: Annotated[str, typer.Option(help="Who granted it.")] = "",
    policy: PolicyOption = None,
    home: HomeOption = None,
) -> None:
    """Record a further consent for an enrolled person."""
    try:
        grant = flows.grant_consent(
            _settings(home),
            identity_id,
            statement,
            purpose,
            expires=_date(expires, "--expires"),
            valid_from=_date(valid_from, "--valid-from"),
            granted_by=granted_by or None,
            policy=policy,
        )
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(f"[green]granted[/] {grant.id} for {', '.join(grant.purposes)}", highlight=False)


@consent_app.command("list")
def consent_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """List enrolled identities and their consents."""
    try:
        registry = _registry(home)
        rows = [(identity, registry.grants(identity.id)) for identity in registry.identities()]
    except AnimaError as exc:
        raise _fail(exc) from None
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": i.id,
                        "name": i.display_name,
                        "backend": i.backend,
                        "grants": [
                            dict(
                                zip(
                                    ("id", "purposes", "valid_from", "expires", "status"),
                                    _grant_row(g),
                                    strict=True,
                                )
                            )
                            for g in grants
                        ],
                    }
                    for i, grants in rows
                ],
                indent=2,
            )
        )
        return
    table = Table("identity", "name", "consent", "purposes", "from", "expires", "status")
    for identity, grants in rows:
        for index, grant in enumerate(grants or [None]):
            cells = _grant_row(grant) if grant else ("-", "", "", "", "no consent")
            head = (identity.id, identity.display_name) if index == 0 else ("", "")
            table.add_row(*head, *cells)
    console.print(table)


@consent_app.command("show")
def consent_show(
    record_id: Annotated[str, typer.Argument(help="An identity (idn-...) or a consent (cns-...).")],
    home: HomeOption = None,
) -> None:
    """Show one identity with its consents, or one consent."""
    try:
        registry = _registry(home)
        grant = registry.consent(record_id) if record_id.startswith("cns-") else None
        identity = registry.identity(grant.identity_id if grant else record_id)
        grants = [grant] if grant else registry.grants(identity.id)
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(
        f"[bold]{identity.id}[/] {identity.display_name}  backend {identity.backend}  "
        f"{len(identity.embeddings)} embedding(s)  enrolled {as_utc(identity.created_at):%Y-%m-%d} "
        f"by {identity.enrolled_by}",
        highlight=False,
        soft_wrap=True,
    )
    for item in grants:
        cid, purposes, start, end, status = _grant_row(item)
        console.print(
            f"  {cid}  {purposes}  {start} .. {end}  [bold]{status}[/]  statement "
            f"sha256 {item.statement_sha256[:16]}…  granted by {item.granted_by}"
            + (f"  revoked: {item.revoked_reason}" if item.revoked_reason else ""),
            highlight=False,
            soft_wrap=True,
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
    try:
        revoked = _registry(home).revoke(record_id, reason, flows.current_actor())
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(
        f"[yellow]revoked[/] {', '.join(g.id for g in revoked) or 'nothing (no active consent)'}",
        highlight=False,
    )


@consent_app.command("extend")
def consent_extend(
    grant_id: Annotated[str, typer.Argument(help="The consent (cns-...).")],
    expires: Annotated[str | None, typer.Option(help="New last day, YYYY-MM-DD; omit for no expiry.")] = None,
    home: HomeOption = None,
) -> None:
    """Change when a consent expires."""
    try:
        grant = _registry(home).extend(
            grant_id, flows.start_of_day_utc(_date(expires, "--expires")), flows.current_actor()
        )
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(f"[green]extended[/] {grant.id} to {_grant_row(grant)[3]}", highlight=False)


@consent_app.command("forget")
def consent_forget(
    identity_id: Annotated[str, typer.Argument(help="The identity (idn-...) to erase.")],
    home: HomeOption = None,
) -> None:
    """Erase a person's face data and name, revoking their consents (the audit trail keeps the ids)."""
    try:
        identity = _registry(home).forget(identity_id, flows.current_actor())
    except AnimaError as exc:
        raise _fail(exc) from None
    console.print(f"[yellow]forgotten[/] {identity.id}", highlight=False)


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
    try:
        decision = flows.check_reference(
            _settings(home), reference, purpose, fictional=fictional, policy=policy
        )
    except AnimaError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps(decision.to_dict(), indent=2))
    else:
        verdict = "[green]allowed[/]" if decision.allow else "[bold red]refused[/]"
        console.print(f"{verdict}: {decision.explain()}", highlight=False, soft_wrap=True)
        for match in decision.matches:
            console.print(
                f"  face at {match.box} ({match.size} px): {match.status}"
                + (f", {match.identity_id} at distance {match.distance}" if match.identity_id else "")
                + (f", consent {match.grant_id}" if match.grant_id else ""),
                highlight=False,
            )
    if not decision.allow:
        raise typer.Exit(3)


@app.command()
def scan(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files, folders (searched recursively for media) or .txt lists of paths."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for scan.jsonl, scan.csv, report.html; reuse it to resume.")
    ],
    workers: Annotated[int | None, typer.Option(help="Parallel workers (default: CPU count).")] = None,
    engine: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address for --engine ray (default: a local Ray).")
    ] = None,
    trust: Annotated[
        list[Path] | None, typer.Option(help="Trusted CA certificate (PEM); repeatable.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Verify many files in parallel, each content once; resumable. Exits 0 whatever the verdicts."""
    try:
        with _progress() as bar:
            task = bar.add_task("scanning", total=None)
            summary = flows.scan(
                _settings(home),
                paths,
                out,
                trust=trust or [],
                engine=engine,
                workers=workers,
                address=address,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except AnimaError as exc:
        raise _fail(exc) from None
    table = Table("verdict", "files")
    for verdict, count in summary.counts().items():
        table.add_row(verdict, str(count))
    console.print(table)
    console.print(
        f"{len(summary.rows)} files: {summary.scanned} checked, {summary.duplicates} duplicate contents, "
        f"{summary.resumed} already done; " + ", ".join(str(path) for path in summary.outputs),
        highlight=False,
        soft_wrap=True,
    )
