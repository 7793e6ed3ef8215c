"""The user's jobs composed from the pillars: stamp (watermark -> encode -> sign -> ledger) and
verify (manifest + watermark + ledger -> verdict). Callable from Python; the CLI only prints.
"""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import hashlib
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anima import media
from anima.config import Settings
from anima.scan import report as scan_report
from anima.scan import engine as scan_engine
from anima.errors import BadInput, MediaError, PolicyDenied, ProvenanceError
from anima.generate.request import GenerationRequest
from anima.ledger import ConsentGrant, Identity, Ledger, Stamp
from anima.policy import gate
from anima.policy.faces import FaceBackend, load_backend
from anima.policy.gate import Decision
from anima.policy.registry import ConsentRegistry
from anima.policy.rules import PolicyRules, load_rules
from anima.provenance import manifest as c2pa_manifest
from anima.provenance import watermark
from anima.provenance.keys import identity_from_settings

Progress = Callable[[int, int], None]
MarkedWriter = Callable[["watermark.WatermarkEmbedder", Path, int], int]
STILL_SUFFIXES = {".png", ".jpg", ".jpeg"}

VERDICT_ANIMA = "anima-generated"
VERDICT_AI_DECLARED = "ai-declared"
VERDICT_TAMPERED = "tampered"
VERDICT_NO_EVIDENCE = "no-evidence"
VERDICT_LIKELY_SYNTHETIC = "likely-synthetic"
DEFAULT_DETECTOR = Path(__file__).resolve().parent / "weights" / "anima-detector"
# Frames sampled over a clip for the watermark and the detector.
SAMPLED_FRAMES = 48


def current_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class StampResult:
    stamp_id: str
    payload: int
    output: Path
    output_sha256: str
    frames: int
    signer: str


def _new_payload(ledger: Ledger) -> int:
    while True:
        payload = secrets.randbits(watermark.DATA_BITS)
        if not ledger.payload_in_use(payload):
            return payload


def stamp_id_for(payload: int) -> str:
    return f"anm-{payload:08x}"


def _check_output(source: Path, output: Path) -> None:
    is_video = source.suffix.lower() in media.VIDEO_SUFFIXES
    wanted = ".mp4" if is_video else source.suffix.lower()
    if output.suffix.lower() != wanted:
        raise BadInput(f"{output}: output of a {source.suffix} input must be a {wanted} file")
    if output.resolve() == source.resolve():
        raise BadInput(f"{output}: output must not overwrite the input")


def _watermark_video_file(source: Path, progress: Progress | None) -> MarkedWriter:
    info = media.probe_video(source)

    def write(embedder: watermark.WatermarkEmbedder, target: Path, crf: int) -> int:
        def frames() -> Iterator[np.ndarray]:
            for index, frame in enumerate(media.iter_frames(source)):
                yield embedder.embed(frame)
                if progress:
                    progress(index + 1, info.num_frames)

        return media.write_video(target, frames(), info.fps, crf=crf)

    return write


def _watermark_still_file(source: Path) -> MarkedWriter:
    def write(embedder: watermark.WatermarkEmbedder, target: Path, crf: int) -> int:
        marked = Image.fromarray(embedder.embed(media.read_image(source)))
        if target.suffix.lower() == ".png":
            marked.save(target, format="PNG")
        else:
            marked.save(target, format="JPEG", quality=95)
        return 1

    return write


def _watermark_frames(frames: np.ndarray, fps: float, progress: Progress | None) -> MarkedWriter:
    def write(embedder: watermark.WatermarkEmbedder, target: Path, crf: int) -> int:
        def marked() -> Iterator[np.ndarray]:
            for index, frame in enumerate(frames):
                yield embedder.embed(frame)
                if progress:
                    progress(index + 1, len(frames))

        return media.write_video(target, marked(), fps, crf=crf)

    return write


def _ingredients(**paths: Path | None) -> list[c2pa_manifest.Ingredient]:
    ingredients = [c2pa_manifest.Ingredient(role, Path(p)) for role, p in paths.items() if p is not None]
    for ingredient in ingredients:
        if not ingredient.path.is_file():
            raise MediaError(f"{ingredient.path}: no such file ({ingredient.role} input)")
    return ingredients


