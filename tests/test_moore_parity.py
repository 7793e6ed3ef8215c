"""Running a model the way Moore-AnimateAnyone runs it: motion modules that normalise each frame on
its own, closed-loop context windows, the whole reference for CLIP and Lanczos resizes; all of it
recorded in the model's config, so that older folders (and the shipped model) behave as before."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from tiny import random_image, tiny_pipeline

from anima.generate.models import FrameGroupNorm, set_motion_norm
from anima.generate.pipeline import AnimationPipeline, context_windows
from anima.generate.runner import DEFAULT_MODEL

SIZE = 64
# The settings added with Moore parity, and what a folder saved without them gets.
NEW_KEYS = {
    "default_context_overlap": None,
    "default_context_wrap": False,
    "motion_norm": "window",
    "clip_input": "center_crop",
    "resample": "bicubic",
}


def _run(pipe: AnimationPipeline, frames: int = 5, **kwargs) -> np.ndarray:
    options = {"num_inference_steps": 2, "context_frames": 3, "context_overlap": 1, "output_type": "np"}
    return pipe(
        random_image(0),
        [random_image(i) for i in range(1, frames + 1)],
        generator=torch.Generator().manual_seed(0),
        **(options | kwargs),
    ).frames


# -- the motion modules' normalisation --------------------------------------------------------------
def _linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    out = x @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


def _layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias


def _sinusoids(length: int, dim: int) -> torch.Tensor:
    """AnimateDiff's temporal position table: sin on even channels, cos on odd, wavelengths to 10^4."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    frequency = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return table


def _attention(attn, x: torch.Tensor) -> torch.Tensor:
    """Multi-head softmax attention of a sequence of frames over itself."""
    sequences, frames, _ = x.shape
    heads = attn.heads
    q, k, v = (_linear(x, p).reshape(sequences, frames, heads, -1) for p in (attn.to_q, attn.to_k, attn.to_v))
    scores = torch.einsum("sqhd,skhd->shqk", q, k) / math.sqrt(q.shape[-1])
    mixed = torch.einsum("shqk,skhd->sqhd", scores.softmax(-1), v).reshape(sequences, frames, -1)
    return _linear(mixed, attn.to_out[0])


def _feed_forward(ff, x: torch.Tensor) -> torch.Tensor:
    hidden, gate = _linear(x, ff.net[0].proj).chunk(2, dim=-1)
    return _linear(hidden * 0.5 * gate * (1 + torch.erf(gate / math.sqrt(2))), ff.net[2])


def motion_module_by_hand(module, x: torch.Tensor, frames: int) -> torch.Tensor:
    """One AnimateDiff motion module as Moore-AnimateAnyone computes it: GroupNorm of every frame on
    its own, then per pixel a transformer over the frames (two self-attentions with the position
    table added to their input, a GEGLU feed-forward), projected back and added to the input.
    ``x``: (videos * frames, C, H, W)."""
    rows, channels, height, width = x.shape
    groups = x.reshape(rows, module.norm.num_groups, -1)  # one row per frame: per-frame statistics
    mean = groups.mean(-1, keepdim=True)
    variance = ((groups - mean) ** 2).mean(-1, keepdim=True)
    normed = ((groups - mean) / torch.sqrt(variance + module.norm.eps)).reshape(x.shape)
    normed = normed * module.norm.weight[:, None, None] + module.norm.bias[:, None, None]
    videos = rows // frames
    sequences = normed.reshape(videos, frames, channels, height * width).permute(0, 3, 1, 2)
    hidden = _linear(sequences.reshape(-1, frames, channels), module.proj_in)
    table = _sinusoids(frames, hidden.shape[-1])
    for block in module.transformer_blocks:
        for attn, norm in ((block.attn1, block.norm1), (block.attn2, block.norm2)):
            hidden = hidden + _attention(attn, _layer_norm(hidden, norm) + table)
        hidden = hidden + _feed_forward(block.ff, _layer_norm(hidden, block.norm3))
    out = _linear(hidden, module.proj_out).reshape(videos, height * width, frames, channels)
    return x + out.permute(0, 2, 3, 1).reshape(x.shape)


