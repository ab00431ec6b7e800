"""Answer parsers on malformed replies: they return None / False, never raise."""

from __future__ import annotations

import pytest

from spatialtune.answers.parse import (
    final_answer,
    has_number_like_text,
    named_options,
    parse_hoi_pairs,
    parse_json,
    parse_number_words,
    parse_numbers,
    parse_tuples,
    repeated_action_keys,
)
from spatialtune.geometry import Convention, ImageFrame
from spatialtune.records import finite_number
from spatialtune.tools.crop import TOOLS
from spatialtune.tools.protocol import ToolCallError, parse_tool_call


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


def test_parse_json_and_a_tool_call_survive_brackets_nested_past_the_recursion_limit():
    assert parse_json("[" * 5000) is None and parse_json("[" * 5000 + '{"a": 1}') == {"a": 1}
    with pytest.raises(ToolCallError, match="not usable JSON"):
        parse_tool_call("<tool_call>" + "[" * 5000 + "</tool_call>", TOOLS)


def test_named_options_lists_every_option_a_reply_names():
    assert named_options("to the left of the cup", ["left", "right"]) == ["left"]
    assert named_options("(A) or right", ["left", "right"]) == ["left", "right"]
    assert named_options("(A) or right", ["left", "right"], letters_too=False) == ["right"]
    assert named_options("left of it", ["left", "left of"]) == ["left of"]  # "left" only inside the longer option


def test_numbers_the_benchmark_does_not_read_are_seen():
    assert parse_numbers("1e999") == [1.0] and has_number_like_text("1e999") and has_number_like_text("NaN")
    assert not has_number_like_text("banana, infinite, 3 apples")
    assert parse_number_words("Three or twenty-one") == [3, 20, 1]
    assert repeated_action_keys('{"center": [1, 2, 3], "center": [4, 5, 6]}') == ["center"]
    assert repeated_action_keys('{"center": [1, 2, 3]}') == []
