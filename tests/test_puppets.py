"""Puppet clips: deterministic, keypoints exact against what is drawn, kinds as promised."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from anima.cli import app
from anima.puppets import (
    CLIP_KINDS,
    PuppetClip,
    contact_sheet,
    render_clip,
    sample_character,
    sample_clip,
    sample_motion,
)

NOSE, NECK, R_SHOULDER, L_SHOULDER, R_EYE, L_EYE = 0, 1, 2, 5, 14, 15


@pytest.fixture(scope="module")
def clips() -> dict[tuple[str, int], PuppetClip]:
    return {(kind, seed): sample_clip(seed, frames=24, kind=kind) for kind in CLIP_KINDS for seed in range(3)}


def test_same_seed_same_bytes_other_seed_differs() -> None:
    a, b, c = sample_clip(11, frames=6), sample_clip(11, frames=6), sample_clip(12, frames=6)
    assert a.frames.tobytes() == b.frames.tobytes() and np.array_equal(a.keypoints, b.keypoints)
    assert np.array_equal(a.masks, b.masks) and a.kind == b.kind
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.keypoints, c.keypoints)


def test_shapes_and_types() -> None:
    clip = sample_clip(3, frames=5, size=(96, 64), fps=8.0)
    assert clip.frames.shape == (5, 64, 96, 3) and clip.frames.dtype == np.uint8
    assert clip.keypoints.shape == (5, 18, 3) and clip.keypoints.dtype == np.float64
    assert clip.masks.shape == (5, 64, 96) and clip.masks.dtype == bool
    assert clip.kind in CLIP_KINDS and clip.fps == 8.0
    sequence = clip.pose()
    assert sequence.size == (96, 64) and sequence.num_frames == 5
    assert set(np.unique(clip.keypoints[..., 2])) <= {0.0, 1.0}


def test_visible_keypoints_lie_on_the_drawn_character(clips: dict[tuple[str, int], PuppetClip]) -> None:
    for (kind, seed), clip in clips.items():
        _, height, width = clip.masks.shape
        for f in range(len(clip.frames)):
            for joint, (x, y, confidence) in enumerate(clip.keypoints[f]):
                col, row = int(np.floor(x * width)), int(np.floor(y * height))
                if confidence < 1 or not (0 <= col < width and 0 <= row < height):
                    continue
                window = clip.masks[f, max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2]
                assert window.any(), f"{kind} seed {seed} frame {f} joint {joint} at ({col}, {row}) not drawn"
            col, row = (clip.keypoints[f, NECK, :2] * (width, height)).astype(int)
            assert clip.masks[f, row, col], f"{kind} seed {seed} frame {f}: the neck is not drawn"


def test_character_fills_most_of_the_frame_height(clips: dict[tuple[str, int], PuppetClip]) -> None:
    for clip in clips.values():
        rows = np.flatnonzero(clip.masks[0].any(axis=1))
        assert 0.6 < (rows[-1] - rows[0] + 1) / clip.masks.shape[1] < 0.95


def test_frame_zero_faces_the_camera(clips: dict[tuple[str, int], PuppetClip]) -> None:
    for clip in clips.values():
        first = clip.keypoints[0]
        assert first[[NOSE, R_EYE, L_EYE], 2].tolist() == [1.0, 1.0, 1.0]
        assert first[R_SHOULDER, 0] < first[L_SHOULDER, 0]
        assert first[R_EYE, 0] < first[L_EYE, 0]


def test_turning_clips_show_the_back(clips: dict[tuple[str, int], PuppetClip]) -> None:
    for seed in range(3):
        clip = clips[("turning", seed)]
        assert (clip.keypoints[:, NOSE, 2] == 0).any()
        assert (clip.keypoints[:, R_SHOULDER, 0] > clip.keypoints[:, L_SHOULDER, 0]).any()


def test_front_kinds_stay_front_facing(clips: dict[tuple[str, int], PuppetClip]) -> None:
    for kind in ("rigid-front", "non-rigid"):
        for seed in range(3):
            assert (clips[(kind, seed)].keypoints[:, NOSE, 2] == 1).all()
    for seed in range(10):
        assert np.degrees(np.abs(sample_motion(seed, 24, "rigid-front").yaw)).max() < 25
        assert np.degrees(np.abs(sample_motion(seed, 24, "non-rigid").yaw)).max() < 40


def test_kinds_dress_as_promised() -> None:
    for seed in range(20):
        loose = sample_character(seed, "non-rigid")
        assert loose.has_skirt or loose.has_long_hair or loose.has_loose_sleeves
        tight = sample_character(seed, "rigid-front")
        assert not (tight.has_skirt or tight.has_long_hair or tight.has_loose_sleeves)
    character = sample_character(5)
    assert pickle.loads(pickle.dumps(character)) == character


def test_motion_is_smooth(clips: dict[tuple[str, int], PuppetClip]) -> None:
    for (kind, seed), clip in clips.items():
        step = np.linalg.norm(np.diff(clip.keypoints[..., :2], axis=0), axis=-1).max()
        assert step < 0.08, f"{kind} seed {seed}: a keypoint jumps {step:.3f} of the frame"


def test_render_clip_accepts_sampled_parts_and_rejects_bad_kinds() -> None:
    clip = render_clip(sample_character(2, "non-rigid"), sample_motion(2, 4, "non-rigid"), size=(64, 64))
    assert clip.frames.shape == (4, 64, 64, 3) and clip.kind == "non-rigid"
    with pytest.raises(ValueError, match="kind"):
        sample_clip(0, kind="flying")


def test_contact_sheet_grid() -> None:
    sheet = contact_sheet([0, 1], frames_per_clip=3, size=(64, 64))
    assert sheet.dtype == np.uint8 and sheet.shape[0] == 2 * 64 and sheet.shape[2] == 3
    assert sheet.shape[1] > 3 * 64


def test_cli_puppets_sheet(tmp_path: Path) -> None:
    output = tmp_path / "sheet.png"
    result = CliRunner().invoke(
        app, ["puppets", "sheet", "-o", str(output), "--count", "2", "--frames", "3", "--size", "64"]
    )
    assert result.exit_code == 0, result.output
    assert "drew" in result.stdout and output.exists()
    image = cv2.imread(str(output))
    assert image.shape[0] == 2 * 64 and image.shape[1] > 3 * 64
    result = CliRunner().invoke(app, ["puppets", "sheet", "-o", str(tmp_path / "bad.png"), "--count", "0"])
    assert result.exit_code == 2 and "--count" in result.stderr
    assert not (tmp_path / "bad.png").exists()
