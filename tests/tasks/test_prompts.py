"""Prompts and answer formats that builders and benchmarks share."""

from __future__ import annotations

from spatialtune.tasks.hoi import grounding_answer
from spatialtune.tasks.multiple_choice import MC_INSTRUCTION, choice_prompt, letters
from spatialtune.tasks.roomplan import canonical_action_text, place_anchor_action
from spatialtune.tasks.scene_qa import ANSWER_INSTRUCTION, scene_question_prompt


def test_a_choice_prompt_letters_the_options_one_per_line():
    assert letters(3) == ["A", "B", "C"]
    assert choice_prompt("Which?", ["left", "right"]) == f"Which?\n(A) left\n(B) right\n{MC_INSTRUCTION}"


def test_a_situated_question_shows_the_situation_first():
    assert scene_question_prompt("Where?", "I sit.") == f"Situation: I sit.\nQuestion: Where?\n{ANSWER_INSTRUCTION}"
    assert scene_question_prompt("Where?") == f"Where?\n{ANSWER_INSTRUCTION}"


def test_the_grounding_answer_names_each_pair_by_box_placeholders():
    assert grounding_answer([0, 1, 0, 2]) == (
        '[{"pair_id": 1, "person_bbox": {box:0}, "object_bbox": {box:1}}, {"pair_id": 2, "person_bbox": {box:0}, "object_bbox": {box:2}}]'
    )


def test_an_anchor_action_is_rounded_to_millimetres_and_written_with_sorted_keys():
    action = place_anchor_action("7", (1.23456, -0.0001, 2), (0, 0, 1), (0.5, 0.5, 0.5))
    assert action["center"] == [1.235, 0.0, 2.0]
    assert canonical_action_text(action).startswith('{"action": "place_anchor", "center": [1.235, 0.0, 2.0]')
