"""Benchmark the reader of other generators' invisible watermarks (``anima.detect.declared_marks``).

Why: verify calls a clip ``ai-declared`` on the strength of a Stable Diffusion / SDXL / Stable
Video Diffusion watermark, so two numbers matter: how often a marked clip is still recognised after
what happens to clips on the way to us (JPEG, H.264), and that unmarked clips never are. Marked
clips are camera pans over photos that scikit-image ships, marked frame by frame with the
``invisible-watermark`` package exactly as each generator marks its outputs; unmarked clips are
pans, zooms and static shots of photos (scikit-image's and ``samples/``), noise, gradients, flat
colours and textures, some of them through H.264. Nothing is downloaded.

    python benchmarks/foreign_marks.py [--quick] [--json results.json]

Needs the dev extra (scikit-image, invisible-watermark).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from imwatermark import WatermarkDecoder, WatermarkEncoder
from skimage import data

from anima.detect.declared_marks import KNOWN_MARKS, MAX_FALSE_POSITIVE, KnownMark, read_declared_marks
from anima.media import read_image, read_video, write_video

FRAMES = 8  # what verify reads of a clip
MARKED_FRAMES = 14  # a Stable Video Diffusion clip
SIZES = (256, 512)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat", "colorwheel", "retina")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def photo(name: str) -> np.ndarray:
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8)


def sample_photos() -> list[np.ndarray]:
    """The repository's own pictures (samples/*.jpg, *.png) and a frame of its sample clip."""
    pictures = [
        read_image(path)[:, :, :3] for path in sorted(SAMPLES.glob("*.jpg")) + sorted(SAMPLES.glob("*.png"))
    ]
    if (SAMPLES / "astronaut_pan.mp4").is_file():
        pictures.append(read_video(SAMPLES / "astronaut_pan.mp4").frames[0])
    return [np.ascontiguousarray(p) for p in pictures if min(p.shape[:2]) >= 64]


def pan(image: np.ndarray, size: int, frames: int = FRAMES, motion: str = "pan") -> np.ndarray:
    """A camera move over ``image``: a diagonal pan, a zoom, or a static shot."""
    height, width = image.shape[:2]
    out = []
    for index in range(frames):
        t = index / max(frames - 1, 1)
        side = int(min(height, width) * (0.75 if motion != "zoom" else 0.9 - 0.3 * t))
        if motion == "static":
            top, left = (height - side) // 2, (width - side) // 2
        else:
            top = int((height - side) * (0.5 * t if motion == "pan" else 0.5))
            left = int((width - side) * (t if motion == "pan" else 0.5))
        crop = image[top : top + side, left : left + side]
        out.append(
            cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
        )
    return np.stack(out)


def synthetic(kind: str, size: int, seed: int, frames: int = FRAMES) -> np.ndarray:
    """Content no camera made: noise, gradients, flat colours, textures, moving a little per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    colours = rng.uniform(0, 255, (3, 3)).astype(np.float32)
    period, angle, cell = rng.uniform(3, 40), rng.uniform(0, np.pi), int(rng.integers(2, 32))
    blur = cv2.GaussianBlur(
        rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), rng.uniform(2, 12)
    )
    blobs = (blur - blur.min()) / max(float(np.ptp(blur)), 1e-6) * 255
    out = []
    for index in range(frames):
        shift = index / frames
        if kind == "noise":
            frame = rng.uniform(0, 255, (size, size, 3))
        elif kind == "gaussian-noise":
            frame = np.clip(rng.normal(128, 5 + 55 * (seed % 7) / 6, (size, size, 3)), 0, 255)
        elif kind == "grey-noise":
            frame = np.repeat(rng.uniform(0, 255, (size, size, 1)), 3, axis=2)
        elif kind == "gradient":
            w = ((xx + shift) % 1.0)[..., None]
            frame = colours[0] * (1 - w) + colours[1] * w
        elif kind == "radial":
            r = np.sqrt((xx - 0.5 - 0.1 * shift) ** 2 + (yy - 0.5) ** 2)[..., None]
            frame = colours[0] * (1 - r) + colours[2] * r
        elif kind == "flat":
            frame = np.broadcast_to(colours[0], (size, size, 3))
        elif kind == "grating":
            wave = np.sin(2 * np.pi * ((xx * np.cos(angle) + yy * np.sin(angle)) * size / period + shift))
            frame = colours[0] + (colours[1] - colours[0]) * (0.5 + 0.5 * wave[..., None])
        elif kind == "checker":
            board = (np.arange(size)[:, None] // cell + (np.arange(size)[None, :] + index) // cell) % 2
            frame = np.where(board[..., None] > 0, colours[0], colours[1])
        elif kind == "blobs":
            frame = np.roll(blobs, index * 2, axis=1)
        else:
            raise ValueError(kind)
        out.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
    return np.stack(out)


def embed(frame: np.ndarray, mark: KnownMark) -> np.ndarray:
    """``frame`` marked the way ``mark``'s generator marks its outputs (see declared_marks)."""
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", list(mark.bits))
    if mark.precision == "uint8":
        return np.ascontiguousarray(
            encoder.encode(np.ascontiguousarray(frame[:, :, ::-1]), "dwtDct")[:, :, ::-1]
        )
    picture = frame.astype(np.float32)
    if mark.order == "bgr":
        picture = np.ascontiguousarray(picture[:, :, ::-1])
    marked = encoder.encode(picture, "dwtDct")
    if mark.order == "bgr":
        marked = marked[:, :, ::-1]
    return np.clip(np.round(marked), 0, 255).astype(np.uint8)


