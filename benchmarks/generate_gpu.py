"""GPU check and benchmark for AnimationPipeline (needs CUDA; not part of the test suite).

1. Parity: the tiny pipeline in fp16 on CUDA against fp32 on the CPU, same seed and inputs.
2. Speed and memory at the published size: SD-1.5-shaped ReferenceNet and denoising UNet with
   motion modules, SD VAE, CLIP ViT-L/14 image encoder (random weights: the cost does not depend on
   the values), 512x512, fp16, for 24 and 48 frames. Baseline: the 24-frame run.

    python benchmarks/generate_gpu.py [--frames 24 48] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNetMotionModel
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from anima.generate.configs import MOORE_SCHEDULER_CONFIG, motion_unet_config, tiny_pipeline
from anima.generate.models import PoseGuider
from anima.generate.pipeline import AnimationPipeline

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "norm_num_groups": 32,
}


def parity() -> float:
    rng = np.random.default_rng(0)
    reference = (rng.random((128, 128, 3)) * 255).astype(np.uint8)
    poses = [(rng.random((128, 128, 3)) * 255).astype(np.uint8) for _ in range(12)]
    outputs = []
    for device, dtype in (("cpu", torch.float32), ("cuda", torch.float16)):
        pipe = tiny_pipeline(seed=0).to(device, dtype)
        pipe.set_progress_bar_config(disable=True)
        frames = pipe(
            reference,
            poses,
            num_inference_steps=4,
            context_frames=8,
            context_overlap=2,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).frames
        outputs.append(frames)
    return float(np.abs(outputs[0] - outputs[1]).max())


def published_size_pipeline() -> AnimationPipeline:
    with torch.device("cuda"):
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
        )
        image_encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=24,
                num_attention_heads=16,
                image_size=224,
                patch_size=14,
                projection_dim=768,
            )
        )
        reference_unet = UNet2DConditionModel(**SD15_UNET)
        denoising_unet = UNetMotionModel(**motion_unet_config(SD15_UNET))
        pose_guider = PoseGuider(conditioning_embedding_channels=320)
    pipe = AnimationPipeline(
        vae=vae,
        image_encoder=image_encoder,
        reference_unet=reference_unet,
        denoising_unet=denoising_unet,
        pose_guider=pose_guider,
        scheduler=DDIMScheduler(**MOORE_SCHEDULER_CONFIG),
        feature_extractor=CLIPImageProcessor(),
    )
    return pipe.to("cuda", torch.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[24, 48])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(
        f"parity, tiny pipeline, CUDA fp16 vs CPU fp32: max |difference| = {parity():.4f} (pixel values 0..1)"
    )

    pipe = published_size_pipeline()
    pipe.set_progress_bar_config(disable=True)
    reference = np.full((512, 512, 3), 128, np.uint8)
    pipe(reference, [reference] * 2, num_inference_steps=1, context_frames=2, context_overlap=0)  # warm-up
    rows = []
    for frames in args.frames:
        poses = [np.zeros((512, 512, 3), np.uint8)] * frames
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        pipe(
            reference,
            poses,
            num_inference_steps=args.steps,
            output_type="np",
            generator=torch.Generator().manual_seed(0),
        )
        torch.cuda.synchronize()
        rows.append((frames, time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**30))
    print(f"published size, 512x512, fp16, {args.steps} DDIM steps, CFG 3.5, context 24 / overlap 4")
    print(f"{'frames':>6} {'seconds':>8} {'s/frame':>8} {'x base':>7} {'peak GiB':>9}")
    base = rows[0][1] / rows[0][0]
    for frames, seconds, peak in rows:
        per_frame = seconds / frames
        print(f"{frames:>6} {seconds:>8.1f} {per_frame:>8.2f} {per_frame / base:>7.2f} {peak:>9.1f}")


if __name__ == "__main__":
    main()
