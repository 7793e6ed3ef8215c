"""Invisible video watermark: a keyed, tiled spread-spectrum pattern in luma, decoded by
soft-voting over all frames.

Why this design (measured in ``benchmarks/watermark.py``): per-frame DWT/DCT embedders either
lose the payload to cropping (dwtDctSvd) or cost 0.3-6 s a frame (rivaGan). Here the pattern
is the same in every frame of an output, so embedding is one multiply-add per pixel, and
extraction can sum evidence over every tile of every frame before deciding:

* The pattern lives on a *working grid* whose short side is ``WORK_SIDE`` pixels, whatever the
  video's resolution, and is upscaled once per resolution, so cost stays flat and a resize of
  the video (0.5x, 2x) leaves the grid unchanged.
* The grid is tiled with a ``TILE`` x ``TILE`` block of ``CHIP`` x ``CHIP`` chips. Two fifths of
  the chips carry a sync sequence; the rest carry the 59 bits of the BCH codeword (32 data bits
  + parity, corrects 5 bit errors; soft decoding with a guard, see _decode), each bit spread over
  ~10 chips per tile.
* **Keyed** (algorithm ``org.anima.watermark.2``): which chip is sync, which bit a chip carries and
  every sign come from a secret per-deployment :class:`WatermarkKey` through SHAKE-256, so reading
  the source does not give the pattern. Each output picks one of ``VARIANTS`` independent layouts
  at random and shifts it cyclically by a random offset, so averaging the residuals of many outputs
  does not converge on one pattern; the reader tries every variant of every key it holds, and finds
  the offset as it finds a crop.
* Extraction high-passes each sampled frame, folds it modulo the tile, and finds the pattern by
  circular cross-correlation with each sync sequence (FFT), for a range of scales, mirrored and
  not (a horizontal flip is a mirrored tile), and, when that finds nothing, for rotations up to
  ``MAX_ANGLE`` degrees and with uniform letterbox/pillarbox bars cut away. A crop is a cyclic
  shift of the tile plus a change of scale, so it is found the same way.
* The sync peak's z-score gives a false-positive bound: the chance that an unmarked video
  produces a peak this high anywhere in the search (union bound over every shift, scale, angle,
  mirror, framing, key and variant that the search may try). A payload is reported only when that
  bound is below ``MAX_FALSE_POSITIVE`` *and* the BCH code decodes; unmarked video yields none.
* The public layout of earlier releases (``org.anima.watermark.1``, :data:`LEGACY_KEY`) is still
  read, so their outputs keep verifying; new outputs never use it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache

import bchlib
import cv2
import numpy as np

from anima.errors import BadInput, ProvenanceError

WORK_SIDE = 256
TILE = 128
CHIP = 4
SYNC_FRACTION = 0.4
DATA_BITS = 32
BCH_T = 5
BCH_M = 6
MIN_SIDE = 64
SMALL_FRAME_MAX_GAIN = math.sqrt(2.0)
STRENGTH = 2.0  # luma levels (of 255) in flat areas; textured areas take more, see _mask
CHASE_BITS = 6
MAX_DECODE_COST = 2.0  # average bits' weight a read may differ from its codeword by: see _decode
MAX_FALSE_POSITIVE = 1e-6
SCALES = tuple(np.round(np.arange(1.0, 0.795, -0.005), 4))
VARIANTS = 8
MAX_ANGLE = 5.0
ANGLES = tuple(a for a in np.round(np.arange(-MAX_ANGLE, MAX_ANGLE + 0.01, 0.5), 2) if a != 0)
ROTATED_SCALES = tuple(np.round(np.arange(1.0, 0.795, -0.02), 3))
REFINED_ROTATIONS = 3  # best coarse rotations re-read from the frames themselves
# Re-reading a turned clip from its frames raised the coarse z by at most 0.5 (40 clips turned 5
# degrees, 256 px and 720p; it lowered it as often), so only coarse peaks this close to the bound
# are re-read; unmarked clips (coarse z <= 6.0 of 20, bound 7.8) skip it.
REFINE_MARGIN = 1.0
RESIDUAL_LIMIT = 2.0  # whitened residuals beyond this are edges, not the pattern: see _residual
BAR_SAMPLE_FRAMES = 12  # bars are the same in every frame: a few frames find them
BAR_STD = 3.0  # a row or column whose pixels vary less than this (luma levels) is a bar
KEY_BYTES = 32
KEY = b"anima-watermark-v1"  # the public key of algorithm 1, kept so its outputs still read
# Soft-binding algorithm names (the ``alg`` of a C2PA soft-binding assertion and of the Soft Binding
# Resolution API): version 2 is the keyed watermark, version 1 the public-key one of earlier releases.
ALGORITHM = "org.anima.watermark.2"
LEGACY_ALGORITHM = "org.anima.watermark.1"
ALGORITHMS = (ALGORITHM, LEGACY_ALGORITHM)


def binding_value(payload: int) -> str:
    """A payload as a soft-binding value: base64 of its 4 big-endian bytes."""
    if not 0 <= payload < 2**DATA_BITS:
        raise ProvenanceError(f"watermark payload must fit in {DATA_BITS} bits, got {payload}")
    return base64.b64encode(payload.to_bytes(DATA_BITS // 8, "big")).decode("ascii")


def payload_from_binding(value: str) -> int:
    """The payload a soft-binding value names (the inverse of :func:`binding_value`)."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise BadInput(f"not a base64 soft-binding value: {value[:40]!r}") from None
    if len(raw) != DATA_BITS // 8:
        raise BadInput(f"an Anima soft-binding value is {DATA_BITS // 8} bytes, got {len(raw)}")
    return int.from_bytes(raw, "big")


