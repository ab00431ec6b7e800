"""The synthetic benchmark: parsing, scoring per task in both Qwen conventions, loading, aggregation, registry."""

from __future__ import annotations

import re

import pytest
from PIL import Image, ImageDraw

from spatialtune.answers.match import point_in_mask
from spatialtune.answers.parse import parse_choice, parse_numbers
from spatialtune.data.render import GeometryRenderer, format_coords
from spatialtune.eval.benchmarks import UnknownBenchmarkError, benchmark_names, get_benchmark
from spatialtune.geometry import Convention, ImageFrame, ResizePolicy, pixel_to_model
from spatialtune.media import read_mask
from spatialtune.records import RecordError

QWEN25 = GeometryRenderer(Convention.QWEN25_ABS, ResizePolicy(factor=28, min_pixels=3136, max_pixels=50176))  # 100 px → 112
QWEN3 = GeometryRenderer(Convention.QWEN3_1000, ResizePolicy(factor=32, min_pixels=4096, max_pixels=65536))
BENCH = get_benchmark("synthetic")


def _row(task: str, answer=None, choices=(), boxes=(), points=(), masks=(), size=(100, 100)) -> dict:
    """A scored row as `record_to_row` makes it, with only the fields scoring reads."""
    return {
        "id": "r0",
        "task": task,
        "answer": answer,
        "choices": list(choices),
        "image_sizes": [list(size)],
        "boxes": [{"bbox": list(b), "image": 0, "label": "red square"} for b in boxes],
        "points": [{"point": list(p), "image": 0, "label": "red square"} for p in points],
        "masks": [{"path": str(m), "image": 0, "label": "red square"} for m in masks],
    }


def _model_text(coords_pixel, renderer: GeometryRenderer, size=(100, 100)) -> str:
    """What a perfect model of the renderer's family would print for pixel coordinates."""
    return format_coords(pixel_to_model(coords_pixel, ImageFrame.of(*size, renderer.policy), renderer.convention))


@pytest.fixture
def square_mask(tmp_path):
    """A 100×100 L-mode mask, > 0 on the square x, y ∈ [20, 49]."""
    path = tmp_path / "mask.png"
    mask = Image.new("L", (100, 100), 0)
    ImageDraw.Draw(mask).rectangle((20, 20, 49, 49), fill=255)
    mask.save(path)
    return path


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "output, expected",
    [("left", "left"), ("  LEFT.\n", "left"), ("The answer is right, not left", "right"), ("leftover", None), ("", None)],
)
def test_parse_choice_takes_the_earliest_whole_word_case_insensitively(output, expected):
    assert parse_choice(output, ["left", "right"]) == expected


def test_parse_choice_reads_counts_as_whole_numbers():
    choices = ["1", "2", "3", "4"]
    assert parse_choice("There are 3 red squares.", choices) == "3"
    assert parse_choice("12", choices) is None


def test_parse_numbers_skips_digits_inside_words():
    assert parse_numbers('[{"bbox_2d": [12, 34.5, 56, 78], "label": "cup"}]') == [12, 34.5, 56, 78]


# ---------------------------------------------------------------- classification and counting


def test_classification_scores_the_named_choice():
    row = _row("pairwise_left_right", "left", ["left", "right"])
    assert BENCH.score(row, "left", QWEN3).score == 1.0
    wrong = BENCH.score(row, "right", QWEN3)
    assert (wrong.score, wrong.parsed, wrong.ground_truth) == (0.0, "right", "left")


def test_classification_without_a_choice_is_unparsable():
    result = BENCH.score(_row("front_behind", "front", ["front", "behind"]), "ersion ersion", QWEN3)
    assert (result.score, result.parsed) == (0.0, None)


def test_counting_scores_the_count():
    row = _row("counting", "3", ["1", "2", "3", "4"])
    assert BENCH.score(row, "3", QWEN3).score == 1.0
    assert BENCH.score(row, "2", QWEN3).score == 0.0


# ---------------------------------------------------------------- grounding


@pytest.mark.parametrize("renderer", [QWEN25, QWEN3], ids=["qwen25_abs", "qwen3_1000"])
def test_grounding_reads_the_box_back_by_the_model_convention(renderer):
    box = (20, 20, 50, 50)
    result = BENCH.score(_row("grounding", boxes=[box]), _model_text(box, renderer), renderer)
    assert result.score == 1.0
    assert result.parsed == pytest.approx(box, abs=1.0)  # rounding of the model's integer frame
    assert result.ground_truth == list(box)


def test_grounding_box_in_the_wrong_convention_misses():
    box = (20, 20, 50, 50)  # the 0–1000 grid read as Qwen2.5 absolute pixels lands far away
    assert BENCH.score(_row("grounding", boxes=[box]), _model_text(box, QWEN3), QWEN25).score == 0.0


def test_grounding_hits_at_iou_one_half_and_misses_below():
    row = _row("grounding", boxes=[(0, 0, 40, 50)])
    assert BENCH.score(row, "[0, 0, 200, 500]", QWEN3).score == 1.0  # [0, 0, 20, 50] px: IoU exactly 0.5
    assert BENCH.score(row, "[0, 0, 190, 500]", QWEN3).score == 0.0  # IoU 0.475


