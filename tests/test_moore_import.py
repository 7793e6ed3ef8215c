"""Import a small checkpoint laid out exactly like Moore-AnimateAnyone's download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from safetensors import safe_open
from tiny import TINY_UNET_CONFIG, tiny_image_encoder, tiny_vae

from anima.generate.configs import MOORE_PIPELINE_CONFIG
from anima.generate.models import FrameGroupNorm, PoseGuider
from anima.generate.moore import ImportFailed, import_moore
from anima.generate.pipeline import AnimationPipeline, context_windows

# The AnimateDiff-v2 layout of one motion module, as motion_module.pth spells it, written out by
# hand (independently of the importer's rename table) with the diffusers name each must reach.
BLOCK = "temporal_transformer.transformer_blocks.0."
ANIMATEDIFF_TO_DIFFUSERS = {
    "temporal_transformer.norm.{p}": "norm.{p}",
    "temporal_transformer.proj_in.{p}": "proj_in.{p}",
    "temporal_transformer.proj_out.{p}": "proj_out.{p}",
    **{
        f"{BLOCK}attention_blocks.{index}.{name}": f"transformer_blocks.0.attn{index + 1}.{name}"
        for index in (0, 1)
        for name in ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.{p}")
    },
    BLOCK + "norms.0.{p}": "transformer_blocks.0.norm1.{p}",
    BLOCK + "norms.1.{p}": "transformer_blocks.0.norm2.{p}",
    BLOCK + "ff.net.0.proj.{p}": "transformer_blocks.0.ff.net.0.proj.{p}",
    BLOCK + "ff.net.2.{p}": "transformer_blocks.0.ff.net.2.{p}",
    BLOCK + "ff_norm.{p}": "transformer_blocks.0.norm3.{p}",
}
MOTION_PREFIXES = [
    "down_blocks.0.motion_modules.0",
    "down_blocks.1.motion_modules.0",
    "mid_block.motion_modules.0",
    "up_blocks.0.motion_modules.0",
    "up_blocks.0.motion_modules.1",
    "up_blocks.1.motion_modules.0",
    "up_blocks.1.motion_modules.1",
]
CHANNELS = {"down_blocks.0": 32, "down_blocks.1": 64, "mid_block": 64, "up_blocks.0": 64, "up_blocks.1": 32}


def _weights(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Distinct random values at a trained model's scale (N(0,1) everywhere overflows fp16)."""
    return torch.randn(shape, generator=generator) * 0.05


