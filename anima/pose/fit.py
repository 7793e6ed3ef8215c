"""``Fit``: where a reference picture of any size lands, whole, on an output canvas of another size,
and the same placement for every pose and skeleton frame that belongs to the picture.

A model runs at one size; pictures come in every size and shape. The picture is scaled to fit the
output and centred (a letterbox), and each pose drawn for the picture's canvas is mapped by the
same box, so bones stay where the limbs are. Padding, not cropping: a crop can cut off a hand, the
feet or the head, which then can never move back into the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from anima.errors import BadInput
from anima.pose.render import check_same_aspect
from anima.pose.sequence import PoseSequence

Size = tuple[int, int]  # (width, height)
Box = tuple[int, int, int, int]  # (left, top, right, bottom), right and bottom exclusive


@dataclass(frozen=True)
class Fit:
    """A ``source`` = (width, height) canvas shown in ``box`` of an ``output`` canvas.

    Example:
        >>> fit = Fit.letterbox((340, 420), (128, 128))
        >>> fit.box
        (12, 0, 116, 128)
    """

    source: Size
    output: Size
    box: Box

    @classmethod
    def letterbox(cls, source: Size, output: Size) -> Fit:
        """The largest box of the source's shape inside ``output``, centred (whole pixels)."""
        (width, height), (out_width, out_height) = source, output
        if min(width, height, out_width, out_height) < 1:
            raise BadInput(f"cannot fit a {width}x{height} picture into {out_width}x{out_height}")
        scale = min(out_width / width, out_height / height)
        box_width = min(out_width, max(1, round(width * scale)))
        box_height = min(out_height, max(1, round(height * scale)))
        left, top = (out_width - box_width) // 2, (out_height - box_height) // 2
        return cls((width, height), (out_width, out_height), (left, top, left + box_width, top + box_height))

    @property
    def box_size(self) -> Size:
        left, top, right, bottom = self.box
        return right - left, bottom - top

    @property
    def padded(self) -> bool:
        """Whether the box leaves margins (the source's shape is not the output's)."""
        return self.box_size != self.output

    def check(self, canvas: Size, what: str, hint: str = "give a pose drawn on this picture") -> None:
        """Refuse a canvas that is not of the source's shape: its pose does not describe this picture."""
        check_same_aspect(canvas, self.source, what, against="the reference picture", hint=hint)

    def pose(self, sequence: PoseSequence, what: str = "the pose's canvas") -> PoseSequence:
        """``sequence``, drawn on a canvas of the source's shape, on the output canvas."""
        self.check(sequence.size, what)
        left, top, _, _ = self.box
        box_width, box_height = self.box_size
        out_width, out_height = self.output
        keypoints = sequence.keypoints.copy()
        keypoints[..., 0] = (left + keypoints[..., 0] * box_width) / out_width
        keypoints[..., 1] = (top + keypoints[..., 1] * box_height) / out_height
        return PoseSequence(keypoints, fps=sequence.fps, width=out_width, height=out_height)

    def frames(self, frames: np.ndarray, fill: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
        """``(N, h, w, 3)`` frames of the source's shape on the output canvas, margins ``fill``
        (black: a rendered skeleton's background)."""
        self.check((frames.shape[2], frames.shape[1]), "the skeleton video")
        left, top, right, bottom = self.box
        box_size = self.box_size
        shrinking = box_size[0] < frames.shape[2]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR  # keeps thin limbs when shrinking
        out = np.empty((len(frames), self.output[1], self.output[0], 3), dtype=np.uint8)
        out[:] = np.asarray(fill, dtype=np.uint8)
        for index, frame in enumerate(frames):
            if frame.shape[:2] != (box_size[1], box_size[0]):
                frame = cv2.resize(frame, box_size, interpolation=interpolation)
            out[index, top:bottom, left:right] = frame
        return out

    def to_dict(self) -> dict[str, Any]:
        """As recorded with an output: sizes and the box only (no names, no pixels). Maps, not lists:
        the C2PA manifest's CBOR would turn a list of small numbers into bytes."""
        left, top, _, _ = self.box
        box_width, box_height = self.box_size
        return {
            "method": "pad",
            "reference": {"width": self.source[0], "height": self.source[1]},
            "box": {"left": left, "top": top, "width": box_width, "height": box_height},
            "output": {"width": self.output[0], "height": self.output[1]},
        }
