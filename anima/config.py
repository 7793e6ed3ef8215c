"""Settings: where Anima keeps its ledger, keys and models, read from the environment and an
optional ``$ANIMA_HOME/config.toml``.

Environment variables win over the file, the file over the defaults:

| setting            | env var                 | config.toml key   | default                         |
|--------------------|-------------------------|-------------------|---------------------------------|
| home               | ``ANIMA_HOME``          | (none)            | ``~/.anima``                    |
| database URL       | ``ANIMA_DATABASE_URL``  | ``database_url``  | ``sqlite:///$ANIMA_HOME/ledger.db`` |
| signing chain      | ``ANIMA_SIGNING_CERT``  | ``signing_cert``  | ``$ANIMA_HOME/keys/chain.pem``  |
| signing key        | ``ANIMA_SIGNING_KEY``   | ``signing_key``   | ``$ANIMA_HOME/keys/signing.key``|
| trust anchors      | ``ANIMA_TRUST_ANCHORS`` | ``trust_anchors`` | none (``:``-separated PEM files)|
| watermark keys     | ``ANIMA_WATERMARK_KEYS``| ``watermark_keys``| none (``:``-separated; + own keys)|
| ledger checkpoints | ``ANIMA_CHECKPOINT_DIR``| ``checkpoint_dir``| ``$ANIMA_HOME/checkpoints``     |
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from anima import tomlconfig
from anima.errors import BadInput


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one run; build with :func:`load_settings`."""

    home: Path
    database_url: str
    signing_cert: Path
    signing_key: Path
    trust_anchors: tuple[Path, ...] = field(default_factory=tuple)
    # Other deployments' watermark keys to read with (verify, scan), on top of this home's own.
    watermark_keys: tuple[Path, ...] = field(default_factory=tuple)
    # Signed checkpoints of the ledger's head; best on another volume than the database.
    checkpoint_dir: Path | None = None

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.home / "checkpoints"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def local_ca_cert(self) -> Path:
        return self.keys_dir / "ca.pem"


def private_folder(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), whatever the umask: the home holds face
    embeddings, names and kept photos. An existing folder of ours is narrowed; one owned by someone
    else is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        path.chmod(0o700)
    return path


@dataclass(frozen=True)
class _ConfigFile:
    """The keys ``config.toml`` may set; an unset one (or an empty string) falls back to the default."""

    database_url: str | None = None
    signing_cert: Path | None = None
    signing_key: Path | None = None
    trust_anchors: tuple[Path, ...] | str | None = None  # a list, or ``:``-separated like the env var
    watermark_keys: tuple[Path, ...] | str | None = None  # the same
    checkpoint_dir: Path | None = None


def _read_config_file(home: Path) -> dict[str, object]:
    path = home / "config.toml"
    if not path.exists():
        return {}
    return tomlconfig.load(path, _ConfigFile)


def check_home(home: Path) -> None:
    """The home must be a folder Anima can write in (or one it can create): every job records an
    audit event, and keys, ledger and tools live there. Checked before any work."""
    existing = next(p for p in (home, *home.parents) if p.exists() or p == p.parent)
    if existing == home and not home.is_dir():
        raise BadInput(f"{home}: the Anima home is not a folder")
    if existing != home and not existing.is_dir():
        raise BadInput(f"{home}: cannot create the Anima home ({existing} is not a folder)")
    try:
        # A real write: permissions, ACLs and read-only mounts all show up here, also for root.
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        what = "the Anima home is not writable" if existing == home else f"cannot create it in {existing}"
        raise BadInput(f"{home}: {what} ({exc.strerror or exc.__class__.__name__})") from None


def load_settings(home: Path | None = None) -> Settings:
    """Resolve settings from ``home`` (or ``$ANIMA_HOME``), its config.toml and the environment.

    Raises :class:`~anima.errors.BadInput` when the home is a file or a folder that cannot be written.
    """
    home = Path(home or os.environ.get("ANIMA_HOME") or Path.home() / ".anima").expanduser()
    check_home(home)
    file_values = _read_config_file(home)

    def pick(env: str, key: str, default: str) -> str:
        value = os.environ.get(env) or file_values.get(key) or default
        return str(value)

    def paths(env: str, key: str) -> tuple[Path, ...]:
        value = os.environ.get(env) or file_values.get(key) or ""
        if isinstance(value, tuple):
            return tuple(Path(str(p)).expanduser() for p in value)
        return tuple(Path(p).expanduser() for p in str(value).split(os.pathsep) if p)

    return Settings(
        home=home,
        database_url=pick("ANIMA_DATABASE_URL", "database_url", f"sqlite:///{home / 'ledger.db'}"),
        signing_cert=Path(pick("ANIMA_SIGNING_CERT", "signing_cert", str(home / "keys" / "chain.pem"))),
        signing_key=Path(pick("ANIMA_SIGNING_KEY", "signing_key", str(home / "keys" / "signing.key"))),
        trust_anchors=paths("ANIMA_TRUST_ANCHORS", "trust_anchors"),
        watermark_keys=paths("ANIMA_WATERMARK_KEYS", "watermark_keys"),
        checkpoint_dir=Path(pick("ANIMA_CHECKPOINT_DIR", "checkpoint_dir", str(home / "checkpoints"))),
    )
