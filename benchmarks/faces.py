"""Benchmark the consent gate's face analysis (``anima.policy.faces``) on package-shipped photos.

Why: the gate admits a face when its distance to an enrolled identity is under the backend's
threshold and refuses every face it cannot verify, so it rests on three measured facts: how far
the same person drifts under everyday changes (mirror, rescale, tilt, grayscale, turned on its
side or upside down), how close different people come, and which faces the detector finds at all
(how small, how tilted), at what cost. The photos are the ones the packages ship: skimage's
astronaut (Eileen Collins) and cameraman, insightface's Tom Hanks crop and group photo (six people).

    python benchmarks/faces.py [--backend dlib|dlib:cnn|insightface:PACK] [--model-dir DIR]

Prints tables; for dlib it also splits the time into detection per rotation, the CNN pass and the
description (alignment + descriptor) per face. Not a test: it takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TypeVar

import cv2
import insightface
import numpy as np
from PIL import Image
from skimage import data

from anima.policy.faces import DetectedFace, FaceBackend, load_backend
from anima.policy.faces.dlib_backend import DlibBackend
from anima.policy.faces.search import Candidate

INSIGHTFACE_IMAGES = Path(insightface.__file__).parent / "data" / "images"
T = TypeVar("T")
Affine = np.ndarray  # 2x3: where a point of the original lands in the transformed picture


def _photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(INSIGHTFACE_IMAGES / name).convert("RGB"))


def photos() -> dict[str, np.ndarray]:
    return {
        "astronaut": data.astronaut(),
        "cameraman": np.repeat(data.camera()[:, :, None], 3, axis=2),
        "hanks": _photo("Tom_Hanks_54745.png"),
        "friends": _photo("t1.jpg"),
    }


def _scale(factor: float) -> Callable[[np.ndarray], tuple[np.ndarray, Affine]]:
    def apply(image: np.ndarray) -> tuple[np.ndarray, Affine]:
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        scaled = cv2.resize(image, None, fx=factor, fy=factor, interpolation=interpolation)
        return scaled, np.array([[factor, 0, 0], [0, factor, 0]], float)

    return apply


def _tilt(degrees: float) -> Callable[[np.ndarray], tuple[np.ndarray, Affine]]:
    def apply(image: np.ndarray) -> tuple[np.ndarray, Affine]:
        height, width = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
        return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE), matrix

    return apply


def _gray(image: np.ndarray) -> tuple[np.ndarray, Affine]:
    gray = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    return gray, np.array([[1, 0, 0], [0, 1, 0]], float)


def _mirror(image: np.ndarray) -> tuple[np.ndarray, Affine]:
    return image[:, ::-1], np.array([[-1, 0, image.shape[1]], [0, 1, 0]], float)


def _upside_down(image: np.ndarray) -> tuple[np.ndarray, Affine]:
    height, width = image.shape[:2]
    return image[::-1, ::-1], np.array([[-1, 0, width], [0, -1, height]], float)


def _sideways(image: np.ndarray) -> tuple[np.ndarray, Affine]:
    return np.rot90(image), np.array([[0, 1, 0], [-1, 0, image.shape[1]]], float)


TRANSFORMS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, Affine]]] = {
    "mirror": _mirror,
    "half-size": _scale(0.5),
    "1.5x": _scale(1.5),
    "tilted-10deg": _tilt(10),
    "grayscale": _gray,
    "upside-down": _upside_down,
    "sideways": _sideways,
}


class TimedDlib(DlibBackend):
    """The dlib backend with each phase of ``analyze`` timed (instrumentation only)."""

    def __init__(self, model_dir: Path | None, *, cnn_always: bool) -> None:
        super().__init__(model_dir, cnn_always=cnn_always)
        self.times: dict[str, list[float]] = defaultdict(list)

    def _timed(self, phase: str, work: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = work()
        self.times[phase].append(time.perf_counter() - start)
        return result

    def _hog_faces(self, view: np.ndarray, rotation: int, shape: tuple[int, ...]) -> list[Candidate]:
        phase = "hog upright" if rotation == 0 else "hog turned"
        return self._timed(phase, lambda: super(TimedDlib, self)._hog_faces(view, rotation, shape))

    def _cnn_faces(self, view: np.ndarray, rotation: int, shape: tuple[int, ...]) -> list[Candidate]:
        phase = "cnn upright" if rotation == 0 else "cnn turned"
        return self._timed(phase, lambda: super(TimedDlib, self)._cnn_faces(view, rotation, shape))

    def _confirmed(self, candidate: Candidate) -> bool:
        return self._timed("confirm", lambda: super(TimedDlib, self)._confirmed(candidate))

    def _describe(self, candidate: Candidate, shape: tuple[int, ...]) -> DetectedFace:
        return self._timed("describe", lambda: super(TimedDlib, self)._describe(candidate, shape))


@dataclass
class Version:
    """One picture of a photo (original or transformed) and the people recognised in it by position."""

    photo: str
    transform: str
    faces: dict[str, DetectedFace] = field(default_factory=dict)
    missed: int = 0
    extra: int = 0


def _centre(face: DetectedFace) -> np.ndarray:
    left, top, right, bottom = face.box
    return np.array([(left + right) / 2, (top + bottom) / 2])


def _match(
    originals: dict[str, DetectedFace], found: list[DetectedFace], affine: Affine, version: Version
) -> None:
    """Say who is who in a transformed picture: the face whose centre is where the original's went."""
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    unused = list(found)
    for person, face in originals.items():
        expected = affine @ np.append(_centre(face), 1.0)
        nearest = min(unused, key=lambda f: np.linalg.norm(_centre(f) - expected), default=None)
        if nearest is not None and np.linalg.norm(_centre(nearest) - expected) < 0.5 * face.size * scale:
            version.faces[person] = nearest
            unused.remove(nearest)
        else:
            version.missed += 1
    version.extra = len(unused)


