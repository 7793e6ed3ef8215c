"""The API's tool namespaces: ``anima.models`` (import published weights, train the default model),
``anima.detector`` (its data, training and evaluation), ``anima.pose`` (extract and render poses)
and ``anima.puppets`` (the procedural training world). Heavy imports happen inside each call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from anima import media
from anima.errors import BadInput
from anima.media import atomic_output

if TYPE_CHECKING:
    from anima.api.core import Anima
    from anima.detect.dataset import ClipEntry
    from anima.generate.moore import ImportReport
    from anima.pose import PoseSequence

Metrics = dict[str, dict[str, float]]


class ModelTools:
    """``anima.models``: animation model folders."""

    def import_moore(
        self, weights_dir: str | Path, output: str | Path, *, half: bool = False
    ) -> ImportReport:
        """Convert Moore-AnimateAnyone's ``pretrained_weights`` folder into an Anima model folder,
        mapping every key (a dropped tensor fails the import)."""
        from anima.generate.moore import import_moore

        return import_moore(Path(weights_dir), Path(output), half=half)

    def train(self, config: str | Path) -> Path:
        """Train the default model on puppets from a training config (.toml); resumes from the last
        checkpoint in the config's ``work_dir``. Returns the model folder."""
        from anima.training.config import TrainConfig
        from anima.training.trainer import train

        return train(TrainConfig.from_toml(Path(config)))


