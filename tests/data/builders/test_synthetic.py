"""The synthetic world: deterministic, balanced, disjoint splits, labels that agree with the drawn geometry."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import folder_digest, start_stalled
from spatialtune.data.builders import BuildError, get_builder, run_builder
from spatialtune.data.builders._synthetic_scenes import COLOURS, chance_level
from spatialtune.data.builders.synthetic import (
    SyntheticError,
    SyntheticSettings,
    build_synthetic,
)
from spatialtune.io import FolderBusyError
from spatialtune.records import scan_records
from spatialtune.tasks.synthetic import TASKS

SMALL = dict(num_samples=80, test_samples=8)


def _records(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world") / "synthetic"
    build_synthetic(root, SyntheticSettings(seed=3, **SMALL))
    return root




def test_same_settings_give_the_same_bytes_and_another_seed_differs(tmp_path, world):
    build_synthetic(tmp_path / "again", SyntheticSettings(seed=3, **SMALL))
    build_synthetic(tmp_path / "other", SyntheticSettings(seed=4, **SMALL))
    assert folder_digest(tmp_path / "again") == folder_digest(world)
    assert folder_digest(tmp_path / "other") != folder_digest(world)


def test_every_record_passes_the_foundation_validation_with_its_media(world):
    for split in ("train", "test"):
        records, errors = scan_records(world / f"{split}.jsonl")
        assert errors == [] and len(records) == {"train": 80, "test": 8 * len(TASKS)}[split]


def test_labels_are_balanced_per_task_and_counted_in_stats(world):
    stats = json.loads((world / "stats.json").read_text())
    for task in TASKS:
        labels = stats["labels"]["test"][task]
        assert sum(labels.values()) == 8
        assert max(labels.values()) - min(labels.values()) <= 1
    assert stats["counts"]["train"] == {task: 10 for task in TASKS}
    assert stats["settings"]["seed"] == 3 and stats["skipped"] == {}


def test_train_and_test_share_no_scene(world):
    def digests(split):
        return {hashlib.sha256((world / r["images"][0]).read_bytes()).hexdigest() for r in _records(world, split)}

    assert not digests("train") & digests("test")


def _centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def test_position_labels_agree_with_the_boxes(world):
    for r in _records(world, "train") + _records(world, "test"):
        task, answer, boxes = r["task"], r.get("answer"), [b["bbox"] for b in r["boxes"]]
        if task == "absolute_left_right":
            assert (_centre(boxes[0])[0] < 64) == (answer == "left")
        elif task == "absolute_top_bottom":
            assert (_centre(boxes[0])[1] < 64) == (answer == "top")
        elif task == "pairwise_left_right":
            assert (_centre(boxes[0])[0] < _centre(boxes[1])[0]) == (answer == "left")
        elif task == "pairwise_above_below":
            assert (_centre(boxes[0])[1] < _centre(boxes[1])[1]) == (answer == "above")


def test_counting_answer_is_the_number_of_named_objects(world):
    for r in _records(world, "test"):
        if r["task"] == "counting":
            name = r["messages"][0]["content"][1]["text"].removeprefix("How many ").split("s are there")[0]
            assert sum(o["name"] == name for o in r["meta"]["objects"]) == int(r["answer"])


def test_front_behind_follows_the_drawing_order(world):
    for r in _records(world, "test"):
        if r["task"] == "front_behind":
            names = [o["name"] for o in r["meta"]["objects"]]
            named, other = r["boxes"][0]["label"], r["boxes"][1]["label"]
            assert (names.index(named) > names.index(other)) == (r["answer"] == "front")


def test_front_behind_scenes_really_overlap_and_the_colour_shows_it(world):
    for r in _records(world, "test"):
        if r["task"] == "front_behind":
            front = r["boxes"][0] if r["answer"] == "front" else r["boxes"][1]
            back = r["boxes"][1] if r["answer"] == "front" else r["boxes"][0]
            a, b = front["bbox"], back["bbox"]
            assert min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
            pixels = np.asarray(Image.open(world / r["images"][0]))
            colour = COLOURS[front["label"].split()[0]]
            assert (pixels == colour).all(axis=-1).any()


def test_grounding_box_is_the_tight_box_of_its_mask_and_the_point_lies_in_the_mask(world):
    for r in _records(world, "test"):
        if r["task"] in ("grounding", "pointing"):
            mask = np.asarray(Image.open(world / r["masks"][0]["path"])) > 0
            ys, xs = np.nonzero(mask)
            assert r["boxes"][0]["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            if r["task"] == "pointing":
                x, y = r["points"][0]["point"]
                assert mask[int(y), int(x)]
                assert r["messages"][1]["content"][0]["text"] == "{point:0}"


def test_difficulty_two_adds_distractors_that_never_share_the_named_colour(tmp_path):
    root = tmp_path / "hard"
    build_synthetic(root, SyntheticSettings(seed=1, num_samples=0, test_samples=6, tasks=["absolute_left_right", "grounding"], difficulty=2))
    records = _records(root, "test")
    assert any(len(r["meta"]["objects"]) > 1 for r in records)
    for r in records:
        target = r["boxes"][0]["label"].split()[0]
        assert sum(o["name"].split()[0] == target for o in r["meta"]["objects"]) == 1


def test_an_existing_dataset_with_the_same_settings_is_reused_and_other_settings_are_refused(tmp_path):
    root = tmp_path / "w"
    first = build_synthetic(root, SyntheticSettings(seed=0, num_samples=4, test_samples=1, tasks=["counting"]))
    assert build_synthetic(root, SyntheticSettings(seed=0, num_samples=4, test_samples=1, tasks=["counting"])) == first
    with pytest.raises(BuildError, match="holds a synthetic dataset with other settings"):
        build_synthetic(root, SyntheticSettings(seed=1, num_samples=4, test_samples=1, tasks=["counting"]))


def test_a_crash_leaves_no_partial_dataset(tmp_path):
    def crash(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_synthetic(tmp_path / "w", SyntheticSettings(num_samples=10, test_samples=2, tasks=["counting"]), progress=crash)
    assert [p.name for p in tmp_path.iterdir()] == [".w.lock"]  # no dataset, no staging folder: only the (free) lock


@pytest.mark.parametrize(
    "settings, message",
    [
        (SyntheticSettings(tasks=["left_of"]), "unknown task"),
        (SyntheticSettings(difficulty=5), "difficulty"),
        (SyntheticSettings(image_size=32), "image_size"),
    ],
)
def test_bad_settings_are_refused_with_the_bad_value(tmp_path, settings, message):
    with pytest.raises(SyntheticError, match=message):
        build_synthetic(tmp_path / "w", settings)


def test_chance_levels():
    assert chance_level("pairwise_left_right") == 0.5
    assert chance_level("counting") == 0.25
    assert chance_level("grounding") is None


def test_the_test_split_interleaves_tasks_so_a_prefix_covers_every_task(world):
    first = _records(world, "test")[: len(TASKS)]
    assert {r["task"] for r in first} == set(TASKS)


def test_synthetic_is_a_registered_builder_with_its_own_stats_layout(tmp_path):
    spec = get_builder("synthetic")
    assert spec.reusable and spec.settings is SyntheticSettings
    stats = run_builder("synthetic", SyntheticSettings(num_samples=4, test_samples=1, tasks=["counting", "grounding"]), tmp_path / "w")
    assert list(stats) == ["settings", "counts", "labels", "redrawn", "skipped"]
    assert "workers" not in stats["settings"] and set(stats["counts"]) == {"test", "train"}
    assert json.loads((tmp_path / "w" / "stats.json").read_text()) == stats


def test_any_number_of_workers_gives_the_same_bytes(tmp_path):
    settings = dict(seed=2, num_samples=24, test_samples=2, tasks=["grounding", "counting", "front_behind"])
    build_synthetic(tmp_path / "one", SyntheticSettings(**settings))
    build_synthetic(tmp_path / "three", SyntheticSettings(**settings, workers=3))
    assert folder_digest(tmp_path / "one") == folder_digest(tmp_path / "three")


def test_a_dataset_built_with_other_workers_is_reused(tmp_path):
    first = build_synthetic(tmp_path / "w", SyntheticSettings(num_samples=4, test_samples=1, tasks=["counting"], workers=2))
    assert build_synthetic(tmp_path / "w", SyntheticSettings(num_samples=4, test_samples=1, tasks=["counting"])) == first


def test_overwrite_rebuilds_a_dataset_with_other_settings(tmp_path):
    build_synthetic(tmp_path / "w", SyntheticSettings(seed=0, num_samples=4, test_samples=1, tasks=["counting"]))
    stats = run_builder("synthetic", SyntheticSettings(seed=1, num_samples=4, test_samples=1, tasks=["counting"]), tmp_path / "w", overwrite=True)
    assert stats["settings"]["seed"] == 1 == json.loads((tmp_path / "w" / "stats.json").read_text())["settings"]["seed"]


# ---------------------------------------------------------------- a second build of the same output

STALLING_BUILD = textwrap.dedent(
    """
    import sys
    from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic

    def stall(done, total):
        if done == 2:  # mid-build: say so, then wait for the test to release (or SIGKILL) this process
            print("stalled", flush=True)
            sys.stdin.readline()

    build_synthetic(sys.argv[1], SyntheticSettings(num_samples=4, test_samples=1, tasks=["counting"]), progress=stall)
    """
)
TINY = SyntheticSettings(num_samples=4, test_samples=1, tasks=["counting"])


def _stalled_build(output: Path) -> subprocess.Popen:
    """A build of `output` in another process, stopped mid-way (it has printed "stalled")."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return start_stalled([sys.executable, "-c", STALLING_BUILD, str(output)], env)


def test_a_second_build_of_the_same_output_is_refused_naming_the_first_which_finishes_intact(tmp_path):
    process = _stalled_build(tmp_path / "w")
    try:
        with pytest.raises(FolderBusyError, match=rf"in use by build synthetic \(process {process.pid} on .*, started "):
            build_synthetic(tmp_path / "w", TINY)
        process.communicate("go\n")
    finally:
        process.kill()
    assert process.returncode == 0
    build_synthetic(tmp_path / "fresh", TINY)
    assert folder_digest(tmp_path / "w") == folder_digest(tmp_path / "fresh")


def test_a_build_killed_mid_way_frees_the_output_and_the_rerun_removes_its_staging_folder(tmp_path):
    process = _stalled_build(tmp_path / "w")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert [p.name for p in tmp_path.glob(".w.building-*")]  # the killed build's staging folder
    build_synthetic(tmp_path / "w", TINY)
    build_synthetic(tmp_path / "fresh", TINY)
    assert folder_digest(tmp_path / "w") == folder_digest(tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fresh.lock", ".w.lock", "fresh", "w"]
