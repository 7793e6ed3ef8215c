"""The detector's data: this generator's clips and real ones, split so nothing crosses.

* ours: the pipeline's output under a plan of sampling configurations (steps, strength, guidance,
  noise seed, clip length, size), drawn per clip from its seed, so the classifier learns the
  generator and not one setting;
* real: the ground-truth puppet render of the *same* character and poses beside every generated
  clip (a third of them as if filmed by a camera), so the classifier must learn the generator's
  traces and not who is on screen; then real footage far from puppets (:mod:`anima.detect.footage`):
  photo pans, handheld camera footage, textures and static, night scenes, documents, animals.

Every clip is derived from a seed, and each split draws its seeds from its own range (also far
from the generator's training seeds) and films its own photographs, so no character, motion or
picture is in two splits. Clips are H.264 MP4 files (CRF 18, as published), listed in
``dataset.jsonl`` with how each was made and its SHA-256. A line is appended only once its clip is
written whole, and a build skips what is listed, so a stopped build resumes where it stopped; a
plan's clip ``i`` does not depend on the counts, so a larger plan extends a smaller one.
:func:`upload_damage` degrades a clip the ways uploads do, for training and for attacks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from anima.detect import footage
from anima.errors import BadInput
from anima.media import atomic_output, read_video, write_video
from anima.provenance.watermark import CHIP, MIN_SIDE, TILE, WatermarkEmbedder, WatermarkKey

SPLIT_SEEDS = {"train": 2_000_000, "val": 3_000_000, "test": 4_000_000}
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
# Each split films its own photographs, so no picture is in two splits. Photo pans use SPLIT_PHOTOS
# (as the first builder did); handheld and night footage also the split's SPLIT_SCENES.
SPLIT_PHOTOS = {
    "train": ("coffee", "rocket", "immunohistochemistry", "brick", "gravel", "moon", "horse", "colorwheel"),
    "val": ("chelsea", "grass", "camera"),
    "test": ("astronaut", "hubble_deep_field", "coins"),
}
SPLIT_SCENES = {
    "train": SPLIT_PHOTOS["train"] + ("sklearn:flower", "retina", "cell"),
    "val": SPLIT_PHOTOS["val"] + ("motorcycle", "clock"),
    "test": SPLIT_PHOTOS["test"] + ("sklearn:china",),
}
SPLIT_DOCUMENTS = {"train": ("page",), "val": ("text",), "test": ()}  # besides procedural pages
# The only animal photographs bundled offline are one cat (chelsea and cat are the same picture).
SPLIT_ANIMALS = {"train": (), "val": ("chelsea", "cat"), "test": ()}
# The real clips beyond the puppet twins take their sources in this order, over and over (a
# source a split has no pictures for gives its turn to handheld camera footage).
REAL_CYCLE = (
    "camera", "photo", "texture", "night", "camera", "document", "photo", "texture", "animal", "camera",
    "night", "photo", "texture", "camera", "document", "photo", "night", "texture", "animal", "camera",
)  # fmt: skip
OTHER_SEEDS = 500_000  # offset of the real clips that are not puppet twins, within a split's range
PRESETS = {"small": (260, 440), "full": (1500, 2000)}  # (generated, real) clips over all splits
PUBLISH_CRF = 18
LISTING = "dataset.jsonl"
PLAN = "plan.json"
_DRAW_SALT = 31_337

Size = tuple[int, int]


@dataclass(frozen=True)
class ClipEntry:
    """One line of ``dataset.jsonl``. Listings written before ``config`` and ``sha256`` load with
    their defaults."""

    path: str  # relative to the dataset folder
    split: str
    label: int  # 1 ours, 0 real
    source: str  # "anima-puppets" (ours); real: "puppet", "photo", "camera", "texture", "night", ...
    seed: int
    config: dict[str, Any] = field(default_factory=dict)  # how it was made: sampling, size, faults
    sha256: str = ""  # of the clip file

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClipEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass(frozen=True)
class SamplingPlan:
    """The choices every clip draws from, uniformly and from its own seed (repeat a value to weight
    it). Generated clips draw steps, strength, guidance and a noise seed; every clip, real or ours,
    draws its length and size from the same draw, so neither tells the label. A draw that would
    cost more than ``max_cost`` is drawn again (see :func:`sampling_cost`), which keeps a CPU build
    near the default setting's cost while every choice still occurs. ``camera_share`` of the
    puppet twins are filmed (camera faults)."""

    steps: tuple[int, ...] = (5, 8, 10, 10, 15, 20)
    strength: tuple[float, ...] = (0.3, 0.45, 0.45, 0.6, 0.8, 1.0)
    guidance: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.5, 2.5)
    frames: tuple[int, ...] = (8, 12, 12, 16, 24)
    sizes: tuple[Size, ...] = ((128, 128), (128, 128), (96, 96), (64, 64), (128, 96), (96, 128))
    max_cost: float = 128.0
    camera_share: float = 1 / 3

    def check(self) -> None:
        for name in ("steps", "strength", "guidance", "frames", "sizes"):
            if not getattr(self, name):
                raise BadInput(f"the sampling plan's {name} has no choices")
        checks = (
            ("steps", all(s >= 1 for s in self.steps), "at least 1"),
            ("strength", all(0 < s <= 1 for s in self.strength), "in (0, 1]"),
            ("guidance", all(g >= 1 for g in self.guidance), "at least 1"),
            ("frames", all(f >= 1 for f in self.frames), "at least 1"),
            ("sizes", all(min(size) >= 16 for size in self.sizes), "at least 16 px a side"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise BadInput(f"the sampling plan's {name} must be {rule}, got {getattr(self, name)}")
        cheapest = sampling_cost(
            min(self.steps), min(self.strength), min(self.guidance), min(self.frames),
            min(w * h for w, h in self.sizes),
        )  # fmt: skip
        if cheapest > self.max_cost:
            raise BadInput(
                f"no draw of the sampling plan costs at most {self.max_cost} (the least: {cheapest})"
            )

    def draw(self, seed: int) -> dict[str, Any]:
        """Clip ``seed``'s configuration (for a real clip only frames, width and height matter)."""
        rng = np.random.default_rng([_DRAW_SALT, seed])
        while True:
            width, height = self.sizes[int(rng.integers(len(self.sizes)))]
            draw = {
                "steps": int(self.steps[int(rng.integers(len(self.steps)))]),
                "strength": float(self.strength[int(rng.integers(len(self.strength)))]),
                "guidance": float(self.guidance[int(rng.integers(len(self.guidance)))]),
                "noise_seed": int(rng.integers(2**31)),
                "frames": int(self.frames[int(rng.integers(len(self.frames)))]),
                "width": int(width),
                "height": int(height),
                "filmed": bool(rng.random() < self.camera_share),
            }
            cost = sampling_cost(
                draw["steps"], draw["strength"], draw["guidance"], draw["frames"], width * height
            )
            if cost <= self.max_cost:
                return draw


