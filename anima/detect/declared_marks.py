"""Other generators' invisible watermarks: the fixed messages that Stable Diffusion's reference
scripts, diffusers' SDXL pipelines and Stability AI's generative-models (SDXL, Stable Video
Diffusion) hide in every picture they output, read from a clip's sampled frames as evidence that
the clip declares AI generation. Torch-free: numpy and OpenCV only.

The facts, from the public code that embeds them (all with the ``invisible-watermark`` package,
method ``dwtDct``, its default scale 36 on the U channel and 4 x 4 blocks):

* CompVis/stable-diffusion ``scripts/txt2img.py``: the bytes ``StableDiffusionV1`` (136 bits), on
  the uint8 picture converted RGB -> BGR as OpenCV expects.
* Stability-AI/stablediffusion (SD 2) ``scripts/txt2img.py``: the bytes ``SDV2`` (32 bits), the
  same way.
* diffusers ``pipelines/stable_diffusion_xl/watermark.py``: the 48 bits ``0xB3EC907BB19E``, on a
  float32 picture in [0, 255] handed over in RGB order (no flip, so the "U" it marks is computed
  with red and blue swapped).
* Stability-AI/generative-models ``sgm/inference/helpers.py`` (SDXL, and every frame of Stable
  Video Diffusion's sampling scripts): the same 48 bits on a float32 picture flipped to BGR.

How ``dwtDct`` reads (the reader here is our own, vectorised and without torch, which the package
imports; the tests check its block votes bit for bit against the package's ``WatermarkDecoder``):
the U channel of OpenCV's YUV (offset 128 for uint8, 0.5 for float pictures) is cropped to a
multiple of 4, its Haar approximation (the 2 x 2 sums / 2) is cut into 4 x 4 blocks in raster
order, and block ``k`` votes for bit ``k mod N``: 1 where the largest magnitude among its 15
non-DC entries, modulo 36, is above 18. The block grid is anchored at the picture's top-left
corner at the generator's size, so a resized or cropped copy loses the mark.

Reading and deciding, with a false-positive rate that is bounded, not tuned: the block votes of up
to ``MAX_FRAMES`` frames are pooled per message bit into one N-bit reading for the clip (pooled,
not per-frame p-values multiplied, so that a still or static clip, whose frames repeat, counts
once). The package reads a bit as its blocks' majority; here the ``m`` positions (``m`` = the
message's ones) whose blocks vote 1 most often read 1, fewer where votes tie. That threshold is
set by all positions alike, and it still reads a mark whose 0s vote 1 in many blocks (faint
chroma; a float embedding's small entries), which a majority reads as all ones. Under the null
hypothesis "the content is unrelated to the message", which positions read 1 is then an
arrangement unrelated to the message, so given ``d`` ones read and ``m`` in the message, the
overlap is hypergeometric and the number of matching bits has an exact tail ``p``: the binomial
tail over matched bits, conditioned on the ones read, so that a flat, colourless frame (all votes
0, nothing read as 1) earns nothing for matching the message's zeros. A mark is found when ``p``
times the number of marks tried (a union bound) is at most ``MAX_FALSE_POSITIVE``; that product
is the reading's reported false-positive bound. Per-frame matches, and how many frames are
significant alone at ``VOTE_P``, are reported as evidence, not used to decide.

Measured (``benchmarks/foreign_marks.py``): every clean marked clip found; the marks are fragile
(JPEG q75 and H.264 at CRF 18 keep them in some 512 px clips, CRF 23 in none); no mark on 240
unmarked clips (smallest bound 3e-3). Cost: about 1 ms a 256 px frame, 12 ms at 512 px and 40 ms
at 1080p for all four marks, so at most 0.1-0.3 s for the 8 frames read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

MAX_FRAMES = 8  # frames read per clip, spread evenly over those sampled
MIN_PIXELS = 256 * 256  # the package refuses to mark smaller pictures, so none carries a mark
MAX_FALSE_POSITIVE = 1e-6  # per clip, over every mark tried
VOTE_P = 1e-3  # a frame "votes" for a mark when its own reading is this unlikely by chance
SCALE = 36.0  # invisible-watermark's dwtDct quantisation step on U
BLOCK = 4
HAAR_TAP = 0.7071067811865476  # PyWavelets' Haar low-pass tap, 1 / sqrt(2)


def _bits_of_bytes(message: bytes) -> tuple[int, ...]:
    return tuple(int(bit) for bit in np.unpackbits(np.frombuffer(message, dtype=np.uint8)))


def _bits_of_int(value: int, length: int) -> tuple[int, ...]:
    return tuple((value >> (length - 1 - index)) & 1 for index in range(length))


@dataclass(frozen=True)
class KnownMark:
    """A generator's fixed message and how it is handed to the embedder: the channel order (``bgr``
    as OpenCV expects, or ``rgb`` passed as if it were BGR) and the pixel type (``uint8`` or
    ``float``, which changes the U offset, and so which block entries are largest)."""

    name: str
    message: str  # its text, or its bits in hex
    bits: tuple[int, ...]
    order: str
    precision: str

    @property
    def read_as(self) -> tuple[str, str]:
        return self.order, self.precision


SDXL_MESSAGE = 0xB3EC907BB19E  # the 48 bits that generative-models and diffusers both embed
SDXL_BITS = _bits_of_int(SDXL_MESSAGE, 48)
KNOWN_MARKS = (
    KnownMark(
        name="Stable Diffusion v1 (CompVis reference scripts)",
        message="StableDiffusionV1",
        bits=_bits_of_bytes(b"StableDiffusionV1"),
        order="bgr",
        precision="uint8",
    ),
    KnownMark(
        name="Stable Diffusion 2 (Stability AI reference scripts)",
        message="SDV2",
        bits=_bits_of_bytes(b"SDV2"),
        order="bgr",
        precision="uint8",
    ),
    KnownMark(
        name="Stable Diffusion XL (diffusers)",
        message=f"{SDXL_MESSAGE:#x}",
        bits=SDXL_BITS,
        order="rgb",
        precision="float",
    ),
    KnownMark(
        name="Stable Diffusion XL / Stable Video Diffusion (Stability AI generative-models)",
        message=f"{SDXL_MESSAGE:#x}",
        bits=SDXL_BITS,
        order="bgr",
        precision="float",
    ),
)


@dataclass(frozen=True)
class MarkReading:
    """One known mark read from a clip: the pooled reading's matching bits out of ``bits``, its
    chance ``p_value`` under the null, the bound after the union over marks, and per-frame matches."""

    mark: str
    message: str  # the message looked for: its text, or its bits in hex
    bits: int
    matched: int
    p_value: float
    false_positive_bound: float
    frame_matches: list[int]
    frames_voting: int

    @property
    def found(self) -> bool:
        return self.false_positive_bound <= MAX_FALSE_POSITIVE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "found": self.found}


@dataclass(frozen=True)
class DeclaredMarks:
    """Every known mark's reading on the frames read, best first."""

    frames: int
    readings: list[MarkReading]

    @property
    def found(self) -> list[MarkReading]:
        """The marks found, best first; of two ways of embedding one message (SDXL in diffusers and
        in generative-models differ only in channel order) only the better reading."""
        found, messages = [], set()
        for reading in self.readings:
            if reading.found and reading.message not in messages:
                found.append(reading)
                messages.add(reading.message)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "max_false_positive": MAX_FALSE_POSITIVE,
            "found": [reading.mark for reading in self.found],
            "readings": [reading.to_dict() for reading in self.readings],
        }


