"""Benchmark: AnimationPipeline cost per frame and peak memory as videos get longer.

The pipeline is the shipped default model (``anima-puppets``, warp-guided, its own guidance), on a
random reference and the built-in dance motion; every one of ``--steps`` DDIM steps runs
(strength 1). Baseline: the 8-frame run. With context windows, cost must grow linearly with the
number of frames (per-frame time roughly flat), not quadratically. Each length runs in its own
process so that peak memory (max RSS) belongs to that run alone. Prints a table and ratios to the
baseline, plus the share of time in the ReferenceNet, the denoising UNet, the VAE decoder and the
Pose Guider.

    python benchmarks/generate.py [--frames 8 24 48 96] [--size 128] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_one(frames: int, size: int, steps: int) -> dict[str, float]:
    """Generate one video with the default model; time it and its parts."""
    import numpy as np
    import torch

    from anima.generate.runner import default_pipeline
    from anima.pose import builtin_motion
    from anima.pose.render import render_pose

    pipe = default_pipeline("cpu")
    pipe.set_progress_bar_config(disable=True)
    spent: dict[str, float] = defaultdict(float)
    started: dict[str, float] = {}
    parts = {
        "reference_net": pipe.reference_unet,
        "denoising": pipe.denoising_unet,
        "vae_decode": pipe.vae.decoder,
        "pose_guider": pipe.pose_guider,
    }
    for name, module in parts.items():
        module.register_forward_pre_hook(
            lambda _m, _i, name=name: started.__setitem__(name, time.perf_counter())
        )
        module.register_forward_hook(
            lambda _m, _i, _o, name=name: spent.__setitem__(
                name, spent[name] + time.perf_counter() - started[name]
            )
        )
    reference = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    poses = builtin_motion("motion:dance", frames, 12.0, (size, size)).keypoints
    skeletons = [render_pose(pose, (size, size)) for pose in poses]

    def animate(count: int, **options) -> None:
        pipe(reference, skeletons[:count], reference_pose=poses[0], poses=poses[:count], **options)

    animate(2, num_inference_steps=1, context_frames=2, context_overlap=0)  # warm-up
    spent.clear()
    start = time.perf_counter()
    animate(
        frames,
        num_inference_steps=steps,
        strength=1.0,
        context_frames=24,
        context_overlap=4,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "frames": frames,
        "seconds": total,
        "peak_mb": peak_mb,
        **{k: v / total for k, v in spent.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 24, 48, 96])
    parser.add_argument("--size", type=int, default=128, help="output width and height (multiple of 4)")
    parser.add_argument("--steps", type=int, default=4, help="DDIM steps")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.size, args.steps)))
        return

    rows = []
    for frames in args.frames:
        command = [
            sys.executable,
            __file__,
            "--one",
            str(frames),
            "--size",
            str(args.size),
            "--steps",
            str(args.steps),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(
        f"AnimationPipeline, default model (anima-puppets), {args.size}x{args.size}, {args.steps} DDIM "
        f"steps, context 24 / overlap 4, its guidance (1: CFG off), CPU cores {os.cpu_count()}"
    )
    print(
        f"{'frames':>6} {'s total':>8} {'s/frame':>8} {'x base s/frame':>15} {'peak MB':>8} "
        f"{'refnet':>7} {'denoise':>8} {'vae':>6} {'pose':>6}"
    )
    for row in rows:
        per_frame = row["seconds"] / row["frames"]
        ratio = per_frame / (base["seconds"] / base["frames"])
        print(
            f"{row['frames']:>6} {row['seconds']:>8.2f} {per_frame:>8.3f} {ratio:>15.2f} "
            f"{row['peak_mb']:>8.0f} "
            f"{row.get('reference_net', 0):>7.1%} {row.get('denoising', 0):>8.1%} "
            f"{row.get('vae_decode', 0):>6.1%} {row.get('pose_guider', 0):>6.1%}"
        )
    print("baseline: the first row; linear cost means 'x base s/frame' stays near 1 as frames grow")


if __name__ == "__main__":
    main()
