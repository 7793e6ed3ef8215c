"""The gate's rules, from a TOML policy file with safe defaults.

``$ANIMA_HOME/policy.toml`` (or ``--policy FILE``) may set any of::

    purposes = ["fashion", "entertainment", "education", "advertising", "research"]
    backend = "dlib:cnn"            # "dlib" (HOG first, ~5x faster), or "insightface:buffalo_l"
    backend_model_dir = "/models/insightface"   # for insightface packs
    match_threshold = 0.55          # distance under which two faces are one person (see threshold_for)
    ambiguity_margin = 0.08         # two identities closer than this to each other's distance: ambiguous
    min_face_size = 64              # pixels across the face box; smaller faces cannot be verified
    min_sharpness = 20.0            # variance of the Laplacian on the aligned face; blurrier: unverifiable
    drift_sample_frames = 8         # output frames checked for identity drift

Unknown keys are refused, so a typo never silently weakens the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anima import tomlconfig
from anima.errors import BadInput
from anima.policy.faces import FaceBackend
from anima.tomlconfig import setting

DEFAULT_PURPOSES = ("fashion", "entertainment", "education", "advertising", "research")
# Measured on package-shipped photos (benchmarks/faces.py): dlib's own 0.6 admitted 3 of 2,240
# impostor pairs (lowest 0.593) while no genuine pair exceeded 0.547; 0.55 separated both.
POLICY_THRESHOLDS = {"dlib": 0.55}


@dataclass(frozen=True)
class PolicyRules:
    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    backend: str = "dlib:cnn"  # the CNN pass finds faces HOG misses beside easy ones
    backend_model_dir: Path | None = None
    match_threshold: float | None = setting(None, above=0)
    ambiguity_margin: float = setting(0.08, at_least=0)
    min_face_size: int = setting(64, at_least=32)
    min_sharpness: float = setting(20.0, at_least=0)
    drift_sample_frames: int = setting(8, at_least=1)

    def __post_init__(self) -> None:
        tomlconfig.validate(self, "policy")

    def threshold_for(self, backend: FaceBackend) -> float:
        """The match threshold: the policy's, else a measured default for the backend, else its own."""
        if self.match_threshold is not None:
            return self.match_threshold
        return POLICY_THRESHOLDS.get(backend.name, backend.match_threshold)

    def check_purpose(self, purpose: str) -> None:
        if purpose not in self.purposes:
            raise BadInput(f"unknown purpose {purpose!r} (this policy knows: {', '.join(self.purposes)})")


def load_rules(path: Path | None = None, home: Path | None = None) -> PolicyRules:
    """Rules from ``path``, else ``home/policy.toml`` when it exists, else the defaults."""
    if path is None and home is not None and (home / "policy.toml").exists():
        path = home / "policy.toml"
    if path is None:
        return PolicyRules()
    return PolicyRules(**tomlconfig.load(path, PolicyRules))
