"""The consent gate with the real dlib backend on real, package-shipped photos."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cv2
import insightface
import numpy as np
import pytest
from PIL import Image
from skimage import data
from sqlalchemy import text

from anima import Anima
from anima.config import Settings
from anima.errors import BadInput
from anima.ledger import Ledger
from anima.policy import gate
from anima.policy.faces import DetectedFace, load_backend
from anima.policy.registry import ConsentRegistry
from anima.policy.rules import PolicyRules, load_rules

INSIGHTFACE_IMAGES = Path(insightface.__file__).parent / "data" / "images"


def _save(image: np.ndarray, path: Path) -> Path:
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    astronaut = data.astronaut()
    hanks = np.asarray(Image.open(INSIGHTFACE_IMAGES / "Tom_Hanks_54745.png").convert("RGB"))
    side_by_side = np.zeros((512, 512 + 512, 3), np.uint8)
    side_by_side[:, :512] = astronaut
    side_by_side[:, 512:] = cv2.resize(hanks, (512, 512))
    small = cv2.resize(astronaut, (96, 96), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512, 3), 200, np.uint8)
    canvas[200:296, 200:296] = small
    images = {
        "astronaut": astronaut,
        "astronaut_mirrored": astronaut[:, ::-1].copy(),
        "astronaut_small": cv2.resize(astronaut, (400, 400), interpolation=cv2.INTER_AREA),
        "astronaut_large": cv2.resize(astronaut, (768, 768)),
        "astronaut_rotated": cv2.warpAffine(
            astronaut, cv2.getRotationMatrix2D((256, 256), 8, 1.0), (512, 512)
        ),
        "astronaut_gray": np.repeat(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2),
        "astronaut_tiny": canvas,
        "hanks": hanks,
        "hanks_upside_down": hanks[::-1, ::-1].copy(),
        "pair": side_by_side,
        "coffee": data.coffee(),
    }
    return {name: _save(image, folder / f"{name}.png") for name, image in images.items()}


@pytest.fixture
def statement(tmp_path: Path) -> Path:
    path = tmp_path / "statement.pdf"
    path.write_bytes(b"%PDF-1.4 I consent to being animated for fashion shows. Signed, E. Collins")
    return path


def _enroll(
    settings: Settings, name: str, photos: list[Path], statement: Path, purposes: list[str], **kwargs
):
    """Enrol through the API as a casting desk would; the identity and its first consent."""
    record = Anima(settings.home, actor="casting").consent.enroll(name, photos, statement, purposes, **kwargs)
    return record, record.grants[0]


@pytest.fixture
def enrolled(settings: Settings, photos: dict[str, Path], statement: Path):
    expires = dt.date.today() + dt.timedelta(days=30)
    return _enroll(settings, "Eileen Collins", [photos["astronaut"]], statement, ["fashion"], expires=expires)


def _check(
    settings: Settings, photo: Path, purpose: str = "fashion", fictional: bool = False
) -> gate.Decision:
    return Anima(settings.home, actor="studio").check_reference(photo, purpose, fictional=fictional)


@pytest.mark.parametrize(
    "variant",
    [
        "astronaut",
        "astronaut_mirrored",
        "astronaut_small",
        "astronaut_large",
        "astronaut_rotated",
        "astronaut_gray",
    ],
)
def test_enrolled_person_is_allowed(settings, enrolled, photos, variant: str) -> None:
    identity, grant = enrolled
    decision = _check(settings, photos[variant])
    assert decision.allow, decision.to_dict()
    assert decision.identity_ids == [identity.id] and decision.grant_ids == [grant.id]


@pytest.mark.parametrize(
    ("photo", "reason"),
    [
        ("hanks", "face-unknown"),
        ("hanks_upside_down", "face-unknown"),
        ("pair", "face-unknown"),
        ("astronaut_tiny", "face-too-small"),
        ("coffee", "no-face-not-declared"),
    ],
)
def test_unverifiable_or_unknown_faces_are_refused(
    settings, enrolled, photos, photo: str, reason: str
) -> None:
    decision = _check(settings, photos[photo])
    assert not decision.allow
    assert reason in decision.reasons


def test_group_photo_with_one_enrolled_face_is_refused(settings, enrolled, photos) -> None:
    decision = _check(settings, photos["pair"])
    statuses = sorted(m.status for m in decision.matches)
    assert statuses == ["face-unknown", "verified"]
    assert not decision.allow


def test_revoked_expired_and_wrong_purpose_are_refused(settings, enrolled, photos, statement) -> None:
    identity, grant = enrolled
    assert "consent-wrong-purpose" in _check(settings, photos["astronaut"], purpose="advertising").reasons
    registry = Anima(settings.home).registry  # keyed: a keyless writer is refused
    registry.revoke(grant.id, "withdrew consent by email", "casting")
    assert "consent-revoked" in _check(settings, photos["astronaut"]).reasons
    Anima(settings.home).consent.grant(
        identity.id, statement, ["fashion"], valid_from=dt.date.today() + dt.timedelta(days=10)
    )
    assert "consent-not-yet-valid" in _check(settings, photos["astronaut"]).reasons


def test_expired_consent_is_refused(settings, photos, statement) -> None:
    record, _ = _enroll(settings, "Eileen Collins", [photos["astronaut"]], statement, ["fashion"])
    registry = Anima(settings.home).registry
    grant = registry.grants(record.id)[0]
    grant.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)  # as if the period had run out
    registry.ledger.record("consent.extended", "test", grant.id, {}, row=grant)
    assert "consent-expired" in _check(settings, photos["astronaut"]).reasons


def test_fictional_declaration(settings, enrolled, photos) -> None:
    allowed = _check(settings, photos["coffee"], fictional=True)
    assert allowed.allow and allowed.reasons == ["no-face-fictional"]
    refused = _check(settings, photos["astronaut"], fictional=True)
    assert not refused.allow and "fictional-with-face" in refused.reasons
    event = Ledger(settings.database_url).events(kind="policy.decision", limit=2)[1]
    assert event.details["fictional"] is True and event.details["allow"] is True


def test_every_decision_is_in_the_ledger_and_the_chain_verifies(settings, enrolled, photos) -> None:
    for photo in ("astronaut", "hanks", "coffee"):
        _check(settings, photos[photo])
    ledger = Ledger(settings.database_url)
    decisions = ledger.events(kind="policy.decision")
    assert [e.details["allow"] for e in reversed(decisions)] == [True, False, False]
    assert all("embedding" not in str(e.details) and "Eileen" not in str(e.details) for e in decisions)
    assert ledger.verify_chain().ok


def test_undoing_a_revocation_by_sql_is_caught(settings, enrolled, photos) -> None:
    _, grant = enrolled
    registry = Anima(settings.home).registry
    registry.revoke(grant.id, "withdrawn", "casting")
    with registry.ledger.engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE consent_grants SET revoked_at = NULL, revoked_reason = NULL WHERE id = '{grant.id}'"
            )
        )
    decision = _check(settings, photos["astronaut"])
    assert not decision.allow and decision.reasons == ["registry-tampered"]
    report = registry.ledger.verify_chain()
    assert not report.ok and grant.id in report.problem


@pytest.mark.parametrize(
    ("photo_names", "message"),
    [
        (["pair"], "found 2 faces"),
        (["coffee"], "found 0 faces"),
        (["astronaut", "hanks"], "do not show the same person"),
        (["astronaut_tiny"], "too small"),
    ],
)
def test_enrolment_needs_one_clear_face_per_photo(settings, photos, statement, photo_names, message) -> None:
    with pytest.raises(BadInput, match=message):
        _enroll(settings, "Someone", [photos[n] for n in photo_names], statement, ["fashion"])


def test_enrolling_the_same_person_twice_is_refused(settings, enrolled, photos, statement) -> None:
    with pytest.raises(BadInput, match="already enrolled"):
        _enroll(settings, "E. Collins", [photos["astronaut_mirrored"]], statement, ["fashion"])


def test_forget_erases_face_data(settings, enrolled, photos) -> None:
    identity, _ = enrolled
    registry = Anima(settings.home).registry
    registry.forget(identity.id, "dpo")
    stored = registry.identity(identity.id)
    assert stored.embeddings == [] and stored.display_name == "(forgotten)"
    assert "face-unknown" in _check(settings, photos["astronaut"]).reasons
    assert registry.ledger.verify_chain().ok


def test_identity_drift_in_output_fails(settings, enrolled, photos) -> None:
    decision = _check(settings, photos["astronaut"])
    registry = Anima(settings.home).registry
    backend, rules = load_backend("dlib"), PolicyRules()
    same = np.stack([np.asarray(Image.open(photos["astronaut"]))] * 3)
    assert gate.check_output(same, decision, "studio", registry=registry, backend=backend, rules=rules).ok
    other = np.stack([cv2.resize(np.asarray(Image.open(photos["hanks"])), (512, 512))] * 3)
    report = gate.check_output(other, decision, "studio", registry=registry, backend=backend, rules=rules)
    assert not report.ok and report.drifted


class _Embeddings:
    """A stand-in backend that reports given faces, to pin down the ambiguity rule exactly."""

    name, metric, match_threshold = "test", "euclidean", 0.6

    def __init__(self, vectors: list[list[float]]) -> None:
        self.vectors = vectors

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        return [
            DetectedFace(
                box=(0, 0, 100, 100),
                landmarks=np.zeros((5, 2)),
                embedding=np.asarray(v, np.float32),
                detection_score=1.0,
                sharpness=100.0,
                rotation=0,
            )
            for v in self.vectors
        ]

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def test_a_face_between_two_identities_is_ambiguous(tmp_path: Path) -> None:
    registry = ConsentRegistry(Ledger(f"sqlite:///{tmp_path / 'l.db'}"))
    for name, vector in (("A", [0.0, 0.0]), ("B", [0.5, 0.0])):
        identity = registry.enroll(name, [np.asarray(vector)], "test", [], "t")
        registry.grant(identity.id, ["fashion"], "0" * 64, name, "t")
    backend = _Embeddings([[0.26, 0.0]])
    decision = gate.check(
        np.zeros((8, 8, 3), np.uint8), "fashion", "t", registry=registry, backend=backend, rules=PolicyRules()
    )
    assert decision.reasons == ["face-ambiguous"]
    clear = gate.check(
        np.zeros((8, 8, 3), np.uint8),
        "fashion",
        "t",
        registry=registry,
        backend=_Embeddings([[0.02, 0.0]]),
        rules=PolicyRules(),
    )
    assert clear.allow


def test_policy_file_rules(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('purposes = ["fashion"]\nmin_face_size = 96\n')
    rules = load_rules(path)
    assert rules.purposes == ("fashion",) and rules.min_face_size == 96
    with pytest.raises(BadInput, match="unknown purpose"):
        rules.check_purpose("entertainment")
    path.write_text("min_face_sise = 10\n")
    with pytest.raises(BadInput, match=r"unknown setting min_face_sise \(did you mean min_face_size\?\)"):
        load_rules(path)
    path.write_text("min_face_size = 16\n")
    with pytest.raises(BadInput, match="`min_face_size` must be at least 32, got 16"):
        load_rules(path)


def test_generate_goes_through_the_gate(settings, enrolled, photos, tmp_path: Path) -> None:
    """Allowed: the video is stamped and its manifest names the consent. Refused: exit 3, no file."""
    from tiny import tiny_pipeline
    from typer.testing import CliRunner

    from anima.cli import app

    model = tmp_path / "model"
    tiny_pipeline(seed=0).save_pretrained(model)
    _, grant = enrolled
    base = [
        "generate",
        "--model",
        str(model),
        "--reference",
        str(photos["astronaut"]),
        "--pose",
        "motion:idle",
        "--frames",
        "6",
        "--steps",
        "1",
        "--width",
        "128",
    ]
    allowed = CliRunner().invoke(app, [*base, "--purpose", "fashion", "-o", str(tmp_path / "ok.mp4")])
    assert allowed.exit_code == 0, allowed.stderr
    report = Anima(settings.home).verify(tmp_path / "ok.mp4")
    consent = report.manifest.anima["consent"]
    assert consent["grants"] == [grant.id] and consent["purpose"] == "fashion" and not consent["fictional"]
    refused = CliRunner().invoke(app, [*base, "--purpose", "advertising", "-o", str(tmp_path / "no.mp4")])
    assert refused.exit_code == 3 and "does not cover this purpose" in refused.stderr
    assert not (tmp_path / "no.mp4").exists()
    kinds = [e.kind for e in Ledger(settings.database_url).events(limit=4)]
    assert kinds[0] == "policy.decision" and "policy.output-check" in kinds
