"""CV-Bench: letter parsing, the dataset card's 2D / 3D / overall score, loading local files, a real run."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from spatialtune.answers.parse import parse_letter
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks.cvbench import official_scores
from spatialtune.eval.runner import run_eval
from spatialtune.records import RecordError


@pytest.mark.parametrize(
    "output, letter",
    [
        ("(B)", "B"), ("B", "B"), ("B.", "B"), ("B)", "B"), ("The answer is (B)", "B"), ("Answer: B", "B"),
        ("answer is c", None), (" A \n", "A"), ("(D)", None),  # D is not among 3 choices
        ("A cat sits left, so (C).", "C"), ("(A) or (B)", "A"), ("I don't know", None),
    ],
)
def test_letters_are_parsed_like_the_official_forms_and_the_first_match_wins(output, letter):
    assert parse_letter(output, 3) == letter


def test_first_character_parsing_is_not_what_we_do():
    assert parse_letter("The answer is (B)", 4) == "B"  # lmms-eval reads "T"


def _result(source, score):
    return {"meta": {"source": source}, "score": score}


def test_official_score_averages_sources_not_rows():
    results = [_result("ADE20K", 1.0)] * 3 + [_result("COCO", 0.0)] + [_result("Omni3D", 1.0), _result("Omni3D", 0.0)]
    scores = official_scores(results)
    assert scores["acc_ADE20K"] == 1.0 and scores["acc_COCO"] == 0.0
    assert scores["2D"] == 0.5 and scores["3D"] == 0.5 and scores["CV-Bench"] == 0.5  # plain accuracy would be 4/6


def _write(tmp_path, rows, name="cvbench.jsonl"):
    Image.new("RGB", (64, 48), "white").save(tmp_path / "img.png")
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(idx, task="Relation", source="COCO", answer="(A)"):
    return {"idx": idx, "type": "2D", "task": task, "source": source, "question": "Which is closer?", "choices": ["the cup", "the cat"],
            "answer": answer, "filename": "img.png"}


def test_a_local_file_loads_with_prompts_letters_and_sources(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path = _write(tmp_path, [_row(0), _row(1, "Count", "ADE20K", "(B)")])
    rows = get_benchmark("cvbench").load(path, loaded.processor, loaded.family.convention)
    assert [r["answer"] for r in rows] == ["A", "B"]
    text = rows[0]["messages"][0]["content"][1]["text"]
    assert "(A) the cup\n(B) the cat" in text and "letter" in text
    assert rows[1]["meta"]["source"] == "ADE20K"
    qualitative = get_benchmark("cvbench-qualitative").load(path, loaded.processor, loaded.family.convention)
    assert [r["task"] for r in qualitative] == ["Relation"]


def test_a_bad_answer_names_the_file_line_and_field(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path = _write(tmp_path, [_row(0), _row(1, answer="(E)")])
    with pytest.raises(RecordError, match=r"cvbench.jsonl:2: field 'answer'"):
        get_benchmark("cvbench").load(path, loaded.processor, loaded.family.convention)


def test_a_parquet_export_with_image_bytes_loads(tmp_path, tiny_models):
    from datasets import Dataset

    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), "red").save(buffer, format="PNG")
    row = {**_row(7), "image": {"bytes": buffer.getvalue(), "path": None}}
    del row["filename"]
    Dataset.from_list([row]).to_parquet(str(tmp_path / "test.parquet"))
    loaded = tiny_models("tiny-qwen3-vl")
    rows = get_benchmark("cvbench").load(tmp_path / "test.parquet", loaded.processor, loaded.family.convention)
    assert rows[0]["image_sizes"] == [[40, 40]] and (tmp_path / "test.parquet.images" / "7.png").is_file()


def test_a_run_reports_the_official_overall(tmp_path, tiny_models):
    path = _write(tmp_path, [_row(0), _row(1, "Count", "ADE20K"), _row(2, "Depth", "Omni3D")])
    result = run_eval(tiny_models("tiny-qwen3-vl"), "cvbench", path, tmp_path / "out", batch_size=3, max_new_tokens=4, progress=False)
    metrics = result.metrics
    assert metrics["official"]["CV-Bench"] == metrics["overall"]
    assert set(metrics["scores"]) == {"Relation", "Count", "Depth"} and "dataset card" in metrics["definitions"]["overall"]