def sampling_cost(steps: int, strength: float, guidance: float, frames: int, pixels: int) -> float:
    """Denoising work in frame-steps at 128x128: the steps that run (the last ``strength`` share),
    twice under guidance, times frames and pixels. The shipped model's default (10 steps at 0.45,
    no guidance) on 12 frames of 128 px costs 48."""
    return max(1, round(steps * strength)) * (2 if guidance > 1 else 1) * frames * pixels / 128**2


@dataclass(frozen=True)
class DatasetPlan:
    """How many clips per split: ``generated`` of ours, each with the real puppet render of its
    character and poses, and ``real`` in all (those twins first, then the other real sources)."""

    generated: dict[str, int]
    real: dict[str, int]
    sampling: SamplingPlan = SamplingPlan()

    @classmethod
    def of_size(cls, generated: int, real: int, sampling: SamplingPlan | None = None) -> DatasetPlan:
        """``generated`` and ``real`` clips over all splits, shared by SPLIT_FRACTIONS."""
        return cls(_shares(generated), _shares(real), sampling or SamplingPlan())

    def check(self) -> None:
        for counts in (self.generated, self.real):
            for split, count in counts.items():
                if split not in SPLIT_SEEDS:
                    raise BadInput(f"split must be one of {', '.join(SPLIT_SEEDS)}, got {split!r}")
                if not 0 <= count < OTHER_SEEDS:
                    raise BadInput(f"clips per split must be in 0..{OTHER_SEEDS - 1}, got {count}")
        self.sampling.check()


