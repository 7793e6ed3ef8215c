"""The one TOML validator behind config.toml, policy.toml and training configs: unknown keys, wrong
types, out-of-range values and malformed files are one-line errors naming the file, the key and
the value; good files read into typed settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from anima.config import load_settings
from anima.errors import BadInput
from anima.policy.rules import load_rules
from anima.tomlconfig import load, setting, validate
from anima.training.config import TrainConfig


def _config_toml(folder: Path, text: str):
    (folder / "config.toml").write_text(text)
    return load_settings(folder)


def _policy_toml(folder: Path, text: str):
    (folder / "policy.toml").write_text(text)
    return load_rules(folder / "policy.toml")


def _training_toml(folder: Path, text: str):
    (folder / "train.toml").write_text('output = "model"\nwork_dir = "work"\n' + text)
    return TrainConfig.from_toml(folder / "train.toml")


FILES: dict[str, tuple[str, Callable]] = {
    "config.toml": ("config.toml", _config_toml),
    "policy.toml": ("policy.toml", _policy_toml),
    "training": ("train.toml", _training_toml),
}

# (file, TOML text, what the one-line error must say after "<file>: ")
FAULTS = [
    (
        "config.toml",
        'database_uri = "sqlite://"\n',
        "unknown setting database_uri (did you mean database_url?)",
    ),
    ("config.toml", "signing_key = 7\n", "`signing_key` must be a path, got 7"),
    ("config.toml", "trust_anchors = [1]\n", "`trust_anchors` must be a list of paths or a string, got [1]"),
    ("config.toml", "database_url = \n", "not valid TOML"),
    ("policy.toml", "min_face_sise = 10\n", "unknown setting min_face_sise (did you mean min_face_size?)"),
    ("policy.toml", 'purposes = "fashion"\n', "`purposes` must be a list of strings, got 'fashion'"),
    ("policy.toml", "min_face_size = 31\n", "`min_face_size` must be at least 32, got 31"),
    ("policy.toml", "drift_sample_frames = 0\n", "`drift_sample_frames` must be at least 1, got 0"),
    ("policy.toml", "ambiguity_margin = -0.1\n", "`ambiguity_margin` must be at least 0, got -0.1"),
    ("policy.toml", "match_threshold = 0\n", "`match_threshold` must be above 0, got 0"),
    ("policy.toml", "min_face_size = true\n", "`min_face_size` must be an integer, got True"),
    ("policy.toml", "purposes = [\n", "not valid TOML"),
    ("training", "learning_speed = 3\n", "unknown setting learning_speed"),
    (
        "training",
        "[architecture]\nsise = 64\n",
        "unknown setting architecture.sise (did you mean architecture.size?)",
    ),
    ("training", 'vae_steps = "many"\n', "`vae_steps` must be an integer, got 'many'"),
    (
        "training",
        "validation_seeds = [1, 2.5]\n",
        "`validation_seeds` must be a list of integers, got [1, 2.5]",
    ),
    (
        "training",
        "[architecture]\nvae_channels = 16\n",
        "`architecture.vae_channels` must be a list of integers",
    ),
    ("training", "log_every = 0\n", "`log_every` must be at least 1, got 0"),
    ("training", "max_timestep = 1001\n", "`max_timestep` must be at most 1000, got 1001"),
    ("training", "warp_input_share = 1.5\n", "`warp_input_share` must be at most 1, got 1.5"),
    ("training", "image_lr = 0.0\n", "`image_lr` must be above 0, got 0.0"),
    ("training", "validation_seeds = [-1]\n", "`validation_seeds` must be at least 0, got [-1]"),
    ("training", "clip_frames = 30\n", "`clip_frames` (30) must fit in `clip_length` and `motion_frames`"),
    ("training", "architecture = 3\n", "`architecture` must be a table, got 3"),
    ("training", "seed = 1\nseed = 2\n", "not valid TOML"),
]


@pytest.mark.parametrize(("kind", "text", "message"), FAULTS)
def test_a_bad_file_is_one_line_naming_file_key_and_value(
    tmp_path: Path, kind: str, text: str, message: str
) -> None:
    name, read = FILES[kind]
    with pytest.raises(BadInput) as error:
        read(tmp_path, text)
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(f"{tmp_path / name}: {message}"), text


def test_good_config_toml(tmp_path: Path) -> None:
    settings = _config_toml(
        tmp_path,
        'database_url = "sqlite:///ledger.db"\nsigning_cert = "~/chain.pem"\nsigning_key = ""\n'
        'trust_anchors = ["a.pem", "~/b.pem"]\n',
    )
    assert settings.database_url == "sqlite:///ledger.db"
    assert settings.signing_cert == Path("~/chain.pem").expanduser()
    assert settings.signing_key == tmp_path / "keys" / "signing.key"  # empty: the default
    assert settings.trust_anchors == (Path("a.pem"), Path("~/b.pem").expanduser())
    assert _config_toml(tmp_path, 'trust_anchors = "a.pem:b.pem"\n').trust_anchors == (
        Path("a.pem"),
        Path("b.pem"),
    )


def test_good_policy_toml(tmp_path: Path) -> None:
    rules = _policy_toml(
        tmp_path,
        'purposes = ["fashion"]\nmatch_threshold = 1\nmin_face_size = 32\nbackend_model_dir = "~/m"\n',
    )
    assert rules.purposes == ("fashion",) and rules.min_face_size == 32
    assert rules.match_threshold == 1.0 and isinstance(rules.match_threshold, float)
    assert rules.backend_model_dir == Path("~/m").expanduser()
    assert _policy_toml(tmp_path, 'backend_model_dir = ""\n').backend_model_dir is None


def test_good_training_toml_resolves_paths_from_its_folder(tmp_path: Path) -> None:
    config = _training_toml(tmp_path, "validation_seeds = [5]\n[architecture]\nvae_channels = [8, 8]\n")
    assert config.output == (tmp_path / "model").resolve()
    assert config.work_dir == (tmp_path / "work").resolve()
    assert config.validation_seeds == (5,) and config.architecture.vae_channels == (8, 8)
    shipped = TrainConfig.from_toml(Path(__file__).parents[1] / "configs" / "anima-puppets.toml")
    assert shipped.architecture.latent_channels == 8 and shipped.image_steps == 1800


def test_missing_file_and_required_key(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"nowhere\.toml: no such file"):
        load_rules(tmp_path / "nowhere.toml")
    (tmp_path / "short.toml").write_text('output = "m"\n')
    with pytest.raises(BadInput, match=r"short\.toml: `work_dir` is required"):
        TrainConfig.from_toml(tmp_path / "short.toml")


@dataclass(frozen=True)
class _Inner:
    size: int = setting(4, at_least=1, at_most=8)


@dataclass(frozen=True)
class _Schema:
    name: str
    scale: float = setting(1.0, above=0)
    flag: bool = False
    folder: Path | None = None
    inner: _Inner = field(default_factory=_Inner)


def test_load_converts_and_validate_checks_python_values(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "x"\nscale = 2\nflag = true\nfolder = "sub"\n[inner]\nsize = 8\n')
    values = load(path, _Schema, base=tmp_path)
    assert values == {
        "name": "x",
        "scale": 2.0,
        "flag": True,
        "folder": (tmp_path / "sub").resolve(),
        "inner": _Inner(size=8),
    }
    assert isinstance(values["scale"], float)
    assert load(path, _Schema)["folder"] == Path("sub")  # no base: left relative
    path.write_text('name = "x"\nflag = 1\n')
    with pytest.raises(BadInput, match=r"`flag` must be true or false, got 1"):
        load(path, _Schema)
    path.write_text('name = "x"\n[inner]\nsize = 9\n')
    with pytest.raises(BadInput, match=r"`inner.size` must be at most 8, got 9"):
        load(path, _Schema)
    validate(_Schema(name="x", inner=_Inner(size=8)))
    with pytest.raises(BadInput, match=r"^mine: `inner.size` must be at least 1, got 0$"):
        validate(_Schema(name="x", inner=_Inner(size=0)), "mine")
    with pytest.raises(BadInput, match=r"^`scale` must be a number, got '2'$"):
        validate(_Schema(name="x", scale="2"))
