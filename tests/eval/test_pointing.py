"""Where2Place and RefSpatial-Bench: tuple/box parsing per coordinate frame, fraction of points in the mask, both
treatments of unparsable replies, loading in the real schemas, and runs pinned on hand-computed scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_points import REFSPATIAL_SUFFIX, refspatial_rows, write_refspatial_fixture, write_where2place_fixture
from PIL import Image

from spatialtune.answers.match import fraction_in_mask
from spatialtune.answers.points import PointAnswer, parse_point_answer
from spatialtune.data.render import GeometryRenderer
from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import UnknownBenchmarkError, get_benchmark
from spatialtune.eval.runner import run_eval
from spatialtune.geometry import ImageFrame, ResizePolicy
from spatialtune.media import read_mask_values
from spatialtune.records import RecordError

FRAME = ImageFrame(80, 60, 80, 60)


def scripted(replies: dict[str, str]):
    def generate(model, processor, rows, max_new_tokens):
        return [replies[row["id"]] for row in rows]

    return generate


@pytest.mark.parametrize(
    "output, frame, points, boxes",
    [
        ("[(0.5, 0.5), (40, 30)]", "norm01", [(40, 30), (40, 30)], []),  # lenient (the function's default): integer-only tuples are pixels
        ("(0.999, 0.0)", "norm01", [(79, 0)], []),
        ("(-0.001, 0.5)", "norm01", [(-1, 30)], []),  # lenient floors: a negative coordinate stays outside the image
        ("(0.25, 0.5, 0.5, 1.0)", "norm01", [], [(20, 30, 40, 60)]),
        ("(0.5, 10.7)", "pixel", [(0, 10)], []),
        ("(500, 250)", "grid1000", [(40, 15)], []),
        ("(1, 2, 3) and (4)", "norm01", None, None),  # only 2- and 4-tuples count
        ("no point here", "norm01", None, None),
    ],
)
def test_tuples_become_pixel_points_and_boxes_in_the_chosen_frame(output, frame, points, boxes):
    answer = parse_point_answer(output, frame, FRAME)
    assert (answer is None) if points is None else (list(answer.points_pixel), list(answer.boxes_pixel)) == (points, boxes)


def test_qwen25_coordinates_are_pixels_of_the_resized_image():
    answer = parse_point_answer("(80, 60)", "qwen25_abs", ImageFrame(80, 60, 160, 120))
    assert answer.points_pixel == ((40, 30),)


def test_qwen_json_points_are_read_only_when_no_tuple_is_present_and_allowed():
    reply = '```json\n[{"point_2d": [500, 500], "label": "free space"}, {"bbox_2d": [0, 0, 250, 500]}]\n```'
    answer = parse_point_answer(reply, "grid1000", FRAME)
    assert answer == PointAnswer(((40, 30),), ((0, 0, 20, 30),), from_json=True)
    assert parse_point_answer(reply, "grid1000", FRAME, json_points=False) is None
    assert parse_point_answer('[{"point_2d": [NaN, 5]}, {"point": [true, 5]}]', "grid1000", FRAME) is None


def _mask() -> np.ndarray:
    mask = np.zeros((60, 80))
    mask[30:60, 40:80] = 1.0
    return mask


@pytest.mark.parametrize(
    "points, boxes, expected",
    [
        ([(40, 30), (10, 10), (100, 30)], [], (1 / 3, 3)),  # in, out, out of the image
        ([], [(70, 50, 90, 70)], (1.0, 100)),  # a box partly outside: its 100 pixels in the image, all in the mask (as the originals)
        ([(40, 30)], [(-10, 30, 50, 40)], (101 / 501, 501)),  # a box clipped at 0 (no wrap-around): 50×10 pixels, 100 in the mask
        ([(40, 30)], [(100, 0, 120, 10)], (1.0, 1)),  # a box wholly outside the image adds no point
        ([], [(10, 10, 10, 20)], (0.0, 0)),  # a degenerate box adds no point: zero points score 0
        ([(40, 30)], [(50, 40, 45, 50)], (1.0, 1)),  # a reversed box adds no point either
    ],
)
def test_score_is_the_fraction_of_points_in_the_mask(points, boxes, expected):
    score, total, _ = fraction_in_mask(PointAnswer(tuple(points), tuple(boxes)), _mask())
    assert (score, total) == (pytest.approx(expected[0]), expected[1])


def test_masks_binarise_at_the_threshold_or_stay_fractional(tmp_path):
    Image.fromarray(np.array([[0, 100, 200]], dtype=np.uint8)).save(tmp_path / "m.png")
    assert read_mask_values(tmp_path / "m.png", 0.5).tolist() == [[0.0, 0.0, 1.0]]
    assert read_mask_values(tmp_path / "m.png", 0.0).tolist() == [[0.0, 1.0, 1.0]]
    assert read_mask_values(tmp_path / "m.png", None)[0].tolist() == pytest.approx([0.0, 100 / 255, 200 / 255])


def test_options_are_validated():
    with pytest.raises(UnknownBenchmarkError, match="coords"):
        get_benchmark("where2place", {"coords": "pixels"})
    with pytest.raises(UnknownBenchmarkError, match="split"):
        get_benchmark("refspatial", {"split": "train"})
    assert get_benchmark("refspatial").options.mask_threshold == 0.0 and get_benchmark("where2place").options.mask_threshold is None


@pytest.fixture(scope="module")
def where2place_path(tmp_path_factory):
    return write_where2place_fixture(tmp_path_factory.mktemp("w2p"))[0]


@pytest.fixture(scope="module")
def refspatial_path(tmp_path_factory):
    return write_refspatial_fixture(tmp_path_factory.mktemp("refspatial"))[0]


def _text(row) -> str:
    return row["messages"][0]["content"][1]["text"]


def test_where2place_prompts_say_the_coordinate_frame(where2place_path, tiny_models):
    qwen3, qwen25 = tiny_models("tiny-qwen3-vl"), tiny_models("tiny-qwen2.5-vl")
    norm = get_benchmark("where2place").load(where2place_path, qwen3.processor, qwen3.family.convention)
    assert "between 0 and 1" in _text(norm[0]) and norm[0]["meta"] == {"question_type": "seen", "coords": "norm01"}
    pixel = get_benchmark("where2place", {"coords": "pixel"}).load(where2place_path, qwen3.processor, qwen3.family.convention)
    assert "between 0 and 1" not in _text(pixel[0]) and "80 pixels wide and 60 pixels high" in _text(pixel[0])
    grid = get_benchmark("where2place", {"coords": "model"}).load(where2place_path, qwen3.processor, qwen3.family.convention)
    assert grid[0]["meta"]["coords"] == "grid1000" and "0 to 1000" in _text(grid[0])
    rows = get_benchmark("where2place", {"coords": "model"}).load(where2place_path, qwen25.processor, qwen25.family.convention)
    width, height = ResizePolicy.from_processor(qwen25.processor).resized_size(80, 60)
    assert rows[0]["meta"]["coords"] == "qwen25_abs" and f"{width} pixels wide and {height} pixels high" in _text(rows[0])


def test_a_scripted_where2place_run_reports_both_treatments_of_parse_failures(where2place_path, tiny_models, tmp_path, monkeypatch):
    replies = {
        "0": "[(0.75, 0.75), (0.1, 0.1)]",  # one of two points in the free space: 0.5
        "1": "Here: [(5, 5)]",  # integers are pixels: inside
        "2": "I don't know",  # unparsable
        "3": "[(0.5, 0.9, 0.5, 0.95)]",  # a degenerate box: parsed, zero points, 0
    }
    monkeypatch.setattr(tool_use, "generate_batch", scripted(replies))
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), "where2place", where2place_path, tmp_path / "out", progress=False).metrics
    assert metrics["overall"] == metrics["score_unparsable_zero"] == pytest.approx(1.5 / 4)
    assert metrics["score_skip_unparsable"] == pytest.approx(1.5 / 3)
    assert (metrics["num_unparsable"], metrics["num_scored"], metrics["replies_without_points"]) == (1, 3, 1)
    assert metrics["scores"] == pytest.approx({"seen": 0.5, "unseen": 0.0}) and metrics["breakdown"]["per question type"] == metrics["scores"]
    assert metrics["headline"]["coords"] == metrics["coords"] == "norm01" and "norm01" in metrics["definitions"]["coords"]


def test_qwen25_replies_in_its_own_convention_are_scored_in_original_pixels(where2place_path, tiny_models, tmp_path, monkeypatch):
    loaded = tiny_models("tiny-qwen2.5-vl")
    width, height = ResizePolicy.from_processor(loaded.processor).resized_size(80, 60)
    reply = f"({round(0.75 * width)}, {round(0.75 * height)})"  # (60, 45) in original pixels: inside every seen image's region 0
    monkeypatch.setattr(tool_use, "generate_batch", scripted({str(i): reply for i in range(4)}))
    bench = get_benchmark("where2place", {"coords": "model"})
    result = run_eval(loaded, bench, where2place_path, tmp_path / "out", progress=False)
    assert result.rows[0]["parsed"]["points"] == [[60, 45]] and result.rows[0]["score"] == 1.0
    assert result.metrics["coords"] == "qwen25_abs"


def test_refspatial_prompts_are_prompt_plus_suffix_and_splits_come_from_the_column(refspatial_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    rows = get_benchmark("refspatial").load(refspatial_path, loaded.processor, loaded.family.convention)
    assert [r["id"] for r in rows] == ["location-0", "location-1", "location-2", "placement-3", "placement-4", "placement-5"]
    assert _text(rows[0]) == f"Please point out the free area 0 to the right of the blue block. {REFSPATIAL_SUFFIX}"
    placement = get_benchmark("refspatial", {"split": "placement"}).load(refspatial_path, loaded.processor, loaded.family.convention)
    assert {r["task"] for r in placement} == {"placement"} and len(placement) == 3
    template = get_benchmark("refspatial", {"prompt_template": "Locate {object} in this image and output the point coordinates in JSON format."})
    assert _text(template.load(refspatial_path, loaded.processor, loaded.family.convention)[0]).startswith("Locate the free area 0 in")


def test_raw_question_json_takes_its_split_from_the_folder(tmp_path, tiny_models):
    rows = [{**{k: v for k, v in r.items() if k not in ("image", "mask", "split")}, "rgb_path": r["image"], "mask_path": r["mask"]}
            for r in refspatial_rows(tmp_path)]
    path = tmp_path / "Placement" / "question.json"
    path.parent.mkdir()
    path.write_text(json.dumps(rows))
    loaded = tiny_models("tiny-qwen3-vl")
    loaded_rows = get_benchmark("refspatial").load(path, loaded.processor, loaded.family.convention, image_root=tmp_path)
    assert {r["task"] for r in loaded_rows} == {"placement"} and loaded_rows[0]["id"] == "placement-0"


def test_a_scripted_refspatial_run_reports_splits_and_steps(refspatial_path, tiny_models, tmp_path, monkeypatch):
    replies = {
        "location-0": "[(0.75, 0.75)]",  # in
        "location-1": "[(0.9, 0.9)]",  # out
        "location-2": "[(0.5, 0.5)]",  # in
        "placement-3": "nothing fits",  # unparsable
        "placement-4": '{"point_2d": [0.75, 0.75]}',  # Qwen JSON, read as a fallback: in
        "placement-5": "[(0.1, 0.1), (0.5, 0.5)]",  # one of two
    }
    monkeypatch.setattr(tool_use, "generate_batch", scripted(replies))
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), "refspatial", refspatial_path, tmp_path / "out", progress=False).metrics
    assert metrics["scores"] == pytest.approx({"location": 2 / 3, "placement": 0.5})
    assert metrics["overall"] == pytest.approx(3.5 / 6) and metrics["score_skip_unparsable"] == pytest.approx(3.5 / 5)
    assert metrics["per_step"] == pytest.approx({"1": 0.5, "2": 0.5, "3": 0.75}) and metrics["parsed_from_json"] == 1
    assert metrics["headline"]["location"] == pytest.approx(2 / 3) and set(metrics["breakdown"]) == {"per split", "per step"}


def test_bad_rows_name_the_file_line_and_field(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path = write_where2place_fixture(tmp_path)[0]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({k: v for k, v in rows[1].items() if k != "mask"}) + "\n")
    with pytest.raises(RecordError, match=r"where2place.jsonl:2: field 'mask'"):
        get_benchmark("where2place").load(path, loaded.processor, loaded.family.convention)
    Image.new("L", (40, 30)).save(tmp_path / rows[0]["mask"].replace(".jpg", "_small.png"))
    path.write_text(json.dumps({**rows[0], "mask": rows[0]["mask"].replace(".jpg", "_small.png")}) + "\n")
    with pytest.raises(RecordError, match=r"where2place.jsonl:1: field 'masks\[0\].path': mask is 40×30"):
        get_benchmark("where2place").load(path, loaded.processor, loaded.family.convention)
    path.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(RecordError, match=r"where2place.jsonl:1: field 'prompt_template'"):
        get_benchmark("where2place", {"prompt_template": "Point at {thing}."}).load(path, loaded.processor, loaded.family.convention)


@pytest.mark.parametrize("name, writer", [("where2place", write_where2place_fixture), ("refspatial", write_refspatial_fixture)])
def test_real_generation_on_the_tiny_model_runs_end_to_end(name, writer, tiny_models, tmp_path):
    path, options = writer(tmp_path / "data")
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark(name, options), path, tmp_path / "out", max_samples=3, max_new_tokens=8,
                      batch_size=3, progress=False)
    assert result.metrics["num_samples"] == 3 and result.metrics["num_scored"] + result.metrics["num_unparsable"] == 3
    assert all(0.0 <= r["score"] <= 1.0 and r["mask"] for r in result.rows)


@pytest.mark.parametrize("output", ["", "((((", "(" + "9" * 400 + ", 5)", "(0.5,)", '{"point_2d": [Infinity, 1]}', "(1, 2, 3)",
                                    '{"point_2d": [' + "9" * 400 + ", 1]}"])
def test_malformed_replies_are_unparsable_never_a_crash(output, where2place_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    bench = get_benchmark("where2place")
    row = bench.load(where2place_path, loaded.processor, loaded.family.convention, max_samples=1)[0]
    result = bench.score(row, output, GeometryRenderer.for_processor(loaded.processor, loaded.family.convention))
    assert result.parsed is None and result.score == 0.0


def test_a_huge_box_is_scored_without_materialising_its_pixels(where2place_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    bench = get_benchmark("where2place")
    row = bench.load(where2place_path, loaded.processor, loaded.family.convention, max_samples=1)[0]
    result = bench.score(row, "(0, 0, 100000000, 100000000)", GeometryRenderer.for_processor(loaded.processor, loaded.family.convention))
    mask = read_mask_values(row["masks"][0]["path"], bench.options.mask_threshold)
    assert result.scores["num_points"] == mask.size and result.score == pytest.approx(mask.mean())  # the whole image, as the originals


# ---------------------------------------------------------------- the official rules (issue 18)


def _score_row(name: str, options: dict, path, index: int, reply: str, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    bench = get_benchmark(name, options)
    row = bench.load(path, loaded.processor, loaded.family.convention)[index]
    return bench.score(row, reply, GeometryRenderer.for_processor(loaded.processor, loaded.family.convention))


def test_refspatial_defaults_to_roborefers_rules_and_where2place_to_robopoints():
    assert get_benchmark("refspatial").options.rules == "roborefer" and get_benchmark("where2place").options.rules == "robopoint"
    assert "summarize_acc.py::text2pts" in get_benchmark("refspatial").definitions()["parsing"]
    assert "summarize_vqa.py::text2pts" in get_benchmark("where2place").definitions()["parsing"]
    with pytest.raises(UnknownBenchmarkError, match="rules"):
        get_benchmark("refspatial", {"rules": "official"})


@pytest.mark.parametrize("rules, expected", [("roborefer", 0.25), ("robopoint", 0.0), ("lenient", 0.0)])
def test_refspatial_scales_an_integer_box_by_the_image_size(rules, expected, refspatial_path, tiny_models):
    # location-0's region is [40, 80) × [30, 60) of 80×60; (0, 0, 1, 1) is the whole image under roborefer, pixel (0, 0) else
    assert _score_row("refspatial", {"rules": rules}, refspatial_path, 0, "[(0, 0, 1, 1)]", tiny_models).score == pytest.approx(expected)


@pytest.mark.parametrize("rules, expected", [("roborefer", 0.25), ("lenient", 1.0)])
def test_refspatial_counts_box_pixels_outside_the_image_as_misses(rules, expected, refspatial_path, tiny_models):
    # (60, 45)–(100, 75): 40×30 pixels, the 20×15 inside the image all in the region
    result = _score_row("refspatial", {"rules": rules}, refspatial_path, 0, "[(0.75, 0.75, 1.25, 1.25)]", tiny_models)
    assert (result.score, result.scores["num_points"]) == (pytest.approx(expected), 1200 if rules == "roborefer" else 300)


@pytest.mark.parametrize("rules, parsed", [("robopoint", False), ("lenient", True)])
def test_where2place_reads_no_tuple_with_spaces_inside_the_brackets(rules, parsed, where2place_path, tiny_models):
    result = _score_row("where2place", {"rules": rules}, where2place_path, 0, "[( 0.75 , 0.75 )]", tiny_models)
    assert (result.parsed is not None) is parsed and result.score == pytest.approx(1.0 if parsed else 0.0, abs=0.02)


@pytest.mark.parametrize("rules, expected", [("robopoint", 0.0), ("lenient", 1.0)])
def test_where2place_empties_a_box_with_a_negative_corner(rules, expected, where2place_path, tiny_models):
    # row 1's region is [0, 20) × [0, 20); x1 = −8 slices columns 72:16 (empty) under robopoint, clips to 0:16 under lenient
    result = _score_row("where2place", {"rules": rules}, where2place_path, 1, "[(-0.1, -0.1, 0.2, 0.3)]", tiny_models)
    assert result.score == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize("rules, expected", [("robopoint", 1.0), ("lenient", 0.0)])
def test_where2place_truncates_a_tiny_negative_coordinate_into_the_image(rules, expected, where2place_path, tiny_models):
    result = _score_row("where2place", {"rules": rules}, where2place_path, 1, "[(-0.0004, 0.1)]", tiny_models)
    assert result.parsed["points"] == [[0 if rules == "robopoint" else -1, 6]] and result.score == pytest.approx(expected, abs=0.02)


def test_the_official_score_leaves_out_replies_its_parser_fails_on(where2place_path, tiny_models, tmp_path, monkeypatch):
    replies = {
        "0": "[(0.75, 0.75)]",  # in: 1
        "1": "[(1, 0.5, 0.2, 0.3)]",  # an integer x1 with decimals elsewhere: RoboPoint's text2pts raises, the sample is skipped
        "2": "I don't know",  # no tuple: 0 there too
        "3": "[(0.5, 0.9)]",  # in: 1
    }
    monkeypatch.setattr(tool_use, "generate_batch", scripted(replies))
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), "where2place", where2place_path, tmp_path / "out", progress=False).metrics
    assert metrics["score_official"] == pytest.approx(2 / 3, abs=0.01) and metrics["overall"] == pytest.approx(2 / 4, abs=0.01)
    assert metrics["score_skip_unparsable"] == pytest.approx(1.0, abs=0.01) and metrics["headline"]["score_official"] == metrics["score_official"]
    assert (metrics["num_parse_errors"], metrics["num_unparsable"], metrics["rules"]) == (1, 2, "robopoint")
    assert metrics["scores_official"] == pytest.approx({"seen": 0.5, "unseen": 1.0}, abs=0.01)
