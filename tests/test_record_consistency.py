"""Consistency checks of the record layer: `answer` vs `choices`, `answer` vs the final assistant turn, geometry that
looks normalised. Each rule with a file that fails it (a RecordError naming file, line and field) and one that passes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers import draw_scene, grounding_record
from spatialtune.records import RecordError, choice_index, final_answer, looks_normalised, read_records


def _record(reply: str | None, answer=None, choices=None, rid: str = "r0", **fields) -> dict:
    """A one-image record asking a question, answered by `reply` (no assistant turn when None)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is the cup?"}]}]
    if reply is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": reply}]})
    record = {"id": rid, "task": "t", "images": ["a.png"], "messages": messages, **fields}
    if answer is not None:
        record["answer"] = answer
    if choices is not None:
        record["choices"] = choices
    return record


def _file(tmp_path: Path, *records: dict) -> Path:
    draw_scene(tmp_path / "a.png")
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _error(tmp_path: Path, *records: dict) -> RecordError:
    path = _file(tmp_path, _record("left", "left", rid="ok"), *records)
    with pytest.raises(RecordError) as info:
        read_records(path)
    assert info.value.file == str(path) and info.value.line == 2
    return info.value


# --- answer among choices ------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["right", "Right", "B", "(B)", "B."])
def test_an_answer_given_as_option_text_or_letter_is_among_the_choices(answer, tmp_path):
    assert read_records(_file(tmp_path, _record(None, answer, ["left", "right"])))[0].answer == answer


def test_an_answer_that_is_not_among_the_choices_is_an_error_naming_the_answer(tmp_path):
    error = _error(tmp_path, _record(None, "up", ["left", "right"]))
    assert error.field == "answer" and "'up' is not one of the choices" in error.message and "(A, B)" in error.message


def test_a_letter_beyond_the_choices_is_not_among_them(tmp_path):
    assert _error(tmp_path, _record(None, "C", ["left", "right"])).field == "answer"


def test_a_number_answer_matches_its_option_text(tmp_path):
    assert read_records(_file(tmp_path, _record("3", 3, ["1", "2", "3"])))[0].answer == 3


def test_an_option_text_wins_over_the_letter_it_spells():
    assert choice_index("A", ["B", "A"]) == 1


# --- answer vs the final assistant turn ----------------------------------------------------------------------


@pytest.mark.parametrize("reply, answer", [
    ("(B)", "B"), ("B", "right"), ("(B) right", "B"), ("B. right", "B"), ("right", "(B)"),
    ("<think>The cup is on the right.</think>\n<answer>(B)</answer>", "B"),
])
def test_a_letter_and_an_option_text_agree_when_they_name_the_same_choice(reply, answer, tmp_path):
    assert read_records(_file(tmp_path, _record(reply, answer, ["left", "right"])))


@pytest.mark.parametrize("reply", ["(A)", "left", "<think>right</think><answer>(A)</answer>", "I don't know"])
def test_a_reply_naming_another_choice_disagrees_with_the_answer(reply, tmp_path):
    error = _error(tmp_path, _record(reply, "B", ["left", "right"]))
    assert error.field == "answer" and "disagrees with the final assistant turn messages[1]" in error.message


def test_a_box_answer_agrees_with_the_same_box_or_a_box_of_the_same_coordinates(tmp_path):
    boxes = [[10, 30, 60, 80], [70, 20, 90, 40], [70, 20, 90, 40]]
    records = [_record("{box:1}", "{box:1}", rid="same", boxes=boxes), _record("{box:2}", "{box:1}", rid="equal", boxes=boxes),
               _record("[70, 20, 90, 40]", "{box:1}", rid="written", boxes=boxes)]
    assert len(read_records(_file(tmp_path, *records))) == 3


def test_a_box_answer_disagrees_with_another_box(tmp_path):
    error = _error(tmp_path, _record("{box:0}", "{box:1}", boxes=[[10, 30, 60, 80], [70, 20, 90, 40]]))
    assert error.field == "answer" and "'[10, 30, 60, 80]'" in error.message


def test_text_answers_agree_after_case_whitespace_and_a_final_full_stop(tmp_path):
    assert read_records(_file(tmp_path, _record("On the  table.", "on the table")))


def test_a_text_answer_disagrees_with_another_text(tmp_path):
    assert _error(tmp_path, _record("top", "left")).field == "answer"


def test_a_number_answer_agrees_with_the_same_number_written_otherwise(tmp_path):
    assert read_records(_file(tmp_path, _record("3.0", 3)))
    assert _error(tmp_path, _record("4", 3)).field == "answer"


def test_a_list_answer_agrees_when_one_reference_does(tmp_path):
    assert read_records(_file(tmp_path, _record("Holding the cup", ["ride bike", "holding the cup"])))
    assert _error(tmp_path, _record("drinking", ["ride bike", "holding the cup"])).field == "answer"


def test_records_without_an_answer_a_final_assistant_turn_or_a_plain_answer_are_not_compared(tmp_path):
    later_question = _record("left", "top")
    later_question["messages"].append({"role": "user", "content": [{"type": "text", "text": "And above?"}]})
    records = [_record("left", rid="no-answer"), _record(None, "top", rid="no-turn"), {**later_question, "id": "later"},
               _record("[[0, 1]]", {"pairs": [[0, 1]]}, rid="dict")]
    assert len(read_records(_file(tmp_path, *records))) == 4


def test_the_final_answer_of_a_reply_drops_thinking_and_keeps_the_last_answer_tag():
    assert final_answer("<think>maybe (A)</think> <answer>(A)</answer> <answer>(B)</answer>") == "(B)"
    assert final_answer("<think>maybe (A)</think>\n(B) ") == "(B)"


def test_a_reply_that_starts_inside_a_think_block_keeps_what_follows_its_end():
    # Qwen3.5's thinking template opens `<think>\n` in the prompt: the reply holds the reasoning and the closing tag only
    assert final_answer("the cup is left of the plate (A)\n</think>\n\n(B)") == "(B)"
    assert final_answer("maybe (A)</think>\n<answer>(B)</answer>") == "(B)"


# --- geometry that looks normalised ---------------------------------------------------------------------------


def test_boxes_and_points_all_within_0_1_get_a_warning_naming_the_record(tmp_path, caplog):
    record = _record("{box:0}", "{box:0}", rid="normalised", boxes=[[0.1, 0.2, 0.3, 0.4]], points=[[0.5, 0.5]])
    with caplog.at_level(logging.WARNING, logger="spatialtune.records"):
        records = read_records(_file(tmp_path, record))
    assert looks_normalised(records[0])
    assert "record 'normalised'" in caplog.text and "within [0, 1]" in caplog.text and "160×120" in caplog.text


def test_pixel_boxes_and_tiny_images_get_no_warning(tmp_path, caplog):
    draw_scene(tmp_path / "tiny.png", size=(3, 3), box=(0, 0, 1, 1))
    tiny = {**_record("{box:0}", rid="tiny", boxes=[[0, 0, 1, 1]]), "images": ["tiny.png"]}
    with caplog.at_level(logging.WARNING, logger="spatialtune.records"):
        records = read_records(_file(tmp_path, grounding_record("pixels"), tiny))
    assert not any(looks_normalised(r) for r in records) and caplog.text == ""
