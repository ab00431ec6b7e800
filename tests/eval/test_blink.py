"""BLINK: subtask selection and naming, one file or one per subtask (hub layout, embedded images), multi-image rows,
the mean-over-subtasks total, scripted and real runs."""

from __future__ import annotations

import io

import pytest
from fixtures_mc import blink_row, edit_jsonl_row, scene, scripted, write_blink_fixture

from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks.blink import SPATIAL_SUBTASKS, Blink, row_subtask, subtask_name
from spatialtune.eval.runner import run_eval
from spatialtune.records import RecordError


def test_subtask_names_accept_spaces_and_reject_unknown_ones():
    assert subtask_name("Multi-view Reasoning") == "Multi-view_Reasoning" and subtask_name("Spatial_Relation") == "Spatial_Relation"
    assert subtask_name("Spatial Relations") is None


def test_a_rows_subtask_comes_from_sub_task_config_or_idx():
    assert row_subtask({"sub_task": "Relative Depth", "idx": "val_Counting_3"}) == "Relative_Depth"
    assert row_subtask({"config": "Counting"}) == "Counting"
    assert row_subtask({"idx": "val_Multi-view_Reasoning_12"}) == "Multi-view_Reasoning"
    assert row_subtask({"idx": "17"}) is None


def test_the_subtasks_option_defaults_to_the_spatial_five_and_takes_a_string():
    assert get_benchmark("blink").options.subtasks == SPATIAL_SUBTASKS
    assert get_benchmark("blink", {"subtasks": "Counting, Relative Depth"}).options.subtasks == ("Counting", "Relative_Depth")
    with pytest.raises(ValueError, match="unknown BLINK subtask 'Depth'"):
        get_benchmark("blink", {"subtasks": ["Counting", "Depth"]})


def test_one_file_loads_the_chosen_subtasks_with_every_image(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, options = write_blink_fixture(tmp_path)
    rows = get_benchmark("blink", options).load(path, loaded.processor, loaded.family.convention)
    assert [r["task"] for r in rows] == ["Spatial_Relation", "Spatial_Relation", "Relative_Depth", "Multi-view_Reasoning", "Counting", "Object_Localization"]
    multi = rows[3]
    assert len(multi["images"]) == 2 and [p["type"] for p in multi["messages"][0]["content"]] == ["image", "image", "text"]
    assert [r["answer"] for r in rows] == ["A", "B", "B", "A", "B", "A"] and rows[4]["choices"] == ["A", "B", "C", "D"]
    assert "(A) 0\n(B) 1\n(C) 2\n(D) 3" in rows[4]["messages"][0]["content"][1]["text"]
    only = get_benchmark("blink", {"subtasks": "Art_Style"}).load(path, loaded.processor, loaded.family.convention)
    assert [r["id"] for r in only] == ["val_Art_Style_1"] and len(only[0]["images"]) == 3


def _png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    scene(seed).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_folder_in_the_hub_layout_loads_embedded_images(tmp_path, tiny_models):
    from datasets import Dataset

    row = blink_row("val_Counting_1", "Counting", "How many boxes?", ["1", "2"], "(A)", [])
    row.update(image_1={"bytes": _png_bytes(1), "path": None}, image_2={"bytes": _png_bytes(2), "path": None}, image_3=None, image_4=None)
    (tmp_path / "Counting").mkdir()
    Dataset.from_list([row]).to_parquet(str(tmp_path / "Counting" / "val-00000-of-00001.parquet"))
    loaded = tiny_models("tiny-qwen3-vl")
    rows = get_benchmark("blink", {"subtasks": "Counting"}).load(tmp_path, loaded.processor, loaded.family.convention)
    assert len(rows[0]["images"]) == 2 and rows[0]["image_sizes"] == [[64, 48], [64, 48]]
    with pytest.raises(FileNotFoundError, match="no file for BLINK subtask 'Relative_Depth'"):
        get_benchmark("blink", {"subtasks": "Counting,Relative_Depth"}).load(tmp_path, loaded.processor, loaded.family.convention)


@pytest.mark.parametrize(
    "change, field",
    [({"answer": "(E)"}, "answer"), ({"image_1": None}, "image_1"), ({"sub_task": None, "idx": "q7"}, "sub_task"), ({"choices": ...}, "choices"),
     ({"choices": "['left', 'right']"}, "choices")],  # a list written as text is not split into characters
)
def test_bad_rows_name_the_file_line_and_field(tmp_path, tiny_models, change, field):
    loaded = tiny_models("tiny-qwen3-vl")
    path, _ = write_blink_fixture(tmp_path)
    edit_jsonl_row(path, 2, change)
    with pytest.raises(RecordError, match=rf"val.jsonl:2: field '{field}'"):
        get_benchmark("blink").load(path, loaded.processor, loaded.family.convention)


def test_the_total_is_the_mean_of_subtasks_not_of_rows():
    results = [{"task": t, "score": s, "parsed": "A", "meta": {}} for t, s in [("Counting", 1.0), ("Counting", 1.0), ("Counting", 1.0), ("Relative_Depth", 0.0)]]
    metrics = get_benchmark("blink").aggregate(results)
    assert metrics["overall"] == 0.5 and metrics["plain_accuracy"] == 0.75
    assert metrics["breakdown"] == {"per subtask": {"Counting": 1.0, "Relative_Depth": 0.0}}
    assert metrics["headline"]["BLINK (mean of subtasks)"] == 0.5 and "evaluate.py" in metrics["definitions"]["overall"]


def test_a_scripted_run_scores_every_subtask(tmp_path, tiny_models, monkeypatch):
    path, options = write_blink_fixture(tmp_path)
    outputs = {
        "val_Spatial_Relation_1": "(A) yes", "val_Spatial_Relation_2": "The answer is A.", "val_Relative_Depth_1": "B",
        "val_Multi-view_Reasoning_1": "", "val_Counting_1": "Answer: B", "val_Object_Localization_1": "(C)",  # C is no option
    }
    monkeypatch.setattr(tool_use, "generate_batch", scripted(outputs))
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("blink", options), path, tmp_path / "out", progress=False).metrics
    assert metrics["scores"] == {"Counting": 1.0, "Multi-view_Reasoning": 0.0, "Object_Localization": 0.0, "Relative_Depth": 1.0, "Spatial_Relation": 0.5}
    assert metrics["overall"] == pytest.approx(2.5 / 5) and metrics["plain_accuracy"] == pytest.approx(3 / 6)
    # the official rule reads a bare "(C)" as C even with two options (a wrong answer, not an unparsable one)
    assert metrics["unparsable"]["Multi-view_Reasoning"] == 1 and metrics["unparsable"]["Object_Localization"] == 0
    assert metrics["gpt_matcher_replies"] == {"Counting": 1, "Multi-view_Reasoning": 1, "Object_Localization": 0, "Relative_Depth": 0, "Spatial_Relation": 1}


