"""`spatialtune data check`: one clear message per bad input, a batch summary on a good file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from helpers import grounding_record
from spatialtune.cli import app

runner = CliRunner()


def _check(path, *extra):
    return runner.invoke(app, ["data", "check", str(path), *extra])


def _bad_cases(tmp_path):
    """(records, expected line, expected field) for each kind of bad input; the bad record is on line 2."""
    good = grounding_record("ok")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    two_placeholders = grounding_record("bad")
    two_placeholders["messages"][0]["content"].insert(0, {"type": "image"})
    return {
        "malformed_json": ([good, '{"id": "bad", "task": '], "<json>"),
        "missing_image": ([good, grounding_record("bad", image="nope.png")], "images[0]"),
        "corrupt_image": ([good, grounding_record("bad", image="corrupt.png")], "images[0]"),
        "box_outside_image": ([good, grounding_record("bad", bbox=(10, 30, 200, 80))], "boxes[0].bbox"),
        "more_placeholders_than_images": ([good, two_placeholders], "messages"),
    }


@pytest.mark.parametrize("case", ["malformed_json", "missing_image", "corrupt_image", "box_outside_image", "more_placeholders_than_images"])
def test_bad_input_exits_non_zero_naming_file_line_and_field(case, tmp_path, write_dataset):
    records, field = _bad_cases(tmp_path)[case]
    path = write_dataset(records)
    result = _check(path)
    assert result.exit_code != 0
    output = " ".join(result.output.split())  # rich may wrap long lines
    assert f"{path}:2: field '{field}'" in output
    assert output.count(f"{path}:") == 1  # one message, for the one bad record


def test_unknown_model_lists_the_known_names(write_dataset):
    result = _check(write_dataset([grounding_record()]), "--model", "tiny-qwen9-vl")
    assert result.exit_code != 0
    output = " ".join(result.output.split())
    assert "unknown model 'tiny-qwen9-vl'" in output
    assert "tiny-qwen2.5-vl" in output and "tiny-qwen3-vl" in output


@pytest.mark.parametrize("model, rendered", [("tiny-qwen3-vl", "[63, 250, 375, 667]"), ("tiny-qwen2.5-vl", "[11, 28, 63, 75]"),
                                             ("tiny-qwen3.5", "[63, 250, 375, 667]")])
def test_good_file_exits_zero_with_the_batch_summary(model, rendered, write_dataset):
    path = write_dataset([grounding_record("r0"), grounding_record("r1")])
    result = _check(path, "--model", model, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "OK 2 valid record(s)" in output
    assert "r0" in output and "r1" in output and "pixel_values" in output
    assert rendered in output  # the box, rendered in the family's convention, is the labelled answer


def test_image_tokens_cut_by_max_length_fail_the_check(write_dataset):
    result = _check(write_dataset([grounding_record()]), "--max-length", "8")
    assert result.exit_code != 0
    assert "field 'images'" in " ".join(result.output.split())


def test_a_misspelt_key_fails_the_check_naming_the_key_and_the_closest_known_one(write_dataset):
    typo = grounding_record("bad")
    typo["boxs"] = typo.pop("boxes")
    typo["messages"][1]["content"][0]["text"] = "top left"
    path = write_dataset([grounding_record("ok"), typo])
    result = _check(path)
    assert result.exit_code != 0
    assert f"{path}:2: field 'boxs': unknown field (did you mean 'boxes'?)" in " ".join(result.output.split())


def test_the_check_reports_refer_boxes_groups_and_preference_pairs(write_dataset):
    linked = {**grounding_record("linked"), "refer_boxes": [[10, 30, 60, 80], [[12, 32, 50, 70]]]}
    pair = {**grounding_record("pair"), "chosen": "{box:0}", "rejected": "[0, 0, 1, 1]"}
    result = _check(write_dataset([linked, pair, grounding_record("plain")]))
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "refer_boxes: 2 group(s) in 1 record(s)" in output
    assert "preference pairs: 1; first pairs through TRL's preference collator: input_ids [2," in output


def test_a_box_of_refer_boxes_outside_its_image_fails_the_check(write_dataset):
    path = write_dataset([{**grounding_record(), "refer_boxes": [[10, 30, 200, 80]]}])
    result = _check(path)
    assert result.exit_code != 0
    assert f"{path}:1: field 'refer_boxes[0]'" in " ".join(result.output.split())


def _long_question(rid: str) -> dict:
    record = grounding_record(rid)
    record["messages"][0]["content"][1]["text"] = "word " * 100  # the answer starts near token 133 (tiny-qwen3-vl)
    return record


def test_the_check_counts_over_the_whole_file_the_samples_that_would_train_on_zero_tokens(write_dataset):
    path = write_dataset([grounding_record("r0"), grounding_record("r1"), _long_question("long1"), _long_question("long2")])
    result = _check(path, "--max-length", "100", "--batch-size", "1")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "2 sample(s) would train on zero tokens (2 cut by max_length 100 before the answer" in output
    assert "long1, long2" in output


def test_a_file_whose_answers_fit_max_length_reports_no_zero_token_sample(write_dataset):
    result = _check(write_dataset([grounding_record("r0"), _long_question("long1")]), "--max-length", "200")
    assert result.exit_code == 0, result.output
    assert "zero-token samples: 0" in " ".join(result.output.split())


def test_the_check_counts_records_whose_geometry_all_looks_normalised(write_dataset):
    normalised = grounding_record("norm", bbox=(0.1, 0.2, 0.3, 0.4))
    result = _check(write_dataset([grounding_record("r0"), normalised]))
    assert result.exit_code == 0, result.output
    assert "1 record(s) with boxes/points all within [0, 1]" in " ".join(result.output.split()) and "norm" in result.output


def test_a_file_of_pixel_boxes_has_no_normalised_warning(write_dataset):
    result = _check(write_dataset([grounding_record("r0")]))
    assert result.exit_code == 0 and "within [0, 1]" not in result.output


def test_an_answer_that_disagrees_with_the_assistant_turn_fails_the_check_naming_the_line(write_dataset):
    bad = {**grounding_record("bad"), "answer": "{box:1}", "boxes": [[10, 30, 60, 80], [70, 20, 90, 40]]}
    path = write_dataset([grounding_record("r0"), bad])
    result = _check(path)
    assert result.exit_code != 0
    assert f"{path}:2: field 'answer'" in " ".join(result.output.split())
