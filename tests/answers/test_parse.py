"""Answer parsers on malformed replies: they return None / False, never raise."""

from __future__ import annotations

import pytest

from spatialtune.answers.parse import final_answer, parse_hoi_pairs, parse_json, parse_tuples
from spatialtune.geometry import Convention, ImageFrame
from spatialtune.records import finite_number


def test_parse_json_takes_the_first_value_also_in_a_fence_and_survives_huge_integers():
    assert parse_json('Sure: [{"a": 1}] and {"b": 2}') == [{"a": 1}]
    assert parse_json('```json\n{"x": [1, 2]}\n```') == {"x": [1, 2]}
    assert parse_json("[" + "9" * 5000 + "]") is None  # past Python's int-from-text limit: no value, no crash
    assert parse_json("no json here") is None


@pytest.mark.parametrize("value, ok", [(1, True), (2.5, True), (True, False), (float("nan"), False), (float("inf"), False), (10**400, False), ("1", False)])
def test_finite_number(value, ok):
    assert finite_number(value) is ok


def test_parse_tuples_reads_parenthesised_points_and_boxes():
    assert parse_tuples("go to (0.25, 0.5) or (1, 2, 3, 4)") == [(0.25, 0.5), (1.0, 2.0, 3.0, 4.0)]
    assert parse_tuples("[0.2, 0.3]") == []


def test_final_answer_takes_the_last_answer_tag_else_the_reply_without_thinking():
    assert final_answer("<answer>a</answer> <answer> b </answer>") == "b"
    assert final_answer("<think>maybe (A)</think> (B)") == "(B)"


def test_hoi_pairs_are_read_back_into_pixels_and_malformed_items_counted():
    frame = ImageFrame.of(200, 100, None)
    reply = '[{"person_bbox": [0, 0, 500, 1000], "object_bbox": [500, 0, 1000, 500]}, {"person_bbox": [1, 2]}]'
    parsed = parse_hoi_pairs(reply, frame, Convention.QWEN3_1000)
    assert parsed.pairs == [([0.0, 0.0, 100.0, 100.0], [100.0, 0.0, 200.0, 50.0])] and parsed.malformed == 1
    assert parse_hoi_pairs("no pairs here", frame, Convention.QWEN3_1000).pairs is None
