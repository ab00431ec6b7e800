"""VSR: true/false parsing, the repository's meta-categories, split detection, loading, pinned metrics, real runs."""

from __future__ import annotations

import json

import pytest
from fixtures_mc import edit_jsonl_row, scripted, vsr_record, write_vsr_fixture

from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks.vsr import META_CATEGORY, meta_category, parse_true_false, split_variant
from spatialtune.eval.runner import run_eval
from spatialtune.records import RecordError


@pytest.mark.parametrize(
    "output, value",
    [
        ("True", True), ("false.", False), ("Yes, it is.", True), ("NO", False), ("The caption is true, not false", True),
        ("False: it is not true", False), ("It is untrue", None), ("nothing to say", None), ("", None), ("Not sure", None),
    ],
)
def test_true_false_is_the_earliest_whole_word(output, value):
    assert parse_true_false(output) is value


def test_meta_categories_follow_the_repository_file():
    assert meta_category("among") == "Unallocated"  # listed under Topological too; the later line wins
    assert meta_category("congruent") is None
    assert meta_category("left of") == "Projective" and meta_category("down from") == "Directional"
    assert meta_category("far away from") == "Proximity" and meta_category("enclosed by") == "Unallocated"
    assert len(META_CATEGORY) == 70  # 71 entries, `among` twice


def test_split_variant_is_read_from_the_fields():
    assert split_variant(vsr_record(0, "1", "The cup is left of the cat.", 1, "left of")) == "random"
    assert split_variant(vsr_record(0, "1", "The cup is left of the cat.", 1, "left of", zeroshot=True)) == "zeroshot"
    assert split_variant({"image": "x.jpg"}) == "unknown"


def _results(rows):
    return [{"task": "vsr", "score": s, "parsed": p, "meta": {"relation": r, "meta_category": meta_category(r), "split": v}} for s, p, r, v in rows]


def test_metrics_are_accuracy_per_relation_and_per_meta_category():
    results = _results([
        (1.0, "true", "left of", "random"), (0.0, "false", "left of", "random"), (1.0, "true", "under", "random"),
        (0.0, None, "among", "random"), (1.0, "false", "congruent", "zeroshot"),
    ])
    metrics = get_benchmark("vsr").aggregate(results)
    assert metrics["overall"] == pytest.approx(3 / 5)
    assert metrics["per_relation"] == {"among": 0.0, "congruent": 1.0, "left of": 0.5, "under": 1.0}
    assert metrics["per_meta_category"] == {"Projective": pytest.approx(2 / 3), "Unallocated": 0.0}  # congruent left out
    assert metrics["uncategorised"] == 1 and metrics["split_variant"] == "mixed"
    assert metrics["unparsable"] == {"vsr": 1} and "rel_meta_category_dict" in metrics["definitions"]["per_meta_category"]


def test_a_split_loads_with_prompts_labels_and_coco_folders(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, options = write_vsr_fixture(tmp_path)
    rows = get_benchmark("vsr", options).load(path, loaded.processor, loaded.family.convention)
    assert len(rows) == 6 and rows[0]["id"] == "1-000000000139"
    assert rows[0]["images"][0].endswith("train2017/000000000139.png")  # found through image_link's folder
    assert '"The cup is left of the cat."' in rows[0]["messages"][0]["content"][1]["text"]
    assert [r["answer"] for r in rows] == ["true", "false", "true", "false", "true", "false"]
    assert rows[3]["meta"] == {"relation": "congruent", "meta_category": None, "split": "random"}


def test_the_zeroshot_split_is_recorded(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, _ = write_vsr_fixture(tmp_path)
    path.write_text(json.dumps(vsr_record(0, "000000000139", "The cup is left of the cat.", 1, "left of", zeroshot=True)) + "\n")
    rows = get_benchmark("vsr").load(path, loaded.processor, loaded.family.convention)
    assert rows[0]["meta"]["split"] == "zeroshot"


@pytest.mark.parametrize("field, value, message", [("label", 2, "expected 1 .true. or 0"), ("caption", ..., "missing"), ("image", "nope.jpg", "image not found")])
def test_bad_rows_name_the_file_line_and_field(tmp_path, tiny_models, field, value, message):
    loaded = tiny_models("tiny-qwen3-vl")
    path, _ = write_vsr_fixture(tmp_path)
    edit_jsonl_row(path, 2, {field: value})
    where = r"images\[0\]" if field == "image" else field
    with pytest.raises(RecordError, match=rf"test.jsonl:2: field '{where}.*{message}"):
        get_benchmark("vsr").load(path, loaded.processor, loaded.family.convention)


def test_a_scripted_run_scores_parses_and_counts_unparsable(tmp_path, tiny_models, monkeypatch):
    path, options = write_vsr_fixture(tmp_path)
    outputs = ["True", "yes", "", "False, it is not.", "I don't know", "no"]  # right, wrong, unparsable, right, unparsable, right
    ids = [f"{i + 1}-{json.loads(line)['image'].removesuffix('.png')}" for i, line in enumerate(path.read_text().splitlines())]
    monkeypatch.setattr(tool_use, "generate_batch", scripted(dict(zip(ids, outputs))))
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("vsr", options), path, tmp_path / "out", progress=False).metrics
    assert metrics["overall"] == 0.5 and metrics["unparsable"] == {"vsr": 2}
    assert metrics["per_meta_category"] == {"Orientation": 1.0, "Projective": 1.0, "Proximity": 0.0, "Topological": 0.0, "Unallocated": 0.0}
    assert metrics["per_relation"]["congruent"] == 1.0 and metrics["uncategorised"] == 1
    assert metrics["split_variant"] == "random" and metrics["headline"] == {"accuracy": 0.5}


def test_a_real_tiny_model_runs_end_to_end(tmp_path, tiny_models):
    path, options = write_vsr_fixture(tmp_path)
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("vsr", options), path, tmp_path / "out", max_samples=4, max_new_tokens=8, progress=False)
    assert result.metrics["num_samples"] == 4 and len(result.results_path.read_text().splitlines()) == 4
    assert all(row["parsed"] in (None, "true", "false") for row in result.rows)
    assert result.metrics["overall"] == sum(row["score"] for row in result.rows) / 4
