"""The synthetic `referring` task: several objects, one given as a referred box, the answer its colour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialtune.data.builders._synthetic_scenes import COLOURS, chance_level
from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.geometry import Convention
from spatialtune.records import scan_records
from spatialtune.tasks.synthetic import TASKS


def _records(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("referring") / "synthetic"
    build_synthetic(root, SyntheticSettings(seed=5, num_samples=24, test_samples=8, tasks=["referring", "counting"]))
    return root


def test_referring_is_built_only_when_named():
    assert "referring" not in TASKS and "referring" not in SyntheticSettings().tasks


def test_adding_referring_leaves_the_other_tasks_test_records_unchanged(tmp_path, world):
    build_synthetic(tmp_path / "plain", SyntheticSettings(seed=5, num_samples=24, test_samples=8, tasks=["counting"]))
    counting = [r for r in _records(world, "test") if r["task"] == "counting"]
    assert counting == _records(tmp_path / "plain", "test") and all("refer_boxes" not in r for r in counting)


def test_each_record_refers_to_one_box_and_its_labels_are_balanced(world):
    stats = json.loads((world / "stats.json").read_text())
    assert stats["labels"]["test"]["referring"] == {colour: 2 for colour in list(COLOURS)[:4]}
    referring = [r for r in _records(world, "test") if r["task"] == "referring"]
    assert all(len(r["refer_boxes"]) == 1 and r["choices"] == list(COLOURS)[:4] for r in referring)
    assert not scan_records(world / "test.jsonl")[1]  # every record valid, its box inside the image


def test_the_referred_box_holds_the_answers_colour_and_no_other_object(world):
    for record in (r for r in _records(world, "test") + _records(world, "train") if r["task"] == "referring"):
        x1, y1, x2, y2 = record["refer_boxes"][0]["boxes"][0]
        inside = np.asarray(Image.open(world / record["images"][0]).convert("RGB"))[y1:y2, x1:x2].reshape(-1, 3)
        colours = {name for name, rgb in COLOURS.items() if (inside == rgb).all(axis=1).any()}
        assert colours == {record["answer"]}
        assert len(record["meta"]["objects"]) == 3  # the others lie elsewhere: the box decides the answer


def test_the_question_names_no_colour_of_the_scene_but_the_choices(world):
    for record in (r for r in _records(world, "test") if r["task"] == "referring"):
        question = record["messages"][0]["content"][1]["text"]
        assert question.split("Answer with")[0] == "What colour is the object in the referred region? "


def test_chance_level_is_one_over_the_colours():
    assert chance_level("referring") == 0.25 and chance_level("referring", 1) == 1 / 6


def test_the_synthetic_benchmark_shows_the_box_and_scores_the_named_colour(world):
    from spatialtune.models.tiny import build_tiny

    benchmark = get_benchmark("synthetic")
    rows = [r for r in benchmark.load(world, build_tiny("tiny-qwen3-vl")[1], Convention.QWEN3_1000) if r["task"] == "referring"]
    assert all(r["messages"][0]["content"][-1]["text"].count("<|box_end|>") == 1 for r in rows)
    row = rows[0]
    other = next(c for c in row["choices"] if c != row["answer"])
    assert benchmark.metric_name("referring") == "accuracy"
    assert (benchmark.score(row, f"It is {row['answer']}.", None).score, benchmark.score(row, other, None).score) == (1.0, 0.0)
