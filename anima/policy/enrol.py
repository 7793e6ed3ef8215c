"""Enrolment: the checks a person's photos must pass before their face is registered, and the
consent grants that go with it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np

from anima import media
from anima.config import private_folder
from anima.errors import BadInput
from anima.ledger import ConsentGrant, Identity
from anima.policy.faces import FaceBackend
from anima.policy.registry import ConsentRegistry
from anima.policy.rules import PolicyRules


def start_of_day_utc(day: dt.date | None) -> dt.datetime | None:
    """A calendar day as the UTC instant it starts (consent runs from/to whole days)."""
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) if day else None


def _check_statement(statement: Path) -> str:
    if not Path(statement).is_file():
        raise BadInput(f"{statement}: no such file (the signed consent statement)")
    return media.sha256_file(statement)


def face_embeddings(photos: list[Path], backend: FaceBackend, rules: PolicyRules) -> list[np.ndarray]:
    """One embedding per photo; each photo must show exactly one face, large and sharp enough, and
    all photos the same person."""
    if not photos:
        raise BadInput("give at least one photo of the person")
    threshold = rules.threshold_for(backend)
    embeddings = []
    for photo in photos:
        faces = backend.analyze(media.read_image(photo))
        if len(faces) != 1:
            raise BadInput(f"{photo}: found {len(faces)} faces; an enrolment photo must show exactly one")
        face = faces[0]
        if face.size < rules.min_face_size or face.sharpness < rules.min_sharpness:
            raise BadInput(
                f"{photo}: the face is too small or too blurred to enrol "
                f"({face.size} px, sharpness {face.sharpness:.0f})"
            )
        embeddings.append(face.embedding)
    for i, first in enumerate(embeddings):
        for j in range(i + 1, len(embeddings)):
            if backend.distance(first, embeddings[j]) >= threshold:
                raise BadInput(f"{photos[i]} and {photos[j]} do not show the same person")
    return embeddings


def _refuse_duplicate(
    embeddings: list[np.ndarray], registry: ConsentRegistry, backend: FaceBackend, threshold: float
) -> None:
    for existing in registry.identities(backend=backend.name):
        for stored in existing.embeddings:
            if any(backend.distance(e, np.asarray(stored, np.float32)) < threshold for e in embeddings):
                raise BadInput(
                    f"this person is already enrolled as {existing.id}; add consent to that identity instead"
                )


def enroll(
    registry: ConsentRegistry,
    backend: FaceBackend,
    rules: PolicyRules,
    name: str,
    photos: list[Path],
    statement: Path,
    purposes: list[str],
    actor: str,
    *,
    expires: dt.date | None = None,
    valid_from: dt.date | None = None,
    granted_by: str | None = None,
    keep_photos_in: Path | None = None,
) -> tuple[Identity, ConsentGrant]:
    """Enrol a person from photos that each show exactly their face, with a first consent grant;
    with ``keep_photos_in`` the photos are also copied to that folder's ``<identity id>/``."""
    for purpose in purposes:
        rules.check_purpose(purpose)
    statement_sha256 = _check_statement(statement)
    embeddings = face_embeddings(photos, backend, rules)
    _refuse_duplicate(embeddings, registry, backend, rules.threshold_for(backend))
    identity, grant = registry.enroll_with_grant(
        name,
        embeddings,
        backend.name,
        [media.sha256_file(p) for p in photos],
        actor,
        purposes=purposes,
        statement_sha256=statement_sha256,
        granted_by=granted_by,
        valid_from=start_of_day_utc(valid_from),
        expires_at=start_of_day_utc(expires),
    )
    if keep_photos_in is not None:
        keep_photos(photos, keep_photos_in, identity.id)
    return identity, grant


def keep_photos(photos: list[Path], folder: Path, identity_id: str) -> Path:
    """Copy the enrolment photos to ``folder/<identity id>/``, owner-only (0700 folders, 0600 files)
    whatever the umask."""
    kept = private_folder(private_folder(folder) / identity_id)
    for index, photo in enumerate(photos):
        target = kept / f"{index}{Path(photo).suffix.lower()}"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with open(fd, "wb") as out, open(photo, "rb") as source:
            shutil.copyfileobj(source, out)
    return kept


def erase_kept_photos(folder: Path, identity_id: str) -> bool:
    """Delete a person's kept photos (``forget``); True if there were any."""
    kept = folder / identity_id
    if not kept.exists():
        return False
    shutil.rmtree(kept)
    return True


def grant(
    registry: ConsentRegistry,
    rules: PolicyRules,
    identity_id: str,
    statement: Path,
    purposes: list[str],
    actor: str,
    *,
    expires: dt.date | None = None,
    valid_from: dt.date | None = None,
    granted_by: str | None = None,
) -> ConsentGrant:
    """Record a further consent for an enrolled person."""
    for purpose in purposes:
        rules.check_purpose(purpose)
    statement_sha256 = _check_statement(statement)
    identity = registry.identity(identity_id)
    return registry.grant(
        identity_id,
        purposes,
        statement_sha256,
        granted_by or identity.display_name,
        actor,
        valid_from=start_of_day_utc(valid_from),
        expires_at=start_of_day_utc(expires),
    )