def _publish(
    settings: Settings,
    write_marked: MarkedWriter,
    output: Path,
    *,
    source_sha256: str,
    ingredients: list[c2pa_manifest.Ingredient],
    kind: str,
    software_agent: str,
    extra: dict[str, Any],
    crf: int,
    actor: str | None,
) -> StampResult:
    """Watermark -> encode -> sign -> ledger -> rename: the one path by which Anima writes output."""
    identity = identity_from_settings(settings)
    ledger = Ledger(settings.database_url)
    payload = _new_payload(ledger)
    stamp_id = stamp_id_for(payload)
    embedder = watermark.WatermarkEmbedder(payload)
    suffix = output.suffix.lower()
    with tempfile.TemporaryDirectory(prefix="anima-stamp-") as work, media.atomic_output(output) as final:
        marked = Path(work) / f"marked{suffix}"
        frames = write_marked(embedder, marked, crf)
        stamp_info = {
            "stamp_id": stamp_id,
            "kind": kind,
            "watermark": {"method": "anima-tiled-ss-v1", "payload": payload},
            **extra,
        }
        signed = Path(work) / f"signed{suffix}"
        store = c2pa_manifest.sign_file(
            marked,
            signed,
            c2pa_manifest.build_definition(output.name, stamp_info, software_agent),
            identity,
            ingredients,
        )
        output_sha256 = media.sha256_file(signed)
        row = Stamp(
            id=stamp_id,
            watermark_payload=payload,
            created_at=dt.datetime.now(dt.UTC),
            kind=kind,
            output_name=output.name,
            output_sha256=output_sha256,
            source_sha256=source_sha256,
            inputs={i.role: {"name": i.path.name, "sha256": media.sha256_file(i.path)} for i in ingredients},
            signer=identity.subject,
            signer_fingerprint=identity.fingerprint_sha256,
            manifest=store,
            details={"frames": frames, **extra},
        )
        shutil.copyfile(signed, final)
        ledger.record(
            f"{kind}.stamped",
            actor or current_actor(),
            stamp_id,
            {"output_sha256": output_sha256, "payload": payload},
            row=row,
        )
    return StampResult(stamp_id, payload, output, output_sha256, frames, identity.subject)


def stamp(
    settings: Settings,
    source: Path,
    output: Path,
    *,
    reference: Path | None = None,
    pose: Path | None = None,
    crf: int = 18,
    actor: str | None = None,
    progress: Progress | None = None,
) -> StampResult:
    """Watermark every frame of an existing video or still, sign it, record it in the ledger,
    and only then move the result to ``output``."""
    source, output = Path(source), Path(output)
    media.mime_type(source)
    _check_output(source, output)
    ingredients = _ingredients(reference=reference, pose=pose)
    if source.suffix.lower() in STILL_SUFFIXES:
        writer = _watermark_still_file(source)
    else:
        writer = _watermark_video_file(source, progress)
    return _publish(
        settings,
        writer,
        output,
        source_sha256=media.sha256_file(source),
        ingredients=ingredients,
        kind="stamp",
        software_agent="anima",
        extra={},
        crf=crf,
        actor=actor,
    )


@dataclass
class VerifyReport:
    """The evidence about one clip and the verdict it supports."""

    path: str
    sha256: str
    verdict: str
    reasons: list[str]
    manifest: c2pa_manifest.ManifestReport
    watermark: watermark.WatermarkReading | None
    ledger: dict[str, Any] | None = None
    durable_manifest: dict[str, Any] | None = None
    classifier: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "manifest": self.manifest.to_dict(),
            "watermark": self.watermark.to_dict() if self.watermark else None,
            "ledger": self.ledger,
            "durable_manifest": self.durable_manifest,
            "classifier": self.classifier,
        }


def _sample_frames(path: Path) -> list[np.ndarray]:
    """Up to ``SAMPLED_FRAMES`` frames spread over the clip (the one picture of a still)."""
    if path.suffix.lower() in STILL_SUFFIXES:
        return [media.read_image(path)]
    info = media.probe_video(path)
    wanted = (
        set(np.linspace(0, max(info.num_frames - 1, 0), SAMPLED_FRAMES).round().astype(int))
        if info.num_frames
        else None
    )
    return [frame for index, frame in enumerate(media.iter_frames(path)) if wanted is None or index in wanted]


@functools.cache
def _detector(folder: Path):
    from anima.detect.classifier import SyntheticVideoDetector

    return SyntheticVideoDetector.load(folder)


