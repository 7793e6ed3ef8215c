"""Real footage for the detector, made offline, so that "real" is neither just puppets nor just sharp.

Camera moves over the photographs bundled with scikit-image and scikit-learn, filmed by a handheld
camera's faults (sensor noise, motion blur, rolling shutter, exposure that drifts); procedural
high-frequency textures and static; night scenes; documents; animals. Every clip is a function of
its seed and returns its frames (F, H, W, 3) uint8 with what was drawn, for the dataset listing.
Sizes are (width, height), as :func:`anima.puppets.sample_clip` takes them.
"""

from __future__ import annotations

import functools
import string
from typing import Any

import cv2
import numpy as np
from skimage import data as photos
from skimage.util import img_as_ubyte

Size = tuple[int, int]
Drawn = dict[str, Any]

FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)
TEXTURES = ("fractal", "static", "grating", "checker", "blobs", "dots")


@functools.cache
def picture(name: str) -> np.ndarray:
    """A bundled photograph as RGB uint8: a ``skimage.data`` name, ``motorcycle`` (the stereo pair's
    left view) or ``sklearn:NAME`` (scikit-learn's sample images). Read-only."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name.removeprefix("sklearn:") + ".jpg")
    elif name == "motorcycle":
        image = photos.stereo_motorcycle()[0]
    else:
        image = getattr(photos, name)()
    image = img_as_ubyte(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = np.ascontiguousarray(image[..., :3])
    image.flags.writeable = False
    return image


def camera_path(
    rng: np.random.Generator,
    frames: int,
    scene: tuple[int, int],
    size: Size,
    zoom: tuple[float, float] = (0.35, 0.9),
    shake: float = 0.0,
) -> np.ndarray:
    """Crop boxes (F, 3) of ``x, y, width`` in scene pixels: a pan and zoom from one random framing
    to another, plus a handheld wobble of ``shake`` (a share of the crop's width)."""
    height, width = scene
    aspect = size[1] / size[0]
    largest = min(width, height / aspect)
    sides = rng.uniform(*zoom, 2) * largest
    start, end = rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)
    wobble = np.cumsum(rng.normal(0, 1, (frames, 2)), axis=0)
    wobble = np.stack([np.convolve(w, [0.25, 0.5, 0.25], mode="same") for w in wobble.T], axis=1)
    wobble -= wobble.mean(axis=0)
    boxes = []
    for index, t in enumerate(np.linspace(0, 1, frames)):
        side = sides[0] + (sides[1] - sides[0]) * t
        place = start + (end - start) * t
        x = (width - side) * place[1] + shake * side * wobble[index, 1] * 0.1
        y = (height - side * aspect) * place[0] + shake * side * wobble[index, 0] * 0.1
        boxes.append((np.clip(x, 0, width - side), np.clip(y, 0, height - side * aspect), side))
    return np.array(boxes)


def film(scene: np.ndarray, boxes: np.ndarray, size: Size) -> np.ndarray:
    """The scene seen through each crop box, resized to ``size`` (area averaging, like a sensor)."""
    aspect = size[1] / size[0]
    out = []
    for x, y, side in boxes:
        x0, y0 = int(x), int(y)
        crop = scene[y0 : y0 + max(1, int(side * aspect)), x0 : x0 + max(1, int(side))]
        out.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    return np.stack(out)


def _velocity(boxes: np.ndarray, size: Size) -> np.ndarray:
    """Per-frame image motion (F, 2) in output pixels (x, y) of a camera path."""
    scale = size[0] / boxes[:, 2]
    moves = np.diff(boxes[:, :2], axis=0, prepend=boxes[:1, :2]) * scale[:, None]
    return -moves


def _line_kernel(dx: float, dy: float) -> np.ndarray | None:
    length = float(np.hypot(dx, dy))
    if length < 1.0:
        return None
    side = int(np.ceil(length)) | 1
    kernel = np.zeros((side, side), np.float32)
    centre = side // 2
    half = np.array([dx, dy]) / 2
    cv2.line(
        kernel,
        (round(centre - half[0]), round(centre - half[1])),
        (round(centre + half[0]), round(centre + half[1])),
        1.0,
        1,
        cv2.LINE_AA,
    )
    return kernel / kernel.sum()


