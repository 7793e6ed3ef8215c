"""``Anima``: one object per deployment (its home, ledger, policy, keys and detector) with a method
for every job. It holds what is slow to load (the ledger, the face backend, animation models) so
that a render farm or a scan worker pays for it once."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import getpass
import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anima import media
from anima.api.consent import Audit, Consent, Keys
from anima.api.tools import DetectorTools, ModelTools, PoseTools, PuppetTools
from anima.config import Settings, load_settings, private_folder
from anima.detect.declared_marks import read_declared_marks
from anima.detect.evidence import (
    DEFAULT_DETECTOR,
    DetectorEvidence,
    is_installed,
    load_detector,
    score_frames,
)
from anima.errors import BadInput, ProvenanceError
from anima.generate.request import GenerationRequest
from anima.policy.rules import PolicyRules, load_rules
from anima.provenance import watermark
from anima.provenance.keys import (
    SigningIdentity,
    identity_from_settings,
    ledger_key,
    marking_key,
    reading_keys,
)
from anima.provenance.manifest import read_manifest
from anima.provenance.verify import LedgerMatch, VerifyReport, claimed_stamp_id, decide
from anima.provenance.watermark import WatermarkKey
from anima.scan import engine as scan_engine

# What only stamping, generation, consent and the ledger need (SQLAlchemy, the consent gate, the
# publisher) is imported where it is used: `anima verify` of an unmarked clip and `anima --help`
# never load it.
if TYPE_CHECKING:
    from anima.generate.pipeline import AnimationPipeline
    from anima.ledger import Ledger, LedgerKey
    from anima.policy.faces import FaceBackend
    from anima.policy.gate import Decision
    from anima.policy.registry import ConsentRegistry
    from anima.provenance.reconcile import ReconcileReport
    from anima.provenance.stamp import StampResult

Progress = Callable[[int, int], None]
# Frames sampled over a clip for the watermark and the detector.
SAMPLED_FRAMES = 48
# Intents of publishes under way, in the home (see anima.provenance.reconcile).
PENDING_FOLDER = "pending"


def current_actor() -> str:
    """Who is acting, for the audit trail: the operating-system user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _pose_ingredient(spec: str) -> Path | None:
    """The pose file named by a pose spec (none for a built-in motion)."""
    path = Path(spec.split(":", 1)[1] if spec.startswith(("skeleton:", "video:")) else spec)
    return path if not spec.startswith("motion:") and path.is_file() else None


def _pose_label(spec: str) -> str:
    """A pose spec as the manifest names it: a file by its name only, never its folder."""
    kind, _, rest = spec.partition(":")
    if kind in ("skeleton", "video"):
        return f"{kind}:{Path(rest).name}"
    return spec if kind == "motion" else Path(spec).name


