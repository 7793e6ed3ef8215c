"""The per-limb warp: geometry alone, the baseline the default model is guided by and measured against."""

from __future__ import annotations

import numpy as np

from anima.generate.warp import body_mask, limb_warp, warp_sequence
from anima.pose import builtin_motion

SIZE = (96, 128)  # width, height


def _poses() -> np.ndarray:
    return builtin_motion("motion:dance", 8, 12.0, SIZE).keypoints


def _picture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((SIZE[1], SIZE[0], 3)) * 255).astype(np.uint8)


def test_same_pose_returns_the_reference_on_the_body() -> None:
    poses = _poses()
    reference = _picture()
    result = limb_warp(reference, poses[0], poses[0])
    body = result.coverage > 0.99
    assert body.sum() > 500
    assert np.abs(result.image[body].astype(int) - reference[body]).max() <= 1


def test_translated_pose_moves_the_body_with_it() -> None:
    poses = _poses()
    reference = _picture()
    moved = poses[0].copy()
    moved[:, 0] += 10 / SIZE[0]
    result = limb_warp(reference, poses[0], moved)
    body = result.coverage > 0.99
    ys, xs = np.nonzero(body)
    keep = xs >= 10
    source = reference[ys[keep], xs[keep] - 10]
    assert np.abs(result.image[ys[keep], xs[keep]].astype(int) - source).mean() < 2


def test_background_is_the_reference_with_its_body_painted_out() -> None:
    poses = _poses()
    reference = np.full((SIZE[1], SIZE[0], 3), 40, np.uint8)
    mask = body_mask(poses[0], SIZE)
    reference[mask] = 220  # a bright body on a dark background
    moved = poses[0].copy()
    moved[:, 0] += 30 / SIZE[0]
    result = limb_warp(reference, poses[0], moved)
    vacated = mask & (result.coverage == 0)
    assert vacated.sum() > 100
    assert result.image[vacated].mean() < 80  # no ghost of the body where it stood


def test_sequence_shapes_and_missing_skeleton() -> None:
    poses = _poses()
    images, coverage = warp_sequence(_picture(), poses[0], poses)
    assert images.shape == (len(poses), SIZE[1], SIZE[0], 3) and images.dtype == np.uint8
    assert coverage.shape == (len(poses), SIZE[1], SIZE[0]) and 0 <= coverage.min() <= coverage.max() <= 1
    nobody = poses[0].copy()
    nobody[:, 2] = 0
    result = limb_warp(_picture(), poses[0], nobody)
    assert result.coverage.max() == 0
