"""What each reward pays: relation synonyms, partial credit, oversized boxes, the concat rule, the action's shaping,
the format of tool turns and the tool bonus, and the task reward's weights."""

from __future__ import annotations

import json

import pytest
from fixtures_records import PLATE
from fixtures_rewards import RENDERERS, reward_rows, sample

from spatialtune.data.render import format_coords
from spatialtune.geometry import ImageFrame, pixel_to_model
from spatialtune.rewards import REWARDS

RENDERER = RENDERERS["qwen3_1000"]
CROP_CALL = {"role": "assistant", "content": '<think>zoom</think>\n<tool_call>\n{"name": "crop", "arguments": {"bbox": [0, 0, 500, 500]}}\n</tool_call>'}
CROPPED = {"role": "tool", "name": "crop", "content": [{"type": "image"}, {"type": "text", "text": "Here is the zoomed region."}]}
REFUSED = {"role": "tool", "name": "crop", "content": "{'error': 'the box is outside the image'}"}


@pytest.fixture(scope="module")
def rows(families):
    """Every family's rows by id (one frame: the 0–1000 grid)."""
    return {rid: row for family in families.values() for rid, row in reward_rows(family.data, RENDERER).items()}


def value(name: str, completion, row, **options) -> float | None:
    scored = REWARDS.get(name)(RENDERER, **options).score(sample(completion, row))
    return None if scored is None else scored.value


def test_a_relation_option_is_named_by_any_phrase_holding_its_word(rows):
    for phrase in ("to the left of", "on the left side of", "left of", "Left."):
        assert value("choice", f"<answer>The cup is {phrase} the plate</answer>", rows["lr-text"]) == 1.0
    assert value("choice", "left or right", rows["lr-text"]) == 0.0


def test_letters_count_only_with_letters_too(rows):
    assert value("choice", "(B)", rows["lr-letter"]) == 1.0
    assert value("choice", "(B)", rows["lr-letter"], letters_too=False) == 0.0
    assert value("choice", "(A) right", rows["lr-letter"]) == 0.0  # letter A and option text `right`: two options


def test_a_near_count_earns_the_documented_partial_credit(rows):
    row = rows["count"]  # the answer is 2
    assert [value("count", str(n), row) for n in (2, 3, 4, 0)] == [1.0, 0.25, 0.0, 0.0]
    assert value("count", "3", row, partial_credit=0.0) == 0.0
    assert value("count", "two", row) == 0.0 and value("count", "two", row, number_words=True) == 1.0
    assert value("count", "2 or 3", row) == 0.0 and value("count", "2e5", row) == 0.0


def test_iou_pays_overlap_but_not_a_box_over_the_whole_image(rows):
    row = rows["box1"]  # the plate, [50, 30, 90, 70] of a 100×80 image: [500, 375, 900, 875] on the grid
    assert value("iou", "[500, 375, 900, 875]", row) == pytest.approx(1.0)
    assert value("iou", "[500, 375, 700, 875]", row) == pytest.approx(0.5)
    assert value("iou-hit", "[500, 375, 700, 875]", row) == 1.0 and value("iou-hit", "[500, 375, 690, 875]", row) == 0.0
    assert value("iou", "[0, 0, 1000, 1000]", row) == 0.0
    assert value("iou", "[0, 0, 1000, 1000]", row, max_area_ratio=None) == pytest.approx(0.2)
    assert value("iou-hit", "[500, 375, 900, 875] [1, 2]", row, strict=False) == 0.0


@pytest.mark.parametrize("convention", sorted(RENDERERS))
def test_each_frame_reads_the_box_its_family_writes(families, convention):
    renderer = RENDERERS[convention]
    row = reward_rows(families["records"].data, renderer)["box1"]
    frame = ImageFrame.of(*row["image_sizes"][0], renderer.policy)
    text = format_coords(pixel_to_model(PLATE, frame, renderer.convention))
    assert REWARDS.get("iou")(renderer).score(sample(text, row)).value == pytest.approx(1.0, abs=0.05)


def test_a_point_hits_the_mask_or_else_a_box_holding_the_target(rows):
    assert value("point", "[700, 625]", rows["point-mask"]) == 1.0
    assert value("point", "[200, 200]", rows["point-mask"]) == 0.0
    assert value("point", "[550, 400]", rows["point-box"]) == 1.0  # inside the plate's box


