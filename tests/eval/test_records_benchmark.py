"""The records benchmark: every answer kind of hand-made records ({box:1}, points, letters, option text, numbers, free
text), malformed replies, loading errors, aggregation and a scripted end-to-end run."""

from __future__ import annotations

import json

import pytest
from fixtures_mc import scripted
from fixtures_records import CUP, HEIGHT, PLATE, WIDTH, write_records_fixture

from spatialtune.data.render import GeometryRenderer, format_coords
from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import benchmark_names, get_benchmark
from spatialtune.eval.runner import run_eval
from spatialtune.geometry import ImageFrame, pixel_to_model
from spatialtune.records import RecordError

BENCH = get_benchmark("records")


@pytest.fixture
def loaded(tiny_models):
    return tiny_models("tiny-qwen3-vl")


@pytest.fixture
def rows(tmp_path, loaded):
    """The fixture's rows by id, loaded for tiny-qwen3-vl (0–1000 grid)."""
    path, _ = write_records_fixture(tmp_path / "records")
    return {row["id"]: row for row in BENCH.load(path, loaded.processor, loaded.family.convention)}


@pytest.fixture
def renderer(loaded):
    return GeometryRenderer.for_processor(loaded.processor, loaded.family.convention)


def _model_text(coords_pixel, renderer: GeometryRenderer, size=(WIDTH, HEIGHT)) -> str:
    """What a perfect model of the renderer's family prints for pixel coordinates (of the fixture image by default)."""
    return format_coords(pixel_to_model(coords_pixel, ImageFrame.of(*size, renderer.policy), renderer.convention))


def _write(tmp_path, records: list[dict]):
    """The fixture's image and mask with `records` as its records file."""
    path, _ = write_records_fixture(tmp_path / "own")
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---------------------------------------------------------------- boxes


def test_a_box_answer_is_scored_against_the_box_it_names_not_box_0(rows, renderer):
    assert BENCH.score(rows["box1"], _model_text(PLATE, renderer), renderer).score == 1.0
    wrong = BENCH.score(rows["box1"], _model_text(CUP, renderer), renderer)
    assert (wrong.score, wrong.ground_truth, wrong.scores["iou"]) == (0.0, PLATE, 0.0)


def test_a_box_reply_reports_its_iou_and_draws_both_boxes(rows, renderer):
    result = BENCH.score(rows["box1"], "[500, 375, 900, 875]", renderer)  # [50, 30, 90, 70] px: the plate
    assert result.scores["iou"] == pytest.approx(1.0)
    assert result.draw == {"image": 0, "pred": {"boxes": [pytest.approx(PLATE)]}, "gt": {"boxes": [PLATE]}}


def test_a_box_reply_of_five_numbers_is_unparsable_not_invalid(rows, renderer):
    result = BENCH.score(rows["box1"], "[500, 375, 900, 875, 3]", renderer)
    assert (result.score, result.parsed) == (0.0, None)
    assert "invalid" not in result.scores


def test_an_inverted_box_is_invalid(rows, renderer):
    result = BENCH.score(rows["box1"], "[900, 875, 500, 375]", renderer)
    assert (result.score, result.parsed, result.scores["invalid"]) == (0.0, None, "inverted box")


def test_a_box_outside_the_frame_is_invalid(rows, renderer):
    result = BENCH.score(rows["box1"], "[500, 375, 1100, 875]", renderer)
    assert (result.score, result.parsed, result.scores["invalid"]) == (0.0, None, "outside the image")


def test_a_qwen_json_box_is_read(rows, renderer):
    reply = '[{"bbox_2d": [500, 375, 900, 875], "label": "plate"}]'
    assert BENCH.score(rows["box1"], reply, renderer).score == 1.0


# ---------------------------------------------------------------- points


def test_a_point_is_scored_inside_the_mask_of_its_image(rows, renderer):
    result = BENCH.score(rows["point-mask"], _model_text([60, 40], renderer), renderer)
    assert (result.score, result.mask) == (1.0, rows["point-mask"]["masks"][0]["path"])
    assert BENCH.score(rows["point-mask"], _model_text([20, 20], renderer), renderer).score == 0.0


def test_a_point_without_a_mask_is_scored_inside_the_box_holding_it(rows, renderer):
    hit = BENCH.score(rows["point-box"], _model_text([55, 35], renderer), renderer)
    assert (hit.score, hit.draw["gt"]["boxes"]) == (1.0, [PLATE])
    assert BENCH.score(rows["point-box"], _model_text([20, 20], renderer), renderer).score == 0.0  # the cup's box


def test_a_point_outside_the_frame_is_invalid(rows, renderer):
    result = BENCH.score(rows["point-mask"], "[1200, 300]", renderer)
    assert (result.score, result.parsed, result.scores["invalid"]) == (0.0, None, "outside the image")


def test_a_point_answer_without_mask_or_box_is_refused_at_load(tmp_path, loaded):
    record = {"id": "p", "task": "pointing", "images": ["scene.png"], "points": [[70, 50]],
              "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Point."}]},
                           {"role": "assistant", "content": "{point:0}"}]}
    with pytest.raises(RecordError, match=r"records.jsonl:1: field 'messages': \{point:0\} is scored inside a mask"):
        BENCH.load(_write(tmp_path, [record]), loaded.processor, loaded.family.convention)


# ---------------------------------------------------------------- choices, counts, free text


@pytest.mark.parametrize("reply, score", [("left", 1.0), ("Left.", 1.0), ("(A)", 1.0), ("A", 1.0), ("right", 0.0), ("(B)", 0.0)])
def test_a_choice_is_read_as_option_text_or_letter(rows, renderer, reply, score):
    assert BENCH.score(rows["lr-text"], reply, renderer).score == score


