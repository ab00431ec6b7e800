"""3DSRBench: the official CircularEval grouping (flipped twins apart), the stricter flip grouping, plain accuracy,
VLMEvalKit TSVs with base64 and index-referenced images, COCO images by URL, scripted and real runs."""

from __future__ import annotations

import json

import pytest
from fixtures_mc import THREEDSR_ROWS, draw_scene, scripted, write_3dsrbench_fixture, write_threedsr_tsv

from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks.threedsrbench import ThreeDSRBench, circular_group, circular_scores, flip_group
from spatialtune.eval.runner import run_eval
from spatialtune.records import RecordError


@pytest.mark.parametrize(
    "qid, circular, flip",
    [("VIN6MS3J", "VIN6MS3J", "VIN6MS3J"), ("VIN6MS3J-1", "VIN6MS3J", "VIN6MS3J"), ("VIN6MS3J-3", "VIN6MS3J", "VIN6MS3J"),
     ("VIN6MS3J-flip", "VIN6MS3J-flip", "VIN6MS3J"), ("VIN6MS3J-flip-2", "VIN6MS3J-flip", "VIN6MS3J"), ("17", "17", "17")],
)
def test_variants_group_as_the_official_script_does(qid, circular, flip):
    assert circular_group(qid) == circular and flip_group(qid) == flip


def _results(rows):
    return [{"task": subtype, "score": score, "meta": {"circular_group": circular_group(q), "flip_group": flip_group(q)}} for q, subtype, score in rows]


def test_a_question_counts_only_if_all_its_variants_are_right():
    results = _results([
        ("A1", "height_higher", 1.0), ("A1-1", "height_higher", 1.0), ("A1-flip", "height_higher", 1.0), ("A1-flip-1", "height_higher", 0.0),
        ("B2", "location_next_to", 1.0), ("B2-1", "location_next_to", 1.0), ("C3", "location_above", 0.0), ("C3-1", "location_above", 1.0),
    ])
    circular = circular_scores(results)
    assert circular["overall"] == pytest.approx(2 / 4) and circular["num_questions"] == 4  # A1 ✓, A1-flip ✗, B2 ✓, C3 ✗
    assert circular["per_type"] == {"height": 0.5, "location": 0.5}
    assert circular["per_subtype"] == {"height_higher": 0.5, "location_above": 0.0, "location_next_to": 1.0}
    strict = circular_scores(results, "flip_group")
    assert strict["overall"] == pytest.approx(1 / 3) and strict["per_type"] == {"height": 0.0, "location": 0.5}


def test_a_vlmevalkit_tsv_loads_base64_and_index_referenced_images(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, options = write_3dsrbench_fixture(tmp_path)
    rows = get_benchmark("3dsrbench", options).load(path, loaded.processor, loaded.family.convention)
    assert [r["id"] for r in rows] == [qid for _, qid, *_ in THREEDSR_ROWS]
    assert len({r["images"][0] for r in rows[:4]}) == 1 and rows[4]["images"][0].endswith(".images/4.png")
    assert [r["answer"] for r in rows] == ["A", "B", "A", "B", "C", "B", "A", "D"]
    assert rows[0]["choices"] == ["A", "B"] and "(D) behind" in rows[4]["messages"][0]["content"][1]["text"]
    assert rows[3]["meta"] == {"qid": "Q1AAAAAA-flip-1", "type": "height", "circular_group": "Q1AAAAAA-flip", "flip_group": "Q1AAAAAA",
                               "options": {"A": "the chair", "B": "the lamp"}}


def test_rows_without_qid_or_image_use_index_and_the_coco_url(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    draw_scene(tmp_path / "coco_images" / "train2017" / "000000000139.jpg", 1, fmt="JPEG")
    row = {"index": 42, "question": "Which is higher?", "A": "the lamp", "B": "the chair", "C": None, "D": None, "answer": "A",
           "category": "height_higher", "image_source": "coco", "image_url": "http://images.cocodataset.org/train2017/000000000139.jpg"}
    (tmp_path / "3dsrbench.jsonl").write_text(json.dumps(row) + "\n")
    rows = get_benchmark("3dsrbench").load(tmp_path / "3dsrbench.jsonl", loaded.processor, loaded.family.convention, image_root=tmp_path / "coco_images")
    assert rows[0]["id"] == "42" and rows[0]["images"][0].endswith("coco_images/train2017/000000000139.jpg")
    assert rows[0]["meta"]["circular_group"] == "42"


@pytest.mark.parametrize(
    "change, field, message",
    [({"category": "height"}, "category", "unknown subtype"), ({"B": ""}, "A", "A, B.* in order"), ({"answer": "C"}, "answer", "not one of"),
     ({"image": "", "image_url": ""}, "image", "no image"), ({"image": ""}, r"images\[0\]", "000000000000.jpg")],
)
def test_bad_rows_name_the_file_line_and_field(tmp_path, tiny_models, change, field, message):
    loaded = tiny_models("tiny-qwen3-vl")
    path, _ = write_3dsrbench_fixture(tmp_path)
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    cells = dict(zip(header, lines[1].split("\t")))  # the first variant: two options, carries its image
    cells.update(change)
    path.write_text("\n".join([lines[0], "\t".join(cells[h] for h in header), *lines[2:]]) + "\n")
    with pytest.raises(RecordError, match=rf"circular.tsv:1: field '{field}'.*{message}"):
        get_benchmark("3dsrbench").load(path, loaded.processor, loaded.family.convention)


def test_a_scripted_run_reports_circular_eval_flip_grouping_and_plain_accuracy(tmp_path, tiny_models, monkeypatch):
    path, options = write_3dsrbench_fixture(tmp_path)
    outputs = {  # answers: A, B, A, B | C, B, A, D
        "Q1AAAAAA": "A", "Q1AAAAAA-1": "(B)", "Q1AAAAAA-flip": "A", "Q1AAAAAA-flip-1": "A",
        "Q2BBBBBB": "C", "Q2BBBBBB-1": "The answer is B", "Q2BBBBBB-2": "", "Q2BBBBBB-3": "D",
    }
    monkeypatch.setattr(tool_use, "generate_batch", scripted(outputs))
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("3dsrbench", options), path, tmp_path / "out", progress=False).metrics
    assert metrics["overall"] == pytest.approx(1 / 3) and metrics["circular"]["num_questions"] == 3
    assert metrics["circular"]["per_type"] == {"height": 0.5, "orientation": 0.0}
    assert metrics["circular_with_flip"]["overall"] == 0.0 and metrics["plain_accuracy"] == 0.75
    assert metrics["scores"] == {"height_higher": 0.75, "orientation_on_the_left": 0.75} and metrics["unparsable"]["orientation_on_the_left"] == 1
    assert metrics["headline"]["CircularEval"] == pytest.approx(1 / 3) and "compute_3dsrbench_results_circular" in metrics["definitions"]["overall"]


def test_a_real_tiny_model_runs_end_to_end(tmp_path, tiny_models):
    path, options = write_threedsr_tsv(tmp_path / "circular.tsv"), {}
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("3dsrbench", options), path, tmp_path / "out", max_samples=4, max_new_tokens=8, progress=False)
    assert result.metrics["num_samples"] == 4 and result.metrics["circular"]["num_questions"] == 2  # Q1 and its flipped twin
    assert all(row["parsed"] in (None, "A", "B") for row in result.rows)