class Anima:
    """Anima for one deployment: consent-gated generation, stamping, verification and scans.

    Args:
        home: the Anima home folder (default ``$ANIMA_HOME`` or ``~/.anima``): ledger, keys, tools.
        database_url: a SQLAlchemy URL for the ledger instead of the home's SQLite file.
        policy: a policy file for the consent gate (default ``home/policy.toml``, else safe defaults).
        detector: the synthetic-video detector folder (default: the shipped one).
        trust: CA certificates (PEM) trusted as signers, on top of the configured ones.
        watermark_keys: other deployments' watermark key files to read with, on top of this home's
            own keys and the configured ones.
        actor: who is acting, recorded in the audit trail (default: the operating-system user).

    Example:
        >>> studio = Anima(home="/srv/anima")
        >>> result = studio.generate("puppet.png", "motion:wave", "out.mp4", purpose="education",
        ...                          fictional=True)
        >>> studio.verify(result.output).verdict
        <Verdict.ANIMA_GENERATED: 'anima-generated'>
    """

    def __init__(
        self,
        home: str | Path | None = None,
        database_url: str | None = None,
        *,
        policy: str | Path | None = None,
        detector: str | Path | None = None,
        trust: Sequence[str | Path] = (),
        watermark_keys: Sequence[str | Path] = (),
        actor: str | None = None,
    ) -> None:
        settings = load_settings(Path(home) if home is not None else None)
        if database_url:
            settings = dataclasses.replace(settings, database_url=database_url)
        self.settings: Settings = settings
        self.policy = Path(policy) if policy is not None else None
        self.detector_dir = Path(detector) if detector is not None else DEFAULT_DETECTOR
        self.trust = tuple(Path(anchor) for anchor in trust)
        self.watermark_keys = tuple(Path(key) for key in watermark_keys)
        self.actor = actor or current_actor()
        self._models: dict[tuple[Path, str | None], AnimationPipeline] = {}
        self.consent = Consent(self)
        self.audit = Audit(self)
        self.keys = Keys(self)
        self.models = ModelTools()
        self.detector = DetectorTools(self)
        self.pose = PoseTools(self)
        self.puppets = PuppetTools()

    def __repr__(self) -> str:
        return f"Anima(home={str(self.settings.home)!r})"

    # ------------------------------------------------------------ what is loaded once

    @functools.cached_property
    def ledger(self) -> Ledger:
        from anima.ledger import Ledger

        self.private_home()
        settings = self.settings
        return Ledger(settings.database_url, key=self.ledger_key(), checkpoints=settings.checkpoints)

    def ledger_key(self) -> LedgerKey | None:
        """The operator's key for signing the ledger, or None while there is none (``anima keys init``):
        events are then written unsigned, and consent changes are refused."""
        if not self.settings.signing_cert.exists() and not self.settings.signing_key.exists():
            return None
        return ledger_key(self.signing_identity())  # a broken or half identity is one clear error

    def private_home(self) -> Path:
        """The home folder, created or narrowed to owner-only (0700): it holds names, face data and
        kept photos."""
        try:
            return private_folder(self.settings.home)
        except OSError as exc:
            raise BadInput(f"{self.settings.home}: cannot use as the Anima home ({exc.strerror})") from None

    @functools.cached_property
    def rules(self) -> PolicyRules:
        return load_rules(self.policy, self.settings.home)

    @functools.cached_property
    def face_backend(self) -> FaceBackend:
        from anima.policy.faces import load_backend

        rules = self.rules
        return load_backend(
            rules.backend,
            model_dir=rules.backend_model_dir,
            match_threshold=rules.match_threshold,
            home=self.settings.home,
        )

    @property
    def registry(self) -> ConsentRegistry:
        from anima.policy.registry import ConsentRegistry

        return ConsentRegistry(self.ledger)

    @property
    def pose_tool_dir(self) -> Path:
        """The MediaPipe tool environment used to extract poses (built on first use)."""
        from anima.pose.blazepose import default_tool_dir

        return default_tool_dir(self.settings.home)

    def signing_identity(self) -> SigningIdentity:
        return identity_from_settings(self.settings)

    def reading_keys(self, extra: Sequence[str | Path] = ()) -> list[WatermarkKey]:
        """The watermark keys checks read with: ``extra``, this instance's, the configured ones, this
        home's own (current and retired) and the public key of releases before the keyed watermark."""
        return reading_keys(self.settings, [Path(k) for k in (*extra, *self.watermark_keys)])

    def load_model(self, model: str | Path | None = None, device: str | None = None) -> AnimationPipeline:
        """An animation model folder (default: the shipped ``anima-puppets``), loaded once."""
        from anima.generate.runner import DEFAULT_MODEL, load_pipeline

        key = (Path(model or DEFAULT_MODEL).resolve(), device)
        if key not in self._models:
            self._models[key] = load_pipeline(key[0], device)
        return self._models[key]

    # ------------------------------------------------------------ jobs

    def stamp(
        self,
        source: str | Path,
        output: str | Path,
        *,
        reference: str | Path | None = None,
        pose: str | Path | None = None,
        crf: int = 18,
        progress: Progress | None = None,
    ) -> StampResult:
        """Watermark every frame of an existing video or still, sign it, record it in the ledger,
        and only then move the result to ``output``."""
        from anima.provenance import stamp as publishing

        source, output = Path(source), Path(output)
        media.mime_type(source)
        publishing.check_output(source, output)
        media.check_crf(crf)
        media.check_output_folder(output)
        if source.suffix.lower() in media.IMAGE_SUFFIXES:
            media.probe_image(source)  # its size checked from the header before anything is decoded
        inputs = publishing.ingredients(
            reference=Path(reference) if reference else None, pose=Path(pose) if pose else None
        )
        writer = publishing.file_writer(source, progress)
        return publishing.publish(
            self.ledger,
            self.signing_identity(),
            writer,
            output,
            source_sha256=media.sha256_file(source),
            inputs=inputs,
            kind="stamp",
            software_agent="anima",
            extra={},
            crf=crf,
            actor=self.actor,
            pending=self.settings.home / PENDING_FOLDER,
            mark_key=marking_key(self.settings),
        )

    def verify(
        self, clip: str | Path, *, trust: Sequence[str | Path] = (), watermark_keys: Sequence[str | Path] = ()
    ) -> VerifyReport:
        """Gather manifest, watermark, ledger, detector and other generators' watermark evidence for
        ``clip`` and decide a verdict. The detector alone can only say ``likely-synthetic``. ``clip``
        is a video (MP4, QuickTime, WebM, Matroska, AVI), an animated GIF or WebP, or a still, known
        by its content."""
        clip = Path(clip)
        # Known by its content, not its suffix; special files, sizes, frame and pixel counts refused
        # from the header before any frame is decoded; then one decode, as far as the last sample.
        info = media.probe(clip)
        # The detector loads (onnxruntime, its network) while the clip decodes.
        with ThreadPoolExecutor(1, thread_name_prefix="anima-detector-load") as loading:
            loaded = loading.submit(_load_detector, self.detector_dir)
            sampled = media.sample(clip, SAMPLED_FRAMES, info)
            return self._report(
                clip, sampled, self.trust_anchors(trust), self.reading_keys(watermark_keys), loaded=loaded
            )

    def trust_anchors(self, extra: Sequence[str | Path] = ()) -> list[Path]:
        """The CA certificates a signer is ``Trusted`` under: ``extra``, this instance's, the configured."""
        return [Path(a) for a in extra] + list(self.trust) + list(self.settings.trust_anchors)

    def _report(
        self,
        clip: Path,
        sampled: media.Sample,
        anchors: list[Path],
        marks: list[WatermarkKey],
        *,
        loaded: Future[None] | None = None,
    ) -> VerifyReport:
        """The evidence on ``clip`` whose frames are ``sampled``, and its verdict. The detector, the
        other generators' marks and the file's hash are worked out in threads while the watermark is
        searched (their heavy parts run outside the GIL); each is waited for where the sequential
        order read it, so an error is the one it was and a verdict never depends on timing.
        ``loaded``: the detector being loaded, waited for before the first scoring."""
        manifest = read_manifest(clip, anchors)
        with ThreadPoolExecutor(3, thread_name_prefix="anima-evidence") as pool:
            scoring = pool.submit(_score, sampled.frames, self.detector_dir, loaded)
            # Other generators' marks, up to 8 frames.
            declaring = pool.submit(read_declared_marks, sampled.frames)
            hashing = pool.submit(media.sha256_file, clip)
            try:
                reading: watermark.WatermarkReading | None = watermark.extract(sampled.frames, marks)
            except ProvenanceError:
                reading = None  # frames below the watermark's minimum size
            detector, declared = scoring.result(), declaring.result()
            row = (
                self.ledger.stamp_by_payload(reading.payload)
                if reading and reading.payload is not None
                else None
            )
            claimed = claimed_stamp_id(manifest)
            if row is None and claimed:
                row = self.ledger.stamp(claimed)
            # A row edited in the database (a forged signer, a swapped manifest) is no evidence.
            ledger_problem = self.ledger.row_problem(row) if row is not None else None
            if ledger_problem:
                row = None
            verdict, reasons = decide(
                manifest, reading, row, detector, ledger_problem=ledger_problem, declared=declared
            )
            sha256 = hashing.result()
        return VerifyReport(
            path=str(clip),
            sha256=sha256,
            verdict=verdict,
            reasons=reasons,
            manifest=manifest,
            watermark=reading,
            ledger=LedgerMatch.from_row(row) if row is not None else None,
            durable_manifest=row.manifest if (row is not None and not manifest.present) else None,
            detector=detector,
            frames=sampled.total,
            declared_marks=declared,
        )

    def reconcile(self, *, clean: bool = True) -> ReconcileReport:
        """Put right what killed stamps and generations left: complete a publish whose ledger row
        committed (its staged file is renamed into place), remove the temporary files and folders of
        one that did not, and list every ledger row whose output is not where it was written. Kept
        photos of a person who is not enrolled (forget killed half-way) are removed too.
        ``clean=False`` only reports."""
        from anima.policy import enrol
        from anima.provenance.reconcile import reconcile as reconcile_outputs

        report = reconcile_outputs(self.ledger, self.settings.home / PENDING_FOLDER, clean=clean)
        kept = self.consent.photos_folder
        if kept.is_dir():
            enrolled = {identity.id for identity in self.registry.identities()}
            for folder in sorted(p for p in kept.iterdir() if p.name not in enrolled):
                report.removed.append(str(folder))  # a forgotten (or never committed) person's photos
                if clean:
                    enrol.erase_kept_photos(kept, folder.name)
        return report

    def check_reference(self, reference: str | Path, purpose: str, *, fictional: bool = False) -> Decision:
        """Ask the consent gate about a reference picture (the decision is recorded either way)."""
        return self._gate(media.read_image(reference), purpose, fictional)

    def _gate(self, picture: Any, purpose: str, fictional: bool) -> Decision:
        from anima.policy import gate

        return gate.check(
            picture,
            purpose,
            self.actor,
            registry=self.registry,
            backend=self.face_backend,
            rules=self.rules,
            fictional=fictional,
        )

    def generate(
        self,
        reference: str | Path,
        pose: str | Path,
        output: str | Path,
        *,
        purpose: str,
        fictional: bool = False,
        model: str | Path | AnimationPipeline | None = None,
        reference_pose: str | Path | None = None,
        frames: int = 48,
        steps: int | None = None,
        guidance: float | None = None,
        strength: float | None = None,
        seed: int = 0,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        align: bool = False,
        device: str | None = None,
        crf: int = 18,
        reference_thumbnail: bool = False,
        progress: Progress | None = None,
    ) -> StampResult:
        """Fit -> gate -> animate -> identity-drift check -> watermark -> encode -> sign -> ledger -> rename.

        ``pose`` is a pose .json, a skeleton or driving video, or ``motion:NAME``; ``model`` a model
        folder (default: the shipped ``anima-puppets``) or a loaded ``AnimationPipeline``. The consent
        gate cannot be skipped: a refusal raises :class:`~anima.errors.PolicyDenied` before anything is
        generated, and a video whose faces drift from the consented identity is never written. The
        picture the gate checked is the one animated (it is read once). The manifest carries a small
        thumbnail of the reference only for a ``fictional`` character or with ``reference_thumbnail``:
        a real person's face does not travel with every copy of the video unless the operator asks.

        The video has the model's native size (``width`` / ``height`` to choose; one alone, and the
        other follows the reference's shape). A reference of another shape is scaled to fit whole and
        padded with its edge colour, its poses placed the same way; the manifest's ``fitting``
        records the reference's size, the box it fills and the output size. A request that cannot be
        fitted (e.g. a reference pose drawn for a picture of another shape) fails before the gate.
        """
        from anima.generate import fitting, runner  # torch and diffusers load only for generation
        from anima.generate.pipeline import AnimationPipeline
        from anima.policy import gate
        from anima.provenance import stamp as publishing

        output = Path(output)
        if output.suffix.lower() != ".mp4":
            raise BadInput(f"{output}: output must be an .mp4 file")
        media.check_output_folder(output)
        media.check_crf(crf)
        request = GenerationRequest(
            reference=Path(reference),
            pose=str(pose),
            frames=frames,
            steps=steps,
            guidance=guidance,
            strength=strength,
            seed=seed,
            width=width,
            height=height,
            fps=fps,
            align=align,
            reference_pose=Path(reference_pose) if reference_pose else None,
        )
        inputs = publishing.ingredients(
            reference=request.reference,
            pose=_pose_ingredient(request.pose),
            reference_pose=request.reference_pose,
        )
        if not (fictional or reference_thumbnail):
            inputs = [dataclasses.replace(i, thumbnail=i.role != "reference") for i in inputs]
        identity = self.signing_identity()  # fail on missing keys before minutes of generation
        mark_key = marking_key(self.settings)
        picture = media.read_image(request.reference)
        # Sizes and shapes are settled from config files and pose files before the slow face search:
        # a request that cannot be fitted fails in one line, and the gate is asked only about work
        # that can be done.
        loaded = model if isinstance(model, AnimationPipeline) else None
        canvas = (
            fitting.ModelCanvas.of(loaded)
            if loaded is not None
            else fitting.ModelCanvas.read(Path(model or runner.DEFAULT_MODEL))
        )
        fit = fitting.plan(request, (picture.shape[1], picture.shape[0]), canvas)
        decision = self._gate(picture, purpose, fictional)
        gate.require(decision)
        pipe = loaded if loaded is not None else self.load_model(model, device)
        video = runner.animate(pipe, request, picture, fit=fit, tool_dir=self.pose_tool_dir)
        drift = gate.check_output(
            video.frames,
            decision,
            self.actor,
            registry=self.registry,
            backend=self.face_backend,
            rules=self.rules,
        )
        gate.require_no_drift(drift)
        extra = {
            "model": video.model_name,
            "pose": _pose_label(request.pose),
            "seed": request.seed,
            **video.sampling,
            "fitting": video.fitting,
            "consent": {
                "purpose": purpose,
                "fictional": fictional,
                "decision_event": decision.event_id,
                "grants": decision.grant_ids,
            },
        }
        return publishing.publish(
            self.ledger,
            identity,
            publishing.frames_writer(video.frames, video.fps, progress),
            output,
            source_sha256=hashlib.sha256(video.frames.tobytes()).hexdigest(),
            inputs=inputs,
            kind="generation",
            software_agent=f"anima/{video.model_name}",
            extra=extra,
            crf=crf,
            actor=self.actor,
            pending=self.settings.home / PENDING_FOLDER,
            mark_key=mark_key,
        )

    def scan(
        self,
        inputs: Sequence[str | Path],
        out: str | Path,
        *,
        engine: str = "local",
        workers: int | None = None,
        address: str | None = None,
        progress: Progress | None = None,
    ) -> scan_engine.ScanSummary:
        """Verify many files in parallel, each content once, resuming from ``out/scan.jsonl``; every
        new row is also an audit event, written from this process only (the ledger has one writer)."""
        scan_engine.check_options(engine, workers, address)
        for anchor in self.trust:
            if not anchor.is_file():
                raise BadInput(f"{anchor}: no such file (a trusted CA certificate)")
        self.reading_keys()  # a missing or damaged key file is one error before any work
        paths = scan_engine.collect([Path(item) for item in inputs])
        if not paths:
            raise BadInput("nothing to scan: no media files in the paths given")
        ledger = self.ledger  # opened here first, so that workers only ever read it
        out = Path(out)
        work = ScanWork(
            str(self.settings.home),
            self.settings.database_url,
            tuple(str(anchor) for anchor in self.trust),
            str(self.detector_dir),
            tuple(str(key) for key in self.watermark_keys),
        )

        def record(row: scan_engine.Row) -> None:
            details = scan_engine.audit_details(row, out)
            ledger.record("scan", self.actor, row["sha256"] or details["path"], details)

        _record_lost_scan_events(ledger, out, record)
        return scan_engine.run(
            paths,
            out,
            work,
            engine=engine,
            workers=workers,
            address=address,
            on_row=record,
            progress=progress,
        )


