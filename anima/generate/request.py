"""What a user asks the generator for (torch-free, so the CLI can build it without loading models)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from anima import media
from anima.errors import BadInput


@dataclass(frozen=True)
class GenerationRequest:
    """What to animate and how; every field but the paths' contents is recorded with the output.

    ``steps``, ``guidance`` and ``strength`` ``None`` are the model's own defaults; ``width`` and
    ``height`` ``None`` are the model's native size (one given alone, the other follows the
    reference's shape; a reference of another shape is padded to fit, see ``anima.generate.fitting``);
    ``fps`` ``None`` is the pose source's; ``frames`` is the length of a built-in motion;
    ``reference_pose`` is the reference's one-frame pose file (a warp-guided model needs it; without
    it the pose is extracted from the picture).
    """

    reference: Path
    pose: str
    frames: int = 48
    steps: int | None = None
    guidance: float | None = None
    strength: float | None = None
    seed: int = 0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    align: bool = False
    reference_pose: Path | None = None

    def __post_init__(self) -> None:
        """Every argument checked when the request is made, before any file is read or model loaded
        (0 is refused, never taken for "the default")."""
        media.check_video_size(self.frames, self.width, self.height)
        media.check_fps(self.fps)
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise BadInput(f"steps must be in 1..1000, got {self.steps}")
        if self.guidance is not None and not self.guidance >= 1.0:
            raise BadInput(f"guidance must be at least 1.0, got {self.guidance}")
        if self.strength is not None and not 0 < self.strength <= 1:
            raise BadInput(f"strength must be in (0, 1], got {self.strength}")

    def to_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}