def _shares(total: int) -> dict[str, int]:
    """``total`` shared by SPLIT_FRACTIONS, largest remainders first."""
    if total < 0:
        raise BadInput(f"clip counts must be at least 0, got {total}")
    exact = {split: total * share for split, share in SPLIT_FRACTIONS.items()}
    counts = {split: int(value) for split, value in exact.items()}
    for split in sorted(exact, key=lambda s: counts[s] - exact[s])[: total - sum(counts.values())]:
        counts[split] += 1
    return counts


def photo_pan(
    seed: int, frames: int, size: int | Size, names: tuple[str, ...] = SPLIT_PHOTOS["train"]
) -> np.ndarray:
    """A camera move (pan and zoom) over one of the package photographs ``names``: real footage,
    real texture."""
    return footage.photo_pan(seed, frames, size, names)


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


# A throwaway key: what the detector must not learn is one deployment's pattern, only that a mark
# may be there. The stamped version of a clip draws its layout and offset from the clip itself.
_STAMP_KEY = WatermarkKey(hashlib.sha256(b"anima detector: a throwaway watermark key").digest())


def stamped(frames: np.ndarray) -> np.ndarray:
    """``frames`` as Anima publishes them: its watermark (a throwaway key), then H.264 CRF 23.

    Why both labels get this version: the mark is high-frequency noise laid over the very traces the
    detector reads, and a detector trained on unmarked clips scored stamped generated clips ~3 lower
    (12 test clips: 5.0 -> 1.4 typical, threshold 3.4), so a clip whose mark was damaged past reading,
    or removed by estimation, went uncaught; a stamped real clip is still real."""
    if min(frames.shape[1:3]) < MIN_SIDE:
        return reencode(frames, 23)
    draw = np.random.default_rng(int.from_bytes(hashlib.sha256(frames[0].tobytes()).digest()[:8], "little"))
    chips = TILE // CHIP
    embedder = WatermarkEmbedder(
        int(draw.integers(0, 2**32)),
        _STAMP_KEY,
        variant=int(draw.integers(0, _STAMP_KEY.variants)),
        offset=(CHIP * int(draw.integers(0, chips)), CHIP * int(draw.integers(0, chips))),
    )
    return reencode(np.stack([embedder.embed(frame) for frame in frames]), 23)


ATTACKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda frames: frames,
    "crf28": lambda frames: reencode(frames, 28),
    "resize0.5": lambda frames: resize(frames, 0.5),
    "stamped": stamped,
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


OURS = "anima-puppets"


@dataclass(frozen=True)
class PlannedJob:
    """One seed's clips: a generated clip with (``twin``) its real puppet render, or one real clip."""

    split: str
    seed: int
    source: str
    twin: bool = False

    def paths(self) -> list[str]:
        if self.source == OURS:
            twin = [f"{self.split}/real/puppet-{self.seed}.mp4"] if self.twin else []
            return [*twin, f"{self.split}/ours/puppet-{self.seed}.mp4"]
        return [f"{self.split}/real/{self.source}-{self.seed}.mp4"]


def _real_source(split: str, index: int) -> str:
    source = REAL_CYCLE[index % len(REAL_CYCLE)]
    return "camera" if source == "animal" and not SPLIT_ANIMALS[split] else source


def plan_jobs(plan: DatasetPlan) -> list[PlannedJob]:
    """The plan's clips in build order: every split and every kind interleaved in proportion, so
    a build stopped half-way has some of each."""
    queues = []
    for split, first in SPLIT_SEEDS.items():
        generated, real = plan.generated.get(split, 0), plan.real.get(split, 0)
        queues.append([PlannedJob(split, first + i, OURS, twin=i < real) for i in range(generated)])
        others = range(max(0, real - generated))
        queues.append([PlannedJob(split, first + OTHER_SEEDS + j, _real_source(split, j)) for j in others])
    ranked = [
        ((k + 0.5) / len(queue), order, job)
        for order, queue in enumerate(queues)
        for k, job in enumerate(queue)
    ]
    return [job for _, _, job in sorted(ranked, key=lambda item: item[:2])]


