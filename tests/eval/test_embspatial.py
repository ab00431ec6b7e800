"""EmbSpatial-Bench: answer indices, base64 images of the original JSON, pinned per-relation and per-source
accuracy, scripted and real runs."""

from __future__ import annotations

import json

import pytest
from fixtures_mc import (
    EMBSPATIAL_ROWS,
    edit_jsonl_row,
    embspatial_record,
    png_base64,
    scripted,
    write_embspatial_fixture,
)

from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks.embspatial import answer_index
from spatialtune.eval.runner import run_eval
from spatialtune.records import RecordError


@pytest.mark.parametrize("value, index", [(2, 2), ("3", 3), (0, 0), (4, None), (-1, None), (True, None), ("B", None), (None, None)])
def test_the_answer_is_a_zero_based_option_index(value, index):
    assert answer_index(value, 4) == index


def test_a_file_loads_with_lettered_options_and_sources(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, options = write_embspatial_fixture(tmp_path)
    rows = get_benchmark("embspatial", options).load(path, loaded.processor, loaded.family.convention)
    assert [r["id"] for r in rows] == ["mp3d_0", "mp3d_1", "scannet_0", "ai2thor_0"]
    assert [r["answer"] for r in rows] == ["A", "C", "B", "D"]
    assert "(C) The chair is above the table." in rows[1]["messages"][0]["content"][1]["text"]
    assert rows[2]["meta"] == {"relation": "close", "data_source": "scannet"}


def test_the_original_json_with_base64_images_loads(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path = tmp_path / "embspatial_bench.json"
    path.write_text(json.dumps([embspatial_record(*EMBSPATIAL_ROWS[0], image=png_base64(3))]))
    rows = get_benchmark("embspatial").load(path, loaded.processor, loaded.family.convention)
    assert rows[0]["images"] == [str(tmp_path / "embspatial_bench.json.images" / "mp3d_0.png")] and rows[0]["image_sizes"] == [[64, 48]]


@pytest.mark.parametrize("change, field", [({"answer": 4}, "answer"), ({"answer_options": "A or B"}, "answer_options"), ({"relation": ...}, "relation"), ({"image": "missing.png"}, r"images\[0\]")])
def test_bad_rows_name_the_file_line_and_field(tmp_path, tiny_models, change, field):
    loaded = tiny_models("tiny-qwen3-vl")
    path, _ = write_embspatial_fixture(tmp_path)
    edit_jsonl_row(path, 3, change)
    with pytest.raises(RecordError, match=rf"embspatial_bench.jsonl:3: field '{field}'"):
        get_benchmark("embspatial").load(path, loaded.processor, loaded.family.convention)


def test_metrics_are_accuracy_per_relation_and_per_source():
    rows = [(1.0, "left", "mp3d"), (0.0, "left", "scannet"), (1.0, "far", "scannet"), (1.0, "far", "ai2thor"), (0.0, "above", "mp3d")]
    results = [{"task": "embspatial", "score": s, "parsed": "A", "meta": {"relation": r, "data_source": d}} for s, r, d in rows]
    metrics = get_benchmark("embspatial").aggregate(results)
    assert metrics["overall"] == pytest.approx(3 / 5)
    assert metrics["per_relation"] == {"above": 0.0, "far": 1.0, "left": 0.5}
    assert metrics["per_source"] == {"ai2thor": 1.0, "mp3d": 0.5, "scannet": 0.5}
    assert metrics["headline"] == {"accuracy": pytest.approx(0.6), "acc_ai2thor": 1.0, "acc_mp3d": 0.5, "acc_scannet": 0.5}


def test_a_scripted_run_scores_and_counts_unparsable(tmp_path, tiny_models, monkeypatch):
    path, options = write_embspatial_fixture(tmp_path)
    outputs = {"mp3d_0": "(A) The chair is left of the table.", "mp3d_1": "B", "scannet_0": "", "ai2thor_0": "Answer: D"}
    monkeypatch.setattr(tool_use, "generate_batch", scripted(outputs))
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("embspatial", options), path, tmp_path / "out", progress=False).metrics
    assert metrics["overall"] == 0.5 and metrics["unparsable"] == {"embspatial": 1}
    assert metrics["per_source"] == {"ai2thor": 1.0, "mp3d": 0.5, "scannet": 0.0}
    assert metrics["per_relation"] == {"above": 0.0, "close": 0.0, "far": 1.0, "left": 1.0}


def test_a_real_tiny_model_runs_end_to_end(tmp_path, tiny_models):
    path, options = write_embspatial_fixture(tmp_path)
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("embspatial", options), path, tmp_path / "out", max_samples=3, max_new_tokens=8, progress=False)
    assert result.metrics["num_samples"] == 3 and all(row["parsed"] in (None, "A", "B", "C", "D") for row in result.rows)
