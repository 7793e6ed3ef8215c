"""The detector's dataset at toy size: the listing records how every clip was made and its hash,
sampling configurations vary, a stopped build resumes without redoing clips, splits share no seed
and no picture, and listings of the first builder still load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_pipeline
from typer.testing import CliRunner

from anima.cli import app
from anima.detect.dataset import (
    LISTING,
    SPLIT_ANIMALS,
    SPLIT_DOCUMENTS,
    SPLIT_PHOTOS,
    SPLIT_SCENES,
    DatasetPlan,
    SamplingPlan,
    build_dataset,
    load_dataset,
    plan_jobs,
    read_listing,
)
from anima.errors import BadInput
from anima.media import read_video, write_video

TOY = SamplingPlan(
    steps=(1,), strength=(0.5, 1.0), guidance=(1.0, 1.5), frames=(3, 4), sizes=((64, 64), (64, 48))
)
SAMPLED = ("steps", "strength", "guidance", "noise_seed", "frames", "width", "height")


class Stop(Exception):
    """The build interrupted from its progress callback."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_records_configurations_and_hashes_and_resumes(tmp_path: Path) -> None:
    model, data = tmp_path / "tiny", tmp_path / "data"
    tiny_pipeline(seed=0, warp_guided=True).save_pretrained(model)
    prefix = DatasetPlan({"train": 1}, {"train": 2}, TOY)
    full = DatasetPlan({"train": 2}, {"train": 4}, TOY)

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise Stop

    with pytest.raises(Stop):  # stopped after two clips, as a killed background build is
        build_dataset(data, prefix, model, progress=stop_after_two)
    assert len(read_listing(data)) == 2
    with (data / LISTING).open("a") as listing:  # and as if killed half-way through a line
        listing.write('{"path": "train/re')
    seen: list[tuple[int, int]] = []
    build_dataset(data, prefix, model, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (2, 3) and seen[-1] == (3, 3)  # the first report is what the first run did
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*.mp4")}
    entries = build_dataset(data, full, model)  # the larger plan extends the smaller one
    after = {p: p.stat().st_mtime_ns for p in data.rglob("*.mp4")}
    assert all(after[p] == mtime for p, mtime in before.items())  # nothing redone
    listed = read_listing(data)
    assert len(listed) == len({e.path for e in listed}) == len(entries) == 6
    assert sorted(after) == sorted(data / e.path for e in entries)

    ours = [e for e in entries if e.label == 1]
    assert len(ours) == 2 and {e.source for e in ours} == {"anima-puppets"}
    for entry in entries:
        assert entry.sha256 == _sha256(data / entry.path)
        video = read_video(data / entry.path).frames
        assert video.shape[:3] == (entry.config["frames"], entry.config["height"], entry.config["width"])
    for entry in ours:
        assert set(SAMPLED) <= set(entry.config) and entry.config["model"] == "tiny"
        twin = next(e for e in entries if e.source == "puppet" and e.seed == entry.seed)
        assert {k: twin.config[k] for k in ("frames", "width", "height")} == {
            k: entry.config[k] for k in ("frames", "width", "height")
        }
    assert ours[0].config != ours[1].config
    assert {e.source for e in entries if e.label == 0} >= {"puppet", "camera", "photo"}
    clips, labels, loaded = load_dataset(data, "train")
    assert len(clips) == 6 and labels.sum() == 2 and loaded[0].sha256


def test_sampling_draws_every_choice_from_the_seed_alone() -> None:
    plan = SamplingPlan()
    draws = [plan.draw(seed) for seed in range(2_000_000, 2_000_400)]
    assert draws[7] == plan.draw(2_000_007)
    for name, choices in (("steps", plan.steps), ("strength", plan.strength), ("guidance", plan.guidance)):
        assert {d[name] for d in draws} == set(choices)
    assert {d["frames"] for d in draws} == set(plan.frames)
    assert {(d["width"], d["height"]) for d in draws} == set(plan.sizes)
    assert len({d["noise_seed"] for d in draws}) == len(draws)
    assert 0.2 < np.mean([d["filmed"] for d in draws]) < 0.45
    # A clip's seed, source and settings do not depend on the counts: a larger plan extends a smaller.
    small, large = DatasetPlan.of_size(10, 20), DatasetPlan.of_size(30, 50)
    assert set(plan_jobs(small)) <= set(plan_jobs(large))


def test_plan_sizes_split_by_fixed_fractions() -> None:
    plan = DatasetPlan.of_size(1500, 2000)
    assert plan.generated == {"train": 900, "val": 300, "test": 300}
    assert plan.real == {"train": 1200, "val": 400, "test": 400}
    assert sum(DatasetPlan.of_size(7, 11).real.values()) == 11
    with pytest.raises(BadInput, match="guidance"):
        DatasetPlan({"train": 1}, {}, SamplingPlan(guidance=(0.5,))).check()
    with pytest.raises(BadInput, match="split"):
        DatasetPlan({"holdout": 1}, {}).check()


def test_splits_share_no_seed_and_no_picture(tmp_path: Path) -> None:
    tables = (SPLIT_PHOTOS, SPLIT_SCENES, SPLIT_DOCUMENTS, SPLIT_ANIMALS)
    owners: dict[str, set[str]] = {}
    for table in tables:
        for split, names in table.items():
            for name in names:
                owners.setdefault("chelsea" if name == "cat" else name, set()).add(split)  # one cat
    assert all(len(splits) == 1 for splits in owners.values()), owners
    # Real clips only: no generator is loaded.
    entries = build_dataset(
        tmp_path / "data", DatasetPlan({}, dict.fromkeys(("train", "val", "test"), 9), TOY)
    )
    assert {e.source for e in entries} >= {"camera", "photo", "texture", "night", "document"}
    seeds = {split: {e.seed for e in entries if e.split == split} for split in ("train", "val", "test")}
    pictures = {
        split: {e.config.get("picture") for e in entries if e.split == split} - {None, "procedural"}
        for split in ("train", "val", "test")
    }
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not seeds[a] & seeds[b] and not pictures[a] & pictures[b]
    assert len({(e.config["frames"], e.config["width"]) for e in entries}) > 1  # real clips vary too


def test_listings_of_the_first_builder_load(tmp_path: Path) -> None:
    data = tmp_path / "old"
    rows = [
        ("train/real/puppet-2000000.mp4", 0, "puppet"),
        ("train/ours/puppet-2000000.mp4", 1, "anima-puppets"),
    ]
    for path, _, _ in rows:
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        write_video(data / path, np.zeros((3, 32, 32, 3), np.uint8), fps=12)
    (data / LISTING).write_text(
        "".join(
            json.dumps({"path": p, "split": "train", "label": label, "source": s, "seed": 2_000_000}) + "\n"
            for p, label, s in rows
        )
    )
    clips, labels, entries = load_dataset(data, "train")
    assert labels.tolist() == [0, 1] and len(clips) == 2
    assert all(e.config == {} and e.sha256 == "" for e in entries)
    with pytest.raises(BadInput, match="older builder"):  # its clips were made under another plan
        build_dataset(data, DatasetPlan({}, {"train": 1}, TOY))
    (tmp_path / "other").mkdir()
    build_dataset(tmp_path / "other", DatasetPlan({}, {"train": 1}, TOY))
    with pytest.raises(BadInput, match="another sampling plan"):
        build_dataset(tmp_path / "other", DatasetPlan({}, {"train": 1}, SamplingPlan()))


def test_cli_builds_in_the_anima_home_by_default(home: Path) -> None:
    result = CliRunner().invoke(app, ["detector", "dataset", "--generated", "0", "--real", "5"])
    assert result.exit_code == 0, result.output
    entries = read_listing(home / "detector-dataset")
    assert len(entries) == 5 and {e.split for e in entries} == {"train", "val", "test"}
    again = CliRunner().invoke(app, ["detector", "dataset", "--generated", "0", "--real", "5"])
    assert again.exit_code == 0 and "5 of 5 clips already listed" in again.stdout
    bad = CliRunner().invoke(app, ["detector", "dataset", "--preset", "huge"])
    assert bad.exit_code == 2 and "preset" in bad.stderr