@pytest.fixture(scope="module")
def motion_module():
    """A motion module of a per-frame pipeline, in float64 with random weights everywhere."""
    pipe = tiny_pipeline(seed=0, motion_norm="per_frame")
    module = copy.deepcopy(pipe.denoising_unet.down_blocks[0].motion_modules[0]).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.3)
    return module


def _video_features(frames: int) -> torch.Tensor:
    """Two videos' features whose frames differ in level and contrast, as a moving video's do."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, frames, 32, 4, 4, generator=generator, dtype=torch.float64)
    ramp = torch.arange(frames, dtype=torch.float64)[None, :, None, None, None]
    return (x * (1 + 0.5 * ramp) + ramp).reshape(2 * frames, 32, 4, 4)


def test_per_frame_motion_norm_is_moores_motion_module(motion_module) -> None:
    frames = 6
    x = _video_features(frames)
    assert isinstance(motion_module.norm, FrameGroupNorm)
    for block in motion_module.transformer_blocks:
        # diffusers' position table (float32) is the same sinusoids ...
        stored = block.pos_embed.pe[0, :frames]
        np.testing.assert_allclose(stored, _sinusoids(frames, stored.shape[-1]), atol=1e-6)
        # ... exact in float64 for the comparison below.
        block.pos_embed.pe = _sinusoids(block.pos_embed.pe.shape[1], stored.shape[-1])[None]
    with torch.no_grad():
        per_frame = motion_module(x, num_frames=frames)
        by_hand = motion_module_by_hand(motion_module, x, frames)
        assert (per_frame - by_hand).abs().max() < 1e-10
        window = copy.deepcopy(motion_module)
        set_motion_norm(window, "window")
        assert type(window.norm) is torch.nn.GroupNorm
        across_frames = window(x, num_frames=frames)
    relative = ((across_frames - by_hand).norm() / (by_hand - x).norm()).item()
    assert relative > 0.05  # diffusers' window norm computes something else (measured: 0.117)


def _motion_norms(pipe: AnimationPipeline) -> list[torch.nn.Module]:
    norms = [m.norm for m in pipe.denoising_unet.modules() if isinstance(m, AnimateDiffTransformer3D)]
    assert len(norms) >= 7  # every level's motion modules (7 in the tiny UNet, 10 in the shipped one)
    return norms


def test_motion_norm_is_config_and_survives_save_and_load(tmp_path: Path) -> None:
    pipe = tiny_pipeline(seed=0, motion_norm="per_frame")
    assert all(type(norm) is FrameGroupNorm for norm in _motion_norms(pipe))
    per_frame = _run(pipe)
    window = tiny_pipeline(seed=0)
    assert np.abs(per_frame - _run(window)).max() > 1e-4
    pipe.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model_index.json").read_text())["motion_norm"] == "per_frame"
    loaded = AnimationPipeline.from_pretrained(tmp_path / "m")
    loaded.set_progress_bar_config(disable=True)
    assert all(type(norm) is FrameGroupNorm for norm in _motion_norms(loaded))
    np.testing.assert_allclose(_run(loaded), per_frame, atol=1e-5)


# -- context windows ---------------------------------------------------------------------------------
def test_closed_loop_windows_are_moores_schedule() -> None:
    assert context_windows(72, 24, 4, wrap=True) == [
        list(range(0, 24)),
        list(range(20, 44)),
        list(range(40, 64)),
        [*range(60, 72), *range(0, 12)],
    ]
    assert context_windows(72, 24, 4) == [list(range(s, s + 24)) for s in (0, 20, 40, 48)]
    assert context_windows(20, 24, 4, wrap=True) == [list(range(20))]


def test_context_defaults_come_from_the_config() -> None:
    pipe = tiny_pipeline(
        seed=0, default_context_frames=3, default_context_overlap=1, default_context_wrap=True
    )
    windows = []
    handle = pipe.denoising_unet.register_forward_pre_hook(lambda _m, args: windows.append(args[0].shape[2]))
    try:
        looped = pipe(
            random_image(0), [random_image(i) for i in range(1, 8)], num_inference_steps=1, output_type="np"
        ).frames
        assert len(windows) == len(context_windows(7, 3, 1, wrap=True)) == 4
        windows.clear()
        open_ended = _run(pipe, frames=7, num_inference_steps=1, context_frames=3, context_wrap=False)
        assert len(windows) == len(context_windows(7, 3, 1)) == 3
    finally:
        handle.remove()
    assert np.abs(looped - open_ended).max() > 1e-4


# -- the reference's way into CLIP, and the resize filter ----------------------------------------------
def test_resize_clip_input_keeps_the_whole_portrait() -> None:
    portrait = random_image(3, 96, 48)
    pipe = tiny_pipeline(seed=0, clip_input="resize")
    extractor = pipe.feature_extractor
    side = extractor.crop_size["height"]
    squashed = PIL.Image.fromarray(portrait).resize((side, side), PIL.Image.Resampling.BICUBIC)
    plain = (np.asarray(squashed, np.float64) / 255 - extractor.image_mean) / extractor.image_std
    expected = torch.from_numpy(plain).permute(2, 0, 1)[None]
    assert (pipe.clip_pixels(portrait).double() - expected).abs().max() < 1e-5
    cropped = tiny_pipeline(seed=0).clip_pixels(portrait)  # the default: CLIP's centre crop
    assert (cropped.double() - expected).abs().max() > 0.5


def test_resample_filter_is_config() -> None:
    frame = random_image(4, 48, 80)
    for name, resample in (
        ("lanczos", PIL.Image.Resampling.LANCZOS),
        ("bicubic", PIL.Image.Resampling.BICUBIC),
    ):
        pipe = tiny_pipeline(seed=0, resample=name)
        resized = np.asarray(PIL.Image.fromarray(frame).resize((SIZE, SIZE), resample))
        tensor = pipe._image_tensor(frame, SIZE, SIZE, "frame")
        assert np.array_equal((tensor[0].permute(1, 2, 0) * 255).round().byte().numpy(), resized), name


@pytest.mark.parametrize(
    ("setting", "value"), [("motion_norm", "frames"), ("clip_input", "crop"), ("resample", "area")]
)
def test_unknown_settings_are_refused(setting: str, value: str) -> None:
    with pytest.raises(ValueError, match=setting):
        tiny_pipeline(seed=0, **{setting: value})


# -- folders saved before these settings existed -----------------------------------------------------
def test_shipped_model_keeps_its_behaviour() -> None:
    saved = json.loads((DEFAULT_MODEL / "model_index.json").read_text())
    assert not set(NEW_KEYS) & set(saved)  # saved before the settings existed
    pipe = AnimationPipeline.from_pretrained(DEFAULT_MODEL)
    assert {key: pipe.config[key] for key in NEW_KEYS} == NEW_KEYS
    assert pipe.config.default_context_frames == 8 and pipe.config.default_steps == 10
    assert all(type(norm) is torch.nn.GroupNorm for norm in _motion_norms(pipe))


def test_folder_saved_without_the_new_settings_runs_as_before(tmp_path: Path) -> None:
    pipe = tiny_pipeline(seed=0, **NEW_KEYS)
    pipe.save_pretrained(tmp_path / "old")
    index = tmp_path / "old" / "model_index.json"
    saved = json.loads(index.read_text())
    index.write_text(json.dumps({k: v for k, v in saved.items() if k not in NEW_KEYS}))
    loaded = AnimationPipeline.from_pretrained(tmp_path / "old")
    loaded.set_progress_bar_config(disable=True)
    assert {key: loaded.config[key] for key in NEW_KEYS} == NEW_KEYS
    np.testing.assert_allclose(_run(loaded, frames=7), _run(pipe, frames=7), atol=1e-5)
