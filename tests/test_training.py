"""`anima train` on a tiny config: the loss falls, a stopped run resumes where it stopped, and the
result is a loadable warp-guided pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from anima.cli import app
from anima.generate.pipeline import AnimationPipeline
from anima.training.config import TrainConfig
from anima.training.trainer import Checkpoint, Trainer, learning_rate_schedule, moving_average

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
    assert result.exit_code == 2 and "bad.toml: unknown setting learning_speed" in result.stderr
    path.write_text('output = "m"\nwork_dir = "w"\nlog_every = 0\n')
    result = CliRunner().invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2 and "`log_every` must be at least 1, got 0" in result.stderr
    with pytest.raises(Exception, match="required"):
        (tmp_path / "short.toml").write_text('output = "m"\n')
        TrainConfig.from_toml(tmp_path / "short.toml")


def _toy_stage(work_dir: Path, total: int, stop_after: int | None = None) -> torch.nn.Linear:
    """A linear fit through the trainer's stage loop (checkpoint every 4 steps); ``stop_after``
    steps, it stops the way a killed run does."""
    trainer = Trainer(TrainConfig(output=work_dir / "m", work_dir=work_dir, checkpoint_every=4, log_every=1))
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    calls = 0

    def step() -> torch.Tensor:
        nonlocal calls
        if calls == stop_after:
            raise KeyboardInterrupt
        calls += 1
        inputs = torch.from_numpy(trainer.rng.normal(size=(8, 3))).float()
        targets = inputs.sum(1, keepdim=True) + 0.1 * torch.randn(8, 1)
        return (model(inputs) - targets).pow(2).mean()

    with trainer._progress() as progress:
        trainer._loop("vae", total, {"vae": model}, list(model.parameters()), 0.05, step, progress)
    return model


def _records(work_dir: Path) -> list[tuple[int, float, float]]:
    return [(r["step"], r["loss"], r["lr"]) for r in map(json.loads, (work_dir / "train.log").open())]


def test_resumed_stage_continues_as_if_never_stopped(tmp_path: Path) -> None:
    whole = _toy_stage(tmp_path / "whole", 12)
    with pytest.raises(KeyboardInterrupt):
        _toy_stage(tmp_path / "stopped", 12, stop_after=6)
    resumed = _toy_stage(tmp_path / "stopped", 12)
    # Steps 5 and 6 came after the last checkpoint: they are redone, the same way.
    assert _records(tmp_path / "stopped")[6:] == _records(tmp_path / "whole")[4:]
    for ours, theirs in zip(resumed.parameters(), whole.parameters(), strict=True):
        assert torch.equal(ours, theirs)  # the EMA weights, copied in at the end
    state = Checkpoint(tmp_path / "stopped" / "vae.ckpt").load()
    reference = Checkpoint(tmp_path / "whole" / "vae.ckpt").load()
    assert state["ema"]["optimization_step"] == 12 and state["ema"]["use_ema_warmup"] is False
    for ours, theirs in zip(state["ema"]["shadow_params"], reference["ema"]["shadow_params"], strict=True):
        assert torch.equal(ours, theirs)
    assert state["optimizer"]["param_groups"][0]["lr"] == reference["optimizer"]["param_groups"][0]["lr"]


def test_resumes_a_checkpoint_of_the_hand_rolled_ema(tmp_path: Path) -> None:
    """Checkpoints written before EMAModel held the averaged weights alone; they still resume."""
    whole = _toy_stage(tmp_path / "whole", 8)
    with pytest.raises(KeyboardInterrupt):
        _toy_stage(tmp_path / "old", 8, stop_after=4)
    checkpoint = Checkpoint(tmp_path / "old" / "vae.ckpt")
    state = checkpoint.load()
    checkpoint.save({**state, "ema": state["ema"]["shadow_params"]})
    resumed = _toy_stage(tmp_path / "old", 8)
    for ours, theirs in zip(resumed.parameters(), whole.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_moving_average_keeps_none_of_the_starting_weights() -> None:
    """A constant 0.995 kept 29% of stage 2's zero-initialised motion outputs after 250 steps."""
    parameter = torch.nn.Parameter(torch.zeros(4))
    ema = moving_average([parameter], decay=0.995)
    with torch.no_grad():
        parameter.fill_(1.0)
    ema.step([parameter])
    assert torch.equal(ema.shadow_params[0], torch.ones(4))
    for _ in range(249):
        ema.step([parameter])
    assert ema.cur_decay_value == pytest.approx(250 / 259)  # warm-up: n / (9 + n) at update n
    for _ in range(2000):
        ema.step([parameter])
    assert ema.cur_decay_value == 0.995


def _rates(optimizer: torch.optim.Optimizer, schedule, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_learning_rate_warms_up_then_falls_to_a_tenth() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    rates = _rates(optimizer, learning_rate_schedule(optimizer, 2.0, 40), 40)
    warmup = 5  # a tenth of the stage, plus one
    assert rates[:warmup] == pytest.approx([0.0, 0.4, 0.8, 1.2, 1.6]) and rates[warmup] == 2.0
    assert all(a > b for a, b in zip(rates[warmup:], rates[warmup + 1 :], strict=False))
    assert 0.2 < rates[-1] < 0.21
    # A stage resumed after 25 steps, lengthened to 40 and at another rate, follows today's schedule.
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=9.0)
    resumed = _rates(optimizer, learning_rate_schedule(optimizer, 2.0, 40, done=25), 15)
    assert resumed == pytest.approx(rates[25:])