def classify(frames: list[np.ndarray], detector_dir: Path = DEFAULT_DETECTOR) -> dict[str, Any] | None:
    """The detector's evidence for these frames; ``None`` where no detector is installed."""
    if not (Path(detector_dir) / "detector.json").is_file():
        return None
    detector = _detector(Path(detector_dir))
    frame_scores = detector.frame_scores(np.stack(frames))
    clip_score = float(np.mean(frame_scores))
    return {
        "model": Path(detector_dir).name,
        "frame_scores": [round(float(score), 4) for score in frame_scores],
        "clip_score": clip_score,
        "probability": detector.probability(clip_score),
        "threshold": detector.threshold_,
        "fired": clip_score >= detector.threshold_,
    }


def verify(
    settings: Settings, clip: Path, trust: list[Path] | None = None, detector_dir: Path = DEFAULT_DETECTOR
) -> VerifyReport:
    """Gather manifest, watermark, ledger and detector evidence for ``clip`` and decide a verdict; the
    detector alone can only say ``likely-synthetic``."""
    clip = Path(clip)
    media.mime_type(clip)
    if not clip.is_file():
        raise MediaError(f"{clip}: no such file")
    anchors = list(trust or []) + list(settings.trust_anchors)
    report = c2pa_manifest.read_manifest(clip, anchors)
    frames = _sample_frames(clip)
    try:
        reading: watermark.WatermarkReading | None = watermark.extract(frames)
    except ProvenanceError:
        reading = None  # frames below the watermark's minimum size
    classifier = classify(frames, detector_dir) if frames else None
    ledger = Ledger(settings.database_url)
    reasons: list[str] = []

    claimed_id = (report.anima or {}).get("stamp_id") if report.valid else None
    found_payload = reading.payload if reading is not None else None
    row = ledger.stamp_by_payload(found_payload) if found_payload is not None else None
    if row is None and claimed_id:
        row = ledger.stamp(str(claimed_id))
    ledger_info = None
    if row is not None:
        ledger_info = {
            "stamp_id": row.id,
            "kind": row.kind,
            "created_at": row.created_at.isoformat(),
            "output_sha256": row.output_sha256,
            "signer": row.signer,
            "inputs": row.inputs,
        }

    claimed_payload = ((report.anima or {}).get("watermark") or {}).get("payload")
    if report.present and not report.valid:
        verdict = VERDICT_TAMPERED
        reasons.append(
            "the C2PA manifest does not validate: the file changed after signing"
            + (f" ({', '.join(report.failures)})" if report.failures else "")
        )
    elif report.valid and found_payload is not None and claimed_payload not in (None, found_payload):
        verdict = VERDICT_TAMPERED
        reasons.append(f"the watermark payload {found_payload} contradicts the manifest's {claimed_payload}")
    elif report.valid and claimed_id and row is not None:
        verdict = VERDICT_ANIMA
        reasons.append(f"valid manifest from Anima names stamp {claimed_id}, found in the ledger")
    elif found_payload is not None:
        verdict = VERDICT_ANIMA
        if row is not None:
            reasons.append(f"Anima watermark names stamp {row.id}, found in the ledger")
        else:
            reasons.append("Anima watermark found, but its payload is not in this ledger")
    elif report.valid and report.ai_declared:
        verdict = VERDICT_AI_DECLARED
        reasons.append(f"valid manifest declares AI-generated content (signer: {report.signer})")
    elif classifier is not None and classifier["fired"]:
        verdict = VERDICT_LIKELY_SYNTHETIC
        reasons.append(
            "no manifest declares AI and no Anima watermark, but the detector scores the clip "
            f"{classifier['clip_score']:.2f} >= threshold {classifier['threshold']:.2f} "
            f"(calibrated probability {classifier['probability']:.2f} of this generator's output)"
        )
    else:
        verdict = VERDICT_NO_EVIDENCE
        reasons.append("no valid manifest and no Anima watermark")
        if classifier is not None:
            reasons.append(
                f"the detector scores {classifier['clip_score']:.2f}, below its threshold "
                f"{classifier['threshold']:.2f}"
            )
    if report.valid and not report.trusted:
        reasons.append("the signer is not in the trust anchors given (pass --trust CA.pem)")

    durable = row.manifest if (row is not None and not report.present) else None
    return VerifyReport(
        path=str(clip),
        sha256=media.sha256_file(clip),
        verdict=verdict,
        reasons=reasons,
        manifest=report,
        watermark=reading,
        ledger=ledger_info,
        durable_manifest=durable,
        classifier=classifier,
    )