def jpeg(frames: np.ndarray, quality: int = 75) -> np.ndarray:
    out = []
    for frame in frames:
        _, buffer = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[:, :, ::-1])
    return np.stack(out)


def h264(frames: np.ndarray, crf: int, workdir: Path) -> np.ndarray:
    path = workdir / f"clip-crf{crf}.mp4"
    write_video(path, frames, fps=24, crf=crf)
    return np.stack(read_video(path).frames)


def conditions(workdir: Path) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    return {
        "clean": lambda frames: frames,
        "JPEG q75": jpeg,
        "H.264 CRF 18": lambda frames: h264(frames, 18, workdir),
        "H.264 CRF 23": lambda frames: h264(frames, 23, workdir),
        "H.264 CRF 28": lambda frames: h264(frames, 28, workdir),
    }


def bench_detection(photos: list[str], workdir: Path) -> list[dict[str, object]]:
    """Per mark, size and condition: clips found (the right mark, alone or first), of those tried."""
    rows = []
    for mark in KNOWN_MARKS:
        for size in SIZES:
            counts = {name: [0, 0, 0] for name in conditions(workdir)}  # found, wrong message, tried
            named = dict.fromkeys(counts, 0)  # found and attributed to this very generator
            for name in photos:
                clip = pan(photo(name), size, frames=MARKED_FRAMES)
                marked = np.stack([embed(frame, mark) for frame in clip])
                for condition, attack in conditions(workdir).items():
                    declared = read_declared_marks(list(attack(marked)))
                    found = [reading.message for reading in declared.found]
                    counts[condition][0] += mark.message in found
                    counts[condition][1] += any(other != mark.message for other in found)
                    named[condition] += bool(found) and declared.found[0].mark == mark.name
                    counts[condition][2] += 1
            for condition, (found, wrong, tried) in counts.items():
                rows.append(
                    {
                        "mark": mark.name,
                        "size": size,
                        "condition": condition,
                        "found": found,
                        "wrong": wrong,
                        "named": named[condition],
                        "clips": tried,
                    }
                )
            log(f"{mark.name} at {size}: " + ", ".join(f"{c} {v[0]}/{v[2]}" for c, v in counts.items()))
    return rows