def camera_faults(
    frames: np.ndarray,
    rng: np.random.Generator,
    velocity: np.ndarray | None = None,
    iso: tuple[float, float] = (100, 1600),
) -> tuple[np.ndarray, Drawn]:
    """The frames as a small camera records them: exposure that drifts (auto-exposure hunting,
    flicker), motion blur along the image motion during the shutter, rolling-shutter skew, a little
    defocus and vignetting, then shot and read noise in linear light, spatially correlated by
    demosaicing. Returns the frames and the drawn settings."""
    count, height, width = frames.shape[:3]
    velocity = np.zeros((count, 2)) if velocity is None else velocity
    drawn: Drawn = {
        "iso": float(np.exp(rng.uniform(np.log(iso[0]), np.log(iso[1])))),
        "shutter": float(rng.uniform(0.2, 1.0)),  # share of the frame interval the shutter is open
        "exposure_drift": float(rng.uniform(0.0, 0.25)),
        "flicker": float(rng.choice([0.0, 0.0, rng.uniform(0.01, 0.05)])),
        "rolling_shutter": float(rng.choice([0.0, rng.uniform(0.1, 0.6)])),
        "defocus": float(rng.choice([0.0, 0.0, rng.uniform(0.4, 1.2)])),
        "vignette": float(rng.choice([0.0, rng.uniform(0.1, 0.4)])),
        "handshake_blur": float(rng.uniform(0.0, 2.0)),
    }
    walk = np.cumsum(rng.normal(0, 1, count))
    walk = (walk - walk.mean()) / (np.abs(walk).max() + 1e-6)
    gains = rng.uniform(0.8, 1.2) * (1 + drawn["exposure_drift"] * walk)
    gains *= 1 + drawn["flicker"] * np.sin(np.arange(count) * rng.uniform(1.5, 3.0))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / ((width / 2) ** 2 + (height / 2) ** 2)
    shading = 1 - drawn["vignette"] * radius
    full_well = 2e6 / drawn["iso"]  # electrons at white: fewer at high ISO, so more shot noise
    read_noise = rng.uniform(1.5, 4.0)  # electrons
    out = []
    for index, frame in enumerate(frames):
        image = frame
        dx, dy = velocity[index] * drawn["shutter"] + rng.normal(0, drawn["handshake_blur"], 2)
        if (kernel := _line_kernel(dx, dy)) is not None:
            image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
        if drawn["rolling_shutter"] and abs(velocity[index, 0]) > 0.2:
            shift = velocity[index, 0] * drawn["rolling_shutter"] * (yy / height - 0.5)
            image = cv2.remap(
                image, (xx - shift).astype(np.float32), yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        if drawn["defocus"]:
            image = cv2.GaussianBlur(image, (0, 0), drawn["defocus"])
        linear = (image.astype(np.float32) / 255) ** 2.2 * gains[index] * shading[..., None]
        electrons = rng.poisson(np.clip(linear, 0, 1) * full_well).astype(np.float32)
        noise = electrons - np.clip(linear, 0, 1) * full_well + rng.normal(0, read_noise, linear.shape)
        noise = cv2.GaussianBlur(noise, (0, 0), 0.6)  # demosaicing spreads each photosite's noise
        linear = np.clip(linear + noise / full_well, 0, 1)
        out.append((linear ** (1 / 2.2) * 255).round().astype(np.uint8))
    return np.stack(out), drawn


def photo_pan(seed: int, frames: int, size: int | Size, names: tuple[str, ...]) -> np.ndarray:
    """A camera move (pan and zoom) over one of the package photographs ``names``: real footage,
    real texture."""
    rng = np.random.default_rng(seed)
    image = picture(names[seed % len(names)])
    height, width = image.shape[:2]
    out_size = (size, size) if isinstance(size, int) else size
    aspect = out_size[1] / out_size[0]
    start_side, end_side = rng.uniform(0.35, 0.9, 2) * min(height / aspect, width)
    start = rng.uniform(0, 1, 2)
    end = rng.uniform(0, 1, 2)
    out = []
    for t in np.linspace(0, 1, frames):
        side = int(start_side + (end_side - start_side) * t)
        tall = int(side * aspect)
        y = int((height - tall) * (start[0] + (end[0] - start[0]) * t))
        x = int((width - side) * (start[1] + (end[1] - start[1]) * t))
        out.append(cv2.resize(image[y : y + tall, x : x + side], out_size, interpolation=cv2.INTER_AREA))
    return np.stack(out)


def handheld(seed: int, frames: int, size: Size, names: tuple[str, ...]) -> tuple[np.ndarray, Drawn]:
    """A handheld camera filming one of ``names``: a wobbly pan and zoom, with the camera's faults."""
    rng = np.random.default_rng([11, seed])
    name = names[int(rng.integers(len(names)))]
    scene = picture(name)
    boxes = camera_path(rng, frames, scene.shape[:2], size, shake=float(rng.uniform(0.1, 1.0)))
    clip, drawn = camera_faults(film(scene, boxes, size), rng, _velocity(boxes, size))
    return clip, {"picture": name, **drawn}


def filmed_puppet(clip: np.ndarray, seed: int) -> tuple[np.ndarray, Drawn]:
    """A puppet render as if filmed: a small handheld shake, then the camera's faults."""
    rng = np.random.default_rng([12, seed])
    count, height, width = clip.shape[:3]
    shake = np.cumsum(rng.normal(0, rng.uniform(0.2, 1.2), (count, 2)), axis=0)
    moved = np.stack(
        [
            cv2.warpAffine(
                frame, np.float32([[1, 0, dx], [0, 1, dy]]), (width, height), borderMode=cv2.BORDER_REFLECT
            )
            for frame, (dx, dy) in zip(clip, shake, strict=True)
        ]
    )
    velocity = np.diff(shake, axis=0, prepend=shake[:1])
    frames, drawn = camera_faults(moved, rng, velocity, iso=(100, 800))
    return frames, drawn


def _fractal(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Colour noise with a 1/f^beta spectrum, 0-255 float (H, W, 3)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    falloff = np.maximum(np.hypot(fx, fy), 1.0 / max(shape)) ** (-beta / 2)
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=falloff.shape) + 1j * rng.normal(size=falloff.shape)) * falloff
        field = np.fft.irfft2(spectrum, s=shape)
        channels.append((field - field.mean()) / (field.std() + 1e-9))
    mix = rng.uniform(0.2, 1.0)  # from grey to fully coloured
    base = channels[0][..., None] * (1 - mix) + np.stack(channels, -1) * mix
    return np.clip(128 + base * rng.uniform(30, 70), 0, 255)


