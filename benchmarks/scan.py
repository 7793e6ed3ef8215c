"""Benchmark batch scans (``anima scan``) against pure decoding, the physical limit.

Why: a trust-and-safety team sizes its machines by files per second. A scan cannot beat decoding
every frame (the watermark reader folds frames), so this prints both, per worker count, and the
ratio scan/decode: how much of the time goes to everything else (hashing, C2PA, the watermark,
thumbnails, the ledger, the reports).

    python benchmarks/scan.py [--clips 50] [--sizes 256 720] [--frames 48] [--workers 1 2]

Sizes: 256 is 256x256 px, 720 is 1280x720, 1080 is 1920x1080. The target of issue 15: a scan's
throughput at least half of pure decoding's (ratio >= 0.5), with the same worker count.

The clips (half stamped, half not; camera moves over scikit-image photos) are built once in a
temporary folder and reused by later runs with the same sizes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from anima import Anima, media
from anima.config import Settings, load_settings

SIDES = {256: (256, 256), 720: (1280, 720), 1080: (1920, 1080)}
TARGET_RATIO = 0.5
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "coins", "moon", "clock")
READY = "READY"


def pan(image: np.ndarray, frames: int, size: int, seed: int) -> list[np.ndarray]:
    """A camera move over a photo, different for each seed."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    height, width = image.shape[:2]
    side = int(min(height, width) * 0.7)
    rng = np.random.default_rng(seed)
    tops, lefts = rng.integers(0, height - side + 1, 2), rng.integers(0, width - side + 1, 2)
    out = []
    for index in range(frames):
        t = index / max(frames - 1, 1)
        top = int(tops[0] + (tops[1] - tops[0]) * t)
        left = int(lefts[0] + (lefts[1] - lefts[0]) * t)
        crop = image[top : top + side, left : left + side]
        out.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return out


def frames_of(image: np.ndarray, frames: int, size: int, seed: int) -> list[np.ndarray]:
    """A camera move at one of :data:`SIDES`: a square pan, cut to the frame's shape."""
    width, height = SIDES[size]
    side = max(width, height)
    top, left = (side - height) // 2, (side - width) // 2
    return [frame[top : top + height, left : left + width] for frame in pan(image, frames, side, seed)]


def build(folder: Path, clips: int, size: int, frames: int) -> tuple[Settings, Path]:
    """The clip folder and a signing home, made once: stamping dominates the first run."""
    settings = load_settings(folder / "home")
    inbox = folder / "clips"
    if (folder / READY).exists():
        return settings, inbox
    inbox.mkdir(parents=True, exist_ok=True)
    if not settings.signing_key.exists():
        Anima(settings.home).keys.init(org="Benchmark Studio")  # signing identity and watermark key
    work = folder / "unstamped"
    work.mkdir(exist_ok=True)
    for index in range(clips):
        photo = getattr(data, PHOTOS[index % len(PHOTOS)])()
        source = (work if index % 2 == 0 else inbox) / f"clip{index:03d}.mp4"
        media.write_video(source, frames_of(photo, frames, size, seed=index), 24, crf=23)
        if index % 2 == 0:
            Anima(settings.home, actor="benchmark").stamp(source, inbox / source.name)
        print(f"\rbuilding clips {index + 1}/{clips}", end="", flush=True)
    print()
    (folder / READY).write_text(f"{clips} clips\n")
    return settings, inbox


def decode(path: Path) -> int:
    return sum(1 for _ in media.iter_frames(path))


def time_decode(paths: list[Path], workers: int) -> tuple[float, int]:
    """Decode every frame of every file in ``workers`` spawned processes, as the scan does."""
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        frames = sum(pool.map(decode, paths))
    return time.perf_counter() - start, frames


def time_scan(settings: Settings, inbox: Path, workers: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="anima-scan-out-") as out:
        start = time.perf_counter()
        summary = Anima(settings.home, actor="benchmark").scan([inbox], Path(out), workers=workers)
        seconds = time.perf_counter() - start
    failed = [row["path"] for row in summary.rows if row["status"] != "ok"]
    if failed:
        raise SystemExit(f"scan failed on {len(failed)} files, e.g. {failed[0]}")
    return seconds, sum(row["frames"] or 0 for row in summary.rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=50, help="how many clips of each size (half stamped)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 720], choices=sorted(SIDES))
    parser.add_argument("--frames", type=int, default=48, help="frames per clip")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to try")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    header = ("size", "workers", "decode files/s", "frames/s", "scan files/s", "frames/s", "ratio", "target")
    print("  ".join(header))
    for size in args.sizes:
        folder = Path(tempfile.gettempdir()) / f"anima-scan-bench-{args.clips}x{size}x{args.frames}"
        settings, inbox = build(folder, args.clips, size, args.frames)
        paths = sorted(inbox.glob("*.mp4"))
        for workers in args.workers:
            decode_s, decoded = time_decode(paths, workers)
            scan_s, scanned = time_scan(settings, inbox, workers)
            ratio = decode_s / scan_s
            print(
                f"{size:>3}p  {workers:>7}  {len(paths) / decode_s:>14.1f}  {decoded / decode_s:>8.0f}  "
                f"{len(paths) / scan_s:>12.1f}  {scanned / scan_s:>8.0f}  {ratio:>5.2f}  "
                f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"ratio: scan / decode throughput (1.0 would be the physical limit; target >= {TARGET_RATIO})")


if __name__ == "__main__":
    main()
