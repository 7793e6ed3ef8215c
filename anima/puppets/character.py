"""Puppet characters: proportions, clothes, hair, face, skin and the scene, sampled from a seed.

Everything is plain data (tuples and floats); pictures (photo textures, the photo face) are named and
cropped here and loaded when rendering, so a Character pickles small.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from anima.puppets.motion import CLIP_KINDS
from anima.puppets.skeleton import Body

RGB = tuple[int, int, int]
_SALT = 0x636861  # separates this stream from the motion's for the same seed

# Photographs shipped inside scikit-image (skimage/data/*.png|jpg; they load without a network).
# Left out: retina (black corners), astronaut and camera (people), page and text (writing).
TEXTURE_PHOTOS = (
    "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel", "hubble_deep_field",
    "brick", "grass", "gravel", "coins", "moon",
)  # fmt: skip
BACKGROUND_PHOTOS = (
    "coffee", "chelsea", "rocket", "hubble_deep_field", "brick", "grass", "gravel", "immunohistochemistry",
    "moon", "coins", "colorwheel",
)  # fmt: skip
PATTERNS = ("flat", "stripes", "checks", "dots", "photo")
SKIN_TONES: tuple[RGB, ...] = (
    (255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 98), (160, 104, 70),
    (124, 78, 52), (92, 58, 40), (236, 188, 150), (210, 160, 120),
)  # fmt: skip
HAIR_COLORS: tuple[RGB, ...] = (
    (25, 20, 18), (60, 40, 28), (100, 68, 40), (150, 110, 60), (210, 175, 110), (160, 70, 35),
    (120, 120, 125), (220, 220, 215), (40, 40, 90), (150, 40, 110),
)  # fmt: skip


@dataclass(frozen=True)
class Fabric:
    """A cloth: ``pattern`` in PATTERNS drawn with ``colors``; ``scale`` is the pattern period in body
    units; photo fabrics crop ``crop`` = (row, col, height, width) of the scikit-image ``photo``."""

    pattern: str
    colors: tuple[RGB, RGB]
    scale: float = 0.1
    direction: tuple[int, int] = (1, 0)  # stripe direction on the tile grid
    fill: float = 0.5  # share of the period the second colour takes
    photo: str = ""
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def shaded(self, factor: float) -> Fabric:
        """The same cloth darker (the back of a garment)."""
        colors = tuple(tuple(round(v * factor) for v in c) for c in self.colors)
        return replace(self, colors=colors, gain=tuple(g * factor for g in self.gain))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Face:
    """``kind`` "drawn" (eyes, brows, mouth on skin) or "photo" (the scikit-image astronaut's face,
    colour-jittered by ``gain`` and mirrored by ``flip``)."""

    kind: str
    eye_color: RGB = (40, 30, 25)
    brow_color: RGB = (50, 35, 25)
    mouth_color: RGB = (170, 60, 60)
    glasses: RGB | None = None
    flip: bool = False
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Hair:
    """``style`` one of short, bob, bun, buzz, long; ``length`` of long hair in body units."""

    style: str
    color: RGB
    hairline: float  # head units above the eyes where the hair starts on the forehead
    volume: float  # how far the hair stands off the skull
    length: float = 0.0


@dataclass(frozen=True)
class Background:
    """``kind`` flat, vgradient, dgradient or photo; an optional floor below ``horizon`` (fraction of the
    frame height)."""

    kind: str
    colors: tuple[RGB, RGB]
    photo: str = ""
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    floor: RGB | None = None
    horizon: float = 0.8


@dataclass(frozen=True)
class Character:
    """A puppet's look. ``sleeves`` none, short, long or loose (flared); ``bottom`` trousers, shorts,
    skirt or dress (a skirt in the top's fabric); ``motif`` on the front of the top only (none,
    buttons, logo, vneck, band); ``fill`` is the standing height as a share of the frame height,
    ``floor`` where the feet stand and ``center`` the horizontal position (both frame fractions)."""

    kind: str
    body: Body
    skin: RGB
    hair: Hair
    face: Face
    sleeves: str
    top: Fabric
    top_back: Fabric
    motif: str
    motif_color: RGB
    bottom: str
    bottom_front: Fabric
    bottom_back: Fabric
    legs: RGB  # bare legs (skin) or tights under skirts and shorts
    shoes: RGB
    skirt_length: float
    skirt_flare: float
    sleeve_flare: float
    background: Background
    fill: float
    floor: float
    center: float

    @property
    def has_skirt(self) -> bool:
        return self.bottom in ("skirt", "dress")

    @property
    def has_long_hair(self) -> bool:
        return self.hair.style == "long"

    @property
    def has_loose_sleeves(self) -> bool:
        return self.sleeves == "loose"

    @property
    def is_non_rigid(self) -> bool:
        return self.has_skirt or self.has_long_hair or self.has_loose_sleeves


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _color(rng: np.random.Generator, dark: float = 0.0) -> RGB:
    """A garment colour: saturated, pastel or neutral."""
    hue = rng.uniform(0, 1)
    style = rng.integers(3)
    saturation, value = [(0.75, 0.85), (0.35, 0.95), (0.08, 0.6)][style]
    value = float(np.clip(value * rng.uniform(0.6, 1.1) - dark, 0.08, 1.0))
    saturation = float(np.clip(saturation * rng.uniform(0.7, 1.2), 0, 1))
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    p, q, t = value * (1 - saturation), value * (1 - f * saturation), value * (1 - (1 - f) * saturation)
    r, g, b = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


def _jitter(rng: np.random.Generator, color: RGB, amount: float) -> RGB:
    return tuple(int(np.clip(v * rng.uniform(1 - amount, 1 + amount), 0, 255)) for v in color)  # type: ignore[return-value]


def _photo_crop(rng: np.random.Generator, name: str, size: int) -> tuple[int, int, int, int]:
    from anima.puppets.textures import photo

    height, width = photo(name).shape[:2]
    side = int(min(height, width, max(24, size)))
    return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1)), side, side


def sample_fabric(rng: np.random.Generator, patterns: tuple[str, ...] = PATTERNS) -> Fabric:
    pattern = str(rng.choice(patterns, p=_pattern_odds(patterns)))
    colors = (_color(rng), _color(rng))
    direction = [(1, 0), (0, 1), (1, 1), (1, -1)][int(rng.integers(4))]
    scale = _u(rng, 0.05, 0.14)
    if pattern != "photo":
        return Fabric(pattern, colors, scale=scale, direction=direction, fill=_u(rng, 0.25, 0.6))
    name = str(rng.choice(TEXTURE_PHOTOS))
    crop = _photo_crop(rng, name, int(rng.integers(48, 200)))
    gain = tuple(_u(rng, 0.75, 1.2) for _ in range(3))
    return Fabric("photo", colors, scale=_u(rng, 0.2, 0.45), photo=name, crop=crop, gain=gain)  # type: ignore[arg-type]


def _pattern_odds(patterns: tuple[str, ...]) -> np.ndarray:
    odds = np.array([{"flat": 3.0, "photo": 1.5}.get(p, 1.0) for p in patterns])
    return odds / odds.sum()


def sample_body(rng: np.random.Generator) -> Body:
    heads = _u(rng, 5.6, 7.8)  # body height in head heights: child-like to tall adult
    head_b = 1.0 / (2 * heads)
    head_a = head_b * _u(rng, 0.74, 0.86)
    shoulder_w = _u(rng, 0.19, 0.26)
    hip_w = _u(rng, 0.12, 0.17)
    arm_r = _u(rng, 0.021, 0.031)
    leg = _u(rng, 0.9, 1.1)
    return Body(
        head_a=head_a,
        head_b=head_b,
        head_c=head_a * _u(rng, 1.0, 1.12),
        neck_len=_u(rng, 0.015, 0.03),
        neck_r=head_a * _u(rng, 0.36, 0.46),
        torso_len=_u(rng, 0.27, 0.32),
        shoulder_w=shoulder_w,
        chest_w=shoulder_w * _u(rng, 0.82, 0.95),
        waist_w=min(shoulder_w, hip_w + 0.05) * _u(rng, 0.7, 0.85),
        hip_w=hip_w,
        thickness=_u(rng, 0.1, 0.16),
        upper_arm=_u(rng, 0.15, 0.19),
        forearm=_u(rng, 0.13, 0.16),
        hand=_u(rng, 0.06, 0.08),
        arm_r=arm_r,
        thigh=0.245 * leg * _u(rng, 0.95, 1.05),
        shin=0.235 * leg * _u(rng, 0.95, 1.05),
        thigh_r=_u(rng, 0.036, 0.052),
        ankle_h=_u(rng, 0.035, 0.05),
        foot=_u(rng, 0.07, 0.1),
    )


def _sample_hair(rng: np.random.Generator, styles: tuple[str, ...], body: Body) -> Hair:
    style = str(rng.choice(styles))
    color = _jitter(rng, HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))], 0.1)
    hairline = _u(rng, 0.3, 0.55) if style != "bob" else _u(rng, 0.15, 0.4)
    volume = {"buzz": 1.02, "short": _u(rng, 1.05, 1.12), "bun": 1.05, "bob": _u(rng, 1.1, 1.2)}.get(
        style, _u(rng, 1.05, 1.12)
    )
    length = _u(rng, 3.0, 6.0) * body.head_b if style == "long" else 0.0
    return Hair(style=style, color=color, hairline=hairline, volume=volume, length=length)


def _sample_face(rng: np.random.Generator) -> Face:
    if rng.random() < 0.35:
        gain = tuple(_u(rng, 0.8, 1.15) for _ in range(3))
        return Face(kind="photo", flip=bool(rng.random() < 0.5), gain=gain)  # type: ignore[arg-type]
    eye = [(40, 30, 25), (60, 90, 140), (70, 110, 60), (90, 60, 30)][int(rng.integers(4))]
    glasses = _color(rng, dark=0.3) if rng.random() < 0.25 else None
    mouth = _jitter(rng, (175, 70, 70), 0.2)
    return Face(kind="drawn", eye_color=eye, mouth_color=mouth, glasses=glasses)


def _sample_background(rng: np.random.Generator) -> Background:
    kind = str(rng.choice(["flat", "vgradient", "dgradient", "photo"], p=[0.2, 0.25, 0.2, 0.35]))
    colors = (_color(rng), _color(rng))
    floor = _color(rng, dark=0.15) if rng.random() < 0.6 else None
    horizon = _u(rng, 0.6, 0.85)
    if kind != "photo":
        return Background(kind, colors, floor=floor, horizon=horizon)
    name = str(rng.choice(BACKGROUND_PHOTOS))
    crop = _photo_crop(rng, name, int(rng.integers(120, 400)))
    return Background(kind, colors, photo=name, crop=crop, floor=floor, horizon=horizon)


def sample_character(seed: int, kind: str | None = None) -> Character:
    """A random puppet for a clip ``kind``: "rigid-front" wears tight clothes and short hair,
    "non-rigid" has at least one of a skirt or dress, long hair or loose sleeves, "turning" and None
    wear anything."""
    if kind is not None and kind not in CLIP_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CLIP_KINDS)}, got {kind!r}")
    rng = np.random.default_rng([_SALT, seed])
    body = sample_body(rng)
    if kind == "rigid-front":
        loose = {"skirt": False, "hair": False, "sleeves": False}
    elif kind == "non-rigid":
        loose = {"skirt": False, "hair": False, "sleeves": False}
        while not any(loose.values()):
            loose = {key: bool(rng.random() < 0.5) for key in loose}
    else:
        odds = {"skirt": 0.3, "hair": 0.3, "sleeves": 0.15}
        loose = {key: bool(rng.random() < odds[key]) for key in odds}
    hair = _sample_hair(rng, ("long",) if loose["hair"] else ("short", "short", "bob", "bun", "buzz"), body)
    if kind == "rigid-front" and hair.style == "bob":
        hair = replace(hair, style="short", volume=1.08)
    sleeves = "loose" if loose["sleeves"] else str(rng.choice(["none", "short", "short", "long", "long"]))
    bottom = (
        str(rng.choice(["skirt", "dress"]))
        if loose["skirt"]
        else str(rng.choice(["trousers", "shorts"], p=[0.7, 0.3]))
    )
    top = sample_fabric(rng)
    back_shade = _u(rng, 0.6, 0.82)
    top_back = (
        top.shaded(back_shade)
        if rng.random() < 0.7
        else Fabric("flat", (top.colors[0],) * 2).shaded(back_shade)
    )
    bottom_front = (
        top if bottom == "dress" else sample_fabric(rng, ("flat", "flat", "stripes", "checks", "photo"))
    )
    bottom_back = bottom_front.shaded(_u(rng, 0.7, 0.88))
    skin = _jitter(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 0.06)
    face = _sample_face(rng)
    if face.kind == "photo":
        from anima.puppets.textures import face_skin

        skin = face_skin(face)
    legs = skin if rng.random() < 0.7 else _color(rng, dark=0.3)
    return Character(
        kind=kind or "any",
        body=body,
        skin=skin,
        hair=hair,
        face=face,
        sleeves=sleeves,
        top=top,
        top_back=top_back,
        motif=str(rng.choice(["none", "buttons", "logo", "vneck", "band"], p=[0.3, 0.2, 0.2, 0.15, 0.15])),
        motif_color=_color(rng),
        bottom=bottom,
        bottom_front=bottom_front,
        bottom_back=bottom_back,
        legs=legs,
        shoes=_color(rng, dark=0.35),
        skirt_length=_u(rng, 0.55, 1.0) * (body.thigh + body.shin) * (1.15 if bottom == "dress" else 1.0),
        skirt_flare=_u(rng, 1.1, 1.8),
        sleeve_flare=_u(rng, 2.2, 3.5),
        background=_sample_background(rng),
        fill=_u(rng, 0.7, 0.88),
        floor=_u(rng, 0.93, 0.97),
        center=_u(rng, 0.42, 0.58),
    )
