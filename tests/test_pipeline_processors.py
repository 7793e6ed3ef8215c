"""diffusers' attention switches (slicing, fused QKV, default processors, xFormers) must not drop
reference attention silently: the pipeline's own methods keep it, and a UNet-level change that
drops it makes the next call fail with a clear error."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
    SlicedAttnProcessor,
)
from tiny import random_image, tiny_pipeline

from anima.generate.models import ReferenceReadProcessor, ReferenceWriteProcessor
from anima.generate.pipeline import AnimationPipeline

SIZE = 64


def _run(pipe: AnimationPipeline) -> np.ndarray:
    return pipe(
        random_image(0),
        [random_image(i) for i in range(1, 5)],
        num_inference_steps=2,
        context_frames=3,
        context_overlap=1,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).frames


@pytest.fixture(scope="module")
def baseline() -> np.ndarray:
    return _run(tiny_pipeline(seed=0))


def _reference_processors(pipe: AnimationPipeline) -> list:
    """The processors on the layers that carry reference attention, writers then readers."""
    found = []
    for unet in (pipe.reference_unet, pipe.denoising_unet):
        found += [p for n, p in unet.attn_processors.items() if ".attentions." in n and "attn1" in n]
    return found


def _assert_reference_attention(pipe: AnimationPipeline, **settings) -> None:
    processors = _reference_processors(pipe)
    half = len(processors) // 2
    assert all(isinstance(p, ReferenceWriteProcessor) for p in processors[:half])
    assert all(isinstance(p, ReferenceReadProcessor) for p in processors[half:])
    assert all(p.bank is pipe.reference_bank for p in processors)
    for name, value in settings.items():
        assert all(getattr(p, name) == value for p in processors), name


def _motion_processors(pipe: AnimationPipeline) -> list:
    return [p for n, p in pipe.denoising_unet.attn_processors.items() if "motion_modules" in n]


@pytest.mark.parametrize("slice_size", ["auto", "max", 1])
def test_attention_slicing_keeps_reference_attention(baseline: np.ndarray, slice_size) -> None:
    pipe = tiny_pipeline(seed=0)
    pipe.enable_attention_slicing(slice_size)
    expected = {"auto": 2, "max": 1, 1: 1}[slice_size]  # the tiny UNets have 4 heads a layer
    _assert_reference_attention(pipe, slice_size=expected)
    assert all(isinstance(p, SlicedAttnProcessor) for p in _motion_processors(pipe))
    np.testing.assert_allclose(_run(pipe), baseline, atol=1e-5)
    pipe.disable_attention_slicing()
    _assert_reference_attention(pipe, slice_size=None)
    assert np.array_equal(_run(pipe), baseline)


def test_fused_qkv_keeps_reference_attention_and_really_runs_fused(baseline: np.ndarray) -> None:
    pipe = tiny_pipeline(seed=0)
    pipe.fuse_qkv_projections()
    _assert_reference_attention(pipe, fused=True)
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in _motion_processors(pipe))
    fused = _run(pipe)
    np.testing.assert_allclose(fused, baseline, atol=1e-5)
    # Fused layers read to_qkv / to_kv only: spoiling the separate projections changes nothing ...
    with torch.no_grad():
        for unet in (pipe.reference_unet, pipe.denoising_unet):
            for module in unet.modules():
                if isinstance(module, Attention):
                    for projection in (module.to_q, module.to_k, module.to_v):
                        projection.weight.mul_(-1)
    assert np.array_equal(_run(pipe), fused)
    # ... until the projections are unfused again.
    pipe.unfuse_qkv_projections()
    _assert_reference_attention(pipe, fused=False)
    assert np.abs(_run(pipe) - baseline).max() > 1e-3


def test_default_processors_keep_reference_attention(baseline: np.ndarray) -> None:
    pipe = tiny_pipeline(seed=0)
    pipe.set_default_attn_processor()
    _assert_reference_attention(pipe, fused=False, slice_size=None)
    others = [
        p
        for unet in (pipe.reference_unet, pipe.denoising_unet)
        for p in unet.attn_processors.values()
        if not isinstance(p, ReferenceWriteProcessor | ReferenceReadProcessor)
    ]
    assert others and all(isinstance(p, AttnProcessor) for p in others)
    np.testing.assert_allclose(_run(pipe), baseline, atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("xformers") is not None, reason="xformers is installed")
def test_xformers_without_xformers_fails_and_changes_nothing(baseline: np.ndarray) -> None:
    pipe = tiny_pipeline(seed=0)
    with pytest.raises(ModuleNotFoundError, match="xformers"):
        pipe.enable_xformers_memory_efficient_attention()
    _assert_reference_attention(pipe)
    assert np.array_equal(_run(pipe), baseline)


def test_turning_xformers_off_keeps_reference_attention(baseline: np.ndarray) -> None:
    """Disabling puts PyTorch attention on every layer (what enabling does with xFormers' kernel);
    the pipeline then re-attaches reference attention, the same step that follows enabling."""
    pipe = tiny_pipeline(seed=0)
    pipe.disable_xformers_memory_efficient_attention()
    assert all(isinstance(p, AttnProcessor2_0) for p in _motion_processors(pipe))
    _assert_reference_attention(pipe)
    assert np.array_equal(_run(pipe), baseline)


@pytest.mark.parametrize(
    "replace",
    [
        lambda pipe: pipe.denoising_unet.set_attn_processor(AttnProcessor2_0()),
        lambda pipe: pipe.reference_unet.set_attn_processor(AttnProcessor()),
        lambda pipe: pipe.denoising_unet.fuse_qkv_projections(),
        lambda pipe: pipe.reference_unet.set_attention_slice("auto"),
        lambda pipe: pipe.denoising_unet.disable_xformers_memory_efficient_attention(),
        lambda pipe: AnimationPipeline(**pipe.components),  # another pipeline takes the UNets over
    ],
    ids=["set-processor", "set-processor-reference", "fuse", "slice", "xformers-off", "second-pipeline"],
)
def test_dropped_reference_attention_is_an_error_not_a_wrong_video(baseline: np.ndarray, replace) -> None:
    pipe = tiny_pipeline(seed=0)
    replace(pipe)
    with pytest.raises(ValueError, match="reference attention is gone"):
        _run(pipe)
    pipe.restore_reference_attention()
    np.testing.assert_allclose(_run(pipe), baseline, atol=1e-5)


def test_the_unets_own_default_processor_switch_refuses() -> None:
    pipe = tiny_pipeline(seed=0)
    for unet in (pipe.reference_unet, pipe.denoising_unet):
        with pytest.raises(ValueError, match="set_default_attn_processor"):
            unet.set_default_attn_processor()
    _assert_reference_attention(pipe)
