"""`anima train` on a tiny config: the loss falls, a stopped run resumes where it stopped, and the
result is a loadable warp-guided pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from anima.cli import app
from anima.generate.pipeline import AnimationPipeline
from anima.training.trainer import TrainConfig

TINY = """
output = "model"
work_dir = "work"
train_clips = 6
clip_length = 6
vae_steps = {vae_steps}
vae_batch = 4
vae_crop = 32
vae_lr = 2e-3
image_steps = {image_steps}
image_batch = 2
motion_steps = 2
motion_batch = 1
clip_frames = 2
checkpoint_every = 5
sample_every = 1000
log_every = 1
validation_seeds = [900001]

[architecture]
size = 32
latent_channels = 4
vae_channels = [16, 16, 16]
unet_channels = [16, 32, 32]
attention_heads = 2
clip_width = 16
clip_image_size = 32
motion_frames = 4
default_steps = 4
default_strength = 0.5
"""


def _write_config(folder: Path, vae_steps: int, image_steps: int) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY.format(vae_steps=vae_steps, image_steps=image_steps))
    return path


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "work" / "train.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    result = CliRunner().invoke(app, ["train", "--config", str(_write_config(folder, 40, 6))])
    assert result.exit_code == 0, result.stdout + result.stderr
    return folder


def test_short_run_lowers_the_vae_loss(trained: Path) -> None:
    losses = [r["loss"] for r in _log(trained) if r["stage"] == "vae" and "loss" in r]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])


def test_output_is_a_warp_guided_pipeline_that_animates(trained: Path) -> None:
    from anima.puppets import sample_clip
    from anima.training.trainer import generate_clip

    pipe = AnimationPipeline.from_pretrained(trained / "model")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.warp_guided and pipe.config.default_strength == 0.5
    clip = sample_clip(3, frames=4, size=(32, 32))
    frames = generate_clip(pipe, clip, np.arange(1, 4))
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8


def test_resumes_from_its_checkpoint(trained: Path) -> None:
    before = _log(trained)
    config = str(_write_config(trained, 40, 9))
    result = CliRunner().invoke(app, ["train", "--config", config])
    # The image stage continues after step 6, not from the start, and a finished stage is not
    # redone; but the motion stage was trained on the 6-step image stage: it must not be reused.
    new = _log(trained)[len(before) :]
    assert [r["step"] for r in new if r["stage"] == "image" and "loss" in r] == [7, 8, 9]
    assert not any(r["stage"] == "vae" for r in new)
    assert result.exit_code == 2 and "motion.ckpt" in result.stderr and "delete it" in result.stderr
    (trained / "work" / "motion.ckpt").unlink()
    result = CliRunner().invoke(app, ["train", "--config", config])
    assert result.exit_code == 0, result.stdout + result.stderr
    pipe = AnimationPipeline.from_pretrained(trained / "model")
    assert pipe.config.default_context_frames == 2


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('output = "m"\nwork_dir = "w"\nlearning_speed = 3\n')
    result = CliRunner().invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2 and "unknown settings learning_speed" in result.stderr
    path.write_text('output = "m"\nwork_dir = "w"\nlog_every = 0\n')
    result = CliRunner().invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2 and "`log_every` must be a positive integer" in result.stderr
    with pytest.raises(Exception, match="required"):
        (tmp_path / "short.toml").write_text('output = "m"\n')
        TrainConfig.from_toml(tmp_path / "short.toml")