def _real_clip(job: PlannedJob, frames: int, size: Size) -> tuple[np.ndarray, dict[str, Any]]:
    if job.source == "photo":
        names = SPLIT_PHOTOS[job.split]
        return photo_pan(job.seed, frames, size, names), {"picture": names[job.seed % len(names)]}
    if job.source == "camera":
        return footage.handheld(job.seed, frames, size, SPLIT_SCENES[job.split])
    if job.source == "texture":
        return footage.texture(job.seed, frames, size)
    if job.source == "night":
        return footage.night(job.seed, frames, size, SPLIT_SCENES[job.split])
    if job.source == "document":
        return footage.document(job.seed, frames, size, SPLIT_DOCUMENTS[job.split])
    if job.source == "animal":
        return footage.animal(job.seed, frames, size, SPLIT_ANIMALS[job.split])
    raise BadInput(f"unknown real source {job.source!r}")


def _generate(pipe: Any, clip: Any, draw: dict[str, Any]) -> np.ndarray:
    """The pipeline's rendering of ``clip``'s poses after its first frame, from that frame."""
    import torch

    from anima.pose.render import render_pose

    height, width = clip.frames.shape[1:3]
    targets = np.arange(1, len(clip.frames))
    output = pipe(
        clip.frames[0],
        [render_pose(clip.keypoints[i], (width, height)) for i in targets],
        reference_pose=clip.keypoints[0],
        poses=clip.keypoints[targets],
        num_inference_steps=draw["steps"],
        guidance_scale=draw["guidance"],
        strength=draw["strength"],
        generator=torch.Generator().manual_seed(draw["noise_seed"]),
        output_type="np",
    ).frames[0]
    return (np.asarray(output) * 255).round().astype(np.uint8)


