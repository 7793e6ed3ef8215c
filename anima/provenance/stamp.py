"""Publishing an output: watermark every frame -> encode -> sign a C2PA manifest -> record the
ledger row -> rename into place. The one path by which Anima writes an output, so that no file
exists without its manifest and its ledger row."""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anima import media
from anima.errors import BadInput, LedgerError, MediaError
from anima.ledger import Ledger, Stamp
from anima.provenance import manifest as c2pa_manifest
from anima.provenance import watermark
from anima.provenance.keys import SigningIdentity
from anima.provenance.reconcile import WORK_PREFIX, pending_publish, place_staged
from anima.provenance.verify import stamp_id_for

Progress = Callable[[int, int], None]
# Writes the watermarked output to a path with a given H.264 CRF and returns its frame count.
MarkedWriter = Callable[[watermark.WatermarkEmbedder, Path, int], int]
STILL_SUFFIXES = {".png", ".jpg", ".jpeg"}
# The signed manifest store's bytes (base64, ``application/c2pa``) in a stamp row's details: what the
# Soft Binding Resolution API serves at ``/manifests/{id}`` once the file's own copy is stripped.
MANIFEST_STORE_DETAIL = "c2pa_manifest_store"


@dataclass(frozen=True)
class StampResult:
    """What was published: the stamp id (also the watermark payload's name), the file and its hash."""

    stamp_id: str
    payload: int
    output: Path
    output_sha256: str
    frames: int
    signer: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "stamp_id": self.stamp_id,
            "payload": self.payload,
            "output": str(self.output),
            "output_sha256": self.output_sha256,
            "frames": self.frames,
            "signer": self.signer,
        }


def manifest_store_bytes(row: Stamp) -> bytes | None:
    """The signed manifest store (``application/c2pa``) kept in a stamp row; None for rows from
    before it was kept (their manifest is only in the row's JSON)."""
    encoded = (row.details or {}).get(MANIFEST_STORE_DETAIL)
    return base64.b64decode(encoded) if isinstance(encoded, str) else None


def check_output(source: Path, output: Path) -> None:
    """The output of stamping ``source`` keeps its kind: videos become .mp4, stills keep their format."""
    is_video = source.suffix.lower() in media.VIDEO_SUFFIXES
    wanted = ".mp4" if is_video else source.suffix.lower()
    if output.suffix.lower() != wanted:
        raise BadInput(f"{output}: output of a {source.suffix} input must be a {wanted} file")
    if output.resolve() == source.resolve():
        raise BadInput(f"{output}: output must not overwrite the input")


def ingredients(**paths: Path | None) -> list[c2pa_manifest.Ingredient]:
    """The input files named in the manifest, by role; each must exist."""
    found = [c2pa_manifest.Ingredient(role, Path(p)) for role, p in paths.items() if p is not None]
    for ingredient in found:
        if not ingredient.path.is_file():
            raise MediaError(f"{ingredient.path}: no such file ({ingredient.role} input)")
    return found


def _write_marked_frames(
    frames: Iterable[np.ndarray], total: int | None, fps: float, progress: Progress | None
) -> MarkedWriter:
    def write(embedder: watermark.WatermarkEmbedder, target: Path, crf: int) -> int:
        def marked() -> Iterator[np.ndarray]:
            for index, frame in enumerate(frames):
                yield embedder.embed(frame)
                if progress:
                    progress(index + 1, total or 0)

        return media.write_video(target, marked(), fps, crf=crf)

    return write


def video_file_writer(source: Path, progress: Progress | None = None) -> MarkedWriter:
    """Marks every frame of a video file, streaming (the clip is never all in memory)."""
    info = media.probe_video(source)
    return _write_marked_frames(media.iter_frames(source), info.num_frames, info.fps, progress)


def frames_writer(frames: np.ndarray, fps: float, progress: Progress | None = None) -> MarkedWriter:
    """Marks frames made in memory (a generated video)."""
    return _write_marked_frames(frames, len(frames), fps, progress)


def still_file_writer(source: Path) -> MarkedWriter:
    """Marks a still and keeps its format (PNG stays lossless, JPEG at quality 95)."""

    def write(embedder: watermark.WatermarkEmbedder, target: Path, crf: int) -> int:
        marked = Image.fromarray(embedder.embed(media.read_image(source)))
        if target.suffix.lower() == ".png":
            marked.save(target, format="PNG")
        else:
            marked.save(target, format="JPEG", quality=95)
        return 1

    return write


def file_writer(source: Path, progress: Progress | None = None) -> MarkedWriter:
    """The writer for an existing video or still."""
    if source.suffix.lower() in STILL_SUFFIXES:
        return still_file_writer(source)
    return video_file_writer(source, progress)


def _copy_durably(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())


def _new_payload(ledger: Ledger) -> int:
    while True:
        payload = secrets.randbits(watermark.DATA_BITS)
        if not ledger.payload_in_use(payload):
            return payload


def publish(
    ledger: Ledger,
    identity: SigningIdentity,
    write_marked: MarkedWriter,
    output: Path,
    *,
    source_sha256: str,
    inputs: list[c2pa_manifest.Ingredient],
    kind: str,
    software_agent: str,
    extra: dict[str, Any],
    crf: int,
    actor: str,
    pending: Path,
    mark_key: watermark.WatermarkKey,
) -> StampResult:
    """Watermark -> encode -> sign -> ledger -> rename. Nothing reaches ``output`` unless the ledger
    row committed; a failure anywhere leaves no file, and a kill anywhere leaves what
    :func:`anima.provenance.reconcile.reconcile` completes or removes (``pending`` holds the intent
    it reads). ``mark_key`` is the deployment's secret watermark key."""
    payload = _new_payload(ledger)
    stamp_id = stamp_id_for(payload)
    embedder = watermark.WatermarkEmbedder(payload, mark_key)
    suffix = output.suffix.lower()
    with (
        pending_publish(pending, stamp_id, output),
        tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{stamp_id}-") as work,
        media.atomic_output(output) as final,
    ):
        marked = Path(work) / f"marked{suffix}"
        frames = write_marked(embedder, marked, crf)
        stamp_info = {
            "stamp_id": stamp_id,
            "kind": kind,
            "watermark": {"algorithm": mark_key.algorithm, "key_id": mark_key.key_id, "payload": payload},
            **extra,
        }
        signed = Path(work) / f"signed{suffix}"
        store, store_bytes = c2pa_manifest.sign_file(
            marked,
            signed,
            c2pa_manifest.build_definition(output.name, stamp_info, software_agent),
            identity,
            inputs,
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
            inputs={i.role: {"name": i.path.name, "sha256": media.sha256_file(i.path)} for i in inputs},
            signer=identity.subject,
            signer_fingerprint=identity.fingerprint_sha256,
            manifest=store,
            details={
                "frames": frames,
                **extra,
                "output_path": os.path.abspath(output),
                MANIFEST_STORE_DETAIL: base64.b64encode(store_bytes).decode("ascii"),
            },
        )
        _copy_durably(signed, final)  # the row below must never name a file a power cut truncated
        try:
            recorded = {"output_sha256": output_sha256, "payload": payload}
            ledger.record(f"{kind}.stamped", actor, stamp_id, recorded, row=row)
        except LedgerError:
            if ledger.stamp(stamp_id) is not None:  # the row committed (e.g. only its checkpoint failed):
                place_staged(final, output)  # a committed row always gets its file
            raise
    return StampResult(stamp_id, payload, output, output_sha256, frames, identity.subject)
