"""Synthetic preference pairs: the synthetic samples unchanged, a chosen reference answer and a wrong rejected one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import folder_digest, read_jsonl
from spatialtune.data.builders import BuildError, run_builder
from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
from spatialtune.data.builders.synthetic_preference import SyntheticPreferenceSettings
from spatialtune.records import scan_records

SMALL = dict(seed=2, num_samples=16, test_samples=2)
PAIR_KEYS = {"chosen", "rejected", "boxes", "points"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pref")
    run_builder("synthetic-preference", SyntheticPreferenceSettings(**SMALL), root / "pairs")
    build_synthetic(root / "plain", SyntheticSettings(**SMALL))
    return root / "pairs", root / "plain"


def test_the_samples_are_the_synthetic_ones_of_the_same_settings(built):
    pairs, plain = built
    assert folder_digest(pairs / "images") == folder_digest(plain / "images")
    for split in ("train", "test"):
        for p, s in zip(read_jsonl(pairs / f"{split}.jsonl"), read_jsonl(plain / f"{split}.jsonl"), strict=True):
            assert {k: v for k, v in p.items() if k not in PAIR_KEYS} == {k: v for k, v in s.items() if k not in PAIR_KEYS}
            assert p["boxes"][: len(s["boxes"])] == s["boxes"] and p["points"][: len(s["points"])] == s["points"]


def test_chosen_is_the_reference_answer_and_rejected_a_wrong_one_of_the_same_form(built):
    records = read_jsonl(built[0] / "test.jsonl")
    assert {r["task"] for r in records} == set(SyntheticSettings().tasks)
    for r in records:
        text = lambda turns: turns[0]["content"][0]["text"]  # noqa: E731
        assert r["chosen"] == [r["messages"][-1]] and text(r["rejected"]) != text(r["chosen"])
        if r.get("choices"):
            assert text(r["rejected"]) in r["choices"] and text(r["chosen"]) == r["answer"]
        elif r["task"] == "grounding":
            (x1, y1, x2, y2), (a1, b1, a2, b2) = r["boxes"][0]["bbox"], r["boxes"][-1]["bbox"]
            assert text(r["rejected"]) == f"{{box:{len(r['boxes']) - 1}}}" and (a2 <= x1 or a1 >= x2 or b2 <= y1 or b1 >= y2)
        else:
            (x1, y1, x2, y2), (px, py) = r["boxes"][0]["bbox"], r["points"][-1]["point"]
            assert text(r["rejected"]) == f"{{point:{len(r['points']) - 1}}}" and not (x1 <= px <= x2 and y1 <= py <= y2)


def test_every_pair_is_a_valid_preference_record(built):
    for split in ("train", "test"):
        records, errors = scan_records(built[0] / f"{split}.jsonl")
        assert errors == [] and all(r.chosen and r.rejected for r in records)


def test_same_settings_give_the_same_bytes_and_a_plain_synthetic_folder_is_not_taken_for_pairs(built, tmp_path):
    run_builder("synthetic-preference", SyntheticPreferenceSettings(**SMALL), tmp_path / "again")
    assert folder_digest(tmp_path / "again") == folder_digest(built[0])
    assert json.loads((built[0] / "stats.json").read_text())["settings"]["rejected_shift"] == 1.0
    with pytest.raises(BuildError, match="other settings"):
        run_builder("synthetic-preference", SyntheticPreferenceSettings(**SMALL), built[1])
