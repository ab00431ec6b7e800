"""What the eval report shows of a model's behaviour: the predicted-vs-expected table per multiple-choice task and
each gallery card's IoU / distance."""

from __future__ import annotations

import re

from spatialtune.viz.eval_report import choice_tasks, confusion_table, gallery_card, render_eval_report


def _row(i: int, truth, parsed, task: str = "relation", **scores) -> dict:
    return {"id": f"s{i}", "task": task, "prompt": "Where?", "output": str(parsed), "ground_truth": truth,
            "parsed": parsed, "score": float(truth == parsed), "scores": {"kind": "choice", **scores}, "images": []}


def _metrics() -> dict:
    return {"benchmark": "records", "overall": 0.5, "scores": {}, "metric": {}, "counts": {}, "unparsable": {}, "definitions": {}}


def _cells(table: str) -> dict[str, list[str]]:
    """Each body row of a confusion table: its expected label and its cells' text."""
    rows = re.findall(r"<tr><td class=name>(.*?)</td>(.*?)</tr>", table)
    return {label: re.findall(r"<td[^>]*>(.*?)</td>", cells) for label, cells in rows}


def test_a_model_that_always_answers_left_has_every_prediction_in_the_left_column():
    truths = ["left", "right", "right", "left", "above", "right"]
    table = confusion_table("relation", [_row(i, t, "left") for i, t in enumerate(truths)])
    header = re.findall(r"<th>(.*?)</th>", table)[1:]
    assert header == ["above", "left", "right", "unparsable"]
    assert _cells(table) == {"above": ["·", "1", "·", "·"], "left": ["·", "2", "·", "·"], "right": ["·", "3", "·", "·"]}


def test_unparsable_replies_and_answers_outside_the_expected_set_get_their_own_columns():
    table = confusion_table("relation", [_row(0, "left", None), _row(1, "left", "behind"), _row(2, "right", "right")])
    assert re.findall(r"<th>(.*?)</th>", table)[1:] == ["left", "right", "behind", "unparsable"]
    assert _cells(table) == {"left": ["·", "·", "1", "1"], "right": ["·", "1", "·", "·"]}


def test_rows_with_choices_show_every_option_in_its_order_even_if_never_predicted_or_expected():
    options = ["left", "right", "above"]
    rows = [_row(i, t, "left") | {"choices": options} for i, t in enumerate(["right", "left", "right"])]
    table = confusion_table("relation", rows)
    assert re.findall(r"<th>(.*?)</th>", table)[1:] == ["left", "right", "above", "unparsable"]
    assert _cells(table) == {"left": ["1", "·", "·", "·"], "right": ["2", "·", "·", "·"], "above": ["·", "·", "·", "·"]}


def test_only_multiple_choice_tasks_get_a_table():
    results = [_row(0, "left", "left"), _row(1, [1, 2, 3, 4], [1, 2, 3, 5], task="grounding"),
               _row(2, "a red cup", "a cup", task="caption") | {"scores": {"kind": "text"}}]
    assert list(choice_tasks(results)) == ["relation"]


def test_the_report_page_shows_the_table_and_stays_self_contained():
    page = render_eval_report(_metrics(), [_row(i, t, "left") for i, t in enumerate(["left", "right"])])
    assert "Predicted vs expected" in page and 'class="confusion"' in page
    assert not re.search(r"https?://", page)


def test_a_card_caption_shows_the_iou_and_the_distance():
    card = gallery_card("worst", _row(0, [1, 2, 3, 4], [1, 2, 3, 5], task="grounding", iou=0.4213, distance_px=12.34))
    assert "worst · s0 · IoU 0.42 · distance 12.3 px" in card
    assert "<dt>iou</dt>" not in card


def test_a_card_without_measurements_keeps_its_plain_caption():
    card = gallery_card("sample", _row(0, "left", "left"))
    assert "sample · s0</span>" in card and "IoU" not in card
