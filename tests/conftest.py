"""Shared fixtures: an isolated ANIMA_HOME with a signing identity, and small real video clips."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data
from sqlalchemy import create_engine, text

from anima import Anima
from anima.config import Settings, load_settings
from anima.media import write_video
from anima.provenance.keys import init_identity, init_watermark_key


def camera_pan(image: np.ndarray, frames: int, size: int) -> np.ndarray:
    """A slow diagonal camera move over a photo: real texture, real motion."""
    height, width = image.shape[:2]
    side = int(min(height, width) * 0.75)
    out = []
    for index in range(frames):
        t = index / max(frames - 1, 1)
        top, left = int((height - side) * 0.5 * t), int((width - side) * t)
        out.append(
            cv2.resize(
                image[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA
            )
        )
    return np.stack(out)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger database: a SQLite file, and a database in the throw-away PostgreSQL
    cluster that `.ci/run` starts (``ANIMA_TEST_POSTGRES_URL``; skipped where there is none)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    server = os.environ.get("ANIMA_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("no throw-away PostgreSQL (start one with scripts/throwaway_postgres.sh)")
    name = f"anima_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield f"{server.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ANIMA_HOME",
        "ANIMA_DATABASE_URL",
        "ANIMA_SIGNING_CERT",
        "ANIMA_SIGNING_KEY",
        "ANIMA_TRUST_ANCHORS",
        "ANIMA_CHECKPOINT_DIR",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "anima-home"
    monkeypatch.setenv("ANIMA_HOME", str(path))
    return path


@pytest.fixture
def settings(home: Path) -> Settings:
    settings = load_settings(home)
    init_identity(settings, org="Test Studio")
    init_watermark_key(settings)
    return settings


@pytest.fixture(scope="session")
def astronaut_frames() -> np.ndarray:
    return camera_pan(data.astronaut(), frames=24, size=256)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut_frames: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("clips") / "astronaut.mp4"
    write_video(path, astronaut_frames, fps=24, crf=18)
    return path


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds: what re-upload tests stamp, so that a second encode at CRF 28 leaves the watermark
    a clear margin whatever the random key and layout (24 frames read 17 of 24 key/layout pairs)."""
    path = tmp_path_factory.mktemp("clips") / "astronaut-long.mp4"
    write_video(path, camera_pan(data.astronaut(), frames=48, size=256), fps=24, crf=18)
    return path


@pytest.fixture(scope="session")
def still(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stills") / "coffee.png"
    cv2.imwrite(str(path), cv2.cvtColor(cv2.resize(data.coffee(), (384, 256)), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def studio(settings: Settings) -> Anima:
    """The Python API on the isolated home, acting as a named tester."""
    return Anima(settings.home, actor="tester")