@dataclass(frozen=True)
class WatermarkKey:
    """The secret the watermark's layouts derive from; ``key_id`` names it without revealing it."""

    secret: bytes = field(repr=False)
    algorithm: str = ALGORITHM

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ProvenanceError(f"unknown watermark algorithm {self.algorithm!r}")
        if self.algorithm == ALGORITHM and len(self.secret) < 16:
            raise ProvenanceError(f"a watermark key needs at least 16 secret bytes, got {len(self.secret)}")

    @classmethod
    def generate(cls) -> WatermarkKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @property
    def key_id(self) -> str:
        if self.algorithm == LEGACY_ALGORITHM:
            return "public-v1"
        return hmac.new(self.secret, b"anima watermark key id", hashlib.sha256).hexdigest()[:16]

    @property
    def variants(self) -> int:
        return VARIANTS if self.algorithm == ALGORITHM else 1


LEGACY_KEY = WatermarkKey(KEY, LEGACY_ALGORITHM)


@cache
def _bch() -> bchlib.BCH:
    return bchlib.BCH(BCH_T, m=BCH_M)


@dataclass(frozen=True)
class _Layout:
    """The arrangement of one tile: which chip carries sync or which bit, and its sign."""

    sync: np.ndarray  # (TILE, TILE) float32: ±1 on sync chips, 0 elsewhere
    data_sign: np.ndarray  # (TILE, TILE) float32: ±1 on data chips, 0 on sync chips
    data_bit: np.ndarray  # (TILE, TILE) int: code-bit index on data chips, -1 on sync chips
    code_bits: int
    sync_fft: np.ndarray  # conj(FFT(sync)), what correlation multiplies by


def _chip_choices(key: WatermarkKey, variant: int, chips: int) -> tuple[np.ndarray, np.ndarray]:
    """(chip order, chip signs) for one layout: from the public seed for algorithm 1, from
    SHAKE-256 of the secret (a keyed stream an observer cannot extend) for algorithm 2."""
    if key.algorithm == LEGACY_ALGORITHM:
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.secret).digest()[:8], "little"))
        order = rng.permutation(chips)
        return order, rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=chips)
    label = b"anima watermark layout %d" % variant
    stream = hashlib.shake_256(hmac.new(key.secret, label, hashlib.sha256).digest()).digest(chips * 9)
    ranks = np.frombuffer(stream[: chips * 8], dtype="<u8")
    signs = np.frombuffer(stream[chips * 8 :], dtype=np.uint8) & 1
    return np.argsort(ranks, kind="stable"), (signs.astype(np.float32) * 2 - 1)


@cache
def _layout(key: WatermarkKey, variant: int) -> _Layout:
    chips = TILE // CHIP
    code_bits = DATA_BITS + _bch().ecc_bits
    order, sign = _chip_choices(key, variant, chips * chips)
    n_sync = round(SYNC_FRACTION * chips * chips)
    bit_of_chip = np.full(chips * chips, -1, dtype=np.int64)
    bit_of_chip[order[n_sync:]] = np.arange(chips * chips - n_sync) % code_bits
    is_sync = bit_of_chip < 0

    def upsample(values: np.ndarray) -> np.ndarray:
        grid = values.reshape(chips, chips)
        return np.kron(grid, np.ones((CHIP, CHIP), dtype=grid.dtype))

    sync = upsample(np.where(is_sync, sign, 0.0).astype(np.float32))
    return _Layout(
        sync=sync,
        data_sign=upsample(np.where(is_sync, 0.0, sign).astype(np.float32)),
        data_bit=upsample(bit_of_chip),
        code_bits=code_bits,
        sync_fft=np.conj(np.fft.rfft2(sync)),
    )


