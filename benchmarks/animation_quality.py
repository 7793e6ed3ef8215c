"""How well the default model animates characters it never saw, against ground-truth renders.

Held-out puppets (seeds far from the training range) in three subsets — rigid front-facing, turning
(back views, occlusion), non-rigid (skirts, hair, loose sleeves) — each clip's first frame is the
reference and the next 24 frames are the targets. Compared in the same run:

* baseline (a) ``repeat``: the reference frame, repeated;
* baseline (b) ``warp``: the per-limb warp alone (the geometry the model is guided by);
* ``model``: the pipeline.

Metrics, per clip and then averaged over the clips of a subset:

* PSNR and SSIM (higher is better), L1 and temporal error (error of frame-to-frame changes; lower
  is better), over whole frames;
* face PSNR: PSNR over the face box of every target frame (pooled, as PSNR pools the frames). The
  box is a square around the puppet's exact head keypoints (nose, eyes, ears; their positions are
  exact also where the confidence hides them); its side is the widest span of those points over the
  clip (ear to ear when the head faces toward or away from the camera: the projection is
  orthographic, so the head keeps its size in pixels through a clip) plus ``FACE_MARGIN`` of it on
  each side, centred on the points' bounding box in each frame, clipped to the frame;
* sharpness: the mean variance of the Laplacian of the frames' luma over the truth's (1.0 is as
  sharp as the truth; below is blurrier).

Writes a comparison grid (reference | pose | truth with its face box | model | warp).

    python benchmarks/animation_quality.py [--model DIR] [--clips-per-kind 10] [--grid docs/quality.png]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2
import numpy as np
import torch
from PIL import Image

from anima.generate.runner import DEFAULT_MODEL, load_pipeline
from anima.generate.warp import warp_sequence
from anima.puppets import CLIP_KINDS, PuppetClip, sample_clip
from anima.training.quality import comparison_grid, scores
from anima.training.trainer import generate_clip

HELD_OUT_FIRST_SEED = 5_000_000
TARGET_FRAMES = 24
METRICS = ("psnr", "ssim", "l1", "temporal", "face_psnr", "sharpness")
HEADERS = {"psnr": "PSNR dB", "ssim": "SSIM", "l1": "L1", "temporal": "temporal",
           "face_psnr": "face dB", "sharpness": "sharp"}  # fmt: skip
METHODS = {"repeat": "(a) repeat", "warp": "(b) warp", "model": "model"}
FACE_KEYPOINTS = (0, 14, 15, 16, 17)  # OpenPose-18 nose, right eye, left eye, right ear, left ear
FACE_MARGIN = 0.25  # of the head's span, added on each side of the face box
SHARPNESS_TARGET = 0.8


def face_boxes(keypoints: np.ndarray, size: tuple[int, int], margin: float = FACE_MARGIN) -> np.ndarray:
    """Per frame, the face box ``(x0, y0, x1, y1)`` in pixels (x1, y1 exclusive) of a clip's exact
    keypoints ``(F, 18, 3)`` (x/W, y/H) on a ``(width, height)`` canvas: a square around the head
    keypoints whose side is their widest span over the clip plus ``margin`` of it on each side.
    Pass the whole clip (the reference frame too), so that a frame seen in profile gets the size
    the head has when it faces the camera or away."""
    width, height = size
    points = keypoints[:, FACE_KEYPOINTS, :2] * np.array([width, height])
    low, high = points.min(axis=1), points.max(axis=1)
    span = float((high - low).max())  # the head's width: constant in a clip (orthographic)
    half = span * (0.5 + margin)
    centre = (low + high) / 2
    x0 = np.clip(np.floor(centre[:, 0] - half), 0, width - 1)
    y0 = np.clip(np.floor(centre[:, 1] - half), 0, height - 1)
    x1 = np.clip(np.ceil(centre[:, 0] + half), x0 + 1, width)
    y1 = np.clip(np.ceil(centre[:, 1] + half), y0 + 1, height)
    return np.stack([x0, y0, x1, y1], axis=-1).astype(int)


def face_psnr(frames: np.ndarray, truth: np.ndarray, boxes: np.ndarray) -> float:
    """PSNR over the face boxes of all frames together, dB."""
    errors = [
        (frame[y0:y1, x0:x1].astype(np.float64) - target[y0:y1, x0:x1].astype(np.float64)).ravel() ** 2
        for frame, target, (x0, y0, x1, y1) in zip(frames, truth, boxes, strict=True)
    ]
    return float(10 * np.log10(255.0**2 / max(float(np.mean(np.concatenate(errors))), 1e-10)))


def laplacian_variance(frames: np.ndarray) -> float:
    """Mean over the frames of the variance of the Laplacian of the luma (higher is sharper)."""
    return float(
        np.mean([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames])
    )


def clip_scores(output: np.ndarray, truth: np.ndarray, boxes: np.ndarray, truth_sharpness: float) -> dict:
    return {
        **scores(output, truth),
        "face_psnr": face_psnr(output, truth, boxes),
        "sharpness": laplacian_variance(output) / max(truth_sharpness, 1e-10),
    }


def with_face_boxes(clip: PuppetClip, frames: np.ndarray, boxes: np.ndarray) -> PuppetClip:
    """The clip with its face boxes drawn on the target frames (for the grid's truth row)."""
    drawn = clip.frames.copy()
    for index, (x0, y0, x1, y1) in zip(frames, boxes, strict=True):
        cv2.rectangle(drawn[index], (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 220, 0), 1)
    return replace(clip, frames=drawn)


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
            boxes = face_boxes(clip.keypoints, (size, size))[frames]
            truth_sharpness = laplacian_variance(truth)
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
                row = clip_scores(output, truth, boxes, truth_sharpness)
                results.append({"kind": kind, "seed": seed, "method": method, **row})
            if index == 0:
                grid_rows.append((with_face_boxes(clip, frames, boxes), frames, ours, warp))
            mine, warp_row = results[-1], results[-2]
            print(
                f"  {kind:<11} seed {seed}: model {mine['psnr']:.2f} dB (face {mine['face_psnr']:.2f},"
                f" sharpness {mine['sharpness']:.2f}), warp {warp_row['psnr']:.2f} dB"
                f" (face {warp_row['face_psnr']:.2f}), {seconds[-1]:.1f} s",
                flush=True,
            )
    return results, grid_rows, seconds


def summarise(results: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """subset -> method -> metric -> mean."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for subset in ("all", *CLIP_KINDS):
        rows = [r for r in results if subset == "all" or r["kind"] == subset]
        summary[subset] = {
            method: {m: float(np.mean([r[m] for r in rows if r["method"] == method])) for m in METRICS}
            for method in METHODS
        }
    return summary


def targets(methods: dict[str, dict[str, float]]) -> dict[str, bool]:
    """Issue 12's targets for one subset: the model against the warp (b)."""
    model, warp = methods["model"], methods["warp"]
    return {
        "PSNR > (b)": model["psnr"] > warp["psnr"],
        "SSIM > (b)": model["ssim"] > warp["ssim"],
        "L1 < (b)": model["l1"] < warp["l1"],
        "temporal <= (b)": model["temporal"] <= warp["temporal"],
        "face PSNR >= (b)": model["face_psnr"] >= warp["face_psnr"],
        f"sharpness >= {SHARPNESS_TARGET}": model["sharpness"] >= SHARPNESS_TARGET,
    }


def print_table(summary: dict, clips: int, seconds: list[float]) -> None:
    print(
        f"\nheld-out clips: {clips} x {TARGET_FRAMES} frames; model seconds per clip: {np.mean(seconds):.1f}"
        f"\nface box: head keypoints' widest span in the clip + {FACE_MARGIN:.0%} each side;"
        " sharpness: Laplacian variance / the truth's"
    )
    header = f"{'subset':<13}{'method':<12}" + "".join(f"{HEADERS[m]:>10}" for m in METRICS)
    print(header + "\n" + "-" * len(header))
    for subset, methods in summary.items():
        for method, values in methods.items():
            print(
                f"{subset:<13}{METHODS[method]:<12}"
                + "".join(f"{values[m]:>10.{2 if 'psnr' in m or m == 'sharpness' else 4}f}" for m in METRICS)
            )
        for baseline in ("repeat", "warp"):
            delta = {m: methods["model"][m] - methods[baseline][m] for m in METRICS}
            print(
                f"{'':<13}{'- ' + METHODS[baseline][:3]:<12}"
                + "".join(f"{delta[m]:>+10.{2 if 'psnr' in m or m == 'sharpness' else 4}f}" for m in METRICS)
            )
    print("\ntargets (model against the warp (b)):")
    for subset, methods in summary.items():
        met = targets(methods)
        print(f"  {subset:<12} " + ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in met.items()))


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
    started = time.perf_counter()
    results, grid_rows, seconds = evaluate(
        args.model, args.clips_per_kind, args.strength, args.steps, args.size
    )
    summary = summarise(results)
    print_table(summary, args.clips_per_kind * len(CLIP_KINDS), seconds)
    print(f"run time: {time.perf_counter() - started:.0f} s")
    if args.grid:
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(comparison_grid(grid_rows, columns=6)).save(args.grid)
        print(f"grid: {args.grid}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": str(args.model),
                    "face_margin": FACE_MARGIN,
                    "summary": summary,
                    "targets": {subset: targets(methods) for subset, methods in summary.items()},
                    "clips": results,
                    "seconds": seconds,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
