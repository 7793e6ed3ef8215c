"""A training run's settings, read from TOML (``configs/anima-puppets.toml``) or built in Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from anima import tomlconfig
from anima.errors import BadInput
from anima.tomlconfig import setting
from anima.training.architecture import PuppetArchitecture


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; read from TOML (``[architecture]`` holds :class:`PuppetArchitecture`).

    Example:
        ``TrainConfig.from_toml(Path("configs/anima-puppets.toml"))``; ``output`` and ``work_dir``
        are required, relative paths are taken from the file's folder.
    """

    output: Path
    work_dir: Path
    architecture: PuppetArchitecture = field(default_factory=PuppetArchitecture)
    train_clips: int = setting(600, at_least=1)
    clip_length: int = setting(24, at_least=1)
    first_seed: int = setting(0, at_least=0)
    validation_seeds: tuple[int, ...] = setting((900_001, 900_002, 900_003, 900_004), at_least=0)
    vae_steps: int = setting(1500, at_least=0)
    vae_batch: int = setting(16, at_least=1)
    vae_crop: int = setting(64, at_least=1)
    vae_lr: float = setting(1e-3, above=0)
    image_steps: int = setting(3000, at_least=0)
    image_batch: int = setting(8, at_least=1)
    image_lr: float = setting(3e-4, above=0)
    motion_steps: int = setting(500, at_least=0)
    motion_batch: int = setting(2, at_least=1)
    clip_frames: int = setting(8, at_least=1)
    motion_lr: float = setting(3e-4, above=0)
    max_timestep: int = setting(700, at_least=1, at_most=1000)
    warp_input_share: float = setting(0.5, at_least=0, at_most=1)
    ema_decay: float = setting(0.995, at_least=0, at_most=1)
    checkpoint_every: int = setting(100, at_least=1)
    sample_every: int = setting(250, at_least=1)
    log_every: int = setting(10, at_least=1)
    seed: int = setting(0, at_least=0)

    def __post_init__(self) -> None:
        tomlconfig.validate(self, "training config")
        arch = self.architecture
        checks = (
            (self.clip_frames <= min(self.clip_length, arch.motion_frames),
             f"`clip_frames` ({self.clip_frames}) must fit in `clip_length` and `motion_frames`"),
            (self.vae_crop <= arch.size, f"`vae_crop` ({self.vae_crop}) must be at most `size`"),
            (bool(self.validation_seeds), "`validation_seeds` must name at least one clip"),
        )  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise BadInput(f"training config: {message}")

    @classmethod
    def from_toml(cls, path: Path) -> TrainConfig:
        values = tomlconfig.load(path, cls, base=Path(path).resolve().parent)
        try:
            return cls(**values)
        except BadInput as exc:  # a check across settings: say which file
            raise BadInput(f"{path}: {str(exc).removeprefix('training config: ')}") from None