class DetectorTools:
    """``anima.detector``: the classifier of this generator's output."""

    def __init__(self, anima: Anima) -> None:
        self._anima = anima

    def dataset(
        self,
        output: str | Path | None = None,
        *,
        preset: str = "small",
        generated: int | None = None,
        real: int | None = None,
        model: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ClipEntry]:
        """Build this generator's clips under a plan of sampling configurations (steps, strength,
        guidance, seed, length, size) beside real ones (the same puppets and poses, photo pans,
        camera-like footage, textures, night scenes, documents, animals), split 60/20/20 by seed and
        picture; a re-run resumes. ``output`` defaults to ``detector-dataset`` in the Anima home;
        ``preset`` is ``small`` (260 generated + 440 real clips) or ``full`` (1,500 + 2,000);
        ``generated`` and ``real`` override its counts. ``progress(done, total)`` after each clip."""
        from anima.detect.dataset import PRESETS, DatasetPlan, build_dataset

        if preset not in PRESETS:
            raise BadInput(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        counts = PRESETS[preset]
        plan = DatasetPlan.of_size(
            counts[0] if generated is None else generated, counts[1] if real is None else real
        )
        folder = Path(output) if output is not None else self.default_dataset
        return build_dataset(folder, plan, Path(model) if model else None, progress=progress)

    @property
    def default_dataset(self) -> Path:
        """Where ``dataset`` builds unless told: outside any checkout, so a background build survives."""
        return self._anima.settings.home / "detector-dataset"

    def train(
        self,
        dataset: str | Path,
        output: str | Path,
        *,
        kind: str = "traces",
        backbone: str = "mobilenetv3_small_050",
        steps: int = 1500,
        seed: int = 0,
        progress: Callable[[int, float], None] | None = None,
    ) -> Metrics:
        """Train on the train split (with damaged copies), calibrate on val (threshold at 1% FPR);
        the test metrics. ``kind``: ``traces`` (the shipped detector: trace measurements and boosted
        trees; ``backbone`` and ``steps`` do not apply) or ``cnn`` (the timm network of v1)."""
        from anima.detect.classifier import SyntheticVideoDetector, TraceDetector
        from anima.detect.training import train_detector

        if kind == "traces":
            detector: SyntheticVideoDetector | TraceDetector = TraceDetector(seed=seed)
        elif kind == "cnn":
            detector = SyntheticVideoDetector(backbone=backbone, steps=steps, seed=seed)
        else:
            raise BadInput(f"the detector kind is traces or cnn, got {kind!r}")
        return train_detector(Path(dataset), Path(output), detector, progress=progress)

    def calibrate(self, dataset: str | Path, detector: str | Path | None = None) -> Metrics:
        """Set a trained detector's calibration and threshold anew on val; the test metrics."""
        from anima.detect.training import recalibrate

        return recalibrate(Path(dataset), Path(detector or self._anima.detector_dir))

    def evaluate(
        self, dataset: str | Path, detector: str | Path | None = None, split: str = "test"
    ) -> Metrics:
        """AUC, AP and TPR at 1% FPR on a split, clean and after each attack."""
        from anima.detect.classifier import SyntheticVideoDetector
        from anima.detect.dataset import SPLIT_SEEDS, load_dataset
        from anima.detect.training import evaluate

        if split not in SPLIT_SEEDS:
            raise BadInput(f"split must be one of {', '.join(SPLIT_SEEDS)}, got {split!r}")
        model = SyntheticVideoDetector.load(Path(detector or self._anima.detector_dir))
        clips, labels, _ = load_dataset(Path(dataset), split)
        return evaluate(model, clips, labels)


class PoseTools:
    """``anima.pose``: pose sequences."""

    def __init__(self, anima: Anima) -> None:
        self._anima = anima

    def extract(
        self,
        video: str | Path,
        output: str | Path,
        *,
        render: str | Path | None = None,
        dwpose: str | Path | None = None,
    ) -> PoseSequence:
        """Extract an OpenPose-18 pose sequence from a driving video (MediaPipe, or DWPose from a
        folder of ONNX models) into a .json, and optionally its rendered skeleton video."""
        from anima.pose import extract_driving_pose, render_video

        for target in (output, render):  # before minutes of extraction, not after them
            if target is not None:
                media.check_output_folder(Path(target))
        sequence = extract_driving_pose(
            Path(video), dwpose_models=Path(dwpose) if dwpose else None, tool_dir=self._anima.pose_tool_dir
        )
        with atomic_output(Path(output)) as tmp:
            sequence.save(tmp)
        if render is not None:
            with atomic_output(Path(render)) as tmp:
                render_video(sequence, tmp)
        return sequence

    def render(
        self,
        pose: str | Path,
        output: str | Path,
        *,
        width: int | None = None,
        height: int | None = None,
        frames: int = 48,
    ) -> int:
        """Render a pose .json (or ``motion:NAME``) as a skeleton video; returns its frame count."""
        from anima.pose import builtin_motion, read_pose_json, render_video

        spec, output = str(pose), Path(output)
        media.check_video_size(frames, width, height)
        if output.suffix.lower() not in media.VIDEO_SUFFIXES:
            raise BadInput(f"{output}: output must be an .mp4 file")
        media.check_output_folder(output)
        if spec.startswith("motion:"):
            sequence = builtin_motion(spec, frames, 24.0, (width or 512, height or 512))
        else:
            sequence = read_pose_json(Path(pose))
        size = (sequence.width if width is None else width, sequence.height if height is None else height)
        media.check_video_size(sequence.num_frames, *size)  # a pose file sets its own length and canvas
        with atomic_output(output) as tmp:
            return render_video(sequence, tmp, size=size)


class PuppetTools:
    """``anima.puppets``: procedurally drawn characters with exact poses."""

    def sheet(
        self, output: str | Path, *, seed: int = 0, count: int = 6, frames: int = 6, size: int = 128
    ) -> None:
        """A contact sheet (.png): one puppet clip of a random kind per row, ``frames`` across."""
        import cv2

        from anima.puppets import contact_sheet

        output = Path(output)
        limits = (("count", count, 1, 1000), ("frames", frames, 1, 100), ("size", size, 32, 1024))
        for name, value, low, high in limits:
            if not low <= value <= high:
                raise BadInput(f"{name} must be in {low}..{high}, got {value}")
        if count * frames * size * size > media.MAX_VIDEO_PIXELS:
            raise BadInput(
                f"a sheet of {count}x{frames} frames of {size} px is over {media.MAX_VIDEO_PIXELS:,} pixels"
            )
        if output.suffix.lower() != ".png":
            raise BadInput(f"{output}: the contact sheet is written as .png")
        media.check_output_folder(output)
        sheet = contact_sheet(range(seed, seed + count), frames_per_clip=frames, size=(size, size))
        with atomic_output(output) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
                raise BadInput(f"{output}: cannot write the image")
