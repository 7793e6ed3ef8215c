"""What a user asks the generator for (torch-free, so the CLI can build it without loading models)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GenerationRequest:
    """What to animate and how; every field but the paths' contents is recorded with the output.

    ``model`` ``None`` is the shipped default model; ``steps``, ``guidance`` and ``strength`` ``None``
    are the model's own defaults; ``reference_pose`` is the reference's one-frame pose file (a
    warp-guided model needs it; without it the pose is extracted from the picture).
    """

    model: Path | None
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
