"""The detector's data: real clips and this generator's clips, split so nothing crosses.

* real: ground-truth puppet renders, and camera moves over photographs shipped in packages;
* ours: the pipeline's output for the *same* characters and poses as the real puppet clips, so the
  classifier must learn the generator's traces, not who is on screen.

Every clip is derived from a seed, and each split draws its seeds from its own range (also far
from the generator's training seeds), so no character and no motion is in two splits. Clips are
H.264 MP4 files (CRF 18, as published), listed in ``dataset.jsonl``; a build that stopped resumes.
:func:`upload_damage` degrades a clip the ways uploads do, for training and for attacks.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from skimage import data as photos
from skimage.util import img_as_ubyte

from anima.errors import BadInput
from anima.media import atomic_output, read_video, write_video

SPLIT_SEEDS = {"train": 2_000_000, "val": 3_000_000, "test": 4_000_000}
# Each split pans over its own photographs, so no picture is in two splits.
SPLIT_PHOTOS = {
    "train": ("coffee", "rocket", "immunohistochemistry", "brick", "gravel", "moon", "horse", "colorwheel"),
    "val": ("chelsea", "grass", "camera"),
    "test": ("astronaut", "hubble_deep_field", "coins"),
}
PUBLISH_CRF = 18
LISTING = "dataset.jsonl"


@dataclass(frozen=True)
class ClipEntry:
    path: str  # relative to the dataset folder
    split: str
    label: int  # 1 ours, 0 real
    source: str  # "puppet", "photo" or "anima-puppets"
    seed: int


@dataclass(frozen=True)
class DatasetPlan:
    """How many clips of each source per split."""

    puppets: dict[str, int]
    photos: dict[str, int]
    frames: int = 12
    size: int = 128


def photo_pan(
    seed: int, frames: int, size: int, names: tuple[str, ...] = SPLIT_PHOTOS["train"]
) -> np.ndarray:
    """A camera move (pan and zoom) over one of the package photographs ``names``: real footage,
    real texture."""
    rng = np.random.default_rng(seed)
    image = img_as_ubyte(getattr(photos, names[seed % len(names)])())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    height, width = image.shape[:2]
    start_side, end_side = rng.uniform(0.35, 0.9, 2) * min(height, width)
    start = rng.uniform(0, 1, 2)
    end = rng.uniform(0, 1, 2)
    out = []
    for t in np.linspace(0, 1, frames):
        side = int(start_side + (end_side - start_side) * t)
        y = int((height - side) * (start[0] + (end[0] - start[0]) * t))
        x = int((width - side) * (start[1] + (end[1] - start[1]) * t))
        out.append(cv2.resize(image[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def _encode_decode(frames: np.ndarray, crf: int) -> np.ndarray:
    """The frames after an H.264 round trip at ``crf`` (in memory)."""
    height, width = frames.shape[1:3]
    frames = frames[:, : height - height % 2, : width - width % 2]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def reencode(frames: np.ndarray, crf: int = 28) -> np.ndarray:
    return _encode_decode(frames, crf)


def resize(frames: np.ndarray, factor: float = 0.5) -> np.ndarray:
    height, width = frames.shape[1:3]
    size = (max(2, round(width * factor)), max(2, round(height * factor)))
    return np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in frames])


ATTACKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda frames: frames,
    "crf28": lambda frames: reencode(frames, 28),
    "resize0.5": lambda frames: resize(frames, 0.5),
}


def upload_damage(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random chain of what uploads do: crop, resize, blur, noise, brightness, then H.264 at CRF 18-35."""
    height, width = frames.shape[1:3]
    if rng.random() < 0.5:  # crop up to 15% away
        keep = rng.uniform(0.85, 1.0)
        h, w = int(height * keep), int(width * keep)
        y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        frames = frames[:, y : y + h, x : x + w]
    if rng.random() < 0.5:
        frames = resize(frames, rng.uniform(0.5, 1.0))
    if rng.random() < 0.3:
        sigma = rng.uniform(0.3, 1.2)
        frames = np.stack([cv2.GaussianBlur(frame, (0, 0), sigma) for frame in frames])
    work = frames.astype(np.float32)
    if rng.random() < 0.3:
        work += rng.normal(0, rng.uniform(1, 4), work.shape)
    if rng.random() < 0.5:
        work *= rng.uniform(0.9, 1.1)
    frames = np.clip(work, 0, 255).round().astype(np.uint8)
    return _encode_decode(frames, int(rng.integers(18, 36)))


def _write(folder: Path, entry: ClipEntry, frames: np.ndarray) -> None:
    path = folder / entry.path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as partial:  # a stopped build leaves no truncated clip to skip later
        write_video(partial, frames, fps=12, crf=PUBLISH_CRF)


def build_dataset(
    folder: Path,
    plan: DatasetPlan,
    model: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ClipEntry]:
    """Write the clips of ``plan`` under ``folder`` (skipping those already there) and the listing."""
    if plan.frames < 1:
        raise BadInput(f"clips need at least one frame, got {plan.frames}")
    from anima.generate.runner import load_pipeline
    from anima.puppets import sample_clip
    from anima.training.trainer import generate_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(model, "cpu")
    pipe.set_progress_bar_config(disable=True)
    entries: list[ClipEntry] = []
    targets = np.arange(1, plan.frames + 1)
    for split, first_seed in SPLIT_SEEDS.items():
        for index in range(plan.puppets.get(split, 0)):
            seed = first_seed + index
            real = ClipEntry(f"{split}/real/puppet-{seed}.mp4", split, 0, "puppet", seed)
            ours = ClipEntry(f"{split}/ours/puppet-{seed}.mp4", split, 1, "anima-puppets", seed)
            if not ((folder / real.path).is_file() and (folder / ours.path).is_file()):
                clip = sample_clip(seed, frames=plan.frames + 1, size=(plan.size, plan.size))
                generated = generate_clip(pipe, clip, targets, generator=torch.Generator().manual_seed(seed))
                _write(folder, real, clip.frames[targets])
                _write(folder, ours, generated)
            entries += [real, ours]
            if progress:
                progress(f"{split} puppet {index + 1}/{plan.puppets[split]}")
        for index in range(plan.photos.get(split, 0)):
            seed = first_seed + 500_000 + index
            entry = ClipEntry(f"{split}/real/photo-{seed}.mp4", split, 0, "photo", seed)
            if not (folder / entry.path).is_file():
                _write(folder, entry, photo_pan(seed, plan.frames, plan.size, SPLIT_PHOTOS[split]))
            entries.append(entry)
            if progress:
                progress(f"{split} photo {index + 1}/{plan.photos[split]}")
    listing = folder / LISTING
    partial = listing.with_suffix(".partial")
    partial.write_text("".join(json.dumps(asdict(e)) + "\n" for e in entries))
    partial.replace(listing)
    return entries


def load_dataset(folder: Path, split: str) -> tuple[list[np.ndarray], np.ndarray, list[ClipEntry]]:
    """The clips (decoded), labels and entries of one split."""
    folder = Path(folder)
    listing = folder / LISTING
    if not listing.is_file():
        raise BadInput(f"{folder}: no {LISTING} (build it with `anima detector dataset`)")
    entries = [ClipEntry(**json.loads(line)) for line in listing.read_text().splitlines()]
    entries = [e for e in entries if e.split == split]
    if not entries:
        raise BadInput(f"{folder}: the {split} split is empty")
    clips = [read_video(folder / e.path).frames for e in entries]
    return clips, np.array([e.label for e in entries]), entries
