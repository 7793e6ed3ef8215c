"""Write the default model's two sample inputs from a held-out puppet (a seed far from training):
``samples/puppet.png`` (the reference picture), ``samples/puppet.pose.json`` (its pose) and
``samples/puppet-turn.pose.json`` (a 48-frame motion that turns to the back and swings the sleeves)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from anima.pose import PoseSequence
from anima.puppets import sample_clip

SEED = 7_000_002
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def main() -> None:
    clip = sample_clip(SEED, frames=48, size=(128, 128), kind="turning")
    Image.fromarray(clip.frames[0]).save(SAMPLES / "puppet.png")
    pose = clip.pose()
    PoseSequence(pose.keypoints[:1], fps=pose.fps, width=pose.width, height=pose.height).save(
        SAMPLES / "puppet.pose.json"
    )
    pose.save(SAMPLES / "puppet-turn.pose.json")
    print(
        f"wrote puppet.png, puppet.pose.json, puppet-turn.pose.json ({pose.num_frames} frames) in {SAMPLES}"
    )


if __name__ == "__main__":
    main()
