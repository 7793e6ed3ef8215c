"""The Python API as a library user meets it: the public names, the layout's one-way imports, the
README's examples, and the regressions found while building it."""

from __future__ import annotations

import ast
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import event

import anima
from anima import Anima, GateReason, Verdict, media
from anima.api.core import ScanWork, _scan_worker
from anima.errors import AnimaError, BadInput
from anima.ledger import Ledger
from anima.ledger.models import Base
from anima.policy.faces import load_backend
from anima.pose.blazepose import MEDIAPIPE_VERSION

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "anima"


def test_import_anima_does_not_import_torch() -> None:
    code = "import sys, anima; anima.Anima; anima.Verdict; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_public_names_are_exported_and_typed() -> None:
    for name in anima.__all__:
        assert getattr(anima, name) is not None
    assert Verdict("anima-generated") is Verdict.ANIMA_GENERATED
    assert GateReason.CONSENT_REVOKED == "consent-revoked"
    assert all(reason.explain() for reason in GateReason)
    with pytest.raises(AttributeError):
        _ = anima.NotAName


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("anima")}


def _modules(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["generate", "policy", "provenance", "detect", "scan"])
def test_pillars_never_import_the_api_or_the_cli(package: str) -> None:
    for path in _modules(package):
        wrong = {m for m in _imports(path) if m.startswith(("anima.api", "anima.cli"))}
        assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_generate_never_imports_policy() -> None:
    for path in _modules("generate"):
        assert not {m for m in _imports(path) if m.startswith("anima.policy")}, path


@pytest.mark.parametrize("package", ["pose", "ledger"])
def test_core_never_imports_a_pillar(package: str) -> None:
    pillars = ("anima.api", "anima.cli", "anima.generate", "anima.policy", "anima.provenance", "anima.detect")
    for path in _modules(package):
        assert not {m for m in _imports(path) if m.startswith(pillars)}, path


def test_the_cli_only_calls_the_api() -> None:
    """Commands parse and print; every piece of work is a call of the API (types may be named)."""
    allowed = ("anima", "anima.api", "anima.api.consent", "anima.errors", "anima.provenance.verify")
    allowed += ("anima.serve",)  # `anima serve` starts the server, itself a client of the API
    for path in _modules("cli"):
        for module in _imports(path):
            assert module.startswith("anima.cli") or module in allowed, f"{path.name} imports {module}"


def test_home_reaches_the_pose_tools_and_the_face_packs(tmp_path: Path, monkeypatch) -> None:
    """Regression: MediaPipe's tool environment and insightface packs ignored ``home``."""
    monkeypatch.setenv("ANIMA_HOME", str(tmp_path / "environment-home"))
    monkeypatch.delenv("ANIMA_MEDIAPIPE_ENV", raising=False)
    home = tmp_path / "given-home"
    assert Anima(home).pose_tool_dir == home / "tools" / f"mediapipe-{MEDIAPIPE_VERSION}"
    with pytest.raises(AnimaError, match=re.escape(str(home / "models" / "insightface" / "buffalo_l"))):
        load_backend("insightface:buffalo_l", home=home)
    (home).mkdir()
    (home / "policy.toml").write_text('backend = "insightface:buffalo_l"\n')
    with pytest.raises(AnimaError, match=re.escape(str(home / "models" / "insightface"))):
        _ = Anima(home).face_backend


def test_ledger_tables_are_created_once_per_database(tmp_path: Path) -> None:
    """Regression: every ``Ledger(url)`` ran ``create_all`` (once per scanned file)."""
    creations = []

    def count(*_args, **_kwargs) -> None:
        creations.append(1)

    event.listen(Base.metadata, "before_create", count)
    try:
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        for _ in range(3):
            Ledger(url)
        assert len(creations) == 1
        (tmp_path / "ledger.db").unlink()
        Ledger(url).record("test", "tester", "subject", {})  # a deleted database is made anew
        assert len(creations) == 2
    finally:
        event.remove(Base.metadata, "before_create", count)


def test_a_scan_worker_builds_its_anima_once(settings) -> None:
    work = ScanWork(str(settings.home), settings.database_url, (), str(Anima().detector_dir))
    assert pickle.loads(pickle.dumps(work)) == work
    assert _scan_worker(work) is _scan_worker(pickle.loads(pickle.dumps(work)))


def test_a_scan_worker_reads_its_keys_once_and_each_file_once(
    settings, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, decodes = [], []
    reading_keys, decode = Anima.reading_keys, media._decode

    def counted_keys(self: Anima, extra=()):
        keys.append(extra)
        return reading_keys(self, extra)

    def counted_decode(path: Path, wanted=None):
        decodes.append(path)
        return decode(path, wanted)

    monkeypatch.setattr(Anima, "reading_keys", counted_keys)
    monkeypatch.setattr(media, "_decode", counted_decode)
    _scan_worker.cache_clear()
    work = ScanWork(str(settings.home), settings.database_url, (), str(Anima().detector_dir))
    rows = [work(str(clip)) for _ in range(3)]
    assert len(keys) == 1 and len(decodes) == 3  # one decode per file: hash, watermark, detector, thumbnail
    assert all(row["thumbnail"] and row["frames"] == 24 for row in rows)


def _raised_texts(path: Path) -> list[str]:
    """The string pieces of every ``raise`` statement in a module (f-strings included)."""
    texts = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise):
            texts += [
                c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)
            ]
    return texts


def test_library_errors_do_not_name_cli_flags() -> None:
    """A Python user has no flags: errors raised below the CLI say what is wrong in plain words."""
    flag = re.compile(r"(^|[\s(`])--(?!help)[a-z]")
    for path in PACKAGE.rglob("*.py"):
        if "cli" not in path.relative_to(PACKAGE).parts:
            named = [text for text in _raised_texts(path) if flag.search(text)]
            assert not named, f"{path.relative_to(ROOT)}: {named}"


def test_bad_arguments_are_one_line_errors(studio: Anima, clip: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"limit must be in 1\.\."):
        studio.audit.log(limit=0)
    with pytest.raises(BadInput, match=r"crf must be in 0\.\.51"):
        studio.stamp(clip, tmp_path / "out.mp4", crf=99)
    with pytest.raises(BadInput, match=r"output must be an \.mp4"):
        studio.generate(clip, "motion:wave", tmp_path / "out.avi", purpose="education")
    assert not list(tmp_path.glob("out*"))


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_examples_run(tmp_path: Path, monkeypatch) -> None:
    blocks = _readme_python_blocks()
    assert len(blocks) >= 3
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "puppet-wave.mp4").is_file() and not (tmp_path / "refused.mp4").exists()
    assert (tmp_path / "scan-out" / "report.html").is_file()
    assert os.stat(tmp_path / "anima-home" / "keys" / "signing.key").st_mode & 0o077 == 0
