"""Fitting a request to the model: the output size, and where the reference picture and its poses
sit on it (:class:`~anima.pose.fit.Fit`), settled from sizes alone before any face is searched or
any model is loaded.

The output is the model's native size (or the size asked for). A reference of another shape is
scaled to fit it whole and centred; the margins take the colour of the picture's own edge beside
them (a plain backdrop carries on; nothing that looks like a limb is invented, as a mirrored or
stretched edge would), and every pose is placed by the same box. Padding rather than cropping keeps
the whole character: a crop cuts off the hands, feet or head of anyone who fills the picture, and a
limb cut off in the reference cannot move back into the frame.

Torch-free, so that the checks cost nothing before the consent gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from anima import media
from anima.errors import BadInput
from anima.generate.request import GenerationRequest
from anima.pose import Fit, PoseSequence, pose_canvas, read_pose_json
from anima.pose.load import UNALIGNED_HINT
from anima.pose.render import check_same_aspect

if TYPE_CHECKING:
    from anima.generate.pipeline import AnimationPipeline

REFERENCE_HINT = "give the pose of this picture, or leave it out to have it extracted"
# The Pose Guider's input channels of a warp-guided model (see anima.generate.pipeline).
WARP_GUIDED_CHANNELS = 7


@dataclass(frozen=True)
class ModelCanvas:
    """What fitting needs to know of a model: its native (width, height), the multiple every size
    must be (the VAE's downscaling), and whether it is warp-guided (it fits every motion to the
    reference's body, so a pose of any shape will do)."""

    native: tuple[int, int]
    step: int
    warp_guided: bool

    @classmethod
    def of(cls, pipe: AnimationPipeline) -> ModelCanvas:
        """A loaded pipeline's."""
        return cls(pipe.native_size, pipe.vae_scale_factor, pipe.warp_guided)

    @classmethod
    def read(cls, folder: Path) -> ModelCanvas:
        """A saved model folder's, from its config files (no weights are read)."""
        folder = check_model_folder(folder)
        try:
            index = _config(folder / "model_index.json")
            unet = _config(folder / "denoising_unet" / "config.json")
            vae = _config(folder / "vae" / "config.json")
            guider = _config(folder / "pose_guider" / "config.json")
            step = 2 ** (len(vae["block_out_channels"]) - 1)
            sample = unet["sample_size"]
            side = (sample * step,) * 2 if isinstance(sample, int) else (sample[1] * step, sample[0] * step)
            native = (index.get("default_width") or side[0], index.get("default_height") or side[1])
            warp_guided = guider.get("conditioning_channels", 3) == WARP_GUIDED_CHANNELS
            return cls((int(native[0]), int(native[1])), step, warp_guided)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BadInput(f"{folder}: cannot load the model ({exc.__class__.__name__}: {exc})") from None


def check_model_folder(folder: Path) -> Path:
    """``folder`` if it holds a saved model (its ``model_index.json``), else one clear error."""
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise BadInput(
            f"{folder}: not an Anima model folder (no model_index.json); "
            "import published weights with `anima models import-moore`"
        )
    return folder


def _config(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.parent.name}/{path.name} unreadable ({exc.__class__.__name__})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path.parent.name}/{path.name} is not a config")
    return document


def output_size(
    canvas: ModelCanvas, picture: tuple[int, int], width: int | None, height: int | None
) -> tuple[int, int]:
    """(width, height) of the video: the model's native size; one side given alone, the other follows
    the picture's shape, rounded to the model's step (the fit pads what rounding leaves)."""
    step = canvas.step
    if width is None and height is None:
        width, height = canvas.native
    elif height is None:
        height = max(step, round(width * picture[1] / picture[0] / step) * step)
    elif width is None:
        width = max(step, round(height * picture[0] / picture[1] / step) * step)
    if width % step or height % step:
        raise BadInput(f"width and height must be multiples of {step}, got {width}x{height}")
    return width, height


def reference_pose_file(path: Path, picture: tuple[int, int]) -> PoseSequence:
    """The reference's one-frame pose from ``path``, which must be drawn on a canvas of the picture's
    shape (else it describes another picture, and no fitting can make it this one's)."""
    pose = read_pose_json(path, canvas_size=picture)
    if pose.num_frames != 1:
        raise BadInput(f"{path}: a reference pose is one frame, got {pose.num_frames}")
    check_same_aspect(
        pose.size, picture, f"{path}: the reference pose's canvas", "the reference picture", REFERENCE_HINT
    )
    return pose


def plan(request: GenerationRequest, picture: tuple[int, int], canvas: ModelCanvas) -> Fit:
    """Every size and shape check of a request, from sizes and pose files alone; returns where the
    reference picture (``picture`` = its (width, height)) goes on the output.

    Refused here, in one line: a width or height that is not a multiple of the model's step; a
    video over the size limit; a reference pose drawn on a canvas of another shape than the
    picture; a pose that will not be aligned to the reference's body (no ``align``, no reference
    pose, a model that is not warp-guided) on a canvas of another shape than the picture.
    """
    size = output_size(canvas, picture, request.width, request.height)
    if request.pose.startswith("motion:"):
        media.check_video_size(request.frames, *size)
    fit = Fit.letterbox(picture, size)
    if request.reference_pose is not None:
        reference_pose_file(request.reference_pose, picture)
    aligned = request.align or canvas.warp_guided or request.reference_pose is not None
    if not aligned:
        source = pose_canvas(request.pose, fps=request.fps)
        if source is not None:
            fit.check(source, f"{request.pose}: the pose's canvas", hint=UNALIGNED_HINT)
    return fit


def pad_picture(image: np.ndarray, fit: Fit, resample: Image.Resampling) -> np.ndarray:
    """The picture scaled into the fit's box with ``resample`` and centred on the output canvas; each
    margin takes the median colour of the picture's edge beside it."""
    height, width = image.shape[:2]
    if (width, height) != fit.source:
        raise BadInput(f"the fit is for a {fit.source[0]}x{fit.source[1]} picture, not {width}x{height}")
    left, top, right, bottom = fit.box
    box_width, box_height = fit.box_size
    placed = image
    if (box_width, box_height) != (width, height):
        placed = np.asarray(Image.fromarray(image).resize((box_width, box_height), resample))
    out_width, out_height = fit.output
    if (box_width, box_height) == (out_width, out_height):
        return placed
    canvas = np.empty((out_height, out_width, 3), dtype=np.uint8)
    canvas[:, :left] = _edge_colour(placed[:, 0])
    canvas[:, right:] = _edge_colour(placed[:, -1])
    canvas[:top] = _edge_colour(placed[0])
    canvas[bottom:] = _edge_colour(placed[-1])
    canvas[top:bottom, left:right] = placed
    return canvas


def _edge_colour(edge: np.ndarray) -> np.ndarray:
    return np.median(edge.reshape(-1, 3), axis=0).round().astype(np.uint8)
