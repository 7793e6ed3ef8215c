"""References of any size and shape generate at the model's native size: the picture is scaled to fit
whole and padded, its poses placed by the same box, the fitting recorded in the manifest; a pose that
cannot be fitted is one line of bad input before the consent gate searches for a face."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anima import Anima, BadInput
from anima.config import Settings
from anima.generate.fitting import ModelCanvas, output_size, pad_picture, plan
from anima.generate.request import GenerationRequest
from anima.media import probe_video, read_video
from anima.pose import Fit, PoseSequence, builtin_motion, load_pose, render_video
from anima.provenance.manifest import read_manifest
from anima.puppets import sample_clip

# A turning puppet whose drawn face no face detector takes for a real one, at every size used here.
PUPPET_SEED = 5
PORTRAIT, LANDSCAPE, ODD = (340, 420), (640, 427), (201, 333)


class NoFaces:
    """The face detector, stood in for: these pictures have no face, and the slow search is not what
    is tested here. It counts its calls, so a test can tell whether the gate searched."""

    name, metric, match_threshold = "stub", "euclidean", 0.5

    def __init__(self) -> None:
        self.calls = 0

    def analyze(self, image: np.ndarray) -> list:
        self.calls += 1
        return []

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b))


def puppet(folder: Path, size: tuple[int, int]) -> tuple[Path, Path]:
    """A puppet picture of ``size`` and its exact one-frame pose file."""
    clip = sample_clip(PUPPET_SEED, frames=1, size=size)
    name = f"puppet-{size[0]}x{size[1]}"
    picture, pose = folder / f"{name}.png", folder / f"{name}.pose.json"
    Image.fromarray(clip.frames[0]).save(picture)
    clip.pose().save(pose)
    return picture, pose


def fitting_of(output: Path, settings: Settings) -> dict[str, Any]:
    manifest = read_manifest(output, [settings.local_ca_cert])
    assert manifest.anima is not None
    return manifest.anima["fitting"]


@pytest.fixture
def faces(studio: Anima) -> NoFaces:
    studio.face_backend = NoFaces()  # type: ignore[misc]
    return studio.face_backend  # type: ignore[return-value]


@pytest.fixture(scope="module")
def default_pipe():
    from anima.generate.runner import default_pipeline

    pipe = default_pipeline("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------- geometry, no model


@pytest.mark.parametrize(
    ("source", "output", "box"),
    [
        (PORTRAIT, (128, 128), (12, 0, 116, 128)),
        (LANDSCAPE, (128, 128), (0, 21, 128, 106)),
        (ODD, (128, 128), (25, 0, 102, 128)),
        ((128, 128), (128, 128), (0, 0, 128, 128)),
        (LANDSCAPE, (512, 784), (0, 221, 512, 563)),
    ],
)
def test_letterbox_keeps_the_whole_picture_centred(source, output, box) -> None:
    fit = Fit.letterbox(source, output)
    assert fit.box == box and fit.padded == (source != output)
    left, top, right, bottom = box
    assert fit.to_dict() == {
        "method": "pad",
        "reference": {"width": source[0], "height": source[1]},
        "box": {"left": left, "top": top, "width": right - left, "height": bottom - top},
        "output": {"width": output[0], "height": output[1]},
    }


@pytest.mark.parametrize("source", [PORTRAIT, LANDSCAPE, ODD])
def test_picture_and_pose_are_placed_by_the_same_box(source: tuple[int, int]) -> None:
    """A dot painted where a keypoint is in the picture is where the fitted keypoint is in the output."""
    width, height = source
    points = np.array([[0.1, 0.2], [0.5, 0.5], [0.85, 0.9]])
    keypoints = np.zeros((1, 18, 3))
    keypoints[0, : len(points), :2], keypoints[0, : len(points), 2] = points, 1.0
    fit = Fit.letterbox(source, (128, 128))
    placed = fit.pose(PoseSequence(keypoints, fps=24, width=width, height=height)).pixels()[0]
    for point, where in zip(points, placed, strict=False):
        picture = np.full((height, width, 3), 40, dtype=np.uint8)
        x, y = (point * source).astype(int)
        picture[y - 6 : y + 7, x - 6 : x + 7] = 255
        out = pad_picture(picture, fit, Image.Resampling.BICUBIC)
        assert out.shape == (128, 128, 3)
        assert (out[:, : fit.box[0]] == 40).all() and (out[:, fit.box[2] :] == 40).all()  # the edge colour
        ys, xs = np.nonzero(out[..., 0] > 150)
        assert abs(xs.mean() + 0.5 - where[0]) < 1.0 and abs(ys.mean() + 0.5 - where[1]) < 1.0


def test_margins_take_the_colour_of_the_edge_beside_them() -> None:
    picture = np.zeros((100, 50, 3), dtype=np.uint8)
    picture[:, 0], picture[:, -1] = (200, 10, 10), (10, 200, 10)
    out = pad_picture(picture, Fit.letterbox((50, 100), (100, 100)), Image.Resampling.BICUBIC)
    assert (out[:, :20] == (200, 10, 10)).all() and (out[:, -20:] == (10, 200, 10)).all()


def test_output_size_is_native_or_follows_the_picture() -> None:
    canvas = ModelCanvas((512, 784), 8, warp_guided=False)
    assert output_size(canvas, LANDSCAPE, None, None) == (512, 784)
    assert output_size(canvas, PORTRAIT, 128, None) == (128, 160)  # 158.1 rounded; the fit pads the rest
    assert output_size(canvas, PORTRAIT, None, 160) == (128, 160)
    with pytest.raises(BadInput, match="multiples of 8"):
        output_size(canvas, PORTRAIT, 100, 100)


def test_poses_are_drawn_for_the_picture_and_placed_in_its_box(tmp_path: Path) -> None:
    fit = Fit.letterbox(PORTRAIT, (128, 128))
    left, top, right, bottom = fit.box
    motion = load_pose("motion:wave", (128, 128), fit=fit, num_frames=3)
    assert motion.keypoints is not None and motion.keypoints.size == (128, 128)
    pixels = motion.keypoints.pixels()
    assert (pixels[..., 0] >= left).all() and (pixels[..., 0] <= right).all()
    assert not motion.frames[:, :, : left - 2].any() and not motion.frames[:, :, right + 2 :].any()

    track = builtin_motion("motion:walk", 3, 24.0, (680, 840))  # the picture's shape, twice its size
    track.save(tmp_path / "walk.json")
    placed = load_pose(str(tmp_path / "walk.json"), (128, 128), fit=fit)
    assert placed.keypoints is not None
    np.testing.assert_allclose(placed.keypoints.keypoints, fit.pose(track).keypoints, atol=1e-5)

    render_video(builtin_motion("wave", frames=2, fps=24, size=(340, 420)), tmp_path / "skeleton.mp4")
    skeleton = load_pose(str(tmp_path / "skeleton.mp4"), (128, 128), fit=fit)
    assert skeleton.frames.shape == (2, 128, 128, 3) and not skeleton.frames[:, :, :left].any()
    assert skeleton.frames[:, top:bottom, left:right].any()


def test_an_unaligned_pose_of_another_shape_cannot_be_fitted(tmp_path: Path) -> None:
    builtin_motion("motion:walk", 3, 24.0, (640, 360)).save(tmp_path / "wide.json")
    request = GenerationRequest(reference=tmp_path / "r.png", pose=str(tmp_path / "wide.json"))
    expected = (
        r"wide.json: the pose's canvas is 640x360 but the reference picture is 340x420: "
        r"the aspect ratios differ \(it would not lie over the character"
    )
    with pytest.raises(BadInput, match=expected):
        plan(request, PORTRAIT, ModelCanvas((512, 784), 8, warp_guided=False))
    aligned = GenerationRequest(reference=tmp_path / "r.png", pose=str(tmp_path / "wide.json"), align=True)
    assert plan(aligned, PORTRAIT, ModelCanvas((512, 784), 8, warp_guided=False)).output == (512, 784)
    assert plan(request, PORTRAIT, ModelCanvas((128, 128), 8, warp_guided=True)).output == (128, 128)


# --------------------------------------------------------------------- the shipped default model


def test_default_models_canvas_is_read_without_loading_it(default_pipe) -> None:
    from anima.generate.runner import DEFAULT_MODEL

    assert ModelCanvas.read(DEFAULT_MODEL) == ModelCanvas.of(default_pipe) == ModelCanvas((128, 128), 4, True)


@pytest.mark.parametrize("size", [PORTRAIT, LANDSCAPE, ODD], ids=["portrait", "landscape", "odd"])
def test_any_reference_generates_at_the_native_size(
    studio: Anima, settings: Settings, faces: NoFaces, default_pipe, tmp_path: Path, size: tuple[int, int]
) -> None:
    picture, pose = puppet(tmp_path, size)
    result = studio.generate(
        picture, "motion:wave", tmp_path / "out.mp4", purpose="education", fictional=True,
        model=default_pipe, reference_pose=pose, frames=4,
    )  # fmt: skip
    video = read_video(result.output)
    assert video.frames.shape == (4, 128, 128, 3)
    fitting = fitting_of(result.output, settings)
    assert fitting == Fit.letterbox(size, (128, 128)).to_dict()
    box = fitting["box"]
    left, top, right, bottom = box["left"], box["top"], box["left"] + box["width"], box["top"] + box["height"]
    margins = np.ones((128, 128), dtype=bool)
    margins[max(0, top - 4) : bottom + 4, max(0, left - 4) : right + 4] = False
    fit = Fit.letterbox(size, (128, 128))
    padded = pad_picture(np.asarray(Image.open(picture)), fit, Image.Resampling.BICUBIC)
    # the margins stay the reference's backdrop: no character appears there
    assert np.abs(video.frames[:, margins].astype(float) - padded[margins]).mean() < 8
    assert faces.calls >= 1  # the gate ran (and the drift check)


def test_cli_generates_an_odd_sized_reference(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from anima.cli import app

    monkeypatch.setattr(Anima, "face_backend", NoFaces())
    picture, pose = puppet(tmp_path, ODD)
    output = tmp_path / "out.mp4"
    args = ["generate", "--reference", str(picture), "--reference-pose", str(pose), "--pose", "motion:wave",
            "--frames", "4", "--fictional", "--purpose", "education", "-o", str(output)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stdout + result.stderr
    info = probe_video(output)
    assert (info.width, info.height, info.num_frames) == (128, 128, 4)
    assert fitting_of(output, settings)["box"] == {"left": 25, "top": 0, "width": 77, "height": 128}


def test_a_reference_pose_of_another_picture_is_refused_before_the_face_search(
    studio: Anima, faces: NoFaces, tmp_path: Path
) -> None:
    picture, _ = puppet(tmp_path, LANDSCAPE)
    _, portrait_pose = puppet(tmp_path, PORTRAIT)
    with pytest.raises(BadInput) as error:
        studio.generate(
            picture, "motion:wave", tmp_path / "out.mp4", purpose="education", fictional=True,
            reference_pose=portrait_pose, frames=4,
        )  # fmt: skip
    message = str(error.value)
    assert "\n" not in message
    assert message.endswith(
        "puppet-340x420.pose.json: the reference pose's canvas is 340x420 "
        "but the reference picture is 640x427: the aspect ratios differ "
        "(give the pose of this picture, or leave it out to have it extracted)"
    )
    assert faces.calls == 0 and not (tmp_path / "out.mp4").exists()
    assert not list(studio.audit.log(limit=5))  # no gate decision was recorded


# --------------------------------------------------------------------- imported (Moore-style) weights


@pytest.fixture(scope="module")
def moore_style_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy model saved with Moore-AnimateAnyone's settings: Lanczos, whole-picture CLIP input, a
    portrait native size (512 x 784 for the real weights; 128 x 192 here), no limb warp."""
    from tiny import tiny_pipeline

    from anima.generate.configs import MOORE_PIPELINE_CONFIG

    settings = MOORE_PIPELINE_CONFIG | {"default_width": 128, "default_height": 192}
    path = tmp_path_factory.mktemp("models") / "moore-style"
    tiny_pipeline(seed=0, **settings).save_pretrained(path)
    return path