def _pose_ingredient(spec: str) -> Path | None:
    path = Path(spec.split(":", 1)[1] if spec.startswith(("skeleton:", "video:")) else spec)
    return path if not spec.startswith("motion:") and path.is_file() else None


def _policy_parts(
    settings: Settings, policy: Path | None
) -> tuple[PolicyRules, FaceBackend, ConsentRegistry]:
    rules = load_rules(policy, settings.home)
    backend = load_backend(
        rules.backend, model_dir=rules.backend_model_dir, match_threshold=rules.match_threshold
    )
    return rules, backend, ConsentRegistry(Ledger(settings.database_url))


def start_of_day_utc(day: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) if day else None


def enroll(
    settings: Settings,
    name: str,
    photos: list[Path],
    statement: Path,
    purposes: list[str],
    *,
    expires: dt.date | None = None,
    valid_from: dt.date | None = None,
    granted_by: str | None = None,
    keep_photos: bool = False,
    policy: Path | None = None,
    actor: str | None = None,
) -> tuple[Identity, ConsentGrant]:
    """Enrol a person from photos that each show exactly their face, with a first consent grant."""
    rules, backend, registry = _policy_parts(settings, policy)
    for purpose in purposes:
        rules.check_purpose(purpose)
    if not photos:
        raise BadInput("give at least one --photo")
    if not Path(statement).is_file():
        raise BadInput(f"{statement}: no such file (the signed consent statement)")
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
    for existing in registry.identities(backend=backend.name):
        for stored in existing.embeddings:
            if any(backend.distance(e, np.asarray(stored, np.float32)) < threshold for e in embeddings):
                raise BadInput(
                    f"this person is already enrolled as {existing.id}; "
                    "add consent with `anima consent grant`"
                )
    actor = actor or current_actor()
    identity = registry.enroll(name, embeddings, backend.name, [media.sha256_file(p) for p in photos], actor)
    grant = registry.grant(
        identity.id,
        purposes,
        media.sha256_file(statement),
        granted_by or name,
        actor,
        valid_from=start_of_day_utc(valid_from),
        expires_at=start_of_day_utc(expires),
    )
    if keep_photos:
        folder = settings.home / "consent" / "photos" / identity.id
        folder.mkdir(parents=True, exist_ok=True)
        for index, photo in enumerate(photos):
            shutil.copyfile(photo, folder / f"{index}{Path(photo).suffix.lower()}")
    return identity, grant


def grant_consent(
    settings: Settings,
    identity_id: str,
    statement: Path,
    purposes: list[str],
    *,
    expires: dt.date | None = None,
    valid_from: dt.date | None = None,
    granted_by: str | None = None,
    policy: Path | None = None,
    actor: str | None = None,
) -> ConsentGrant:
    """Record a further consent for an enrolled person."""
    rules = load_rules(policy, settings.home)
    for purpose in purposes:
        rules.check_purpose(purpose)
    if not Path(statement).is_file():
        raise BadInput(f"{statement}: no such file (the signed consent statement)")
    registry = ConsentRegistry(Ledger(settings.database_url))
    identity = registry.identity(identity_id)
    return registry.grant(
        identity_id,
        purposes,
        media.sha256_file(statement),
        granted_by or identity.display_name,
        actor or current_actor(),
        valid_from=start_of_day_utc(valid_from),
        expires_at=start_of_day_utc(expires),
    )


def check_reference(
    settings: Settings,
    reference: Path,
    purpose: str,
    *,
    fictional: bool = False,
    policy: Path | None = None,
    actor: str | None = None,
) -> Decision:
    """Ask the consent gate about a reference picture (the decision is recorded either way)."""
    rules, backend, registry = _policy_parts(settings, policy)
    return gate.check(
        media.read_image(reference),
        purpose,
        actor or current_actor(),
        registry=registry,
        backend=backend,
        rules=rules,
        fictional=fictional,
    )