SIDES = {"A": "left", "B": "right", "C": "in front", "D": "behind"}


def _score(reply: str, options=SIDES, answer: str = "B", matching: str = "vlmevalkit"):
    row = {"answer": answer, "choices": list(options), "meta": {"options": options}}
    return get_benchmark("3dsrbench", {"matching": matching}).score(row, reply, None)


def test_a_free_form_reply_with_one_options_text_counts_as_that_option():
    result = _score("The cup is on the right of the person.")
    assert result.parsed == "B" and result.score == 1.0 and result.scores == {"option_text_match": True}


def test_a_free_form_reply_with_two_options_texts_is_unparsable():
    result = _score("Not left; it is to the right.")
    assert result.parsed is None and result.score == 0.0


def test_a_letter_reply_is_read_by_the_letter_rule():
    result = _score("The answer is (B).")
    assert result.parsed == "B" and result.scores == {"option_text_match": False}


def test_i_am_not_sure_answers_no_on_a_yes_no_question():
    assert _score("I am not sure", options={"A": "yes", "B": "no"}).parsed == "B"


def test_a_refusal_phrase_is_unparsable():
    assert _score("Cannot determine the answer from the image.").parsed is None


def test_strict_matching_reads_option_letters_only():
    assert _score("The cup is on the right of the person.", matching="strict").parsed is None
    assert _score("The answer is (B).", matching="strict").parsed == "B"


def test_an_unknown_matching_is_refused():
    with pytest.raises(ValueError, match="matching='judge'"):
        get_benchmark("3dsrbench", {"matching": "judge"})


def test_text_matched_variants_still_group_under_circular_eval(tmp_path, tiny_models, monkeypatch):
    path, options = write_3dsrbench_fixture(tmp_path)
    outputs = {  # answers: A, B, A, B (the lamp) | C, B, A, D (front)
        "Q1AAAAAA": "the lamp", "Q1AAAAAA-1": "It is the lamp.", "Q1AAAAAA-flip": "A", "Q1AAAAAA-flip-1": "the chair",
        "Q2BBBBBB": "front", "Q2BBBBBB-1": "In front.", "Q2BBBBBB-2": "front", "Q2BBBBBB-3": "left or right",
    }
    monkeypatch.setattr(tool_use, "generate_batch", scripted(outputs))
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("3dsrbench", options), path, tmp_path / "out", progress=False).metrics
    assert metrics["circular"]["num_questions"] == 3 and metrics["overall"] == pytest.approx(1 / 3)  # Q1 ✓, Q1-flip ✗, Q2 ✗
    assert metrics["plain_accuracy"] == pytest.approx(6 / 8) and metrics["option_text_matches"] == 6
    assert metrics["unparsable"]["orientation_on_the_left"] == 1


def test_definitions_name_vlmevalkit_can_infer_and_the_option():
    rule = ThreeDSRBench().definitions()["option_rule"]
    assert "can_infer" in rule and "matching_util.py" in rule and "matching=strict" in rule and "'I am not sure' matches 'no'" in rule