def test_grounding_inverted_box_is_parsed_but_misses():
    result = BENCH.score(_row("grounding", boxes=[(20, 20, 50, 50)]), "[500, 500, 200, 200]", QWEN3)
    assert (result.score, result.parsed) == (0.0, [50.0, 50.0, 20.0, 20.0])


def test_grounding_with_fewer_than_four_numbers_is_unparsable():
    result = BENCH.score(_row("grounding", boxes=[(20, 20, 50, 50)]), "[200, 200, 500]", QWEN3)
    assert (result.score, result.parsed) == (0.0, None)


# ---------------------------------------------------------------- pointing


@pytest.mark.parametrize("renderer", [QWEN25, QWEN3], ids=["qwen25_abs", "qwen3_1000"])
def test_pointing_inside_the_mask_hits_in_both_conventions(renderer, square_mask):
    row = _row("pointing", points=[(35, 35)], masks=[square_mask])
    result = BENCH.score(row, f'[{{"point_2d": {_model_text((35, 35), renderer)}}}]', renderer)
    assert result.score == 1.0
    assert result.parsed == pytest.approx([35, 35], abs=1.0)
    assert (result.ground_truth, result.mask) == ([35, 35], str(square_mask))


def test_pointing_outside_the_mask_misses(square_mask):
    row = _row("pointing", points=[(35, 35)], masks=[square_mask])
    assert BENCH.score(row, "[700, 700]", QWEN3).score == 0.0


@pytest.mark.parametrize("output", ["[-10, 300]", "[300, 1000]", "[1200, 300]"])
def test_pointing_outside_the_image_misses(output, tmp_path):
    full = tmp_path / "full.png"
    Image.new("L", (100, 100), 255).save(full)  # the mask covers the whole image: only the border decides
    assert BENCH.score(_row("pointing", points=[(35, 35)], masks=[full]), output, QWEN3).score == 0.0


def test_pointing_with_one_number_is_unparsable(square_mask):
    result = BENCH.score(_row("pointing", points=[(35, 35)], masks=[square_mask]), "350", QWEN3)
    assert (result.score, result.parsed) == (0.0, None)


def test_point_in_mask_uses_the_pixel_the_point_falls_in(square_mask):
    mask = read_mask(square_mask)
    assert point_in_mask((49.9, 20.0), mask) and not point_in_mask((50.0, 20.0), mask)


# ---------------------------------------------------------------- loading


def test_load_reads_test_jsonl_of_a_dataset_folder(synthetic_dataset, tiny_models):
    path = synthetic_dataset(8)
    loaded = tiny_models("tiny-qwen3-vl")
    rows = BENCH.load(path.parent, loaded.processor, loaded.family.convention, max_samples=5)
    assert [r["id"] for r in rows] == [f"test-{i:04d}" for i in range(5)]
    assert rows[0]["image_sizes"] == [[128, 128]]


def test_load_rejects_an_unknown_task_naming_file_and_line(synthetic_dataset, tiny_models):
    path = synthetic_dataset(3)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"task": "absolute_top_bottom"', '"task": "depth_order"')
    path.write_text("\n".join(lines) + "\n")
    loaded = tiny_models("tiny-qwen3-vl")
    with pytest.raises(RecordError, match=re.escape(f"{path}:2: field") + r" 'task': unknown synthetic task 'depth_order'"):
        BENCH.load(path, loaded.processor, loaded.family.convention)


def test_load_rejects_an_answer_outside_the_choices(synthetic_dataset, tiny_models):
    path = synthetic_dataset(1)
    path.write_text(path.read_text().replace('"answer": "left"', '"answer": "middle"').replace('"answer": "right"', '"answer": "middle"'))
    loaded = tiny_models("tiny-qwen3-vl")
    with pytest.raises(RecordError, match=r":1: field 'answer': 'middle' is not one of the choices"):
        BENCH.load(path, loaded.processor, loaded.family.convention)


def test_load_of_a_missing_file_names_it(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    with pytest.raises(FileNotFoundError, match="nowhere/test.jsonl"):
        BENCH.load(tmp_path / "nowhere" / "test.jsonl", loaded.processor, loaded.family.convention)


# ---------------------------------------------------------------- metrics and registry


def test_aggregate_is_a_macro_mean_over_tasks_with_counts_and_unparsable():
    results = [
        {"task": "counting", "score": 1.0, "parsed": "2"},
        {"task": "counting", "score": 0.0, "parsed": None},
        {"task": "counting", "score": 0.0, "parsed": "1"},
        {"task": "pointing", "score": 1.0, "parsed": [1, 2]},
    ]
    metrics = BENCH.aggregate(results)
    assert metrics["scores"] == {"counting": pytest.approx(1 / 3), "pointing": 1.0}
    assert metrics["overall"] == pytest.approx((1 / 3 + 1) / 2)
    assert metrics["counts"] == {"counting": 3, "pointing": 1}
    assert metrics["unparsable"] == {"counting": 1, "pointing": 0}
    assert metrics["metric"] == {"counting": "accuracy", "pointing": "point_in_mask"}
    assert (metrics["benchmark"], metrics["num_samples"]) == ("synthetic", 4)


def test_synthetic_is_registered():
    assert "synthetic" in benchmark_names()


def test_unknown_benchmark_lists_the_known_names():
    with pytest.raises(UnknownBenchmarkError, match=r"unknown benchmark 'cvbench2' \(did you mean 'cvbench'\?\); known: .*synthetic"):
        get_benchmark("cvbench2")