def test_imported_weights_generate_at_their_native_size(
    studio: Anima, settings: Settings, faces: NoFaces, moore_style_dir: Path, tmp_path: Path
) -> None:
    from anima.generate.pipeline import AnimationPipeline

    canvas = ModelCanvas.read(moore_style_dir)
    assert canvas == ModelCanvas.of(AnimationPipeline.from_pretrained(moore_style_dir))
    assert canvas == ModelCanvas((128, 192), 8, warp_guided=False)
    picture, _ = puppet(tmp_path, LANDSCAPE)
    track = tmp_path / "track.json"
    builtin_motion("motion:dance", 4, 12.0, (1280, 854)).save(track)  # the picture's shape
    result = studio.generate(
        picture, track, tmp_path / "out.mp4", purpose="education", fictional=True,
        model=moore_style_dir, steps=1,
    )  # fmt: skip
    assert read_video(result.output).frames.shape == (4, 192, 128, 3)
    assert fitting_of(result.output, settings)["box"] == {"left": 0, "top": 53, "width": 128, "height": 85}

    wide = tmp_path / "wide.json"
    builtin_motion("motion:dance", 4, 12.0, (640, 360)).save(wide)
    calls = faces.calls
    with pytest.raises(BadInput, match="the aspect ratios differ"):
        studio.generate(
            picture, wide, tmp_path / "refused.mp4", purpose="education", fictional=True,
            model=moore_style_dir, steps=1,
        )  # fmt: skip
    assert faces.calls == calls and not (tmp_path / "refused.mp4").exists()
