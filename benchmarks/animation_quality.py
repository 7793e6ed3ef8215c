"""How well the default model animates characters it never saw, against ground-truth renders.

Held-out puppets (seeds far from the training range) in three subsets — rigid front-facing, turning
(back views, occlusion), non-rigid (skirts, hair, loose sleeves) — each clip's first frame is the
reference and the next 24 frames are the targets. Compared in the same run:

* baseline (a) ``repeat``: the reference frame, repeated;
* baseline (b) ``warp``: the per-limb warp alone (the geometry the model is guided by);
* ``model``: the pipeline.

Metrics: PSNR and SSIM (higher is better), L1 and temporal error (error of frame-to-frame changes;
lower is better). Writes a comparison grid (reference | pose | truth | model | warp).

    python benchmarks/animation_quality.py [--model DIR] [--clips-per-kind 10] [--grid docs/quality.png]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

from anima.generate.runner import DEFAULT_MODEL, load_pipeline
from anima.generate.warp import warp_sequence
from anima.puppets import CLIP_KINDS, sample_clip
from anima.training.quality import comparison_grid, scores
from anima.training.trainer import generate_clip

HELD_OUT_FIRST_SEED = 5_000_000
TARGET_FRAMES = 24
METRICS = ("psnr", "ssim", "l1", "temporal")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "l1": False, "temporal": False}


def evaluate(model: Path, clips_per_kind: int, strength: float | None, steps: int | None, size: int):
    pipe = load_pipeline(model, "cpu")
    pipe.set_progress_bar_config(disable=True)
    results, grid_rows, seconds = [], [], []
    frames = np.arange(1, TARGET_FRAMES + 1)
    for kind_index, kind in enumerate(CLIP_KINDS):
        for index in range(clips_per_kind):
            seed = HELD_OUT_FIRST_SEED + 1000 * kind_index + index
            clip = sample_clip(seed, frames=TARGET_FRAMES + 1, size=(size, size), kind=kind)
            truth = clip.frames[frames]
            started = time.perf_counter()
            ours = generate_clip(
                pipe,
                clip,
                frames,
                strength=strength,
                steps=steps,
                generator=torch.Generator().manual_seed(seed),
            )
            seconds.append(time.perf_counter() - started)
            warp, _ = warp_sequence(clip.frames[0], clip.keypoints[0], clip.keypoints[frames])
            repeat = np.repeat(clip.frames[:1], len(frames), axis=0)
            for method, output in (("repeat", repeat), ("warp", warp), ("model", ours)):
                results.append({"kind": kind, "seed": seed, "method": method, **scores(output, truth)})
            if index == 0:
                grid_rows.append((clip, frames, ours, warp))
            model_db, warp_db = results[-1]["psnr"], results[-2]["psnr"]
            print(f"  {kind:<11} seed {seed}: model {model_db:.2f} dB, warp {warp_db:.2f} dB")
    return results, grid_rows, seconds


def summarise(results: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """subset -> method -> metric -> mean."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for subset in ("all", *CLIP_KINDS):
        rows = [r for r in results if subset == "all" or r["kind"] == subset]
        summary[subset] = {
            method: {m: float(np.mean([r[m] for r in rows if r["method"] == method])) for m in METRICS}
            for method in ("repeat", "warp", "model")
        }
    return summary


def print_table(summary: dict, clips: int, seconds: list[float]) -> None:
    print(
        f"\nheld-out clips: {clips} x {TARGET_FRAMES} frames; model seconds per clip: {np.mean(seconds):.1f}"
    )
    header = f"{'subset':<12}{'method':<8}" + "".join(f"{m:>10}" for m in METRICS)
    print(header + f"{'PSNR vs warp':>14}{'PSNR vs repeat':>16}")
    print("-" * len(header + " " * 30))
    for subset, methods in summary.items():
        for method, values in methods.items():
            line = f"{subset:<12}{method:<8}" + "".join(f"{values[m]:>10.4f}" for m in METRICS)
            if method == "model":
                line += f"{values['psnr'] - methods['warp']['psnr']:>+13.2f}dB"
                line += f"{values['psnr'] - methods['repeat']['psnr']:>+15.2f}dB"
            print(line)
    wins = {
        subset: all((methods["model"][m] > methods["warp"][m]) == HIGHER_IS_BETTER[m] for m in METRICS)
        for subset, methods in summary.items()
    }
    print(
        "\nmodel beats the warp on every metric:",
        ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in wins.items()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--clips-per-kind", type=int, default=10)
    parser.add_argument("--strength", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--grid", type=Path, default=None, help="write the comparison grid PNG here")
    parser.add_argument("--json", type=Path, default=None, help="write per-clip results here")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results, grid_rows, seconds = evaluate(
        args.model, args.clips_per_kind, args.strength, args.steps, args.size
    )
    summary = summarise(results)
    print_table(summary, args.clips_per_kind * len(CLIP_KINDS), seconds)
    if args.grid:
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(comparison_grid(grid_rows, columns=6)).save(args.grid)
        print(f"grid: {args.grid}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "clips": results, "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
