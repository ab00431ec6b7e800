"""HOI grounding: pair parsing, both AR variants' greedy matching, pooled vs per-sample recall, size buckets,
agreement with pycocotools on one box per image, loading the simplified JSON, and end-to-end runs."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from fixtures_hoi import change_sample, write_hoi_grounding_fixture

from spatialtune.answers.match import match_both_above, match_mean_iou
from spatialtune.data.render import GeometryRenderer
from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks.hoi_grounding import THRESHOLDS
from spatialtune.eval.runner import run_eval
from spatialtune.geometry import Convention, ResizePolicy
from spatialtune.records import RecordError

QWEN3 = GeometryRenderer(Convention.QWEN3_1000, ResizePolicy(factor=32, min_pixels=4096, max_pixels=65536))
QWEN25 = GeometryRenderer(Convention.QWEN25_ABS, ResizePolicy(factor=28, min_pixels=3136, max_pixels=50176))  # 1000² → 224²
PAIR, MEAN_IOU = get_benchmark("hoi-grounding"), get_benchmark("hoi-grounding", {"variant": "mean_iou"})
PERSON = [100, 100, 300, 500]


def _row(pairs, size=(1000, 1000), action="riding", rid="s0") -> dict:
    """A loaded row (the fields scoring reads) of a 1000×1000 image, where the Qwen3 grid equals pixels."""
    return {
        "id": rid,
        "task": "grounding",
        "answer": {"pairs": pairs},
        "image_sizes": [list(size)],
        "boxes": [{"bbox": b, "image": 0, "label": ""} for pair in pairs for b in pair],
        "meta": {"action": action, "object_category": "bicycle", "width": size[0], "height": size[1]},
    }


def _answer(pairs) -> str:
    return json.dumps([{"pair_id": k + 1, "person_bbox": p, "object_bbox": o} for k, (p, o) in enumerate(pairs)])


def _results(bench, samples) -> list[dict]:
    """Results as the runner writes them, for (ground-truth pairs, output) samples."""
    results = []
    for k, (pairs, output) in enumerate(samples):
        row = _row(pairs, rid=str(k))
        scored = bench.score(row, output, QWEN3)
        results.append({"id": row["id"], "task": row["task"], "score": scored.score, "parsed": scored.parsed, "scores": scored.scores,
                        "meta": row["meta"]})
    return results


def _shifted(box, iou):
    """`box` moved right so that its IoU with `box` is `iou`: (w − d) / (w + d) = iou."""
    d = (box[2] - box[0]) * (1 - iou) / (1 + iou)
    return [box[0] + d, box[1], box[2] + d, box[3]]


# ---------------------------------------------------------------- parsing


def test_pairs_are_read_from_a_fenced_array_or_a_single_object():
    pair = (PERSON, [200, 300, 400, 600])
    fenced = PAIR.score(_row([pair]), "Sure:\n```json\n" + _answer([pair]) + "\n```", QWEN3)
    single = PAIR.score(_row([pair]), json.dumps({"person_bbox": PERSON, "object_bbox": [200, 300, 400, 600]}), QWEN3)
    assert fenced.score == single.score == 1.0
    assert fenced.parsed == [{"person_bbox": PERSON, "object_bbox": [200, 300, 400, 600]}]


def test_malformed_items_are_skipped_and_counted():
    pair = (PERSON, [200, 300, 400, 600])
    output = json.dumps([{"pair_id": 1, "person_bbox": [1, 2, 3]}, "oops", {"person_bbox": PERSON, "object_bbox": [200, 300, 400, 600]}])
    scored = PAIR.score(_row([pair]), output, QWEN3)
    assert scored.score == 1.0 and scored.scores["malformed_items"] == 2 and scored.scores["num_pred"] == 1


@pytest.mark.parametrize("output", ["I see a person riding a bicycle.", "[10, 20, 30, 40]", '{"answer": "none"}', '[{"pair_id": 1}]', "",
                                    '[{"person_bbox": [' + "9" * 400 + ', 2, 3, 4], "object_bbox": [1, 2, 3, 4]}]'])
def test_outputs_without_a_pair_array_are_unparsable_and_score_zero(output):
    scored = PAIR.score(_row([(PERSON, [200, 300, 400, 600])]), output, QWEN3)
    assert scored.parsed is None and scored.score == 0.0 and scored.scores["tp"]["0.50"] == 0 and scored.scores["num_gt"] == 1


def test_an_empty_array_is_an_empty_prediction_not_an_unparsable_one():
    scored = PAIR.score(_row([(PERSON, [200, 300, 400, 600])]), "[]", QWEN3)
    assert scored.parsed == [] and scored.score == 0.0


@pytest.mark.parametrize("renderer, scale", [(QWEN3, 1.0), (QWEN25, 224 / 1000)])
def test_boxes_are_read_back_from_the_model_convention(renderer, scale):
    pair = (PERSON, [200, 300, 400, 600])
    in_model = [[round(v * scale) for v in box] for box in pair]  # Qwen3: the 0–1000 grid; Qwen2.5: pixels of the 224² input
    scored = PAIR.score(_row([pair]), _answer([in_model]), renderer)
    assert scored.score == pytest.approx(1.0, abs=0.11)  # rounding to the 224² grid costs at most one threshold
    assert scored.scores["tp"]["0.50"] == 1


# ---------------------------------------------------------------- matching


def test_degenerate_predicted_boxes_match_nothing_in_either_variant():
    obj = [200, 300, 400, 600]
    output = _answer([([300, 100, 100, 500], obj)])  # person box with x2 < x1; object exact: mean IoU would be 0.5
    for bench in (PAIR, MEAN_IOU):
        scored = bench.score(_row([(PERSON, obj)]), output, QWEN3)
        assert scored.scores["tp"]["0.50"] == 0 and scored.scores["degenerate_pairs"] == 1
        assert scored.draw["pred"]["boxes"] == [obj]  # only drawable boxes are drawn


def test_the_pair_variant_needs_both_ious_above_the_threshold():
    person, obj = [[0.9]], [[0.45]]  # mean 0.675
    assert match_both_above(person, obj, 0.5) == []
    assert match_mean_iou(person, obj, 0.5, [True]) == [(0, 0)]
    assert match_mean_iou(person, obj, 0.7, [True]) == []


def test_the_variant_option_switches_the_matching_rule():
    obj = [200, 300, 400, 600]
    output = _answer([(_shifted(PERSON, 0.9), _shifted(obj, 0.45))])  # mean IoU 0.675: reaches 0.50 … 0.65 on the mean only
    assert PAIR.score(_row([(PERSON, obj)]), output, QWEN3).scores["tp"] == {f"{t:.2f}": 0 for t in THRESHOLDS}
    assert MEAN_IOU.score(_row([(PERSON, obj)]), output, QWEN3).score == pytest.approx(4 / 10)


def test_the_pair_variant_matches_greedily_by_mean_iou_not_optimally():
    # P0–G0 0.9 is taken first; P1 could only use G0, so one match although P0–G1, P1–G0 would give two.
    iou = [[0.9, 0.8], [0.7, 0.1]]
    assert match_both_above(iou, iou, 0.5) == [(0, 0)]


def test_pair_variant_ties_go_to_the_earlier_prediction_then_the_earlier_ground_truth():
    iou = [[0.8, 0.8], [0.8, 0.8]]
    assert match_both_above(iou, iou, 0.5) == [(0, 0), (1, 1)]
    assert match_both_above([[0.6, 0.8]], [[1.0, 0.8]], 0.5) == [(0, 0)]  # equal means 0.8: the earlier ground truth


def test_the_mean_iou_variant_matches_in_prediction_order():
    # P0 (first) takes its best, G0 (0.6); P1's only candidate G0 is gone → 1. The pair variant takes P1–G0 (0.9) first,
    # then P0–G1 (0.55) → 2.
    iou = [[0.6, 0.55], [0.9, 0.0]]
    assert match_mean_iou(iou, iou, 0.5, [True, True]) == [(0, 0)]
    assert match_both_above(iou, iou, 0.5) == [(1, 0), (0, 1)]
    assert match_both_above(iou, iou, 0.6) == [(1, 0)]


# ---------------------------------------------------------------- AR


def test_partial_overlap_counts_at_the_thresholds_it_reaches():
    obj = [200, 300, 400, 600]
    results = _results(PAIR, [([(PERSON, obj)], _answer([(PERSON, _shifted(obj, 0.72))]))])  # recall 1 at 0.50 … 0.70
    metrics = PAIR.aggregate(results)
    assert metrics["AR"] == pytest.approx(0.5) and metrics["AR@0.5"] == 1.0 and metrics["AR@0.75"] == 0.0
    assert results[0]["score"] == pytest.approx(0.5)


def test_recall_is_pooled_in_the_pair_variant_and_averaged_per_sample_in_mean_iou():
    one = [(PERSON, [200, 300, 400, 600])]
    three = [(PERSON, [200, 300, 400, 600]), ([500, 100, 700, 500], [600, 300, 800, 600]), ([10, 10, 90, 90], [20, 20, 80, 80])]
    samples = [(one, _answer(one)), (three, "[]")]
    assert PAIR.aggregate(_results(PAIR, samples))["AR"] == pytest.approx(1 / 4)
    assert MEAN_IOU.aggregate(_results(MEAN_IOU, samples))["AR"] == pytest.approx((1 + 0) / 2)


def test_size_buckets_follow_the_ground_truth_object_area():
    small, medium, large = [10, 10, 30, 30], [100, 100, 150, 150], [400, 400, 500, 500]  # 400, 2500, 10000 px²
    gts = [(PERSON, small), (PERSON, medium), ([600, 600, 900, 900], large)]
    metrics = PAIR.aggregate(_results(PAIR, [(gts, _answer([gts[0], gts[2]]))]))
    assert (metrics["ARs"], metrics["ARm"], metrics["ARl"]) == (1.0, 0.0, 1.0)
    assert metrics["AR"] == pytest.approx(2 / 3) and metrics["gt_pairs_by_size"] == {"small": 1, "medium": 1, "large": 1}
    only_large = PAIR.aggregate(_results(PAIR, [([gts[2]], "[]")]))
    assert only_large["ARs"] is None and only_large["ARm"] is None and only_large["ARl"] == 0.0


def test_single_box_ar_equals_pycocotools_cocoeval():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    # One ground-truth pair per image, one prediction with the exact person box: the pair matches iff object IoU ≥ t.
    objects = [[50, 50, 70, 70], [100, 100, 125, 125], [10, 10, 60, 60], [200, 200, 260, 250], [300, 300, 420, 420], [100, 500, 300, 700], [600, 600, 640, 640], [0, 0, 150, 120]]
    ious = [0.97, 0.52, 0.83, 0.64, 0.71, 0.91, 0.3, 0.77]  # none within 0.01 of a threshold; areas far from 32², 96²
    samples = [([(PERSON, obj)], _answer([(PERSON, _shifted(obj, iou))])) for obj, iou in zip(objects, ious)]
    ours = PAIR.aggregate(_results(PAIR, samples))

    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    coco = COCO()
    coco.dataset = {
        "images": [{"id": k, "width": 1000, "height": 1000} for k in range(len(objects))],
        "categories": [{"id": 1, "name": "object"}],
        "annotations": [{"id": k + 1, "image_id": k, "category_id": 1, "bbox": xywh(b), "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0}
                        for k, b in enumerate(objects)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        detections = coco.loadRes([{"image_id": k, "category_id": 1, "bbox": xywh(_shifted(b, iou)), "score": 1.0} for k, (b, iou) in enumerate(zip(objects, ious))])
        evaluation = COCOeval(coco, detections, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    recall = evaluation.eval["recall"]  # [thresholds, categories, areas (all, small, medium, large), maxDets (1, 10, 100)]
    assert ours["AR"] == pytest.approx(evaluation.stats[8])
    assert ours["AR@0.5"] == pytest.approx(recall[0, 0, 0, 2]) and ours["AR@0.75"] == pytest.approx(recall[5, 0, 0, 2])
    assert (ours["ARs"], ours["ARm"], ours["ARl"]) == pytest.approx(tuple(evaluation.stats[9:12]))
    assert len(THRESHOLDS) == len(evaluation.params.iouThrs)


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of pair, mean_iou"):
        get_benchmark("hoi-grounding", {"variant": "coco"})


# ---------------------------------------------------------------- loading


def test_the_simplified_json_loads_with_the_query_and_the_pairs(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, options = write_hoi_grounding_fixture(tmp_path)
    rows = get_benchmark("hoi-grounding", options).load(path, loaded.processor, loaded.family.convention)
    assert len(rows) == 6 and rows[0]["id"] == "0"
    assert "Detect all person-bicycle pairs where the person is riding the bicycle." in rows[0]["messages"][0]["content"][1]["text"]
    shared_person = rows[3]["answer"]["pairs"]  # gt_box_inds [0, 1, 0, 2]: one person in two pairs
    assert shared_person == [[[80, 40, 130, 150], [70, 5, 150, 45]], [[80, 40, 130, 150], [140, 90, 190, 140]]]
    assert rows[3]["meta"] == {"action": "carrying", "object_category": "umbrella", "width": 200, "height": 160}


def test_a_resized_image_copy_is_scored_in_the_annotation_frame(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, _ = write_hoi_grounding_fixture(tmp_path)
    row = get_benchmark("hoi-grounding").load(path, loaded.processor, loaded.family.convention)[4]  # a 100×80 copy of 200×160
    assert row["image_sizes"] == [[100, 80]] and row["boxes"][1]["bbox"] == [45.0, 55.0, 65.0, 75.0]
    grid = lambda b: [round(v / 200 * 1000) if i % 2 == 0 else round(v / 160 * 1000) for i, v in enumerate(b)]  # noqa: E731
    scored = PAIR.score(row, _answer([(grid([20, 10, 90, 150]), grid([90, 110, 130, 150]))]), QWEN3)
    assert scored.score == 1.0 and scored.ground_truth[0]["object_bbox"] == [90, 110, 130, 150]


@pytest.mark.parametrize(
    "change, field",
    [({"gt_box_inds": [0, 5]}, "gt_box_inds[1]"), ({"gt_box_inds": [0]}, "gt_box_inds"), ({"num_pairs": 2}, "num_pairs"),
     ({"boxes": [[40, 10, 100, 120], [130, 70, 30, 150]]}, "boxes[1]"), ({"width": 100}, "width"), ({"action": ""}, "action")],
)
def test_bad_samples_name_the_file_row_and_field(tmp_path, tiny_models, change, field):
    loaded = tiny_models("tiny-qwen3-vl")
    path, _ = write_hoi_grounding_fixture(tmp_path)
    change_sample(path, 0, change)
    with pytest.raises(RecordError, match=re.escape(f"hoi_ground_test_simplified.json:1: field '{field}'")):
        get_benchmark("hoi-grounding").load(path, loaded.processor, loaded.family.convention)


# ---------------------------------------------------------------- end to end


def test_a_scripted_run_reports_hand_computed_ar(tmp_path, tiny_models, monkeypatch):
    path, options = write_hoi_grounding_fixture(tmp_path / "data")

    def fake(model, processor, rows, max_new_tokens):
        """Exact pairs for the bicycle and the two cups, garbage for the bench, nothing for the rest."""
        outputs = []
        for row in rows:
            meta, pairs = row["meta"], row["answer"]["pairs"]
            grid = [[[round(v / (meta["width"] if i % 2 == 0 else meta["height"]) * 1000) for i, v in enumerate(b)] for b in pair] for pair in pairs]
            outputs.append({"bicycle": _answer(grid), "cup": _answer(grid), "bench": "a person on a bench"}.get(meta["object_category"], "[]"))
        return outputs

    monkeypatch.setattr(tool_use, "generate_batch", fake)
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("hoi-grounding", options), path, tmp_path / "out", batch_size=4, progress=False)
    metrics = result.metrics
    assert metrics["num_gt_pairs"] == 8 and metrics["AR"] == pytest.approx(3 / 8) and metrics["AR@0.75"] == pytest.approx(3 / 8)
    assert metrics["ARs"] == 1.0 and metrics["ARm"] == pytest.approx(1 / 4) and metrics["ARl"] == 0.0
    assert metrics["unparsable"] == {"grounding": 1} and metrics["overall"] == metrics["AR"]
    assert "person IoU ≥ t AND object IoU ≥ t" in metrics["definitions"]["AR"]
    first = json.loads(result.results_path.read_text().splitlines()[0])
    assert first["draw"]["gt"]["boxes"] and first["scores"]["tp"]["0.50"] in (0, 1, 2)


def test_a_real_generation_run_on_the_tiny_model(tmp_path, tiny_models):
    path, options = write_hoi_grounding_fixture(tmp_path / "data")
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("hoi-grounding", options), path, tmp_path / "out",
                      batch_size=2, max_samples=2, max_new_tokens=16, progress=False)
    assert result.metrics["num_samples"] == 2 and 0.0 <= result.metrics["AR"] <= 1.0