def _load_detector(folder: Path) -> None:
    """Load the detector in ``folder`` ahead of its first use (once per process; see
    :func:`anima.detect.evidence.load_detector`). A folder without one is left to
    :func:`score_frames`, which says so."""
    if is_installed(folder):
        load_detector(folder)


def _score(frames: list[Any], folder: Path, loaded: Future[None] | None) -> DetectorEvidence | None:
    """:func:`score_frames`, once the detector's early load (if any) is over. An error of that load
    is not raised here: :func:`score_frames` loads again and raises it where it always did."""
    if loaded is not None:
        with contextlib.suppress(Exception):
            loaded.result()
    return score_frames(frames, folder)


def _record_lost_scan_events(ledger: Ledger, out: Path, record: Callable[[scan_engine.Row], None]) -> None:
    """Record the event of every ``out/scan.jsonl`` row that has none. A scan records a row's event
    before it journals the row, so only a crash of an older version, or a ledger write that failed
    after the journal line was written elsewhere, leaves such a row; resuming records it."""
    journal = scan_engine.read_rows(out / scan_engine.JSONL_NAME)
    if not journal:
        return
    recorded = {
        scan_engine.event_key(event.details)
        for event in ledger.events(kind="scan")
        if event.details.get("out") == str(out)
    }
    for row in journal:
        path, sha256, scanned_at = scan_engine.event_key(scan_engine.audit_details(row, out))
        if (path, sha256, scanned_at) not in recorded and (path, sha256, None) not in recorded:
            record(row)


@dataclass(frozen=True)
class ScanWork:
    """The per-file check of a scan: picklable (it runs in worker processes and Ray tasks), and
    each worker builds its :class:`Anima` once, not once per file."""

    home: str
    database_url: str
    trust: tuple[str, ...]
    detector: str
    watermark_keys: tuple[str, ...] = ()

    def __call__(self, path: str) -> scan_engine.Row:
        worker = _scan_worker(self)
        sampled = media.sample(Path(path), SAMPLED_FRAMES)
        report = worker.anima._report(Path(path), sampled, worker.anchors, worker.marks)
        return scan_engine.file_result(report.to_dict(), report.stamp_id, report.frames, sampled.middle)


@dataclass(frozen=True)
class _ScanWorker:
    """What a scan worker loads once: the deployment (its ledger and detector load on first use),
    the trust anchors and the watermark keys."""

    anima: Anima
    anchors: list[Path]
    marks: list[WatermarkKey]


@functools.cache
def _scan_worker(work: ScanWork) -> _ScanWorker:
    anima = Anima(
        work.home,
        work.database_url,
        trust=work.trust,
        detector=work.detector,
        watermark_keys=work.watermark_keys,
    )
    return _ScanWorker(anima, anima.trust_anchors(), anima.reading_keys())
