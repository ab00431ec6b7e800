"""What'sUp: seeded per-sample shuffling, the letter mapped back to the original caption, the repository's file
layouts, pinned per-subset and per-preposition accuracy, scripted and real runs."""

from __future__ import annotations

import json

import pytest
from fixtures_mc import scripted, write_whatsup_fixture

from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks.whatsup import preposition, shuffled_order
from spatialtune.eval.runner import run_eval
from spatialtune.records import RecordError
from spatialtune.tasks.multiple_choice import letters


def test_the_shuffle_is_a_permutation_fixed_by_seed_and_sample_id():
    assert shuffled_order(4, 0, "controlled_images/1") == shuffled_order(4, 0, "controlled_images/1") == [2, 1, 0, 3]
    assert sorted(shuffled_order(4, 5, "x")) == [0, 1, 2, 3]
    assert shuffled_order(4, 1, "controlled_images/1") != shuffled_order(4, 0, "controlled_images/1")


@pytest.mark.parametrize("caption, word", [("A mug on top of a table", "top"), ("A dog in front of a car", "front"), ("A mug under a table", "under"),
                                           ("A cup to the left of a cat", "left"), ("A mug on a table", "on"), ("A mug near a table", None)])
def test_the_preposition_is_read_from_the_correct_caption(caption, word):
    assert preposition(caption) == word


def _shown_options(row) -> list[str]:
    text = row["messages"][0]["content"][1]["text"]
    return [line.split(") ", 1)[1] for line in text.splitlines() if line.startswith("(")]


def test_the_answer_letter_shows_the_first_caption_and_answers_are_not_all_a(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, options = write_whatsup_fixture(tmp_path)
    rows = get_benchmark("whatsup", options).load(path, loaded.processor, loaded.family.convention)
    assert [r["id"] for r in rows] == [f"controlled_images/{i}" for i in range(1, 5)] + ["coco_qa_two_obj/1", "coco_qa_two_obj/2"]
    assert [r["answer"] for r in rows] == ["C", "B", "B", "D", "B", "B"]
    for row in rows:
        meta = row["meta"]
        assert _shown_options(row)[letters(4).index(row["answer"])] == meta["correct_caption"]
    assert rows[4]["images"][0].endswith("val2017/000000000139.jpg") and rows[0]["images"][0].endswith("data/controlled_images/mug_left_of_table.jpeg")
    other = get_benchmark("whatsup", {"seed": 1}).load(path, loaded.processor, loaded.family.convention)
    assert [r["answer"] for r in other] == ["A", "D", "B", "B", "A", "A"]


def test_the_letter_maps_back_to_the_original_option(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, options = write_whatsup_fixture(tmp_path)
    bench = get_benchmark("whatsup", options)
    row = bench.load(path, loaded.processor, loaded.family.convention)[0]  # order [2, 1, 0, 3]
    right, wrong, none = (bench.score(row, output, None) for output in ("(C)", "A.", "a table, I think"))
    assert (right.score, right.parsed, right.scores) == (1.0, "C", {"chosen_option": 0})
    assert (wrong.score, wrong.parsed, wrong.scores) == (0.0, "A", {"chosen_option": 2})
    assert (none.score, none.parsed, none.scores) == (0.0, None, {})


def test_a_single_annotation_file_and_bad_entries(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, _ = write_whatsup_fixture(tmp_path)
    rows = get_benchmark("whatsup").load(path / "coco_qa_two_obj.json", loaded.processor, loaded.family.convention)
    assert [r["task"] for r in rows] == ["coco_qa_two_obj"] * 2
    (path / "coco_qa_two_obj.json").write_text(json.dumps([[139, "A cup to the left of a cat", "A cup to the right of a cat"], [285, "only one"]]))
    with pytest.raises(RecordError, match=r"coco_qa_two_obj.json:2: field '<entry>'"):
        get_benchmark("whatsup").load(path / "coco_qa_two_obj.json", loaded.processor, loaded.family.convention)
    (path / "controlled_images_dataset.json").write_text(json.dumps([{"image_path": "data/controlled_images/mug_on_table.jpeg", "caption_options": ["A mug on a table"]}]))
    with pytest.raises(RecordError, match=r"controlled_images_dataset.json:1: field 'caption_options'"):
        get_benchmark("whatsup").load(path / "controlled_images_dataset.json", loaded.processor, loaded.family.convention)
    generic = tmp_path / "mine.jsonl"
    generic.write_text(json.dumps({"id": "x1", "image": "whatsup/val2017/000000000139.jpg", "caption_options": ["A cup left of a cat", "A cup right of a cat"]}) + "\n")
    rows = get_benchmark("whatsup").load(generic, loaded.processor, loaded.family.convention)
    assert (rows[0]["id"], rows[0]["task"], rows[0]["meta"]["preposition"]) == ("x1", "mine", "left")
    with pytest.raises(FileNotFoundError, match="no What'sUp annotation file"):
        get_benchmark("whatsup").load(tmp_path, loaded.processor, loaded.family.convention)
    generic.write_text(generic.read_text() + '{"id": "x2", "image": \n')
    with pytest.raises(RecordError, match=r"mine.jsonl:2: field '<json>'"):  # the file's line, not the line within the entry
        get_benchmark("whatsup").load(generic, loaded.processor, loaded.family.convention)


def test_metrics_are_accuracy_overall_per_subset_and_per_preposition():
    rows = [(1.0, "controlled_images", "left"), (0.0, "controlled_images", "on"), (0.0, "controlled_images", "left"), (1.0, "coco_qa_one_obj", "above")]
    results = [{"task": t, "score": s, "parsed": "A", "meta": {"preposition": p}} for s, t, p in rows]
    metrics = get_benchmark("whatsup").aggregate(results)
    assert metrics["overall"] == 0.5 and metrics["scores"] == {"coco_qa_one_obj": 1.0, "controlled_images": pytest.approx(1 / 3)}
    assert metrics["mean_of_subsets"] == pytest.approx(2 / 3) and metrics["per_preposition"] == {"above": 1.0, "left": 0.5, "on": 0.0}
    assert metrics["options"] == {"seed": 0}


def test_a_scripted_run_maps_letters_back(tmp_path, tiny_models, monkeypatch):
    path, options = write_whatsup_fixture(tmp_path)
    outputs = {  # seed 0 answers: C, B, B, D, B, B
        "controlled_images/1": "(C)", "controlled_images/2": "A", "controlled_images/3": "", "controlled_images/4": "Answer: D",
        "coco_qa_two_obj/1": "B", "coco_qa_two_obj/2": "B.",
    }
    monkeypatch.setattr(tool_use, "generate_batch", scripted(outputs))
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("whatsup", options), path, tmp_path / "out", progress=False)
    metrics = result.metrics
    assert metrics["overall"] == pytest.approx(4 / 6) and metrics["scores"] == {"coco_qa_two_obj": 1.0, "controlled_images": 0.5}
    assert metrics["mean_of_subsets"] == 0.75 and metrics["unparsable"] == {"coco_qa_two_obj": 0, "controlled_images": 1}
    assert metrics["per_preposition"] == {"left": 1.0, "on": 0.0, "right": 0.0, "under": 1.0}
    assert result.rows[1]["scores"] == {"chosen_option": 3}


def test_a_real_tiny_model_runs_end_to_end(tmp_path, tiny_models):
    path, options = write_whatsup_fixture(tmp_path)
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("whatsup", options), path, tmp_path / "out", max_samples=3, max_new_tokens=8, progress=False)
    assert result.metrics["num_samples"] == 3 and all(row["parsed"] in (None, "A", "B", "C", "D") for row in result.rows)
