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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from anima import tomlconfig


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one run; build with :func:`load_settings`."""

    home: Path
    database_url: str
    signing_cert: Path
    signing_key: Path
    trust_anchors: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def local_ca_cert(self) -> Path:
        return self.keys_dir / "ca.pem"


@dataclass(frozen=True)
class _ConfigFile:
    """The keys ``config.toml`` may set; an unset one (or an empty string) falls back to the default."""

    database_url: str | None = None
    signing_cert: Path | None = None
    signing_key: Path | None = None
    trust_anchors: tuple[Path, ...] | str | None = None  # a list, or ``:``-separated like the env var


def _read_config_file(home: Path) -> dict[str, object]:
    path = home / "config.toml"
    if not path.exists():
        return {}
    return tomlconfig.load(path, _ConfigFile)


def load_settings(home: Path | None = None) -> Settings:
    """Resolve settings from ``home`` (or ``$ANIMA_HOME``), its config.toml and the environment."""
    home = Path(home or os.environ.get("ANIMA_HOME") or Path.home() / ".anima").expanduser()
    file_values = _read_config_file(home)

    def pick(env: str, key: str, default: str) -> str:
        value = os.environ.get(env) or file_values.get(key) or default
        return str(value)

    anchors_value = os.environ.get("ANIMA_TRUST_ANCHORS") or file_values.get("trust_anchors") or ""
    if isinstance(anchors_value, tuple):
        anchors = tuple(Path(str(p)).expanduser() for p in anchors_value)
    else:
        anchors = tuple(Path(p).expanduser() for p in str(anchors_value).split(os.pathsep) if p)

    return Settings(
        home=home,
        database_url=pick("ANIMA_DATABASE_URL", "database_url", f"sqlite:///{home / 'ledger.db'}"),
        signing_cert=Path(pick("ANIMA_SIGNING_CERT", "signing_cert", str(home / "keys" / "chain.pem"))),
        signing_key=Path(pick("ANIMA_SIGNING_KEY", "signing_key", str(home / "keys" / "signing.key"))),
        trust_anchors=anchors,
    )
