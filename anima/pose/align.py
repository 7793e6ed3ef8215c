"""Fit a driving pose to the reference character's body, as MusePose does before generation.

A driving dancer with long legs would otherwise stretch a short-legged character: Moore's Animate
Anyone users complain most about exactly that. Each bone keeps the driving direction but takes the
reference's length, chained outward from the neck, and the neck lands on the reference's neck.
"""

from __future__ import annotations

import numpy as np

from anima.errors import BadInput
from anima.pose.sequence import LIMBS, NECK, PoseSequence

MIN_BONE_PIXELS = 1e-6


def _bone_ratios(driving: PoseSequence, reference: PoseSequence) -> dict[tuple[int, int], float]:
    """Reference length over the driving length for every bone both poses show.

    The driving length is the median over the frames showing the bone, and each frame's bone is
    scaled by the ratio rather than set to a fixed length, so foreshortening in the driving video
    (an arm pointing at the camera) survives the alignment.
    """
    driving_pixels, driving_found = driving.pixels(), driving.visible
    reference_pixels, reference_found = reference.pixels()[0], reference.visible[0]
    ratios = {}
    for parent, child in LIMBS:
        shown = driving_found[:, parent] & driving_found[:, child]
        if not (reference_found[parent] and reference_found[child] and shown.any()):
            continue
        driving_length = float(
            np.median(np.linalg.norm(driving_pixels[shown, child] - driving_pixels[shown, parent], axis=-1))
        )
        if driving_length > MIN_BONE_PIXELS:
            reference_length = float(np.linalg.norm(reference_pixels[child] - reference_pixels[parent]))
            ratios[(parent, child)] = reference_length / driving_length
    return ratios


def align_to_reference(driving: PoseSequence, reference: PoseSequence) -> PoseSequence:
    """The driving motion on the reference's body, on the reference's canvas.

    Args:
        driving: the motion to transfer.
        reference: one frame, the pose of the character in the reference image.

    Bones the reference doesn't show (legs cut off by the picture's edge) are scaled by the median
    of the measured ratios; so are the neck's travel (a smaller body takes smaller steps) and joints
    whose parent is missing in a frame.
    """
    if reference.num_frames != 1:
        raise BadInput(f"the reference pose must be one frame, got {reference.num_frames}")
    if not reference.visible[0, NECK]:
        raise BadInput("the reference pose shows no neck to align to")
    neck_frames = np.flatnonzero(driving.visible[:, NECK])
    if len(neck_frames) == 0:
        raise BadInput("the driving pose never shows a neck to align")
    ratios = _bone_ratios(driving, reference)
    if not ratios:
        raise BadInput("the reference and driving poses share no bone, so proportions cannot be matched")
    body_scale = float(np.median(list(ratios.values())))

    driving_pixels, found = driving.pixels(), driving.visible
    reference_neck = reference.pixels()[0, NECK]
    anchor = driving_pixels[neck_frames[0], NECK]
    aligned = reference_neck + body_scale * (driving_pixels - anchor)
    for parent, child in LIMBS:  # parents come first, so aligned[parent] is final here
        chained = found[:, parent] & found[:, child]
        bone = driving_pixels[chained, child] - driving_pixels[chained, parent]
        aligned[chained, child] = aligned[chained, parent] + ratios.get((parent, child), body_scale) * bone

    keypoints = np.concatenate(
        [aligned / np.array(reference.size, dtype=np.float64), driving.keypoints[..., 2:]], axis=-1
    )
    return PoseSequence(keypoints, fps=driving.fps, width=reference.width, height=reference.height)
