"""Puppets: procedurally drawn, articulated characters with exact OpenPose-18 keypoints and masks,
the training data of the small default animation model.

>>> clip = sample_clip(seed=7, frames=24)
>>> clip.frames.shape, clip.keypoints.shape, clip.kind
((24, 128, 128, 3), (24, 18, 3), ...)
"""

from anima.puppets.character import Character, sample_character
from anima.puppets.motion import CLIP_KINDS, Motion, sample_motion
from anima.puppets.render import PuppetClip, contact_sheet, render_clip, sample_clip

__all__ = [
    "CLIP_KINDS",
    "Character",
    "Motion",
    "PuppetClip",
    "contact_sheet",
    "render_clip",
    "sample_character",
    "sample_clip",
    "sample_motion",
]
