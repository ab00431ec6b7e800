"""x3 cross-view benchmark: the source's parsing, mask lookup, concat rule and metric keys, pinned on hand-computed runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures_points import T1_PROMPT, answer_text, write_crossview_fixture, write_x3_views, x3_samples

from spatialtune.answers.match import concat_to_query, hit_at_mask, mask_pixel
from spatialtune.answers.points import X3Answer, parse_ground_truth, parse_prediction
from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks.crossview import mask_candidates, task_kind
from spatialtune.eval.runner import run_eval
from spatialtune.records import RecordError

SOURCE_KEYS = ("total", "gt_not_visible", "visible_gt", "not_visible_accuracy", "mean_l2_error", "std_l2_error", "median_l2_error",
               "success_002", "success_005", "success_010", "hit_at_mask", "hit_at_mask_count", "hit_at_mask_total")
# Scripted replies for the fixture's six samples (GT: A01_B02 (0.695, 0.51); concat (0.847, 0.51); K02 (0.695, 0.51); A02_B01 (0.258, 0.427)).
REPLIES = {
    "T1_MULTI_A01_B02": "[(0.695, 0.51)]",  # exact: L2 0, hit
    "T1_MULTI_A01_B03": "NOT_VISIBLE.",  # GT hidden: correct
    "T1_CONCAT_A01_B02": "It is at (0.3, 0.51)",  # bare tuple on the LEFT half: L2 0.547, Hit@Mask miss
    "T2B_MULTI_K02": "Something changed.",  # unparsable on visible GT
    "T2A_MULTI_A01_B03": "[(0.5, 0.5)]",  # GT hidden: wrong
    "T1_MULTI_A02_B01": "not_visible",  # NOT_VISIBLE on visible GT
}


def scripted(replies: dict[str, str]):
    def generate(model, processor, rows, max_new_tokens):
        return [replies[row["id"]] for row in rows]

    return generate


@pytest.fixture(scope="module")
def fixture_path(tmp_path_factory) -> Path:
    return write_crossview_fixture(tmp_path_factory.mktemp("x3"))[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("NOT_VISIBLE", X3Answer(True)),
        ("The object is not_visible here [(0.1, 0.2)]", X3Answer(True)),  # contains, any case, wins over a point
        ("[(0.25, 0.75)]", X3Answer(False, (0.25, 0.75))),
        ("first (0.1, 0.1) then [(0.3, 0.4)]", X3Answer(False, (0.3, 0.4))),  # the bracketed form wins, as in the source
        ("(0.3, 0.4)", X3Answer(False, (0.3, 0.4), bare=True)),
        ("[(1.2.3, 0.4)]", None),  # the source gives up on a malformed number
        ("I am not sure", None),
        ("[0.3, 0.4]", None),
    ],
)
def test_replies_are_parsed_like_the_source_with_bare_tuples_as_fallback(text, expected):
    assert parse_prediction(text) == expected


def test_strict_brackets_reads_only_the_sources_form():
    assert parse_prediction("(0.3, 0.4)", strict_brackets=True) is None
    assert parse_prediction("[(0.3, 0.4)]", strict_brackets=True) == X3Answer(False, (0.3, 0.4))


def test_ground_truth_is_exactly_not_visible_or_a_point():
    assert parse_ground_truth("NOT_VISIBLE") == X3Answer(True)
    assert parse_ground_truth("[(0.5, 0.25)]") == X3Answer(False, (0.5, 0.25))
    assert parse_ground_truth([0.5, 0.25]) == X3Answer(False, (0.5, 0.25))
    assert parse_ground_truth("probably NOT_VISIBLE") is None and parse_ground_truth(None) is None


def test_mask_paths_are_inferred_in_the_sources_order():
    folder = Path("/d/uid_1")
    assert mask_candidates(folder / "02_000200_original.png") == [folder / "02_000200_mask_dialated.png", folder / "02_000200_mask.png"]
    assert mask_candidates(folder / "02_000200_inpainted.png") == [folder / "02_000200_mask_dialated.png", folder / "02_000200_mask.png"]
    assert mask_candidates(folder / "view.png") == [folder / "view_mask_dialated.png", folder / "view_mask.png"]
    assert mask_candidates(folder / "view.jpg") == []  # not the image itself: a mask > 0 everywhere would hit always


def test_a_jpeg_query_is_never_its_own_mask(tmp_path, tiny_models):
    samples = x3_samples(tmp_path, write_x3_views(tmp_path))
    sample = next(s for s in samples if s["task"] == "t1_multi" and "NOT_VISIBLE" not in s["conversations"][1]["value"])
    jpeg = Path(sample["query_original"]).with_suffix(".jpg")
    shutil.copy(sample["query_original"], jpeg)
    path = tmp_path / "jpeg.json"
    path.write_text(json.dumps([{**sample, "image": [sample["image"][0], str(jpeg)], "query_original": str(jpeg)}]))
    loaded = tiny_models("tiny-qwen3-vl")
    with pytest.raises(RecordError, match=r"jpeg.json:1: field 'query_original': no mask .*not a .png"):
        get_benchmark("crossview").load(path, loaded.processor, loaded.family.convention)
    row = get_benchmark("crossview", {"require_masks": False}).load(path, loaded.processor, loaded.family.convention)[0]
    assert row["meta"]["query_mask"] is None


def test_concat_points_on_the_left_half_miss_and_the_right_half_is_rescaled_and_clamped():
    assert concat_to_query((0.49, 0.5)) is None
    assert concat_to_query((0.75, 0.25)) == (0.5, 0.25)
    assert concat_to_query((1.2, -0.1)) == (1.0, 0.0)


def test_mask_pixels_are_the_pixel_the_point_falls_in_clamped():
    assert mask_pixel((0.99, 0.1), height=48, width=64) == (63, 4)  # floor(0.99·64) = 63, floor(0.1·48) = 4
    assert mask_pixel(((10 + 0.5) / 64, (7 + 0.5) / 48), height=48, width=64) == (10, 7)  # inverse of the builder's (x + 0.5)/w
    assert mask_pixel((1.5, -0.2), height=48, width=64) == (63, 0)  # outside [0,1]: moved to the border, not missed
    mask = np.zeros((48, 64), bool)
    mask[:, 63] = True
    assert hit_at_mask((1.5, 0.5), mask, concat=False) and not hit_at_mask((0.4, 0.5), mask, concat=True)


def test_thin_mask_answers_hit_their_own_mask_at_real_image_sizes():
    """Every pixel of a 1296-px-wide frame, written as the builder writes it, maps back to itself."""
    from spatialtune.tasks.crossview import POINT_DECIMALS

    width, height = 1296, 968
    for x, y in [(0, 0), (1295, 967), (647, 483), (1000, 3), (1293, 500)]:
        written = (round((x + 0.5) / width, POINT_DECIMALS), round((y + 0.5) / height, POINT_DECIMALS))
        assert mask_pixel(written, height, width) == (x, y)
        concat = round(0.5 + written[0] * 0.5, POINT_DECIMALS)  # the side-by-side answer doubles the error
        assert mask_pixel(((concat - 0.5) * 2, written[1]), height, width) == (x, y)


def test_task_kind_comes_from_the_sample_then_its_structure_then_the_file_name():
    assert task_kind("t2b_multi", "x.json", 2, None) == "t2b"
    assert task_kind(None, "x.json", 1, None) == "t1_concat"
    assert task_kind("t1_multi", "x.json", 1, None) == "t1_concat"  # one image is the source's concat test
    assert task_kind(None, "x.json", 2, Path("01_000100_inpainted.png")) == "t2b"
    assert task_kind(None, "t2a_val_multi.json", 2, Path("01_000100_original.png")) == "t2a"
    assert task_kind("crossview", "t1_val_multi.jsonl", 2, None) == "t1_multi"


def test_loading_puts_images_before_the_prompt_and_finds_the_dilated_query_mask(fixture_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    rows = get_benchmark("crossview").load(fixture_path, loaded.processor, loaded.family.convention)
    assert [r["task"] for r in rows] == ["t1_multi", "t1_multi", "t1_concat", "t2b", "t2a", "t1_multi"]
    content = rows[0]["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image", "image", "text"] and content[2]["text"] == T1_PROMPT
    meta = rows[0]["meta"]
    assert meta["query_mask"].endswith("02_000200_mask_dialated.png") and meta["answer_image"] == 1
    assert rows[2]["meta"]["concat"] and len(rows[2]["images"]) == 1
    assert rows[0]["answer"] == [0.695, 0.51]  # the task's own [0,1] format, not the model's 0–1000 grid


def test_the_plain_mask_is_used_when_the_dilated_one_is_missing(tmp_path, tiny_models):
    path = write_crossview_fixture(tmp_path)[0]
    next(tmp_path.rglob("02_000200_mask_dialated.png")).unlink()
    loaded = tiny_models("tiny-qwen3-vl")
    rows = get_benchmark("crossview").load(path, loaded.processor, loaded.family.convention, max_samples=1)
    assert rows[0]["meta"]["query_mask"].endswith("02_000200_mask.png")


def test_a_scripted_run_reproduces_the_sources_metrics(fixture_path, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", scripted(REPLIES))
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), "crossview", fixture_path, tmp_path / "out", progress=False).metrics
    l2 = np.hypot(0.847 - 0.3, 0.0)
    expected = {"total": 6, "gt_not_visible": 2, "visible_gt": 4, "not_visible_accuracy": 0.5, "mean_l2_error": l2 / 2,
                "std_l2_error": l2 / 2, "median_l2_error": l2 / 2, "success_002": 0.25, "success_005": 0.25, "success_010": 0.25,
                "hit_at_mask": 0.5, "hit_at_mask_count": 1, "hit_at_mask_total": 2}
    assert {k: metrics[k] for k in SOURCE_KEYS} == pytest.approx(expected)
    assert metrics["hit_at_mask_all_visible"] == 0.25 and metrics["visible_gt_unparsable"] == 1
    assert metrics["visible_gt_pred_not_visible"] == 1 and metrics["bare_tuple_points"] == 1 and metrics["pred_not_visible"] == 2
    assert metrics["scores"] == pytest.approx({"t1_concat": 0.0, "t1_multi": 2 / 3, "t2a": 0.0, "t2b": 0.0})
    assert metrics["overall"] == pytest.approx(1 / 6) and metrics["unparsable"]["t2b"] == 1
    t1 = metrics["per_task"]["t1_multi"]
    assert (t1["total"], t1["not_visible_accuracy"], t1["mean_l2_error"], t1["hit_at_mask"], t1["hit_at_mask_all_visible"]) == (3, 1.0, 0.0, 1.0, 0.5)
    assert metrics["per_task"]["t2a"]["hit_at_mask"] is None  # undefined over no sample (the source writes 0.0)
    assert set(metrics["headline"]) == {"hit_at_mask", "not_visible_accuracy", "mean_l2_error", "success_002", "success_005", "success_010"}
    assert metrics["breakdown"]["Hit@Mask per task"] == {"t1_concat": 0.0, "t1_multi": 1.0}


def test_strict_brackets_leaves_the_bare_reply_unparsed(fixture_path, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", scripted(REPLIES))
    bench = get_benchmark("crossview", {"strict_brackets": True})
    metrics = run_eval(tiny_models("tiny-qwen3-vl"), bench, fixture_path, tmp_path / "out", progress=False).metrics
    assert (metrics["hit_at_mask_total"], metrics["mean_l2_error"], metrics["bare_tuple_points"]) == (1, 0.0, 0)


def test_concat_replies_on_the_right_half_are_judged_on_the_query_mask(fixture_path, tiny_models, tmp_path, monkeypatch):
    replies = {**REPLIES, "T1_CONCAT_A01_B02": "[(0.85, 0.5)]", "T1_MULTI_A01_B02": "[(0.99, 0.05)]"}  # xR = 0.7 → pixel (44, 24): inside
    monkeypatch.setattr(tool_use, "generate_batch", scripted(replies))
    result = run_eval(tiny_models("tiny-qwen3-vl"), "crossview", fixture_path, tmp_path / "out", progress=False)
    by_id = {r["id"]: r for r in result.rows}
    assert by_id["T1_CONCAT_A01_B02"]["scores"]["hit_mask"] is True and by_id["T1_CONCAT_A01_B02"]["mask"] is None
    assert by_id["T1_MULTI_A01_B02"]["scores"]["hit_mask"] is False
    assert by_id["T1_CONCAT_A01_B02"]["draw"] == {"image": 0, "pred": {"boxes": [], "points": [[0.85 * 128, 0.5 * 48]]},
                                                   "gt": {"boxes": [], "points": [[0.847 * 128, 0.51 * 48]]}}
    assert by_id["T1_MULTI_A01_B02"]["draw"]["image"] == 1 and by_id["T1_MULTI_A01_B02"]["mask"].endswith("_mask_dialated.png")


def test_jsonl_records_with_query_original_in_meta_load_and_score(tmp_path, tiny_models):
    views = write_x3_views(tmp_path)
    rel = lambda p: str(p.relative_to(tmp_path))
    chat = lambda answer: [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": T1_PROMPT}]},
                           {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    records = [
        {"id": "a", "task": "crossview", "images": [rel(views[1].marked), rel(views[2].original)], "messages": chat(answer_text(views[2].gt_point)),
         "meta": {"query_original": rel(views[2].original)}},
        {"id": "b", "task": "crossview", "images": [rel(views[1].marked), rel(views[3].original)], "messages": chat("NOT_VISIBLE"),
         "answer": "NOT_VISIBLE", "meta": {"query_original": rel(views[3].original), "task_kind": "t2a"}},
    ]
    shutil.copy(views[2].original, tmp_path / "query view.png")  # no suffix rule finds its mask: the record's own is used
    records.append({**records[0], "id": "c", "images": [records[0]["images"][0], "query view.png"], "meta": {},
                    "masks": [{"path": rel(views[2].mask), "image": 1}]})
    path = tmp_path / "t1_val_multi.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    loaded = tiny_models("tiny-qwen3-vl")
    bench = get_benchmark("crossview")
    rows = bench.load(path, loaded.processor, loaded.family.convention)
    assert [r["task"] for r in rows] == ["t1_multi", "t2a", "t1_multi"] and rows[0]["answer"] == list(views[2].gt_point)
    assert rows[2]["meta"]["query_mask"] == str(views[2].mask)
    assert [bench.score(rows[i], answer_text(views[2].gt_point), None).score for i in (0, 2)] == [1.0, 1.0]


def test_the_file_name_marks_t2a_when_samples_carry_no_task(tmp_path, tiny_models):
    samples = [{k: v for k, v in s.items() if k != "task"} for s in x3_samples(tmp_path, write_x3_views(tmp_path)) if s["task"] == "t2a_multi"]
    path = tmp_path / "t2a_val_multi.json"
    path.write_text(json.dumps(samples))
    loaded = tiny_models("tiny-qwen3-vl")
    assert [r["task"] for r in get_benchmark("crossview").load(path, loaded.processor, loaded.family.convention)] == ["t2a"]


def test_a_visible_target_without_a_mask_is_an_error_unless_allowed(tmp_path, tiny_models, monkeypatch):
    path = write_crossview_fixture(tmp_path)[0]
    for mask in tmp_path.rglob("02_000200_mask*.png"):
        mask.unlink()
    loaded = tiny_models("tiny-qwen3-vl")
    with pytest.raises(RecordError, match=r"x3_val_all.json:1: field 'query_original': no mask"):
        get_benchmark("crossview").load(path, loaded.processor, loaded.family.convention)
    monkeypatch.setattr(tool_use, "generate_batch", scripted(REPLIES))
    bench = get_benchmark("crossview", {"require_masks": False})
    metrics = run_eval(loaded, bench, path, tmp_path / "out", progress=False).metrics
    assert metrics["missing_masks"] == 3 and metrics["hit_at_mask_total"] == 0 and metrics["hit_at_mask"] is None


def test_bad_ground_truth_and_duplicate_ids_name_the_row(tmp_path, tiny_models):
    samples = x3_samples(tmp_path, write_x3_views(tmp_path))
    loaded = tiny_models("tiny-qwen3-vl")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([samples[0], {**samples[1], "conversations": [samples[1]["conversations"][0], {"from": "gpt", "value": "left"}]}]))
    with pytest.raises(RecordError, match=r"bad.json:2: field 'answer'"):
        get_benchmark("crossview").load(bad, loaded.processor, loaded.family.convention)
    bad.write_text(json.dumps([samples[0], samples[0]]))
    with pytest.raises(RecordError, match=r"bad.json:2: field 'id': duplicate"):
        get_benchmark("crossview").load(bad, loaded.processor, loaded.family.convention)


def test_real_generation_on_the_tiny_model_runs_end_to_end(fixture_path, tiny_models, tmp_path):
    result = run_eval(tiny_models("tiny-qwen3-vl"), "crossview", fixture_path, tmp_path / "out", max_samples=4, max_new_tokens=8,
                      batch_size=4, progress=False)
    assert result.metrics["total"] == 4 and len(result.rows) == 4
    assert all(set(r["scores"]) >= {"gt_visible", "l2_error", "hit_mask"} for r in result.rows)


@pytest.mark.parametrize("output", ["", "[(", "(((0.5, 0.5", "[(" + "9" * 400 + ", 0.5)]", "(" + "9" * 400 + ", 0.5)", "[(., .)]", "NOT_" * 500])
def test_malformed_replies_are_unparsable_never_a_crash(output, fixture_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    bench = get_benchmark("crossview")
    for row in bench.load(fixture_path, loaded.processor, loaded.family.convention)[:3]:
        result = bench.score(row, output, None)
        assert result.parsed is None and result.score == 0.0


def test_the_hit_rule_definition_states_the_pixel_rule_the_code_uses():
    rule = get_benchmark("crossview").definitions()["hit_rule"]
    assert "floor(v·size)" in rule and "round(" not in rule
    assert mask_pixel((0.19, 0.0), 10, 10) == (1, 0)  # floor(1.9); round(0.19·9) would give 2
