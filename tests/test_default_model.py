"""The shipped default model, anima-puppets: it loads, animates the bundled sample at its own
resolution, and does better than standing still."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anima.generate.runner import DEFAULT_MODEL, default_pipeline
from anima.media import read_image
from anima.pose import PoseSequence
from anima.training.quality import psnr

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def pipe():
    pipeline = default_pipeline("cpu")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_shipped_weights_are_small_safetensors() -> None:
    files = [p for p in DEFAULT_MODEL.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert weights and not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt")]
    assert sum(p.stat().st_size for p in files) < 50 * 2**20
    assert (DEFAULT_MODEL / "MODEL_CARD.md").is_file()


def test_default_model_animates_the_sample(pipe) -> None:
    from anima.pose.render import render_pose
    from anima.puppets import sample_clip

    reference = read_image(SAMPLES / "puppet.png")
    reference_pose = PoseSequence.load(SAMPLES / "puppet.pose.json").keypoints[0]
    motion = PoseSequence.load(SAMPLES / "puppet-turn.pose.json").keypoints[16:24]
    size = pipe.denoising_unet.config.sample_size * pipe.vae_scale_factor
    assert reference.shape[:2] == (size, size)
    frames = pipe(
        reference,
        [render_pose(pose, (size, size)) for pose in motion],
        reference_pose=reference_pose,
        poses=motion,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).frames[0]
    assert frames.shape == (8, size, size, 3)
    video = (frames * 255).round().astype(np.uint8)
    # The sample is a held-out puppet: its true frames are known. The model must follow the motion,
    # which standing still (repeating the reference) does not.
    truth = sample_clip(7_000_002, frames=48, size=(size, size), kind="turning").frames[16:24]
    assert np.array_equal(
        sample_clip(7_000_002, frames=48, size=(size, size), kind="turning").frames[0], reference
    )
    assert psnr(video, truth) > psnr(np.repeat(reference[None], 8, axis=0), truth) + 1.0


def test_generate_cli_uses_the_default_model(studio, settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from anima import Verdict
    from anima.cli import app

    motion = PoseSequence.load(SAMPLES / "puppet-turn.pose.json")
    short = tmp_path / "short.pose.json"
    PoseSequence(motion.keypoints[:8], fps=motion.fps, width=motion.width, height=motion.height).save(short)
    output = tmp_path / "out.mp4"
    args = ["generate", "--reference", str(SAMPLES / "puppet.png"), "--reference-pose",
            str(SAMPLES / "puppet.pose.json"), "--pose", str(short), "--fictional", "--purpose",
            "education", "-o", str(output)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stdout + result.stderr
    report = studio.verify(output, trust=[settings.local_ca_cert])
    assert report.verdict == Verdict.ANIMA_GENERATED
    assert report.manifest.anima["model"] == "anima-puppets"
    assert report.manifest.anima["strength"] == pytest.approx(0.45)
