"""What a user asks the generator for (torch-free, so the CLI can build it without loading models)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GenerationRequest:
    """What to animate and how; every field but the paths' contents is recorded with the output.

    ``steps``, ``guidance`` and ``strength`` ``None`` are the model's own defaults; ``width``
    ``None`` is the model's native width and ``height`` ``None`` follows the reference's aspect;
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

    def to_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}