class _Generator:
    """The pipeline, loaded on first use (a build with nothing left to generate never loads it)."""

    def __init__(self, model: Path | None, sampling: SamplingPlan) -> None:
        self.model, self.sampling, self._pipe = model, sampling, None

    def __call__(self, clip: Any, draw: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        from anima.generate.runner import load_pipeline, model_name

        if self._pipe is None:
            pipe = load_pipeline(self.model, "cpu")
            pipe.set_progress_bar_config(disable=True)
            step = pipe.vae_scale_factor
            if bad := [size for size in self.sampling.sizes if size[0] % step or size[1] % step]:
                raise BadInput(f"sizes must be multiples of the model's {step} px, got {bad}")
            self._pipe = pipe
        if not self._pipe.warp_guided:  # strength < 1 starts from the limb warp only such a model has
            draw = {**draw, "strength": 1.0}
        config = {"model": model_name(self._pipe)} | {
            key: draw[key]
            for key in ("steps", "strength", "guidance", "noise_seed", "frames", "width", "height")
        }
        return _generate(self._pipe, clip, draw), config


def _make(
    job: PlannedJob, todo: list[str], sampling: SamplingPlan, generate: _Generator
) -> Iterator[tuple[ClipEntry, np.ndarray]]:
    """The clips of ``job`` still to write (paths in ``todo``), with their entries (no hash yet)."""
    draw = sampling.draw(job.seed)
    shape = {"frames": draw["frames"], "width": draw["width"], "height": draw["height"]}
    size = (draw["width"], draw["height"])
    real_path, *_ = job.paths()
    if job.source != OURS:
        frames, drawn = _real_clip(job, draw["frames"], size)
        yield ClipEntry(real_path, job.split, 0, job.source, job.seed, shape | drawn), frames
        return
    from anima.puppets import sample_clip

    clip = sample_clip(job.seed, frames=draw["frames"] + 1, size=size)
    if job.twin and real_path in todo:
        frames, config = clip.frames[1:], dict(shape)
        if draw["filmed"]:
            frames, faults = footage.filmed_puppet(frames, job.seed)
            config["filmed"] = faults
        yield ClipEntry(real_path, job.split, 0, "puppet", job.seed, config), frames
    ours_path = job.paths()[-1]
    if ours_path in todo:
        frames, config = generate(clip, draw)
        yield ClipEntry(ours_path, job.split, 1, OURS, job.seed, config), frames


def _write(folder: Path, entry: ClipEntry, frames: np.ndarray) -> ClipEntry:
    """Write the clip atomically (a stopped build leaves no truncated clip); its entry with its hash."""
    path = folder / entry.path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as partial:
        write_video(partial, frames, fps=12, crf=PUBLISH_CRF)
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return ClipEntry(**{**asdict(entry), "sha256": digest})


def _append(listing: Path, entry: ClipEntry) -> None:
    with listing.open("a", encoding="utf-8") as file:
        file.write(json.dumps(asdict(entry)) + "\n")
        file.flush()
        os.fsync(file.fileno())


def read_listing(folder: Path) -> list[ClipEntry]:
    """Every entry of ``folder``'s listing, in the order written (older listings: missing fields get
    their defaults). A last line cut short by a stopped build is ignored."""
    listing = Path(folder) / LISTING
    if not listing.is_file():
        raise BadInput(f"{folder}: no {LISTING} (build it with `anima detector dataset`)")
    lines = listing.read_text(encoding="utf-8").split("\n")
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(ClipEntry.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError, AttributeError):
            if number == len(lines):  # torn by a stop mid-write; its clip is made again
                break
            raise BadInput(f"{listing}: line {number} is not a clip entry") from None
    return entries


def _start(folder: Path, sampling: SamplingPlan) -> set[str]:
    """Check that ``folder`` is new or was built with this sampling plan; the paths it lists."""
    folder.mkdir(parents=True, exist_ok=True)
    recorded, listing = folder / PLAN, folder / LISTING
    wanted = {"version": 2, "sampling": json.loads(json.dumps(asdict(sampling)))}
    if recorded.is_file():
        if json.loads(recorded.read_text(encoding="utf-8")) != wanted:
            raise BadInput(f"{folder}: built with another sampling plan (see {PLAN}); use another folder")
    elif listing.is_file() and listing.stat().st_size:
        raise BadInput(f"{folder}: a dataset of an older builder (no {PLAN}); build into another folder")
    else:
        with atomic_output(recorded) as partial:
            partial.write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")
    if not listing.is_file():
        return set()
    text = listing.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):  # a torn last line: drop it before appending after it
        with listing.open("r+", encoding="utf-8") as file:
            file.truncate(len(text[: text.rfind("\n") + 1].encode()))
    return {entry.path for entry in read_listing(folder)}


def build_dataset(
    folder: Path,
    plan: DatasetPlan,
    model: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ClipEntry]:
    """Write the clips of ``plan`` under ``folder``, each listed once written, skipping those already
    listed; ``progress(done, total)`` after each clip (first with what an earlier run did).

    Returns the plan's entries, in plan order, with their hashes."""
    plan.check()
    folder = Path(folder)
    done = _start(folder, plan.sampling)
    jobs = plan_jobs(plan)
    planned = [path for job in jobs for path in job.paths()]
    count = sum(path in done for path in planned)
    if progress:
        progress(count, len(planned))
    generate = _Generator(model, plan.sampling)
    for job in jobs:
        todo = [path for path in job.paths() if path not in done]
        if not todo:
            continue
        for entry, frames in _make(job, todo, plan.sampling, generate):
            _append(folder / LISTING, _write(folder, entry, frames))
            count += 1
            if progress:
                progress(count, len(planned))
    listed = {entry.path: entry for entry in read_listing(folder)}
    return [listed[path] for path in planned]


def load_dataset(folder: Path, split: str) -> tuple[list[np.ndarray], np.ndarray, list[ClipEntry]]:
    """The clips (decoded), labels and entries of one split."""
    folder = Path(folder)
    entries = [e for e in read_listing(folder) if e.split == split]
    if not entries:
        raise BadInput(f"{folder}: the {split} split is empty")
    clips = [read_video(folder / e.path).frames for e in entries]
    return clips, np.array([e.label for e in entries]), entries