def block_votes(frame: np.ndarray, order: str, precision: str) -> np.ndarray:
    """Each dwtDct block's bit (raster order) in an RGB uint8 ``frame``, read the way a mark
    embedded in ``order`` at ``precision`` was written."""
    picture = frame if precision == "uint8" else frame.astype(np.float32)
    # cv2's RGB2YUV of an RGB array equals BGR2YUV of its BGR flip: the "bgr" embedders' U.
    u = cv2.cvtColor(picture, cv2.COLOR_RGB2YUV if order == "bgr" else cv2.COLOR_BGR2YUV)[:, :, 1]
    height, width = u.shape[0] // 4 * 4, u.shape[1] // 4 * 4
    # Haar approximation, rounded as PyWavelets rounds it (rows, then columns; float64 for a uint8
    # picture) so that a value on the 18/36 boundary falls the same side as in the package.
    u = u[:height, :width].astype(np.float64 if precision == "uint8" else np.float32)
    tap = u.dtype.type(HAAR_TAP)
    rows_done = tap * u[0::2] + tap * u[1::2]
    approx = tap * rows_done[:, 0::2] + tap * rows_done[:, 1::2]
    rows, cols = approx.shape[0] // BLOCK, approx.shape[1] // BLOCK
    blocks = approx[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(rows * cols, BLOCK * BLOCK)
    largest = np.abs(blocks[:, 1:]).max(axis=1)  # |entry| at the argmax of |entry|, DC excluded
    return np.mod(largest, SCALE) > SCALE / 2


def match_tail(matched: int, message_ones: int, read_ones: int, length: int) -> float:
    """P(at least ``matched`` of ``length`` bits agree) when ``read_ones`` ones fall on positions
    unrelated to the message's ``message_ones``: the hypergeometric tail of their overlap."""
    overlap = (matched - length + message_ones + read_ones) // 2
    total = math.comb(length, read_ones)
    top = min(message_ones, read_ones)
    tail = sum(
        math.comb(message_ones, k) * math.comb(length - message_ones, read_ones - k)
        for k in range(overlap, top + 1)
    )
    return min(1.0, tail / total)


def _matches(ones: np.ndarray, counts: np.ndarray, message: np.ndarray) -> tuple[int, float]:
    """Bits matched and their chance tail. The positions whose blocks vote 1 most often read 1, as
    many as the message has ones (fewer where votes tie): a threshold set by all positions alike,
    so unrelated content still reads an exchangeable arrangement, while a mark whose 0s read as 1
    in part of the blocks (a faint chroma, a float embedding's small entries) is still read."""
    share = ones / np.maximum(counts, 1)
    message_ones = int(message.sum())
    threshold = np.sort(share)[len(share) - message_ones - 1] if message_ones < len(share) else -1.0
    read = (share > threshold).astype(np.int64)
    matched = int(np.sum(read == message))
    return matched, match_tail(matched, message_ones, int(read.sum()), len(message))


def _pick(frames: list[np.ndarray], count: int) -> list[np.ndarray]:
    """Up to ``count`` frames spread evenly, all of the first frame's size and big enough to mark."""
    usable = [f for f in frames if f.ndim == 3 and f.shape[2] == 3 and f.shape == frames[0].shape]
    usable = [f for f in usable if f.shape[0] * f.shape[1] >= MIN_PIXELS]
    if len(usable) <= count:
        return usable
    return [usable[int(i)] for i in np.linspace(0, len(usable) - 1, count).round()]


def read_declared_marks(
    frames: list[np.ndarray], *, max_frames: int = MAX_FRAMES, marks: tuple[KnownMark, ...] = KNOWN_MARKS
) -> DeclaredMarks | None:
    """Read every known generator mark from RGB uint8 ``frames`` (a clip's sampled frames).

    Args:
        frames: (H, W, 3) uint8 RGB frames of one clip.
        max_frames: how many of them to read, spread evenly (default 8).
        marks: the marks to look for (default: :data:`KNOWN_MARKS`).

    Returns:
        The readings, best first, or ``None`` where no frame is at least 256 x 256 pixels
        (nothing that small is marked).
    """
    picked = _pick([np.asarray(frame) for frame in frames], max_frames) if frames else []
    if not picked:
        return None
    per_frame: dict[tuple[str, str], list[np.ndarray]] = {}
    for read_as in {mark.read_as for mark in marks}:
        per_frame[read_as] = [block_votes(frame, *read_as) for frame in picked]
    readings = []
    for mark in marks:
        message = np.asarray(mark.bits, dtype=np.int64)
        length = len(message)
        pooled_ones, pooled_counts, frame_matches, voting = np.zeros(length), np.zeros(length), [], 0
        for votes in per_frame[mark.read_as]:
            position = np.arange(len(votes)) % length
            ones = np.bincount(position, weights=votes, minlength=length)
            counts = np.bincount(position, minlength=length).astype(np.float64)
            matched, p_frame = _matches(ones, counts, message)
            frame_matches.append(matched)
            voting += p_frame <= VOTE_P
            pooled_ones += ones
            pooled_counts += counts
        matched, p_value = _matches(pooled_ones, pooled_counts, message)
        readings.append(
            MarkReading(
                mark=mark.name,
                message=mark.message,
                bits=length,
                matched=matched,
                p_value=p_value,
                false_positive_bound=min(1.0, p_value * len(marks)),
                frame_matches=frame_matches,
                frames_voting=int(voting),
            )
        )
    readings.sort(key=lambda reading: reading.p_value)
    return DeclaredMarks(frames=len(picked), readings=readings)
