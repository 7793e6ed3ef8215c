"""Pose: OpenPose-18 keypoint sequences, read from files, extracted from videos, generated as built-in
motions, aligned to a reference body and rendered as the skeleton frames the pose guider reads."""

from anima.pose.align import align_to_reference
from anima.pose.blazepose import (
    PoseExtractionError,
    ensure_mediapipe_env,
    extract_pose,
    extract_pose_from_image,
    extract_pose_from_video,
)
from anima.pose.dwpose import DWPoseExtractor
from anima.pose.fit import Fit
from anima.pose.load import PoseInput, extract_driving_pose, load_pose, pose_canvas
from anima.pose.motions import MOTIONS, builtin_motion
from anima.pose.readers import read_pose_json, read_skeleton_video
from anima.pose.render import COLORS, render_pose, render_sequence, render_video
from anima.pose.sequence import JOINT_NAMES, LIMBS, PoseSequence

__all__ = [
    "COLORS",
    "JOINT_NAMES",
    "LIMBS",
    "MOTIONS",
    "DWPoseExtractor",
    "Fit",
    "PoseExtractionError",
    "PoseInput",
    "PoseSequence",
    "align_to_reference",
    "builtin_motion",
    "ensure_mediapipe_env",
    "extract_driving_pose",
    "extract_pose",
    "extract_pose_from_image",
    "extract_pose_from_video",
    "load_pose",
    "pose_canvas",
    "read_pose_json",
    "read_skeleton_video",
    "render_pose",
    "render_sequence",
    "render_video",
]
