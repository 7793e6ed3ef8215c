"""The Animate Anyone pipeline at toy size: real diffusers parts, random weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import random_image, tiny_pipeline

from anima.generate.models import PoseGuider, ReferenceReadProcessor, ReferenceWriteProcessor
from anima.generate.pipeline import AnimationPipeline, context_windows

SIZE = 64
NOT_AN_IMAGE = str(Path(__file__).parents[1] / "README.md")


@pytest.fixture(scope="module")
def pipe() -> AnimationPipeline:
    return tiny_pipeline(seed=0)


def _run(
    pipe: AnimationPipeline, reference: np.ndarray, skeletons: list[np.ndarray], seed: int = 0, **kwargs
):
    options = {"num_inference_steps": 2, "context_frames": 4, "context_overlap": 1, "output_type": "np"}
    return pipe(
        reference, skeletons, generator=torch.Generator().manual_seed(seed), **(options | kwargs)
    ).frames


def test_frames_of_the_right_count_and_size(pipe: AnimationPipeline) -> None:
    frames = _run(pipe, random_image(0), [random_image(i) for i in range(7)])
    assert frames.shape == (1, 7, SIZE, SIZE, 3)
    assert frames.min() >= 0 and frames.max() <= 1
    pil = _run(pipe, random_image(0), [random_image(1)] * 2, output_type="pil")
    assert len(pil[0]) == 2 and pil[0][0].size == (SIZE, SIZE)


def test_reference_and_pose_matter_and_seed_reproduces(pipe: AnimationPipeline) -> None:
    poses = [random_image(i) for i in range(4)]
    base = _run(pipe, random_image(0), poses)
    assert np.array_equal(base, _run(pipe, random_image(0), poses))
    assert np.abs(base - _run(pipe, random_image(99), poses)).mean() > 1e-4
    # random toy weights respond weakly to pose, but the same inputs give bit-identical output
    assert np.abs(base - _run(pipe, random_image(0), poses[::-1])).mean() > 1e-5
    assert np.abs(base - _run(pipe, random_image(0), poses, seed=1)).mean() > 1e-4


def test_reference_attention_is_wired_by_processors_not_a_fork(pipe: AnimationPipeline) -> None:
    writers = [
        p for p in pipe.reference_unet.attn_processors.values() if isinstance(p, ReferenceWriteProcessor)
    ]
    readers = {
        n: p for n, p in pipe.denoising_unet.attn_processors.items() if isinstance(p, ReferenceReadProcessor)
    }
    assert len(writers) == len(readers) > 0
    assert all(".attentions." in name and "motion_modules" not in name for name in readers)
    assert type(pipe.denoising_unet).__module__.startswith("diffusers.")


def test_long_video_has_no_seam_at_window_borders(pipe: AnimationPipeline) -> None:
    """Same noise and pose in every frame: frame-to-frame change at a window border must be no
    larger than inside a window (averaging overlaps must not leave a visible jump)."""
    frames = 14
    latents = torch.randn((1, 4, 1, SIZE // 8, SIZE // 8), generator=torch.Generator().manual_seed(3))
    video = _run(
        pipe,
        random_image(0),
        [random_image(5)] * frames,
        latents=latents.repeat(1, 1, frames, 1, 1),
        context_frames=6,
        context_overlap=2,
    )[0]
    windows = context_windows(frames, 6, 2)
    assert len(windows) > 2
    jumps = np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3))
    borders = {w[0] - 1 for w in windows[1:]} | {w[-1] for w in windows[:-1] if w[-1] < frames - 1}
    inside = [jumps[i] for i in range(frames - 1) if i not in borders]
    assert max(jumps[i] for i in borders) <= max(inside) * 1.5 + 1e-4


def test_context_windows_cover_every_frame() -> None:
    assert context_windows(5, 24, 4) == [list(range(5))]
    windows = context_windows(50, 24, 4)
    assert windows[0][0] == 0 and windows[-1][-1] == 49
    assert all(len(w) == 24 for w in windows)
    assert set().union(*map(set, windows)) == set(range(50))


def test_save_and_load_round_trip(pipe: AnimationPipeline, tmp_path: Path) -> None:
    pipe.save_pretrained(tmp_path / "model")
    assert list((tmp_path / "model" / "denoising_unet").glob("*.safetensors"))
    loaded = AnimationPipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    poses = [random_image(i) for i in range(5)]
    np.testing.assert_allclose(
        _run(loaded, random_image(0), poses), _run(pipe, random_image(0), poses), atol=1e-5
    )


def test_half_precision_runs(tmp_path: Path) -> None:
    pipe = tiny_pipeline(seed=0)
    pipe.save_pretrained(tmp_path / "model")
    half = AnimationPipeline.from_pretrained(tmp_path / "model", dtype=torch.float16)
    half.set_progress_bar_config(disable=True)
    assert half.denoising_unet.dtype == torch.float16
    frames = _run(half, random_image(0), [random_image(1)] * 3)
    assert frames.shape == (1, 3, SIZE, SIZE, 3) and np.isfinite(frames).all()


def test_pose_guider_shapes_and_zero_start() -> None:
    guider = PoseGuider(conditioning_embedding_channels=320)
    out = guider(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 320, 8, 12)
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer
    assert len(guider.state_dict()) == 16  # the published pose_guider.pth has 16 keys


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"skeletons": []}, "empty"),
        ({"skeletons": [np.zeros((64, 64, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)]}, "one size"),
        ({"height": 60}, "multiples of 8"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"guidance_scale": 0.5}, "guidance_scale"),
        ({"context_frames": 40}, "context_frames"),
        ({"context_overlap": 4}, "context_overlap"),
        ({"output_type": "gif"}, "output_type"),
        ({"reference": np.zeros((64, 64), np.uint8)}, "reference_image"),
    ],
)
def test_bad_arguments_name_themselves(pipe: AnimationPipeline, kwargs: dict, message: str) -> None:
    reference = kwargs.pop("reference", random_image(0))
    skeletons = kwargs.pop("skeletons", [random_image(1)] * 2)
    with pytest.raises(ValueError, match=message):
        _run(pipe, reference, skeletons, **kwargs)


@pytest.fixture(scope="module")
def faceless_reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A picture with no face (a cup of coffee): animating it needs a --fictional declaration."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("refs") / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny"
    tiny_pipeline(seed=0).save_pretrained(path)
    return path


def test_generate_cli_writes_only_stamped_video(
    settings, tiny_model_dir: Path, faceless_reference: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from anima import Anima, Verdict
    from anima.cli import app

    output = tmp_path / "out.mp4"
    args = [
        "generate",
        "--model",
        str(tiny_model_dir),
        "--reference",
        faceless_reference,
        "--fictional",
        "--purpose",
        "education",
        "--pose",
        "motion:wave",
        "--frames",
        "10",
        "--steps",
        "2",
        "--width",
        "128",
        "-o",
        str(output),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anima-home", "out.mp4"]
    report = Anima(settings.home).verify(output, trust=[settings.local_ca_cert])
    assert report.verdict == Verdict.ANIMA_GENERATED and report.manifest.trusted
    assert report.manifest.anima["kind"] == "generation"
    assert report.manifest.anima["pose"] == "motion:wave" and report.manifest.anima["model"] == "tiny"
    assert report.watermark.payload == report.manifest.anima["watermark"]["payload"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--model": "no-such-model"}, "not an Anima model folder"),
        ({"--pose": "motion:moonwalk"}, "motion"),
        ({"--reference": NOT_AN_IMAGE}, "not a readable image"),
        ({"--purpose": "propaganda"}, "unknown purpose"),
        ({"--width": "100"}, "multiples of 8"),
        ({"-o": "out.avi"}, "must be an .mp4"),
    ],
)
def test_generate_cli_bad_input(
    settings, tiny_model_dir: Path, faceless_reference: str, tmp_path: Path, change, message
) -> None:
    from typer.testing import CliRunner

    from anima.cli import app

    options = {
        "--model": str(tiny_model_dir),
        "--reference": faceless_reference,
        "--fictional": None,
        "--purpose": "education",
        "--pose": "motion:wave",
        "--frames": "4",
        "--steps": "1",
        "-o": str(tmp_path / "out.mp4"),
    }
    options |= {k: (str(tmp_path / v) if k == "-o" else v) for k, v in change.items()}
    args = [item for key, value in options.items() for item in (key, value) if item is not None]
    result = CliRunner().invoke(app, ["generate", *args])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not any(p.suffix in (".mp4", ".avi") for p in tmp_path.iterdir())


def _standing_pose(shift: float = 0.0) -> np.ndarray:
    from anima.pose import builtin_motion

    keypoints = builtin_motion("motion:dance", 6, 12.0, (SIZE, SIZE)).keypoints.copy()
    keypoints[:, :, 0] += shift
    return keypoints


def test_warp_guided_pipeline_needs_keypoints_and_starts_from_the_warp() -> None:
    pipe = tiny_pipeline(seed=0, warp_guided=True)
    assert pipe.warp_guided
    poses = _standing_pose()
    skeletons = [random_image(i) for i in range(len(poses))]
    with pytest.raises(ValueError, match="reference_pose"):
        _run(pipe, random_image(0), skeletons)
    with pytest.raises(ValueError, match="poses"):
        _run(pipe, random_image(0), skeletons, reference_pose=poses[0], poses=poses[:2])
    with pytest.raises(ValueError, match="strength"):
        _run(pipe, random_image(0), skeletons, reference_pose=poses[0], poses=poses, strength=1.5)
    low = _run(pipe, random_image(0), skeletons, reference_pose=poses[0], poses=poses, strength=0.2)
    high = _run(pipe, random_image(0), skeletons, reference_pose=poses[0], poses=poses, strength=1.0)
    assert low.shape == high.shape == (1, len(poses), SIZE, SIZE, 3)
    # Starting from the lightly noised warp keeps the output nearer the warp than pure noise does.
    warp = pipe.limb_warp(random_image(0), poses[0], poses, SIZE, SIZE)[0].permute(0, 2, 3, 1).numpy()
    decoded = pipe.decode_latents(pipe.encode_frames(torch.from_numpy(warp).permute(0, 3, 1, 2), "cpu"))
    assert np.abs(low[0] - decoded.numpy()).mean() < np.abs(high[0] - decoded.numpy()).mean()


def test_latent_guider_refuses_to_run_without_the_warp_latents() -> None:
    guider = tiny_pipeline(seed=0, warp_guided=True).pose_guider
    conditioning = torch.rand(1, 7, SIZE, SIZE)
    with pytest.raises(ValueError, match="latents"):
        guider(conditioning)
    latents = torch.randn(1, 4, SIZE // 8, SIZE // 8)
    torch.nn.init.normal_(guider.conv_out.weight, std=0.1)
    assert not torch.allclose(guider(conditioning, latents), guider(conditioning, torch.zeros_like(latents)))


def test_strength_needs_a_warp_guided_model(pipe: AnimationPipeline) -> None:
    with pytest.raises(ValueError, match="warp-guided"):
        _run(pipe, random_image(0), [random_image(1)] * 2, strength=0.5)


def test_sampling_defaults_travel_with_the_model(tmp_path: Path) -> None:
    pipe = tiny_pipeline(seed=0, warp_guided=True)
    pipe.register_to_config(default_steps=7, default_strength=0.4)
    pipe.save_pretrained(tmp_path / "m")
    loaded = AnimationPipeline.from_pretrained(tmp_path / "m")
    assert loaded.config.default_steps == 7 and loaded.config.default_strength == 0.4
    assert loaded.warp_guided