def test_a_reference_letter_names_its_option(rows, renderer):
    assert rows["lr-letter"]["expected"] == {"kind": "choice", "value": "right"}
    result = BENCH.score(rows["lr-letter"], "right", renderer)
    assert (result.score, result.parsed, result.ground_truth) == (1.0, "right", "right")


def test_a_reply_naming_no_option_is_unparsable(rows, renderer):
    result = BENCH.score(rows["lr-text"], "in the middle", renderer)
    assert (result.score, result.parsed) == (0.0, None)


def test_an_answer_outside_the_choices_is_refused_at_load(tmp_path, loaded):
    record = {"id": "c", "task": "left_right", "images": ["scene.png"], "choices": ["left", "right"], "answer": "middle",
              "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]}]}
    with pytest.raises(RecordError, match=r"records.jsonl:1: field 'answer': 'middle' is not one of the choices"):
        BENCH.load(_write(tmp_path, [record]), loaded.processor, loaded.family.convention)


@pytest.mark.parametrize("reply, score, parsed", [("2", 1.0, 2), ("There are 2 objects.", 1.0, 2), ("2.0", 1.0, 2), ("3", 0.0, 3), ("two", 0.0, None)])
def test_a_number_answer_is_an_exact_count_of_the_first_number(rows, renderer, reply, score, parsed):
    result = BENCH.score(rows["count"], reply, renderer)
    assert (result.score, result.parsed) == (score, parsed)


@pytest.mark.parametrize("reply, score", [("a cup", 1.0), ("  A   CUP!  ", 1.0), ("cup", 0.0), ("", 0.0)])
def test_free_text_is_a_normalised_exact_match(rows, renderer, reply, score):
    assert BENCH.score(rows["text"], reply, renderer).score == score


def test_a_record_with_nothing_to_score_is_refused_at_load(tmp_path, loaded):
    record = {"id": "n", "task": "naming", "images": ["scene.png"],
              "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Name it."}]}]}
    with pytest.raises(RecordError, match=r"records.jsonl:1: field 'messages': nothing to score against"):
        BENCH.load(_write(tmp_path, [record]), loaded.processor, loaded.family.convention)


# ---------------------------------------------------------------- loading, metrics, a whole run


def test_every_task_name_is_accepted_and_each_row_knows_its_answer_kind(rows):
    assert {row["task"] for row in rows.values()} == {"grounding", "pointing", "left_right", "counting", "naming"}
    assert {i: row["expected"]["kind"] for i, row in rows.items()} == {
        "box1": "box", "point-mask": "point", "point-box": "point", "lr-text": "choice", "lr-letter": "choice",
        "count": "count", "text": "text"}


def test_records_is_registered():
    assert "records" in benchmark_names()


def test_a_scripted_run_reports_per_task_per_kind_invalid_and_iou(tmp_path, loaded, monkeypatch):
    path, _ = write_records_fixture(tmp_path / "records")
    replies = {"box1": "[500, 375, 700, 875]", "point-mask": "[600, 500]", "point-box": "[900, 875, 500]",
               "lr-text": "(A)", "lr-letter": "left", "count": "2", "text": "a cup"}
    monkeypatch.setattr(tool_use, "generate_batch", scripted(replies))
    metrics = run_eval(loaded, BENCH, path, tmp_path / "out", progress=False).metrics
    assert metrics["scores"] == {"counting": 1.0, "grounding": 1.0, "left_right": 0.5, "naming": 1.0, "pointing": 0.5}
    assert metrics["kind_scores"] == {"box": 1.0, "choice": 0.5, "count": 1.0, "point": 0.5, "text": 1.0}
    assert metrics["kind_counts"] == {"box": 1, "choice": 2, "count": 1, "point": 2, "text": 1}
    assert metrics["unparsable"]["pointing"] == 1 and metrics["invalid"]["pointing"] == 0
    assert metrics["iou@0.5"] == 1.0 and metrics["mean_iou"] == pytest.approx(0.5)  # [50, 30, 70, 70] px in the plate
    assert metrics["metric"]["grounding"] == "iou@0.5" and metrics["metric"]["pointing"] == "point_in_region"
    assert metrics["headline"] == {"overall": pytest.approx(0.8), "iou@0.5": 1.0, "mean_iou": pytest.approx(0.5)}
    assert {"kind_scores", "kind_counts", "invalid", "iou@0.5", "mean_iou", "unparsable", "scores", "overall"} <= set(metrics["definitions"])


def test_a_synthetic_dataset_folder_is_scored_as_records(synthetic_dataset, loaded, renderer):
    rows = get_benchmark("records").load(synthetic_dataset(8).parent, loaded.processor, loaded.family.convention)
    by_task = {row["task"]: row for row in rows}
    assert by_task["grounding"]["expected"] == {"kind": "box", "value": 0}
    assert by_task["counting"]["expected"]["kind"] == "choice"
    grounding = by_task["grounding"]
    perfect = _model_text(grounding["boxes"][0]["bbox"], renderer, grounding["image_sizes"][0])
    assert BENCH.score(grounding, perfect, renderer).score == get_benchmark("synthetic").score(grounding, perfect, renderer).score == 1.0


def test_the_tools_option_declares_the_crop_tool(tmp_path, loaded):
    path, _ = write_records_fixture(tmp_path / "records")
    rows = get_benchmark("records", {"tools": True}).load(path, loaded.processor, loaded.family.convention)
    assert all(row["meta"]["tools"] == ["crop"] and row["messages"][0]["role"] == "system" for row in rows)
