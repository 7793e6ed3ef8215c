"""Pictures the puppets are painted with: scikit-image's shipped photographs, pattern tiles, the
photo face. Photos are loaded once per process."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from anima.puppets.character import Fabric, Face
from anima.puppets.skeleton import EYE_X, EYE_Y, MOUTH_Y

TILE = 32  # pixels per pattern period
PHOTO_TILE = 96
FACE_SIZE = 64  # the face image covers head units x, y in [-1, 1]

# The astronaut's (Eileen Collins, NASA) eyes and mouth centre in skimage.data.astronaut(), (col, row).
_ASTRONAUT_MARKS = np.float32([[202.5, 101.0], [246.0, 104.0], [221.0, 144.0]])


@lru_cache(maxsize=32)
def photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as read-only uint8 RGB."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = np.ascontiguousarray(image[..., :3].astype(np.uint8))
    image.setflags(write=False)
    return image


def crop(name: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """``box`` = (row, col, height, width) of photo ``name`` resized to ``size`` = (width, height)."""
    row, col, height, width = box
    region = photo(name)[row : row + height, col : col + width]
    return cv2.resize(region, size, interpolation=cv2.INTER_AREA)


def tile(fabric: Fabric) -> tuple[np.ndarray, int]:
    """One period of the fabric's pattern as uint8 RGB, and the border mode that repeats it."""
    if fabric.pattern == "photo":
        image = crop(fabric.photo, fabric.crop, (PHOTO_TILE, PHOTO_TILE)).astype(np.float32)
        image = np.clip(image * np.float32(fabric.gain), 0, 255).astype(np.uint8)
        return image, cv2.BORDER_REFLECT_101
    a, b = (np.array(c, dtype=np.float32) for c in fabric.colors)
    y, x = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    if fabric.pattern == "stripes":
        dx, dy = fabric.direction
        phase = ((x * dx + y * dy) % TILE) / TILE
        weight = (phase < fabric.fill).astype(np.float32)
    elif fabric.pattern == "checks":  # gingham: two crossing stripe sets
        weight = ((x < TILE * fabric.fill).astype(np.float32) + (y < TILE * fabric.fill)) / 2
    elif fabric.pattern == "dots":
        radius = TILE * (0.15 + 0.25 * fabric.fill)
        weight = (((x - TILE / 2) ** 2 + (y - TILE / 2) ** 2) < radius**2).astype(np.float32)
    else:
        weight = np.zeros_like(x)
    image = a + weight[..., None] * (b - a)
    return image.astype(np.uint8), cv2.BORDER_WRAP


@lru_cache(maxsize=1)
def _astronaut_face() -> np.ndarray:
    """The astronaut's face warped so its eyes and mouth sit where the puppet head draws them."""

    def at(x: float, y: float) -> tuple[float, float]:
        return (x + 1) / 2 * (FACE_SIZE - 1), (1 - y) / 2 * (FACE_SIZE - 1)

    target = np.float32([at(-EYE_X, EYE_Y), at(EYE_X, EYE_Y), at(0.0, MOUTH_Y)])
    matrix = cv2.getAffineTransform(_ASTRONAUT_MARKS, target)
    face = cv2.warpAffine(photo("astronaut"), matrix, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    face.setflags(write=False)
    return face


def face_image(face: Face) -> np.ndarray:
    """The photo face for a Face of kind "photo", jittered and mirrored: float32 RGB, FACE_SIZE square."""
    image = _astronaut_face().astype(np.float32)
    if face.flip:
        image = image[:, ::-1]
    return np.clip(image * np.float32(face.gain), 0, 255)


def face_skin(face: Face) -> tuple[int, int, int]:
    """The cheek colour of the photo face, so the rest of the head and body match it."""
    image = face_image(face)
    r0, c0 = int(FACE_SIZE * 0.58), int(FACE_SIZE * 0.22)
    cheeks = np.concatenate([image[r0 : r0 + 6, c0 : c0 + 6], image[r0 : r0 + 6, -c0 - 6 : -c0]])
    return tuple(int(v) for v in cheeks.reshape(-1, 3).mean(axis=0))  # type: ignore[return-value]