def _encode_bits(payload: int) -> np.ndarray:
    if not 0 <= payload < 2**DATA_BITS:
        raise ProvenanceError(f"watermark payload must fit in {DATA_BITS} bits, got {payload}")
    data = payload.to_bytes(DATA_BITS // 8, "big")
    codeword = data + bytes(_bch().encode(data))
    return np.unpackbits(np.frombuffer(codeword, dtype=np.uint8))[: DATA_BITS + _bch().ecc_bits]


def _tile_pattern(payload: int, layout: _Layout) -> np.ndarray:
    bits = _encode_bits(payload).astype(np.float32) * 2 - 1
    data = layout.data_sign * np.where(layout.data_bit >= 0, bits[layout.data_bit.clip(0)], 0.0)
    return (layout.sync + data).astype(np.float32)


def _work_size(height: int, width: int, scale: float = 1.0) -> tuple[int, int]:
    """Working-grid (height, width) for a frame: short side WORK_SIDE * scale."""
    factor = WORK_SIDE * scale / min(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def _check_frame_size(height: int, width: int) -> None:
    if min(height, width) < MIN_SIDE:
        raise ProvenanceError(
            f"frames of {width}x{height} are too small to watermark (short side must be >= {MIN_SIDE})"
        )


def _small_frame_gain(height: int, width: int) -> float:
    """Frames below the working grid hold fewer pixels to vote with, so they take a stronger mark
    : x1.41 at 128 px, which took H.264 CRF 28 reads at 128 px from 2 of 6
    clips to 6 of 6 for 3.3 dB of PSNR."""
    return float(np.clip(math.sqrt(WORK_SIDE / min(height, width)), 1.0, SMALL_FRAME_MAX_GAIN))


class WatermarkEmbedder:
    """Adds the watermark for one payload to frames of any size (pattern cached per size).

    ``key`` is the deployment's secret (algorithm 2); ``variant`` picks one of its layouts and
    ``offset`` (rows, columns: whole chips) shifts the tile cyclically; both are drawn at random when
    not given, which is what spoils averaging across outputs. The reader needs neither: it tries
    every variant, and finds any shift the way it finds a crop.
    """

    def __init__(
        self,
        payload: int,
        key: WatermarkKey,
        variant: int | None = None,
        strength: float = STRENGTH,
        offset: tuple[int, int] | None = None,
    ) -> None:
        if variant is None:
            variant = secrets.randbelow(key.variants)
        if not 0 <= variant < key.variants:
            raise ProvenanceError(f"watermark variant must be in [0, {key.variants}), got {variant}")
        if offset is None:  # whole chips: a chip straddling the codec's 4x4 blocks halves CRF 28's z
            offset = (CHIP * secrets.randbelow(TILE // CHIP), CHIP * secrets.randbelow(TILE // CHIP))
        self.payload = payload
        self.key = key
        self.variant = variant
        self.offset = offset
        self.strength = strength
        self._tile = np.roll(_tile_pattern(payload, _layout(key, variant)), offset, axis=(0, 1))
        self._patterns: dict[tuple[int, int], np.ndarray] = {}

    def _pattern(self, height: int, width: int) -> np.ndarray:
        size = (height, width)
        if size not in self._patterns:
            work_h, work_w = _work_size(height, width)
            reps = (math.ceil(work_h / TILE), math.ceil(work_w / TILE))
            grid = np.tile(self._tile, reps)[:work_h, :work_w]
            self._patterns[size] = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
        return self._patterns[size]

    def _mask(self, luma: np.ndarray) -> np.ndarray:
        """Perceptual gain: busy areas hide a stronger pattern than flat ones or deep shadows."""
        small = cv2.resize(
            luma, (luma.shape[1] // 4 or 1, luma.shape[0] // 4 or 1), interpolation=cv2.INTER_AREA
        )
        mean = cv2.blur(small, (5, 5))
        std = np.sqrt(np.maximum(cv2.blur(small * small, (5, 5)) - mean * mean, 0.0))
        gain = np.clip(0.6 + std / 12.0, 0.6, 2.0)
        return cv2.resize(gain, (luma.shape[1], luma.shape[0]), interpolation=cv2.INTER_LINEAR)

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """Return a watermarked copy of one (H, W, 3) uint8 RGB frame."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ProvenanceError(f"frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        height, width = frame.shape[:2]
        _check_frame_size(height, width)
        rgb = frame.astype(np.float32)
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gain = self.strength * _small_frame_gain(height, width)
        delta = gain * self._mask(luma) * self._pattern(height, width)
        return np.clip(rgb + delta[:, :, None], 0, 255).round().astype(np.uint8)


@dataclass(frozen=True)
class WatermarkReading:
    """What extraction found: a payload only when detection is confident and the code decodes."""

    payload: int | None
    detected: bool
    sync_z: float
    false_positive_bound: float
    scale: float
    corrected_bits: int | None
    frames_used: int
    algorithm: str | None = None  # of the key whose sync peaked highest
    key_id: str | None = None
    angle: float = 0.0  # degrees the pattern was found rotated by
    mirrored: bool = False
    bars_cut: bool = False
    inverted: bool = False  # the sync found negative: the pattern was subtracted too strongly

    @property
    def confidence(self) -> float:
        """1 - false-positive bound: the chance the detection is not a fluke of unmarked video."""
        return max(0.0, 1.0 - self.false_positive_bound)

    def to_dict(self) -> dict[str, object]:
        return {
            "payload": self.payload,
            "detected": self.detected,
            "algorithm": self.algorithm if self.detected else None,
            "key_id": self.key_id if self.detected else None,
            "confidence": self.confidence,
            "false_positive_bound": self.false_positive_bound,
            "sync_z": round(self.sync_z, 2),
            "scale": self.scale,
            "angle": self.angle,
            "mirrored": self.mirrored,
            "bars_cut": self.bars_cut,
            "inverted": self.inverted,
            "corrected_bits": self.corrected_bits,
            "frames_used": self.frames_used,
        }


def _residual(frame: np.ndarray) -> np.ndarray:
    """Whitened luma: 3x3 high-pass divided by local activity, clipped at RESIDUAL_LIMIT.

    The high-pass keeps the chip-scale pattern and drops most picture content; dividing by the
    local energy stops edges and texture from outvoting the flat areas (measured: sync z-scores
    up by 30-60% at H.264 CRF 28 against a plain Gaussian high-pass). The clip is fixed, not a
    multiple of the frame's median: on dark or flat footage most residuals are zero, the median
    limit fell to ~0 and turned the residual into its sign, which kept the sync (z 22) but lost the
    data (45 of 59 bits right). Fixed, it read 16 of 34 benchmark misses, lost 1, kept 30 of 30 reads.
    """
    luma = _luma(frame).astype(np.float32)
    residual = luma - cv2.blur(luma, (3, 3))
    energy = np.sqrt(cv2.GaussianBlur(residual * residual, (0, 0), sigmaX=4.0))
    residual /= energy + 2.0
    return np.clip(residual, -RESIDUAL_LIMIT, RESIDUAL_LIMIT)


def _work_residual(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """The frame's residual on the working grid. A frame smaller than the grid is filtered at its own
    resolution and the residual interpolated up: enlarging the frame first (pixel blocks) would leave
    a lattice of block edges in the residual that lines up with the chip lattice and fakes sync."""
    if frame.shape[0] >= height:
        return _residual(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
    return cv2.resize(_residual(frame), (width, height), interpolation=cv2.INTER_NEAREST)


def _fold_sum(image: np.ndarray) -> np.ndarray:
    """Sum an image modulo the tile (zero-padded to whole tiles)."""
    height, width = image.shape
    padded = np.pad(image, ((0, (-height) % TILE), (0, (-width) % TILE)))
    shape = (padded.shape[0] // TILE, TILE, padded.shape[1] // TILE, TILE)
    return padded.reshape(shape).sum(axis=(0, 2), dtype=np.float64)


def _fold(residual: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Sum a residual modulo the tile, dividing by how much each tile cell was covered (``weight``
    marks the valid pixels of a rotated residual; all pixels count otherwise)."""
    if weight is None:
        weight = np.ones_like(residual)
    return _fold_sum(residual * weight) / np.maximum(_fold_sum(weight), 1.0)


def _gaussian_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass
class _Peak:
    z: float = -math.inf
    shift: tuple[int, int] = (0, 0)
    folded: np.ndarray | None = None
    key: WatermarkKey | None = None
    variant: int = 0
    scale: float = 1.0
    angle: float = 0.0
    mirrored: bool = False
    bars_cut: bool = False
    inverted: bool = False


@dataclass
class _Peaks:
    """The highest sync peak seen for each layout (key and variant). Kept per layout because subtracting
    one layout's sync leaves *its* inverted sync as the highest peak over a mark whose data still read
    with no bit wrong: the public layout's sync over a keyed mark (benchmark: z 23.0; reading only the
    overall best lost 41 of 44 such clips), or an estimate averaged over many outputs, which holds a
    little of every variant's sync and left another variant's inverted sync above the clip's own."""

    by_layout: dict[tuple[str, int], _Peak] = field(default_factory=dict)

    @property
    def z(self) -> float:
        return max((peak.z for peak in self.by_layout.values()), default=-math.inf)

    def merge(self, other: _Peaks) -> None:
        for layout, peak in other.by_layout.items():
            if peak.z > self.by_layout.get(layout, _Peak()).z:
                self.by_layout[layout] = peak


@cache
def _sync_bank(keys: tuple[WatermarkKey, ...]) -> tuple[tuple[tuple[WatermarkKey, int], ...], np.ndarray]:
    """Every layout of ``keys`` and their sync spectra stacked, so one batched inverse FFT correlates
    a folded residual with all of them."""
    layouts = tuple((key, variant) for key in keys for variant in range(key.variants))
    bank = np.stack([_layout(key, variant).sync_fft for key, variant in layouts]).astype(np.complex64)
    return layouts, bank


def _correlate(folded: np.ndarray, keys: Sequence[WatermarkKey], peaks: _Peaks, **where: object) -> None:
    """Circular cross-correlation of a folded residual, as it is and mirrored, with the sync of every
    variant of every key; ``peaks`` keeps each layout's highest z-score (with where it was found).

    Two-sided: a pattern subtracted more strongly than it was added leaves the sync *inverted*, and
    the high-passed chips then put a positive side lobe one chip away from the negative peak (measured:
    z +9.4 beside -15.7). Taking that side lobe for the sync decoded a wrong payload; the deepest peak
    of either sign is the sync."""
    layouts, bank = _sync_bank(tuple(keys))
    for mirrored in (False, True):
        tile = folded[:, ::-1] if mirrored else folded
        spectrum = np.fft.rfft2(tile.astype(np.float32))  # single precision: twice the speed
        products = spectrum[None] * bank
        surfaces = np.fft.irfft2(products, s=tile.shape).reshape(len(layouts), -1)
        mean, std = _surface_moments(products, tile.size)
        high, low = surfaces.argmax(axis=1), surfaces.argmin(axis=1)
        rows = np.arange(len(layouts))
        z_high = (surfaces[rows, high] - mean) / std
        z_low = (mean - surfaces[rows, low]) / std
        for index, (key, variant) in enumerate(layouts):
            peak = peaks.by_layout.setdefault((key.key_id, variant), _Peak())
            inverted = bool(z_low[index] > z_high[index])
            z = float(max(z_high[index], z_low[index]))
            if z > peak.z:
                peak.__dict__.update(
                    z=z,
                    shift=divmod(int(low[index] if inverted else high[index]), TILE),
                    folded=tile,
                    key=key,
                    variant=variant,
                    mirrored=mirrored,
                    inverted=inverted,
                    **where,
                )


def _surface_moments(products: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each correlation surface, from its half spectrum (Parseval)
    rather than from the surface: one pass over half the values instead of two over all of them
    (measured: a fifth of an unmarked clip's search went to ``std``)."""
    mean = products[:, 0, 0].real / size
    power = np.abs(products) ** 2
    power[:, 0, 0] = 0.0  # the mean's own term: leaving it out spares subtracting two large numbers
    # A real surface's half spectrum holds columns 1 .. W/2 - 1 once for two conjugate columns.
    energy = 2 * power.sum(axis=(1, 2)) - power[:, :, 0].sum(axis=1) - power[:, :, -1].sum(axis=1)
    return mean, np.maximum(np.sqrt(energy) / size, 1e-9)


def _search_trials(keys: Sequence[WatermarkKey]) -> int:
    """Every correlation peak the whole search may look at: the union bound's multiplier."""
    layouts = 2 * sum(key.variants for key in keys)  # x2: mirrored or not
    geometries = len(SCALES) + len(ANGLES) * len(ROTATED_SCALES) + REFINED_ROTATIONS
    # x2: whole frame, then with bars cut; x2: peaks of either sign
    return 2 * 2 * geometries * layouts * TILE * TILE


def _detection_z(keys: Sequence[WatermarkKey]) -> float:
    """The z-score at which the false-positive bound reaches MAX_FALSE_POSITIVE."""
    return _threshold_z(_search_trials(keys))


@cache
def _threshold_z(trials: int) -> float:
    low, high = 0.0, 40.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if trials * _gaussian_tail(mid) > MAX_FALSE_POSITIVE else (low, mid)
    return high


def _bars(luma: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the picture inside uniform letterbox/pillarbox bars."""
    height, width = luma.shape[1:]

    def flat(profile: np.ndarray) -> int:
        count = 0
        while count < len(profile) and profile[count] < BAR_STD:
            count += 1
        return count

    rows = luma.std(axis=(0, 2))
    cols = luma.std(axis=(0, 1))
    top, bottom = flat(rows), height - flat(rows[::-1])
    left, right = flat(cols), width - flat(cols[::-1])
    if bottom - top < height * 0.4 or right - left < width * 0.4:
        return 0, height, 0, width  # mostly flat: a blank clip, not bars
    return top, bottom, left, right


@dataclass
class _Framing:
    """Sampled frames as the search reads them: luma at working size (or at their own size when
    smaller than the grid), their mean residual on the grid, and the size of the frames read."""

    frames: list[np.ndarray]
    base: np.ndarray
    height: int
    width: int
    bars_cut: bool


def _framing(luma: list[np.ndarray], bars_cut: bool) -> _Framing:
    height, width = luma[0].shape
    base_h, base_w = _work_size(height, width)
    if height >= base_h:
        frames = [cv2.resize(f, (base_w, base_h), interpolation=cv2.INTER_AREA) for f in luma]
        residuals = [_residual(f) for f in frames]
    else:  # filtered at their own size, the residual enlarged (see _work_residual)
        frames = luma
        residuals = [_work_residual(f, base_h, base_w) for f in luma]
    # Resizing and folding are linear, so the frames' mean residual folds to what folding every
    # frame would give, at one resize and one fold per geometry instead of one per frame.
    return _Framing(frames, np.mean(residuals, axis=0), height, width, bars_cut)


def _scan_scales(framing: _Framing, keys: Sequence[WatermarkKey]) -> _Peaks:
    peaks = _Peaks()
    base = framing.base
    for scale in SCALES:
        size = _work_size(framing.height, framing.width, float(scale))
        scaled = base if size == base.shape else cv2.resize(base, (size[1], size[0]))
        _correlate(_fold(scaled), keys, peaks, scale=float(scale), angle=0.0, bars_cut=framing.bars_cut)
    return peaks


def _rotation(base_shape: tuple[int, int], angle: float, scale: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The affine map that turns a working-grid image by ``-angle`` degrees and scales it, centred."""
    base_h, base_w = base_shape
    matrix = cv2.getRotationMatrix2D((base_w / 2, base_h / 2), -angle, scale)
    size = (round(base_w * scale), round(base_h * scale))
    matrix[:, 2] += (size[0] - base_w) / 2, (size[1] - base_h) / 2
    return matrix, size


@lru_cache(maxsize=512)
def _rotation_coverage(base_shape: tuple[int, int], angle: float, scale: float) -> np.ndarray:
    """How much of each tile cell a turned working grid covers (the same for every clip of a shape)."""
    matrix, size = _rotation(base_shape, angle, scale)
    valid = cv2.warpAffine(np.ones(base_shape, np.float32), matrix, size, flags=cv2.INTER_LINEAR)
    return np.maximum(_fold_sum(valid), 1.0).astype(np.float32)


def _scan_rotations(
    framing: _Framing, keys: Sequence[WatermarkKey]
) -> tuple[_Peaks, list[tuple[float, float, float]]]:
    """Coarse pass over turned copies of the mean residual: its peaks (they read as well as re-read
    ones: see REFINE_MARGIN) and each geometry's (z, angle, scale), best first."""
    base = framing.base
    peaks = _Peaks()
    found = []
    for angle in ANGLES:
        for scale in ROTATED_SCALES:
            matrix, size = _rotation(base.shape, float(angle), float(scale))
            turned = cv2.warpAffine(base, matrix, size, flags=cv2.INTER_LINEAR)
            coverage = _rotation_coverage(base.shape, float(angle), float(scale))
            geometry = _Peaks()
            _correlate(
                _fold_sum(turned) / coverage,
                keys,
                geometry,
                scale=float(scale),
                angle=float(angle),
                bars_cut=framing.bars_cut,
            )
            peaks.merge(geometry)
            found.append((geometry.z, float(angle), float(scale)))
    return peaks, sorted(found, reverse=True)


def _refine_rotation(framing: _Framing, angle: float, scale: float) -> np.ndarray:
    """Fold the frames turned back *before* high-passing: turning a residual blurs the chip edges it
    holds. Frames smaller than the grid are turned at their own size and their residual enlarged,
    as :func:`_work_residual` does (enlarging the frames themselves would fake sync)."""
    base_shape = framing.base.shape
    matrix, size = _rotation(base_shape, angle, scale)
    factor = min(1.0, framing.frames[0].shape[0] / base_shape[0])  # frame pixels per grid pixel
    own_matrix = matrix * np.array([[1.0, 1.0, factor], [1.0, 1.0, factor]])
    own_size = (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))
    acc = np.zeros((size[1], size[0]), np.float32)
    for frame in framing.frames:
        residual = _residual(cv2.warpAffine(frame, own_matrix, own_size, flags=cv2.INTER_CUBIC))
        acc += residual if factor == 1.0 else cv2.resize(residual, size, interpolation=cv2.INTER_NEAREST)
    valid = cv2.warpAffine(np.ones(base_shape, np.float32), matrix, size, flags=cv2.INTER_NEAREST)
    return _fold(acc / len(framing.frames) * valid, valid)


def extract(
    frames: np.ndarray | list[np.ndarray], keys: Sequence[WatermarkKey] = (LEGACY_KEY,), max_frames: int = 48
) -> WatermarkReading:
    """Find the watermark of any of ``keys`` in a clip's frames (RGB or luma), voting over up to
    ``max_frames``. The search goes stage by stage (scales; scales with bars cut; rotations; rotations
    re-read) and stops at the first whose peak clears the detection threshold and decodes; the bound
    still counts every trial the full search could have made. A stage whose peak clears the threshold
    but does not decode (measured: sync z 9-22 with 5-14 bits wrong, after crops and dark footage)
    does not end the search: a later stage's geometry may read."""
    if len(frames) == 0:
        raise ProvenanceError("no frames to read a watermark from")
    if not keys:
        raise ProvenanceError("no watermark keys to read with")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    luma = [_luma(np.asarray(frames[i])) for i in picks]
    _check_frame_size(*luma[0].shape)
    threshold = _detection_z(keys)
    peaks = _Peaks()

    def read(stage: _Peaks) -> WatermarkReading | None:
        peaks.merge(stage)
        if stage.z < threshold:
            return None
        reading = _reading(stage, keys, len(picks))
        return reading if reading.detected else None

    framings = [_framing(luma, bars_cut=False)]
    if reading := read(_scan_scales(framings[0], keys)):
        return reading
    cut = _cut_bars(luma)
    if cut is not None:
        framings.append(_framing(cut, bars_cut=True))
        if reading := read(_scan_scales(framings[1], keys)):
            return reading
    for framing in framings:
        found, coarse = _scan_rotations(framing, keys)
        if reading := read(found):
            return reading
        for z, angle, scale in coarse[:REFINED_ROTATIONS]:
            if z < threshold - REFINE_MARGIN:
                break
            refined = _Peaks()
            folded = _refine_rotation(framing, angle, scale)
            _correlate(folded, keys, refined, scale=scale, angle=angle, bars_cut=framing.bars_cut)
            if reading := read(refined):
                return reading
    # Every peak above the bound was decoded in its stage and failed: report the highest, unread.
    return _read_peak(max(peaks.by_layout.values(), key=lambda p: p.z, default=_Peak()), keys, len(picks))


def _luma(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _cut_bars(luma: list[np.ndarray]) -> list[np.ndarray] | None:
    """The frames without uniform letterbox/pillarbox bars, or None when there are none."""
    step = max(1, len(luma) // BAR_SAMPLE_FRAMES)
    sample = np.stack(luma[::step]).astype(np.float32)
    top, bottom, left, right = _bars(sample)
    if (top, bottom, left, right) == (0, sample.shape[1], 0, sample.shape[2]):
        return None
    if min(bottom - top, right - left) < MIN_SIDE:
        return None
    return [f[top:bottom, left:right] for f in luma]


def _reading(peaks: _Peaks, keys: Sequence[WatermarkKey], frames_used: int) -> WatermarkReading:
    """The first layout's peak, highest first, that clears the bound and decodes; else the highest.
    Peaks below the bound are not decoded: they could not be reported anyway."""
    ranked = sorted(peaks.by_layout.values(), key=lambda peak: peak.z, reverse=True) or [_Peak()]
    threshold = _detection_z(keys)
    for peak in ranked:
        if peak.z < threshold:
            break
        reading = _read_peak(peak, keys, frames_used)
        if reading.detected:
            return reading
    return _read_peak(ranked[0], keys, frames_used)


def _read_peak(peak: _Peak, keys: Sequence[WatermarkKey], frames_used: int) -> WatermarkReading:
    bound = min(1.0, _search_trials(keys) * _gaussian_tail(peak.z))
    payload = corrected = None
    if peak.key is not None and peak.folded is not None:
        layout = _layout(peak.key, peak.variant)
        aligned = np.roll(peak.folded, (-peak.shift[0], -peak.shift[1]), axis=(0, 1))
        on_data = layout.data_bit >= 0
        soft = np.bincount(
            layout.data_bit[on_data],
            weights=(aligned * layout.data_sign)[on_data],
            minlength=layout.code_bits,
        )
        payload, corrected, cost = _decode(soft)
        if peak.inverted:  # the data may be inverted with the sync or not: read it both ways
            payload, corrected = _clearer_sense((payload, corrected, cost), _decode(-soft), soft)
    detected = bound <= MAX_FALSE_POSITIVE and payload is not None
    return WatermarkReading(
        payload=payload if detected else None,
        detected=detected,
        sync_z=peak.z,
        false_positive_bound=bound,
        scale=peak.scale,
        corrected_bits=corrected if detected else None,
        frames_used=frames_used,
        algorithm=peak.key.algorithm if peak.key else None,
        key_id=peak.key.key_id if peak.key else None,
        angle=peak.angle,
        mirrored=peak.mirrored,
        bars_cut=peak.bars_cut,
        inverted=peak.inverted,
    )


def _clearer_sense(
    upright: tuple[int | None, int | None, float],
    flipped: tuple[int | None, int | None, float],
    soft: np.ndarray,
) -> tuple[int | None, int | None]:
    """Of the data read as it is and inverted, the one that decodes with clearly less soft weight
    changed (by two average bits); when both decode about as well, neither counts. A complement lies
    a few bits from another codeword (measured: 7), so "both decode" happens and must not pick blindly."""
    (best, best_corrected, best_cost), (_, _, other_cost) = sorted((upright, flipped), key=lambda r: r[2])
    if best is None or other_cost - best_cost < 2 * float(np.mean(np.abs(soft))):
        return None, None
    return best, best_corrected


def _bch_decode(bits: np.ndarray) -> int | None:
    """Hard-decision BCH decode of the code bits; the payload, or None if beyond correction."""
    packed = np.packbits(bits).tobytes()  # packbits zero-pads the parity to whole bytes
    data_len = DATA_BITS // 8
    data, ecc = bytearray(packed[:data_len]), bytearray(packed[data_len:])
    bch = _bch()
    if bch.decode(data, ecc) < 0:
        return None
    bch.correct(data, ecc)
    if bytes(bch.encode(bytes(data))) != bytes(ecc):
        return None
    return int.from_bytes(data, "big")


def _decode(soft: np.ndarray) -> tuple[int | None, int | None, float]:
    """Chase-II soft decoding, guarded: BCH-decode the hard decision with every combination of the
    ``CHASE_BITS`` least reliable bits flipped, keep the codeword whose differing bits weigh least,
    and accept it only if they weigh at most ``MAX_DECODE_COST`` average bits.

    Why the guard: unguarded Chase reached codewords up to 11 bits away and gave 93 wrong payloads in
    the benchmark (88 clips x 19 edits and removals), and it finds *some* codeword for 82% of pure-noise
    words. Right reads differ from their codeword in weak bits only, wrong ones in strong bits too.
    Simulated (59 code bits, Gaussian soft values): noise words accepted 15 of 3,000 (0.5%; plain BCH
    within 4 bits: 0.4%); right reads at per-bit SNR 1.3 / 1.6: 240 / 384 of 400 (plain BCH within
    4 bits: 128 / 330), none wrong.

    Returns (payload, bits that differ from the hard decision, their total soft weight), or
    (None, None, inf).
    """
    hard = (soft > 0).astype(np.uint8)
    weakest = np.argsort(np.abs(soft))[:CHASE_BITS]
    best: tuple[float, int, int] | None = None
    for pattern in range(1 << CHASE_BITS):
        trial = hard.copy()
        trial[[weakest[i] for i in range(CHASE_BITS) if pattern >> i & 1]] ^= 1
        payload = _bch_decode(trial)
        if payload is None:
            continue
        differs = _encode_bits(payload) != hard
        cost = float(np.abs(soft)[differs].sum())
        if best is None or cost < best[0]:
            best = (cost, payload, int(differs.sum()))
    if best is None or best[0] > MAX_DECODE_COST * float(np.mean(np.abs(soft))):
        return None, None, math.inf
    return best[1], best[2], best[0]
