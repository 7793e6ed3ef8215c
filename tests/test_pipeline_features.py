"""diffusers' pipeline features on AnimationPipeline: step-end callbacks (and interrupting),
chunked VAE decoding, latent output, and model CPU offload in the order the models are used."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from tiny import random_image, tiny_pipeline

from anima.generate.pipeline import AnimationPipeline, context_windows
from anima.pose import builtin_motion

SIZE = 64
FRAMES = 5


@pytest.fixture(scope="module")
def pipe() -> AnimationPipeline:
    return tiny_pipeline(seed=0)


def _run(pipe: AnimationPipeline, **kwargs):
    options = {
        "num_inference_steps": 3,
        "context_frames": 3,
        "context_overlap": 1,
        "output_type": "np",
        "generator": torch.Generator().manual_seed(0),
    }
    return pipe(random_image(0), [random_image(i) for i in range(1, FRAMES + 1)], **(options | kwargs)).frames


def _record_batches(module: torch.nn.Module, log: list[int]):
    return module.register_forward_pre_hook(lambda _m, args, *_: log.append(args[0].shape[0]))


def test_step_end_callback_sees_every_step_and_its_tensors_replace_the_pipelines(pipe) -> None:
    seen = []

    def callback(pipeline, step, timestep, tensors):
        seen.append((step, int(timestep), {name: tuple(t.shape) for name, t in tensors.items()}))
        if step == pipeline.num_timesteps - 1:
            return {"latents": torch.full_like(tensors["latents"], 0.5)}
        return {}

    inputs = ["latents", "pose_features", "image_embeds"]
    latents = _run(
        pipe, output_type="latent", callback_on_step_end=callback, callback_on_step_end_tensor_inputs=inputs
    )
    assert [step for step, _, _ in seen] == [0, 1, 2]
    assert [t for _, t, _ in seen] == pipe.scheduler.timesteps.tolist()
    assert seen[0][2] == {
        "latents": (1, 4, FRAMES, SIZE // 8, SIZE // 8),
        "pose_features": (FRAMES, 32, SIZE // 8, SIZE // 8),
        "image_embeds": (2, 1, 32),  # unconditional and conditional token (guidance 3.5)
    }
    assert torch.equal(latents, torch.full_like(latents, 0.5))


def test_a_callback_can_interrupt_sampling(pipe) -> None:
    seen, batches = [], []

    def stop_after_first(pipeline, step, timestep, tensors):
        seen.append(tensors["latents"].clone())
        pipeline._interrupt = True
        return {}

    handle = _record_batches(pipe.denoising_unet, batches)
    try:
        latents = _run(pipe, output_type="latent", callback_on_step_end=stop_after_first)
    finally:
        handle.remove()
    assert pipe.interrupt and len(seen) == 1
    assert len(batches) == len(context_windows(FRAMES, 3, 1))  # one step's windows, not three steps'
    assert torch.equal(latents, seen[0])
    _run(pipe, num_inference_steps=1)  # the next call starts uninterrupted
    assert not pipe.interrupt


class GuidanceCutoff(PipelineCallback):
    """Drops the unconditional branch after the cutoff step (diffusers' CFG-cutoff idea)."""

    tensor_inputs = ["image_embeds"]  # noqa: RUF012 (diffusers' callbacks declare it so)

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        if step_index == self.config.cutoff_step_index:
            return {"image_embeds": callback_kwargs["image_embeds"][-1:]}
        return callback_kwargs


def test_pipeline_callback_objects_work_and_turn_guidance_off(pipe) -> None:
    batches = []
    handle = _record_batches(pipe.denoising_unet, batches)
    try:
        _run(pipe, callback_on_step_end=MultiPipelineCallbacks([GuidanceCutoff(None, cutoff_step_index=0)]))
    finally:
        handle.remove()
    windows = len(context_windows(FRAMES, 3, 1))
    assert batches == [2] * windows + [1] * windows * 2  # both guidance branches in step 0 only


def test_unknown_callback_tensor_is_refused(pipe) -> None:
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        _run(pipe, callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["noise"])


def test_decode_chunk_size_bounds_the_vae_batch_and_not_the_result(pipe) -> None:
    batches = []
    handle = _record_batches(pipe.vae.decoder, batches)
    try:
        chunked = _run(pipe, decode_chunk_size=2)
        assert batches == [2, 2, 1]
        batches.clear()
        whole = _run(pipe)
        assert batches == [FRAMES]  # the default, 16 frames at a time
    finally:
        handle.remove()
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    with pytest.raises(ValueError, match="decode_chunk_size"):
        _run(pipe, decode_chunk_size=0)


def test_latent_output_skips_the_decoder(pipe) -> None:
    batches = []
    handle = _record_batches(pipe.vae.decoder, batches)
    try:
        latents = _run(pipe, output_type="latent")
    finally:
        handle.remove()
    assert batches == []
    assert isinstance(latents, torch.Tensor) and latents.shape == (1, 4, FRAMES, SIZE // 8, SIZE // 8)
    decoded = pipe.decode_latents(latents)
    np.testing.assert_allclose(decoded.numpy(), _run(pipe, output_type="pt")[0].numpy(), atol=1e-6)


def test_model_cpu_offload_runs_and_changes_nothing() -> None:
    """accelerate's model offload also runs with the CPU as the execution device (no GPU here)."""
    pipe = tiny_pipeline(seed=0)
    expected = _run(pipe)
    pipe.enable_model_cpu_offload(device="cpu")
    assert len(pipe._all_hooks) == 5
    assert np.array_equal(_run(pipe), expected)
    assert len(pipe._all_hooks) == 5  # re-armed for the next call by maybe_free_model_hooks


def _recording(pre_forward, name: str, calls: list[str]):
    def record(*args, **kwargs):
        calls.append(name)
        return pre_forward(*args, **kwargs)

    return record


def test_offload_sequence_follows_the_order_models_are_used() -> None:
    """With model offload, a model's hook offloads the model before it in `model_cpu_offload_seq`.
    So in a real call (warp-guided: the VAE encodes the reference and the warp, then decodes), each
    model's successor must run after that model's last use, and never between two of its uses
    (which would offload it mid-use and load it again)."""
    pipe = tiny_pipeline(seed=0, warp_guided=True)
    pipe.enable_model_cpu_offload(device="cpu")
    calls = []
    modules = {n: m for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)}
    for name, module in modules.items():  # the offload hooks themselves say when a model is used
        module._hf_hook.pre_forward = _recording(module._hf_hook.pre_forward, name, calls)
    poses = builtin_motion("motion:dance", 4, 12.0, (SIZE, SIZE)).keypoints
    pipe(
        random_image(0),
        [random_image(i) for i in range(4)],
        num_inference_steps=2,
        reference_pose=poses[0],
        poses=poses,
    )
    # The VAE encodes the reference before the ReferenceNet, the warp frames after it, and decodes.
    assert calls[:3] == ["image_encoder", "vae", "reference_unet"] and calls[-1] == "vae"
    chain = pipe.model_cpu_offload_seq.split("->")
    assert sorted(chain) == sorted(modules)
    for model, successor in pairwise(chain):
        uses = [i for i, name in enumerate(calls) if name == model]
        successor_uses = [i for i, name in enumerate(calls) if name == successor]
        assert max(successor_uses) > max(uses), f"{model} stays loaded after its last use"
        assert not [i for i in successor_uses if uses[0] < i < uses[-1]], (
            f"{successor} evicts {model} mid-use"
        )