def texture(seed: int, frames: int, size: Size) -> tuple[np.ndarray, Drawn]:
    """High-frequency content far from puppets: fractal noise, TV static, fine gratings (moire),
    small checkers, blobs or particle fields, moving under a camera."""
    rng = np.random.default_rng([13, seed])
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    width, height = size
    drawn: Drawn = {"kind": kind}
    if kind == "static":  # fresh noise every frame: the most temporal high frequency there is
        grain = rng.uniform(0.3, 1.2)
        clip = rng.normal(128, rng.uniform(20, 70), (frames, height, width, 1 if rng.random() < 0.5 else 3))
        clip = np.stack([cv2.GaussianBlur(f, (0, 0), grain).reshape(height, width, -1) for f in clip])
        return np.clip(np.broadcast_to(clip, (frames, height, width, 3)), 0, 255).astype(np.uint8), {
            **drawn,
            "grain": grain,
        }
    scene_shape = (height * 3, width * 3)
    yy, xx = np.mgrid[0 : scene_shape[0], 0 : scene_shape[1]].astype(np.float32)
    if kind == "fractal":
        drawn["beta"] = float(rng.uniform(0.5, 2.5))
        scene = _fractal(rng, scene_shape, drawn["beta"])
    elif kind == "grating":
        scene = np.full((*scene_shape, 3), 128.0)
        for _ in range(int(rng.integers(2, 5))):
            period, angle = rng.uniform(2.2, 12), rng.uniform(0, np.pi)
            wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
            scene += wave[..., None] * rng.uniform(10, 40, 3)
    elif kind == "checker":
        cell = int(rng.integers(1, 6))
        board = ((xx // cell + yy // cell) % 2)[..., None]
        colours = rng.uniform(0, 255, (2, 3))
        scene = colours[0] * board + colours[1] * (1 - board)
    elif kind == "blobs":
        blobs = photos.binary_blobs(max(scene_shape), blob_size_fraction=rng.uniform(0.01, 0.1), rng=seed)
        blobs = blobs[: scene_shape[0], : scene_shape[1], None]
        colours = rng.uniform(0, 255, (2, 3))
        scene = colours[0] * blobs + colours[1] * (1 - blobs)
    else:  # dots: sand, stars, particles
        scene = np.full((*scene_shape, 3), rng.uniform(0, 80))
        count = int(scene_shape[0] * scene_shape[1] * rng.uniform(0.01, 0.1))
        ys, xs = rng.integers(0, scene_shape[0], count), rng.integers(0, scene_shape[1], count)
        scene[ys, xs] = rng.uniform(80, 255, (count, 3))
    scene = np.clip(scene, 0, 255).astype(np.uint8)
    boxes = camera_path(rng, frames, scene_shape, size, zoom=(0.3, 0.7), shake=float(rng.uniform(0, 0.5)))
    return film(scene, boxes, size), drawn


def _night_city(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A procedural night street: a dark sky, building blocks with lit windows."""
    height, width = shape
    sky = np.linspace(rng.uniform(5, 25), rng.uniform(0, 8), height)[:, None, None]
    scene = np.broadcast_to(sky * rng.uniform(0.6, 1.4, 3), (height, width, 3)).copy()
    x = 0
    while x < width:
        wide, top = int(rng.integers(width // 12, width // 4)), int(rng.integers(height // 6, height // 2))
        scene[top:, x : x + wide] = rng.uniform(2, 15, 3)
        lit = rng.uniform(0.1, 0.6)
        for wy in range(top + 6, height - 8, int(rng.integers(8, 16))):
            for wx in range(x + 4, x + wide - 6, int(rng.integers(7, 14))):
                if rng.random() < lit:
                    scene[wy : wy + 5, wx : wx + 4] = rng.uniform(120, 255) * np.array([1.0, 0.85, 0.55])
        x += wide + int(rng.integers(0, 10))
    return scene


def night(seed: int, frames: int, size: Size, names: tuple[str, ...]) -> tuple[np.ndarray, Drawn]:
    """Low light: a photograph darkened to night (or a procedural night street), street lights with
    bloom, a slow handheld move, and a high-ISO camera's noise and blur."""
    rng = np.random.default_rng([14, seed])
    if names and rng.random() < 0.6:
        name = names[int(rng.integers(len(names)))]
        scene = picture(name).astype(np.float32) * rng.uniform(0.15, 0.45)
        scene *= rng.uniform(0.7, 1.3, 3)  # the colour cast of artificial light
    else:
        name = "procedural"
        scene = _night_city(rng, (512, 512))
    lights = np.zeros((*scene.shape[:2], 3), np.float32)
    for _ in range(int(rng.integers(2, 15))):
        y, x = int(rng.integers(0, scene.shape[0])), int(rng.integers(0, scene.shape[1]))
        cv2.circle(lights, (x, y), int(rng.integers(1, 6)), rng.uniform(0.5, 1.0, 3).tolist(), -1)
    bloom = cv2.GaussianBlur(lights, (0, 0), rng.uniform(4, 15)) * rng.uniform(200, 600)
    scene = np.clip(scene + lights * 255 + bloom, 0, 255).astype(np.uint8)
    boxes = camera_path(rng, frames, scene.shape[:2], size, shake=float(rng.uniform(0.1, 0.6)))
    clip, drawn = camera_faults(film(scene, boxes, size), rng, _velocity(boxes, size), iso=(1600, 6400))
    return clip, {"picture": name, **drawn}


def _page(rng: np.random.Generator) -> np.ndarray:
    """A procedural printed page: a title, paragraphs of random words, sometimes a table."""
    height, width = 800, 600
    paper = rng.uniform(215, 255, 3)
    page = np.broadcast_to(paper, (height, width, 3)).astype(np.uint8).copy()
    ink = tuple(float(v) for v in rng.uniform(0, 70, 3))
    font = FONTS[int(rng.integers(len(FONTS)))]
    scale = rng.uniform(0.35, 0.7)
    letters = np.array(list(string.ascii_letters + string.digits + ".,;"))
    y = 40
    cv2.putText(page, "".join(rng.choice(letters, 12)), (40, y), font, scale * 1.8, ink, 2, cv2.LINE_AA)
    y += 40
    while y < height - 30:
        if rng.random() < 0.08:  # a table
            rows, cols = int(rng.integers(3, 7)), int(rng.integers(2, 6))
            cell_w, cell_h = (width - 80) // cols, int(22 * scale / 0.5)
            for r in range(rows + 1):
                cv2.line(page, (40, y + r * cell_h), (width - 40, y + r * cell_h), ink, 1)
            for c in range(cols + 1):
                cv2.line(page, (40 + c * cell_w, y), (40 + c * cell_w, y + rows * cell_h), ink, 1)
            for r in range(rows):
                for c in range(cols):
                    word = str(int(rng.integers(0, 10_000)))
                    cv2.putText(
                        page,
                        word,
                        (45 + c * cell_w, y + r * cell_h + cell_h - 6),
                        font,
                        scale,
                        ink,
                        1,
                        cv2.LINE_AA,
                    )
            y += rows * cell_h + 20
            continue
        x = 40
        words = " ".join("".join(rng.choice(letters[:52], int(rng.integers(1, 10)))) for _ in range(14))
        cv2.putText(page, words, (x, y), font, scale, ink, 1, cv2.LINE_AA)
        y += int(28 * scale / 0.5) + int(rng.integers(0, 4))
    shade = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.05), width)[None, :, None]
    return np.clip(page * shade, 0, 255).astype(np.uint8)


def document(seed: int, frames: int, size: Size, names: tuple[str, ...]) -> tuple[np.ndarray, Drawn]:
    """Text on paper: one of ``names`` (scanned pages) or a procedural page, read by a moving camera
    (a scroll or a pan), filmed with a camera's faults more often than not."""
    rng = np.random.default_rng([15, seed])
    if names and rng.random() < 0.4:
        name = names[int(rng.integers(len(names)))]
        scene = picture(name)
    else:
        name, scene = "procedural", _page(rng)
    return _filmed(rng, scene, name, frames, size, zoom=(0.3, 0.8), shake=0.3, faults=0.6)


def animal(seed: int, frames: int, size: Size, names: tuple[str, ...]) -> tuple[np.ndarray, Drawn]:
    """A photograph of an animal under a camera move, half of the clips with the camera's faults."""
    rng = np.random.default_rng([16, seed])
    name = names[int(rng.integers(len(names)))]
    return _filmed(rng, picture(name), name, frames, size, zoom=(0.4, 1.0), shake=0.6, faults=0.5)


def _filmed(
    rng: np.random.Generator,
    scene: np.ndarray,
    name: str,
    frames: int,
    size: Size,
    *,
    zoom: tuple[float, float],
    shake: float,
    faults: float,
) -> tuple[np.ndarray, Drawn]:
    """``scene`` under a camera move (shake up to ``shake``), with a camera's faults at rate ``faults``."""
    boxes = camera_path(rng, frames, scene.shape[:2], size, zoom=zoom, shake=float(rng.uniform(0, shake)))
    clip = film(scene, boxes, size)
    drawn: Drawn = {"picture": name}
    if rng.random() < faults:
        clip, found = camera_faults(clip, rng, _velocity(boxes, size))
        drawn.update(found)
    return clip, drawn
