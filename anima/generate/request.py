"""What a user asks the generator for (torch-free, so the CLI can build it without loading models)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GenerationRequest:
    """What to animate and how; every field but the paths' contents is recorded with the output."""

    model: Path
    reference: Path
    pose: str
    frames: int = 48
    steps: int = 25
    guidance: float = 3.5
    seed: int = 0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    align: bool = False
