"""``anima generate``, ``anima models`` and ``anima train``: animation through the consent gate, and
the models behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from anima.cli._common import CrfOption, HomeOption, PolicyOption, open_anima, progress_bar, say

models_app = typer.Typer(help="Animation models: import published weights.", no_args_is_help=True)


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
    frames: Annotated[
        int, typer.Option(min=1, max=100_000, help="Length of a built-in motion, in frames.")
    ] = 48,
    steps: Annotated[
        int | None, typer.Option(min=1, max=1000, help="DDIM steps (default: the model's).")
    ] = None,
    guidance: Annotated[
        float | None, typer.Option(min=1.0, help="Classifier-free guidance scale (default: the model's).")
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            max=1.0,
            help="1 starts from noise, less from the noised limb warp (default: the model's).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same video).")] = 0,
    width: Annotated[
        int | None, typer.Option(min=16, max=8192, help="Output width (default: the model's).")
    ] = None,
    height: Annotated[
        int | None, typer.Option(min=16, max=8192, help="Output height (default: the model's).")
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(min=0.01, max=240.0, help="Frame rate (default: the pose source's, else 24)."),
    ] = None,
    align: Annotated[bool, typer.Option(help="Re-proportion the motion to the reference's body.")] = False,
    device: Annotated[
        str | None, typer.Option(help="cuda, cuda:1 or cpu (default: cuda if present).")
    ] = None,
    crf: CrfOption = 18,
    reference_thumbnail: Annotated[
        bool,
        typer.Option(
            "--reference-thumbnail",
            help="Embed a small thumbnail of a real person's reference in the manifest "
            "(fictional characters always get one).",
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Animate a reference picture with a pose sequence; the video is always stamped."""
    with progress_bar() as bar:
        task = bar.add_task("watermarking", total=None, visible=False)
        result = open_anima(home, policy=policy).generate(
            reference,
            pose,
            output,
            purpose=purpose,
            fictional=fictional,
            model=model,
            reference_pose=reference_pose,
            frames=frames,
            steps=steps,
            guidance=guidance,
            strength=strength,
            seed=seed,
            width=width,
            height=height,
            fps=fps,
            align=align,
            device=device,
            crf=crf,
            reference_thumbnail=reference_thumbnail,
            progress=lambda done, total: bar.update(task, completed=done, total=total, visible=True),
        )
    say(
        f"[green]generated[/] {escape(str(result.output))}  id [bold]{result.stamp_id}[/]  "
        f"frames {result.frames}"
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
    report = open_anima().models.import_moore(weights_dir, output, half=half)
    counts = ", ".join(f"{name} {count}" for name, count in report.tensors.items())
    say(
        f"[green]imported[/] {escape(str(report.output))}: tensors {counts}; "
        f"{report.recomputed_buffers} position buffers recomputed"
    )


def train(
    config: Annotated[
        Path, typer.Option("--config", help="Training config (.toml), e.g. configs/anima-puppets.toml.")
    ],
) -> None:
    """Train the default model on puppets (resumes from the last checkpoint in the config's work_dir)."""
    say(f"training from {escape(str(config))}; checkpoints, samples and train.log in its work_dir")
    output = open_anima().models.train(config)
    say(f"[green]trained[/] {escape(str(output))}")