def test_a_real_tiny_model_runs_end_to_end_with_a_two_image_row(tmp_path, tiny_models):
    path, options = write_blink_fixture(tmp_path)
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("blink", options), path, tmp_path / "out", max_samples=4, max_new_tokens=8, progress=False)
    assert result.metrics["num_samples"] == 4 and len(result.rows[3]["images"]) == 2
    assert all(row["parsed"] in (None, "A", "B") for row in result.rows)


def _score(reply: str, parser: str = "official", answer: str = "B"):
    row = {"answer": answer, "choices": ["A", "B", "C", "D"]}
    return get_benchmark("blink", {"parser": parser}).score(row, reply, None)


SELF_CORRECTION = "Point (A) looks plausible at first, it sits near the lamp.\n\nLooking again, the answer is (B)"


def test_a_self_correcting_reply_is_read_from_its_last_paragraph():
    result = _score(SELF_CORRECTION)
    assert result.parsed == "B" and result.score == 1.0 and result.scores == {"gpt_matcher_reply": False}


def test_the_first_letter_parser_keeps_the_earliest_letter():
    assert _score(SELF_CORRECTION, parser="first_letter").parsed == "A"


def test_a_reply_naming_one_option_is_that_option_wherever_it_stands():
    assert _score("I pick (B) because it is nearer.\n\nThat is my answer.").parsed == "B"


def test_a_last_paragraph_naming_two_options_goes_to_the_matcher_stand_in():
    result = _score("(C) is far.\n\nEither (A) or (B) fits.")
    assert result.scores == {"gpt_matcher_reply": True} and result.parsed == "A"  # the shared parser's earliest letter


def test_free_text_and_refusals_without_a_letter_are_unparsable():
    for reply in ("The point on the left is closer to the camera.", "I'm sorry, but I can't assist with that request."):
        result = _score(reply)
        assert result.parsed is None and result.score == 0.0 and result.scores == {"gpt_matcher_reply": True}


def test_an_unknown_parser_is_refused():
    with pytest.raises(ValueError, match="parser='last'"):
        get_benchmark("blink", {"parser": "last"})


def test_definitions_name_the_official_rule_and_the_option():
    rule = Blink().definitions()["option_rule"]
    assert "analyze_answer" in rule and "2d6a779" in rule and "parser=first_letter" in rule