def _row(cells: list[object], widths: list[int]) -> str:
    return "  ".join(
        str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def _table(title: str, header: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}\n{_row(header, widths)}\n{_row(['-' * w for w in widths], widths)}")
    for row in rows:
        print(_row(row, widths))


def _spread(values: list[float]) -> list[object]:
    if not values:
        return ["-", "-", "-"]
    return [f"{min(values):.3f}", f"{statistics.median(values):.3f}", f"{max(values):.3f}"]


def distances(backend: FaceBackend, pictures: dict[str, np.ndarray]) -> dict[str, float]:
    """Genuine and impostor distances across the transformations; returns the end-to-end timings."""
    versions, seconds = [], {}
    for photo, image in pictures.items():
        start = time.perf_counter()
        found = backend.analyze(image)
        seconds[photo] = time.perf_counter() - start
        originals = {f"{photo}#{i}" if len(found) > 1 else photo: face for i, face in enumerate(found)}
        versions.append(Version(photo, "original", dict(originals)))
        for name, transform in TRANSFORMS.items():
            picture, affine = transform(image)
            version = Version(photo, name)
            _match(originals, backend.analyze(np.ascontiguousarray(picture)), affine, version)
            versions.append(version)

    originals = {p: f for v in versions if v.transform == "original" for p, f in v.faces.items()}
    rows, genuine_all = [], []
    for name in TRANSFORMS:
        chosen = [v for v in versions if v.transform == name]
        pairs = [
            (backend.distance(originals[p].embedding, f.embedding), p)
            for v in chosen
            for p, f in v.faces.items()
        ]
        genuine_all += [d for d, _ in pairs]
        missed, extra = sum(v.missed for v in chosen), sum(v.extra for v in chosen)
        worst = max(pairs, default=(0.0, "-"))[1]
        rows.append([name, len(pairs), missed, extra, *_spread([d for d, _ in pairs]), worst])
    rows.append(["all", len(genuine_all), "", "", *_spread(genuine_all), ""])
    _table(
        "Genuine distances: each person's original face against the same face after the transformation",
        ["transformation", "pairs", "missed", "extra", "min", "median", "max", "max is"],
        rows,
    )

    everyone = [(p, v.transform, f) for v in versions for p, f in v.faces.items()]
    impostor = sorted(
        (backend.distance(a.embedding, b.embedding), f"{p} ({t})", f"{q} ({u})")
        for (p, t, a), (q, u, b) in combinations(everyone, 2)
        if p != q
    )
    originals_only = [
        d for d, first, second in impostor if first.endswith("(original)") and second.endswith("(original)")
    ]
    _table(
        "Impostor distances: faces of different people",
        ["pairs from", "pairs", "min", "median"],
        [
            ["original photos", len(originals_only), *_spread(originals_only)[:2]],
            ["all versions", len(impostor), *_spread([d for d, _, _ in impostor])[:2]],
        ],
    )
    _table(
        "Closest impostor pairs",
        ["distance", "face", "face"],
        [[f"{d:.3f}", a, b] for d, a, b in impostor[:5]],
    )

    threshold = backend.match_threshold
    if not genuine_all or not impostor:
        print("\nToo few faces found to measure the margins.")
        return seconds
    print(
        f"\nThreshold {threshold:.3f}: highest genuine {max(genuine_all):.3f} "
        f"(margin {threshold - max(genuine_all):+.3f}), lowest impostor {impostor[0][0]:.3f} "
        f"(margin {impostor[0][0] - threshold:+.3f})"
    )
    sweep = sorted({round(threshold * k, 3) for k in (2 / 3, 3 / 4, 5 / 6, 11 / 12, 1, 13 / 12)})
    _table(
        "Errors by threshold (same person below it)",
        ["threshold", "genuine refused", "impostors admitted"],
        [
            [
                t,
                f"{sum(d >= t for d in genuine_all)} of {len(genuine_all)}",
                f"{sum(d < t for d, _, _ in impostor)} of {len(impostor)}",
            ]
            for t in sweep
        ],
    )
    return seconds


def timings(backend: TimedDlib, pictures: dict[str, np.ndarray]) -> None:
    """Where ``analyze`` spends its time, per photo, and what the rotation search adds."""
    rows = []
    for photo, image in pictures.items():
        backend.times.clear()
        start = time.perf_counter()
        faces = backend.analyze(image)
        total = time.perf_counter() - start
        spent = {phase: sum(times) for phase, times in backend.times.items()}
        confirm, describe = backend.times["confirm"], backend.times["describe"]
        turned = spent.get("hog turned", 0.0) + spent.get("cnn turned", 0.0)
        rows.append(
            [
                photo,
                f"{image.shape[1]}x{image.shape[0]}",
                len(faces),
                f"{total:.2f}",
                *(f"{spent[p]:.2f}" if p in spent else "-" for p in ("hog upright", "hog turned")),
                f"{len(confirm)} / {sum(confirm):.2f}",
                *(f"{spent[p]:.2f}" if p in spent else "-" for p in ("cnn upright", "cnn turned")),
                f"{statistics.mean(describe) * 1000:.0f}" if describe else "-",
                f"{turned:.2f} ({turned / total:.0%})",
            ]
        )
    _table(
        "Time per picture (s); 'turned': the 90/180/270 searches; 'confirm': weak HOG finds the CNN checks",
        [
            "photo",
            "size",
            "faces",
            "analyze",
            "HOG upright",
            "HOG turned",
            "confirm n / s",
            "CNN upright",
            "CNN turned",
            "describe ms/face",
            "rotation search",
        ],
        rows,
    )


def smallest_faces(backend: FaceBackend) -> None:
    """The astronaut shrunk until her face is N px across (her face is ~92 px in the 512 px photo)."""
    rows = []
    for size in (40, 32, 28, 24, 20, 18, 16, 14, 12):
        factor = size / 92
        small = cv2.resize(data.astronaut(), None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        upright, upside_down = (
            backend.analyze(small),
            backend.analyze(np.ascontiguousarray(small[::-1, ::-1])),
        )
        rows.append(
            [
                size,
                f"{small.shape[1]}x{small.shape[0]}",
                [f.size for f in upright],
                [f.size for f in upside_down],
            ]
        )
    _table("Smallest faces: box sizes found", ["face px", "picture", "upright", "upside down"], rows)


def tilt_coverage(backend: FaceBackend) -> None:
    """In-plane tilts between the four right angles the search covers."""
    crop = data.astronaut()[0:320, 60:380]
    canvas = cv2.copyMakeBorder(crop, 80, 80, 80, 80, cv2.BORDER_REPLICATE)
    found = backend.analyze(canvas)
    if len(found) != 1:
        print(f"\nTilt coverage: {len(found)} faces in the upright astronaut, not 1; skipped.")
        return
    reference, rows = found[0], []
    for degrees in (0, 15, 30, 40, 45, 50, 60, 75, 90):
        tilted, _ = _tilt(degrees)(canvas)
        faces = backend.analyze(tilted)
        best = min(faces, key=lambda f: backend.distance(reference.embedding, f.embedding), default=None)
        rows.append(
            [
                degrees,
                len(faces),
                best.rotation if best else "-",
                f"{backend.distance(reference.embedding, best.embedding):.3f}" if best else "missed",
            ]
        )
    _table(
        "Tilt coverage (astronaut turned by N degrees)", ["degrees", "faces", "found at", "distance"], rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="dlib", help="dlib, dlib:cnn or insightface:PACK")
    parser.add_argument("--model-dir", type=Path, default=None, help="the backend's model folder")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.backend.startswith("dlib"):
        backend: FaceBackend = TimedDlib(args.model_dir, cnn_always=args.backend == "dlib:cnn")
    else:
        backend = load_backend(args.backend, model_dir=args.model_dir)
    print(
        f"Backend {args.backend} ({backend.metric}; same person below {backend.match_threshold}), "
        f"loaded in {time.perf_counter() - start:.2f} s"
    )
    pictures = photos()
    print("Photos: " + ", ".join(f"{n} {im.shape[1]}x{im.shape[0]}" for n, im in pictures.items()))
    seconds = distances(backend, pictures)
    if isinstance(backend, TimedDlib):
        timings(backend, pictures)
    else:
        _table("Time per picture (s)", ["photo", "analyze"], [[p, f"{s:.2f}"] for p, s in seconds.items()])
    smallest_faces(backend)
    tilt_coverage(backend)


if __name__ == "__main__":
    main()