def unmarked_clips(count: int, workdir: Path) -> list[tuple[str, np.ndarray]]:
    """``count`` varied unmarked clips at 256-640 px: photos moved three ways, synthetic content,
    a fifth of them through H.264 at CRF 18-28."""
    rng = np.random.default_rng(7)
    pictures = [(name, photo(name)) for name in (*PHOTOS, "camera", "hubble_deep_field", "coins", "page")]
    pictures += [(f"samples-{i}", picture) for i, picture in enumerate(sample_photos())]
    kinds = (
        "noise",
        "gaussian-noise",
        "grey-noise",
        "gradient",
        "radial",
        "flat",
        "grating",
        "checker",
        "blobs",
    )
    clips = []
    for index in range(count):
        size = int(rng.choice([256, 320, 384, 512, 640]))
        if index % 2 == 0:
            name, picture = pictures[(index // 2) % len(pictures)]
            motion = ("pan", "zoom", "static")[(index // 2) % 3]
            label, frames = f"{name} {motion}", pan(picture, size, motion=motion)
        else:
            kind = kinds[(index // 2) % len(kinds)]
            label, frames = kind, synthetic(kind, size, seed=index)
        if index % 5 == 4:
            crf = int(rng.choice([18, 23, 28]))
            label, frames = f"{label} (H.264 CRF {crf})", h264(frames, crf, workdir)
        clips.append((f"{label} {size}px", frames))
    return clips


def bench_false_positives(count: int, workdir: Path) -> dict[str, object]:
    worst, found, bounds = None, [], []
    for label, frames in unmarked_clips(count, workdir):
        declared = read_declared_marks(list(frames))
        best = declared.readings[0]
        bounds.append(best.false_positive_bound)
        if declared.found:
            found.append(label)
        if worst is None or best.false_positive_bound < worst[1]:
            worst = (label, best.false_positive_bound, best.mark, best.matched, best.bits)
    bounds_arr = np.array(bounds)
    return {
        "clips": count,
        "found": found,
        "smallest_bound": worst[1],
        "smallest_bound_clip": f"{worst[0]} ({worst[2]}: {worst[3]} of {worst[4]} bits)",
        "bounds_below_1e-2": int(np.sum(bounds_arr < 1e-2)),
        "bounds_below_1e-3": int(np.sum(bounds_arr < 1e-3)),
        "expected_false_positives_at_threshold": count * MAX_FALSE_POSITIVE,
    }


def bench_cost(repeats: int) -> list[dict[str, object]]:
    """Milliseconds per frame: this reader (all four marks), and the package's decoder (one mark)."""
    rows = []
    image = photo("astronaut")
    for width, height in ((256, 256), (512, 512), (1280, 720), (1920, 1080)):
        frames = [cv2.resize(image, (width, height))] * FRAMES
        start = time.perf_counter()
        for _ in range(repeats):
            read_declared_marks(frames)
        ours = (time.perf_counter() - start) / repeats / FRAMES * 1000
        decoder = WatermarkDecoder("bits", 48)
        bgr = np.ascontiguousarray(frames[0][:, :, ::-1])
        start = time.perf_counter()
        for _ in range(max(1, repeats // 4)):
            decoder.decode(bgr, "dwtDct")
        package = (time.perf_counter() - start) / max(1, repeats // 4) * 1000
        rows.append(
            {
                "size": f"{width}x{height}",
                "ms_per_frame": round(ours, 2),
                "package_ms_per_frame_per_mark": round(package, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 photos per cell and 60 unmarked clips")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    photos = list(PHOTOS[:3] if args.quick else PHOTOS)
    unmarked = 60 if args.quick else 240
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        cost = bench_cost(3 if args.quick else 10)
        detection = bench_detection(photos, workdir)
        false_positives = bench_false_positives(unmarked, workdir)
    names = list(conditions(Path(".")))
    print(
        f"\nDetection ({len(photos)} marked {MARKED_FRAMES}-frame pans a cell, {FRAMES} frames read; "
        "clips whose message is found / clips, [clips where another message is found])"
    )
    print(f"{'mark':<82} {'px':>4} " + " ".join(f"{n:>13}" for n in names))
    for mark in KNOWN_MARKS:
        for size in SIZES:
            cells = {r["condition"]: r for r in detection if r["mark"] == mark.name and r["size"] == size}
            text = " ".join(
                f"{cells[n]['found']:>4}/{cells[n]['clips']:<3}"
                + (f"[{cells[n]['wrong']}]" if cells[n]["wrong"] else "").rjust(6)
                for n in names
            )
            print(f"{mark.name:<82} {size:>4} {text}")
    found = sum(int(r["found"]) for r in detection)
    named = sum(int(r["named"]) for r in detection)
    print(f"  of {found} clips found, {named} were named after the generator that marked them")
    print(
        f"\nUnmarked clips: {false_positives['clips']}, marks found: {len(false_positives['found'])} "
        f"{false_positives['found'] or ''}\n  smallest false-positive bound "
        f"{false_positives['smallest_bound']:.2e} on {false_positives['smallest_bound_clip']}; "
        f"bounds below 1e-2: {false_positives['bounds_below_1e-2']}, "
        f"below 1e-3: {false_positives['bounds_below_1e-3']}; threshold {MAX_FALSE_POSITIVE:.0e} "
        f"(at most {false_positives['expected_false_positives_at_threshold']:.1e} expected false positives)"
    )
    print("\nCost per frame (all four marks; the package's WatermarkDecoder for one 48-bit mark beside it)")
    for row in cost:
        ours, package = row["ms_per_frame"], row["package_ms_per_frame_per_mark"]
        print(f"  {row['size']:>10}: {ours:6.2f} ms   package {package:7.1f} ms")
    if args.json:
        args.json.write_text(
            json.dumps({"detection": detection, "false_positives": false_positives, "cost": cost}, indent=2)
        )


if __name__ == "__main__":
    main()
