"""GPU check and benchmark for AnimationPipeline (needs CUDA; not part of the test suite).

1. Parity: the shipped default model (anima-puppets) in fp16 on CUDA against fp32 on the CPU, same
   seed and inputs.
2. Speed and memory at the published size: SD-1.5-shaped ReferenceNet and denoising UNet with
   motion modules, SD VAE, CLIP ViT-L/14 image encoder (random weights: the cost does not depend on
   the values), 512x512, fp16, run as an imported Moore-AnimateAnyone model (24-frame closed-loop
   windows overlapping by 4, per-frame motion norm), for 24 and 48 frames. Baseline: the 24-frame run.

    python benchmarks/generate_gpu.py [--frames 24 48] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from diffusers import AutoencoderKL
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from anima.generate.configs import (
    MOORE_PIPELINE_CONFIG,
    SD15_UNET_CONFIG,
    SD_IMAGE_ENCODER_CONFIG,
    SD_VAE_CONFIG,
    assemble_pipeline,
)
from anima.generate.models import PoseGuider
from anima.generate.pipeline import AnimationPipeline
from anima.generate.runner import default_pipeline
from anima.pose import builtin_motion
from anima.pose.render import render_pose


def parity() -> float:
    size = 128
    reference = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    poses = builtin_motion("motion:dance", 12, 12.0, (size, size)).keypoints
    skeletons = [render_pose(pose, (size, size)) for pose in poses]
    outputs = []
    for device in ("cpu", "cuda"):  # fp32 on the CPU, fp16 on CUDA
        pipe = default_pipeline(device)
        pipe.set_progress_bar_config(disable=True)
        frames = pipe(
            reference,
            skeletons,
            reference_pose=poses[0],
            poses=poses,
            context_frames=8,
            context_overlap=2,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).frames
        outputs.append(frames)
    return float(np.abs(outputs[0] - outputs[1]).max())


def published_size_pipeline() -> AnimationPipeline:
    with torch.device("cuda"):
        vae = AutoencoderKL(**SD_VAE_CONFIG)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**SD_IMAGE_ENCODER_CONFIG))
        pipe = assemble_pipeline(
            SD15_UNET_CONFIG,
            vae,
            image_encoder,
            PoseGuider(conditioning_embedding_channels=320),
            **MOORE_PIPELINE_CONFIG,
        )
    return pipe.to("cuda", torch.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[24, 48])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(
        f"parity, default model, CUDA fp16 vs CPU fp32: max |difference| = {parity():.4f} (pixel values 0..1)"
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
    config = pipe.config
    print(
        f"published size, 512x512, fp16, {args.steps} DDIM steps, CFG {config.default_guidance}, "
        f"context {config.default_context_frames} / overlap {config.default_context_overlap}, closed loop"
    )
    print(f"{'frames':>6} {'seconds':>8} {'s/frame':>8} {'x base':>7} {'peak GiB':>9}")
    base = rows[0][1] / rows[0][0]
    for frames, seconds, peak in rows:
        per_frame = seconds / frames
        print(f"{frames:>6} {seconds:>8.1f} {per_frame:>8.2f} {per_frame / base:>7.2f} {peak:>9.1f}")


if __name__ == "__main__":
    main()