def _motion_checkpoint(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A random motion_module.pth for the tiny config, and where each key must land."""
    state, destination = {}, {}
    for prefix in MOTION_PREFIXES:
        dim = CHANNELS[prefix.split(".motion_modules")[0]]
        for source, target in ANIMATEDIFF_TO_DIFFUSERS.items():
            for part in ("weight", "bias") if "{p}" in source else ("weight",):
                key = f"{prefix}.{source.format(p=part)}"
                if ".ff.net.0.proj" in key:
                    shape = (dim * 8, dim) if part == "weight" else (dim * 8,)
                elif ".ff.net.2" in key:
                    shape = (dim, dim * 4) if part == "weight" else (dim,)
                else:
                    shape = (dim, dim) if part == "weight" and "norm" not in source else (dim,)
                state[key] = _weights(shape, generator)
                destination[key] = f"{prefix}.{target.format(p=part)}"
        for block in (0, 1):  # sinusoid tables: recomputed by diffusers, never loaded
            state[
                f"{prefix}.temporal_transformer.transformer_blocks.0.attention_blocks.{block}.pos_encoder.pe"
            ] = torch.zeros(1, 32, dim)
    return state, destination


@pytest.fixture(scope="module")
def moore_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pretrained_weights")
    generator = torch.Generator().manual_seed(7)
    config_dir = root / "stable-diffusion-v1-5" / "unet"
    config_dir.mkdir(parents=True)
    (config_dir / "config.json").write_text(
        json.dumps({"_class_name": "UNet2DConditionModel", **TINY_UNET_CONFIG})
    )
    unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
    denoising = {k: _weights(v.shape, generator) for k, v in unet.state_dict().items()}
    reference = {
        k: _weights(v.shape, generator)
        for k, v in unet.state_dict().items()
        if not k.startswith(("conv_norm_out.", "conv_out."))
    }
    guider = PoseGuider(conditioning_embedding_channels=32, block_out_channels=(8, 16, 16, 32))
    pose = {k: _weights(v.shape, generator) for k, v in guider.state_dict().items()}
    motion, motion_destination = _motion_checkpoint(generator)
    torch.save(denoising, root / "denoising_unet.pth")
    torch.save(reference, root / "reference_unet.pth")
    torch.save(pose, root / "pose_guider.pth")
    torch.save(motion, root / "motion_module.pth")
    tiny_vae().save_pretrained(root / "sd-vae-ft-mse")
    tiny_image_encoder(32).save_pretrained(root / "image_encoder")
    return root, {
        "denoising": denoising,
        "reference": reference,
        "pose": pose,
        "motion": motion,
        "motion_destination": motion_destination,
    }


def test_every_tensor_arrives_where_it_belongs(moore_dir, tmp_path: Path) -> None:
    root, source = moore_dir
    report = import_moore(root, tmp_path / "imported")
    assert report.tensors == {
        "reference_unet": len(source["reference"]),
        "denoising_unet": len(source["denoising"]),
        "motion_modules": len(source["motion"]) - 2 * len(MOTION_PREFIXES),
        "pose_guider": 16,
    }
    assert report.recomputed_buffers == 2 * len(MOTION_PREFIXES)
    pipe = AnimationPipeline.from_pretrained(tmp_path / "imported")
    denoiser = pipe.denoising_unet.state_dict()
    for key, value in source["denoising"].items():
        assert torch.equal(denoiser[key], value), key
    for key, value in source["motion"].items():
        if key.endswith("pos_encoder.pe"):
            continue
        assert torch.equal(denoiser[source["motion_destination"][key]], value), key
    reference_net = pipe.reference_unet.state_dict()
    for key, value in source["reference"].items():
        assert torch.equal(reference_net[key], value), key
    for key, value in source["pose"].items():
        assert torch.equal(pipe.pose_guider.state_dict()[key], value), key
    assert pipe.scheduler.config.prediction_type == "v_prediction"


def test_imported_model_is_run_the_way_moore_runs_it(moore_dir, tmp_path: Path) -> None:
    """Recorded in the saved folder and in effect after loading: 30 DDIM steps at guidance 3.5,
    24-frame windows overlapping by 4 that wrap round, per-frame motion norm, the whole reference
    squashed for CLIP, Lanczos resizes."""
    root, _ = moore_dir
    import_moore(root, tmp_path / "imported")
    saved = json.loads((tmp_path / "imported" / "model_index.json").read_text())
    assert set(MOORE_PIPELINE_CONFIG) <= set(saved)
    pipe = AnimationPipeline.from_pretrained(tmp_path / "imported")
    config = pipe.config
    assert (config.default_steps, config.default_guidance) == (30, 3.5)
    frames, overlap, wrap = (config[f"default_context_{k}"] for k in ("frames", "overlap", "wrap"))
    assert context_windows(72, frames, overlap, wrap)[-1] == [*range(60, 72), *range(12)]
    assert (config.motion_norm, config.clip_input, config.resample) == ("per_frame", "resize", "lanczos")
    norms = [m.norm for m in pipe.denoising_unet.modules() if isinstance(m, AnimateDiffTransformer3D)]
    assert len(norms) == len(MOTION_PREFIXES) and all(type(n) is FrameGroupNorm for n in norms)


def test_imported_pipeline_runs(moore_dir, tmp_path: Path) -> None:
    root, _ = moore_dir
    import_moore(root, tmp_path / "imported", half=True)
    stored = next((tmp_path / "imported" / "denoising_unet").glob("*.safetensors"))
    with safe_open(stored, "pt") as handle:
        assert handle.get_tensor("conv_in.weight").dtype == torch.float16
    pipe = AnimationPipeline.from_pretrained(tmp_path / "imported", dtype=torch.float16)
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(
        np.full((64, 64, 3), 128, np.uint8),
        [np.zeros((64, 64, 3), np.uint8)] * 3,
        num_inference_steps=2,
        context_frames=3,
        context_overlap=1,
        output_type="np",
    ).frames
    assert frames.shape == (1, 3, 64, 64, 3) and np.isfinite(frames).all()


def _copy_with(root: Path, tmp_path: Path, name: str, edit) -> Path:
    copy = tmp_path / "weights"
    shutil.copytree(root, copy)
    state = torch.load(copy / name, weights_only=True)
    edit(state)
    torch.save(state, copy / name)
    return copy


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        (
            "motion_module.pth",
            lambda s: s.__setitem__(
                "down_blocks.0.motion_modules.0.temporal_transformer.extra.weight", torch.zeros(1)
            ),
            "unmapped key",
        ),
        (
            "motion_module.pth",
            lambda s: s.pop(next(k for k in list(s) if k.endswith("ff_norm.weight"))),
            "missing key",
        ),
        ("denoising_unet.pth", lambda s: s.pop("conv_in.weight"), "missing key"),
        ("reference_unet.pth", lambda s: s.__setitem__("conv_in.weight", torch.zeros(1)), "wrong-shaped"),
        ("pose_guider.pth", lambda s: s.__setitem__("blocks.9.weight", torch.zeros(1)), "unexpected key"),
    ],
    ids=["motion-extra", "motion-missing", "unet-missing", "reference-shape", "pose-extra"],
)
def test_any_unmapped_or_missing_key_fails_loudly(moore_dir, tmp_path: Path, name, edit, message) -> None:
    root, _ = moore_dir
    with pytest.raises(ImportFailed, match=message):
        import_moore(_copy_with(root, tmp_path, name, edit), tmp_path / "out")
    assert not (tmp_path / "out" / "model_index.json").exists()


def test_incomplete_folder_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "denoising_unet.pth").write_bytes(b"")
    with pytest.raises(ImportFailed, match=r"missing reference_unet\.pth, pose_guider\.pth"):
        import_moore(tmp_path, tmp_path / "out")