def test_hit_at_mask_follows_the_concat_rule_and_refuses_hedges(rows):
    concat = rows["T1_CONCAT_A01_B02"]  # the target at (0.847, 0.51) of the whole side-by-side image
    assert value("hit-at-mask", "[(0.847, 0.51)]", concat) == 1.0
    assert value("hit-at-mask", "[(0.347, 0.51)]", concat) == 0.0  # the reference (left) half misses
    hidden = rows["T1_MULTI_A01_B03"]
    assert value("hit-at-mask", "not_visible", hidden) == 1.0
    assert value("hit-at-mask", "[(0.5, 0.5)] NOT_VISIBLE", hidden) == 0.0
    assert value("hit-at-mask", "[(0.695, 0.51)] [(0.1, 0.1)]", rows["T1_MULTI_A01_B02"]) == 0.0


def test_a_near_action_earns_bounded_shaping_that_grows_as_it_nears(rows):
    row = rows["47333462-0"]
    reference = json.loads(row["expected"])["value"]
    near = [value("action", json.dumps({**reference, "center": [c + d, *reference["center"][1:]]}), row)
            for c, d in [(reference["center"][0], d) for d in (0.3, 0.6, 1.2, 5.0)]]
    assert value("action", json.dumps(reference), row) == 1.0
    assert 0.5 > near[0] > near[1] > near[2] > near[3] >= 0.0
    assert value("action", json.dumps({**reference, "scene": "other", "center": [0, 0, 0]}), row) == 0.0
    assert value("action", json.dumps({**reference, "note": "x"}), row) == 0.0
    assert value("action", json.dumps(reference)[:-1] + ', "scene": "47333462"}', row) == 0.0


@pytest.mark.parametrize("completion, expected", [
    ("<think>the cup is left</think>\n<answer>left</answer>", 1.0),
    ("<answer>left</answer>", 0.0),  # no think block
    ("<think>x</think><answer>left</answer> and more", 0.0),
    ("<think>x</think><answer></answer>", 0.0),
    ("<think>x</think><answer>maybe</answer>", 0.0),  # names no option: does not parse
    ("<think>x</think><answer>left</answer><answer>left</answer>", 0.0),
    ([CROP_CALL, CROPPED, {"role": "assistant", "content": "<think>x</think><answer>left</answer>"}], 1.0),
    ([CROP_CALL, REFUSED, {"role": "assistant", "content": "<think>x</think><answer>left</answer>"}], 0.0),
    ([{"role": "assistant", "content": "<tool_call>{</tool_call>"}, CROPPED, {"role": "assistant", "content": "<think>x</think><answer>left</answer>"}], 0.0),
    ([CROP_CALL, CROPPED], 0.0),  # ends on the tool turn: no answer
    ([{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "crop", "arguments": {}}}]}, CROPPED,
      {"role": "assistant", "content": "<think>x</think><answer>left</answer>"}], 1.0),
])
def test_format_pays_a_well_formed_exchange_whose_answer_parses(rows, completion, expected):
    assert value("format", completion, rows["lr-text"]) == expected


def test_format_without_think_needs_only_the_answer(rows):
    assert value("format", "<answer>left</answer>", rows["lr-text"], think=False) == 1.0


def test_the_tool_bonus_is_paid_only_with_an_executed_crop_and_a_correct_answer(rows):
    answer = lambda text: {"role": "assistant", "content": f"<think>x</think><answer>{text}</answer>"}  # noqa: E731
    row = rows["lr-text"]
    assert value("tool-use", [CROP_CALL, CROPPED, answer("left")], row) == 1.0
    assert value("tool-use", [CROP_CALL, CROPPED, answer("right")], row) == 0.0
    assert value("tool-use", [CROP_CALL, REFUSED, answer("left")], row) == 0.0
    assert value("tool-use", [answer("left")], row) == 0.0


def test_the_task_reward_picks_each_kind_and_weights_it(rows):
    weights = {"box": 2.0, "choice": 0.5}
    assert value("task", "[500, 375, 900, 875]", rows["box1"], weights=weights) == 2.0
    assert value("task", "left", rows["lr-text"], weights=weights) == 0.5
    assert value("task", "2", rows["count"], weights=weights) == 1.0
    assert value("task", "[500, 375, 700, 875]", rows["box1"], rewards={"box": "iou"}) == pytest.approx(0.5)
    assert REWARDS.get("task")(RENDERER, weights=weights).high == 2.0