def generate(
    settings: Settings,
    request: GenerationRequest,
    output: Path,
    *,
    purpose: str,
    fictional: bool = False,
    policy: Path | None = None,
    device: str | None = None,
    crf: int = 18,
    actor: str | None = None,
    progress: Progress | None = None,
) -> StampResult:
    """Gate -> generate -> identity-drift check -> watermark -> encode -> sign -> ledger -> rename.

    The consent gate cannot be skipped: a refusal raises :class:`PolicyDenied` before anything is
    generated, and a video whose faces drift from the consented identity is never written.
    """
    from anima.generate import runner  # torch and diffusers load only for generation

    output = Path(output)
    if output.suffix.lower() != ".mp4":
        raise BadInput(f"{output}: output must be an .mp4 file")
    ingredients = _ingredients(
        reference=request.reference,
        pose=_pose_ingredient(request.pose),
        reference_pose=request.reference_pose,
    )
    identity_from_settings(settings)  # fail on missing keys before minutes of generation
    actor = actor or current_actor()
    rules, backend, registry = _policy_parts(settings, policy)
    decision = gate.check(
        media.read_image(request.reference),
        purpose,
        actor,
        registry=registry,
        backend=backend,
        rules=rules,
        fictional=fictional,
    )
    gate.require(decision)
    video = runner.animate(request, device=device)
    drift = gate.check_output(video.frames, decision, actor, registry=registry, backend=backend, rules=rules)
    if not drift.ok:
        raise PolicyDenied(
            f"identity drift: {len(drift.drifted)} face(s) in the output match no consented "
            "identity; nothing was written",
            ["identity-drift"],
        )
    extra = {
        "model": video.model_name,
        "pose": request.pose,
        "seed": request.seed,
        **video.sampling,
        "consent": {
            "purpose": purpose,
            "fictional": fictional,
            "decision_event": decision.event_id,
            "grants": decision.grant_ids,
        },
    }
    return _publish(
        settings,
        _watermark_frames(video.frames, video.fps, progress),
        output,
        source_sha256=hashlib.sha256(video.frames.tobytes()).hexdigest(),
        ingredients=ingredients,
        kind="generation",
        software_agent=f"anima/{video.model_name}",
        extra=extra,
        crf=crf,
        actor=actor,
    )


def scan_file(settings: Settings, path: str, trust: tuple[str, ...] = ()) -> dict[str, Any]:
    """Verify one file of a batch scan. Module-level and given only picklable arguments, because it
    runs in worker processes and Ray tasks; returns plain data for ``scan.jsonl``."""
    clip = Path(path)
    report = verify(settings, clip, trust=[Path(anchor) for anchor in trust])
    payload = report.watermark.payload if report.watermark else None
    claimed = (report.manifest.anima or {}).get("stamp_id") if report.manifest.valid else None
    stamp_id = (report.ledger or {}).get("stamp_id") or claimed
    if stamp_id is None and payload is not None:
        stamp_id = stamp_id_for(payload)
    frames = 1 if clip.suffix.lower() in STILL_SUFFIXES else media.probe_video(clip).num_frames or None
    return {
        "report": report.to_dict(),
        "stamp_id": stamp_id,
        "frames": frames,
        "thumbnail": scan_report.thumbnail(clip),
    }


def scan(
    settings: Settings,
    inputs: list[Path],
    out: Path,
    *,
    trust: list[Path] | None = None,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    actor: str | None = None,
    progress: Progress | None = None,
) -> scan_engine.ScanSummary:
    """Verify many files in parallel, each content once, resuming from ``out/scan.jsonl``; every new
    row is also an audit event, written from this process only (the ledger has one writer)."""
    anchors = tuple(str(anchor) for anchor in (trust or []))
    for anchor in anchors:
        if not Path(anchor).is_file():
            raise BadInput(f"{anchor}: no such file (a --trust CA certificate)")
    paths = scan_engine.collect(inputs)
    if not paths:
        raise BadInput("nothing to scan: no media files in the paths given")
    ledger = Ledger(settings.database_url)  # created here first, so workers only ever read it
    actor = actor or current_actor()

    def record(row: dict[str, Any]) -> None:
        details = {
            "path": row["path"].encode("utf-8", "backslashreplace").decode("utf-8"),
            "sha256": row["sha256"],
            "status": row["status"],
            "verdict": row["verdict"],
            "stamp_id": row.get("stamp_id"),
            "duplicate_of": row["duplicate_of"],
            "error": row.get("error"),
            "out": str(out),
        }
        ledger.record("scan", actor, row["sha256"] or details["path"], details)

    return scan_engine.run(
        paths,
        out,
        functools.partial(scan_file, settings, trust=anchors),
        engine=engine,
        workers=workers,
        address=address,
        on_row=record,
        progress=progress,
    )
