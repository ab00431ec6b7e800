"""The records benchmark: any file of spatial records (`spatialtune.records`), scored by what each record's answer is.

The reference is the record's final answer: the final assistant turn (its `<answer>…</answer>` if any), or `answer`.
- a `{box:N}` placeholder in the final assistant turn (or in `answer`) → IoU of the reply's box with box N (IoU ≥ 0.5
  scores 1; the mean IoU is reported beside it);
- a `{point:N}` placeholder → the reply's point lies inside the record's mask of point N's image, else inside a box of
  that image that holds point N;
- `choices` → the option the reply names, by its text (whole word) or its letter ("(B)", "B."); the reference
  (`answer`, else the final turn) is an option's text or its letter;
- a number → the first number of the reply equals it (exact count);
- any other text → normalised exact match (`answers.match.normalised_text`).
Boxes and points are read strictly: the reply must hold exactly four (two) numbers, read back into pixels by the model
family's convention, forming a box with x1 < x2 and y1 < y2 inside the image. Other replies score 0: no such numbers
count as unparsable, an inverted box or a coordinate outside the image as invalid (both are unparsable in
`unparsable`, and invalid ones are also counted in `invalid`). Any task name is accepted. The per-kind scorers are
public: the `synthetic` benchmark scores its tasks with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...answers.expected import Expected, expected_answer
from ...answers.parse import StrictCoordinates
from ...answers.score import (
    IOU_THRESHOLD,
    box_score,
    choice_score,
    count_score,
    first_mask,
    point_hit,
    point_region,
    read_coordinates,
    text_score,
)
from ...data.render import GeometryRenderer, Row, record_to_row
from ...media import read_mask
from ...records import SpatialRecord, read_records
from ...tools.crop import declare_tools
from ..scoring import row_frame
from . import Benchmark, SampleResult, mean, register

# The per-sample metric of each answer kind.
KIND_METRICS = {"box": f"iou@{IOU_THRESHOLD}", "point": "point_in_region", "choice": "accuracy", "count": "exact_count",
                "text": "exact_match"}


# ---------------------------------------------------------------- scorers, one per answer kind


def _problem(reading: StrictCoordinates) -> dict[str, str]:
    return {"invalid": reading.problem} if reading.invalid else {}


def score_box(row: Row, output: str, renderer: GeometryRenderer, index: int, strict: bool = True) -> SampleResult:
    """1 if the reply's box has IoU ≥ 0.5 with box `index` of the row; `scores` holds the IoU (0 without a box)."""
    target = row["boxes"][index]
    scored = box_score(output, target["bbox"], row_frame(row, target["image"], renderer), renderer.convention, strict)
    box = scored.reading.pixel
    mask = first_mask(row["masks"], target["image"])
    draw = {"image": target["image"], "pred": {"boxes": [box] if box else []}, "gt": {"boxes": [target["bbox"]]}}
    scores = {"kind": "box", "iou": scored.iou, **_problem(scored.reading)}
    return SampleResult(float(scored.hit), box, target["bbox"], mask["path"] if mask else None, scores, draw)


def score_point(row: Row, output: str, renderer: GeometryRenderer, index: int, strict: bool = True) -> SampleResult:
    """1 if the reply's point lies in the mask of point `index`'s image (the first one), else in a box of that image
    holding point `index`; `scores` holds the distance to the point in pixels."""
    target = row["points"][index]
    reading = read_coordinates(output, 2, row_frame(row, target["image"], renderer), renderer.convention, strict)
    point = reading.pixel
    mask, boxes = point_region(target, row["boxes"], row["masks"])
    hit = point is not None and point_hit(point, read_mask(mask["path"]) if mask else None, boxes)
    scores = {"kind": "point", **({"distance_px": math.dist(point, target["point"])} if point else {}), **_problem(reading)}
    draw = {"image": target["image"], "pred": {"points": [point] if point else []}, "gt": {"points": [target["point"]], "boxes": boxes}}
    return SampleResult(float(hit), point, target["point"], mask["path"] if mask else None, scores, draw)


def score_choice(output: str, choices: list[str], expected: str, letters_too: bool = True) -> SampleResult:
    """1 if the option the reply names (`answers.parse.option_of_reply`) is the expected option."""
    parsed, score = choice_score(output, choices, expected, letters_too)
    return SampleResult(score, parsed, expected, scores={"kind": "choice"})


def score_count(output: str, expected: int | float) -> SampleResult:
    """1 if the first number of the reply equals the expected number."""
    parsed, score = count_score(output, expected)
    return SampleResult(score, parsed, expected, scores={"kind": "count"})


def score_text(output: str, expected: str) -> SampleResult:
    """1 if the reply equals the expected text after `normalised_text`; an empty reply is unparsable."""
    parsed, score = text_score(output, expected)
    return SampleResult(score, parsed, expected, scores={"kind": "text"})


def score_expected(row: Row, output: str, renderer: GeometryRenderer, expected: Expected) -> SampleResult:
    """Score one reply by the kind of its record's answer."""
    if expected.kind == "box":
        return score_box(row, output, renderer, expected.value)
    if expected.kind == "point":
        return score_point(row, output, renderer, expected.value)
    if expected.kind == "choice":
        return score_choice(output, row["choices"], expected.value)
    if expected.kind == "count":
        return score_count(output, expected.value)
    return score_text(output, expected.value)


# ---------------------------------------------------------------- the benchmark


def record_rows(path, processor, convention, image_root, max_samples, tools: bool,
                prepare: Callable[[SpatialRecord], dict[str, Any] | None]) -> list[Row]:
    """Rows of a records file (a dataset folder: its `test.jsonl`): the first `max_samples` records, each checked by
    `prepare` (which raises a RecordError or returns further row columns), with the crop tool declared when `tools`."""
    path = Path(path)
    if path.is_dir():
        path = path / "test.jsonl"
    records = read_records(path, image_root)
    if max_samples is not None:
        records = records[:max_samples]
    renderer = GeometryRenderer.for_processor(processor, convention)
    rows = []
    for record in records:
        columns = prepare(record) or {}
        if tools:
            record.messages, record.meta = declare_tools(record.messages, record.meta)
        rows.append({**record_to_row(record, renderer), **columns})
    return rows



@register
class RecordsBenchmark(Benchmark):
    """Any JSONL of spatial records: every task name, scored by the kind of each record's answer."""

    name = "records"

    @dataclass(frozen=True)
    class Options:
        """`tools`: declare the crop tool in a system prompt and let the runner execute the model's calls."""

        tools: bool = False

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows of a records file (or a dataset folder's `test.jsonl`), each with its `expected` answer."""

        def expected_column(record: SpatialRecord) -> dict[str, Any]:
            expected = expected_answer(record)
            return {"expected": {"kind": expected.kind, "value": expected.value}}

        return record_rows(path, processor, convention, image_root, max_samples, self.options.tools, expected_column)

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """Score one reply by the kind of its record's answer (see the module docstring)."""
        return score_expected(row, output, renderer, Expected(**row["expected"]))

    def definitions(self) -> dict[str, str]:
        """The formula behind every number of `aggregate`."""
        return {
            **super().definitions(),
            "reference": "a record's final answer: a {box:N} / {point:N} placeholder of its final assistant turn (its "
                         "<answer>…</answer> if any) or of `answer`; else `answer`, or the final assistant turn without one",
            "kind_scores": "mean per-sample score per answer kind: box = IoU ≥ 0.5 with box N; point = the reply's point in the "
                           "mask of point N's image (else in a box of that image holding point N); choice = the option named "
                           "by its text (earliest whole word, case-insensitive) or letter is the reference option; count = the "
                           "first number of the reply equals the reference; text = equal after lowercasing, joining runs of "
                           "whitespace and stripping surrounding whitespace and . , ; : ! ? \" ' `",
            "kind_counts": "number of records per answer kind (box, point, choice, count, text)",
            "unparsable": "per task: replies with nothing to score, including invalid ones; a box reply must hold exactly four "
                          "numbers and a point reply exactly two, read back into pixels by the model's convention",
            "invalid": "per task: box or point replies whose numbers make an inverted box (x2 ≤ x1 or y2 ≤ y1) or lie "
                       "outside the image; they score 0",
            f"iou@{IOU_THRESHOLD}": "over box answers: fraction with IoU ≥ 0.5 (unparsable and invalid replies: 0)",
            "mean_iou": "over box answers: mean IoU of the reply's box with box N (unparsable and invalid replies: 0)",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The base metrics, with the metric per task named by its answer kinds, per-kind scores, invalid counts and
        IoU@0.5 / mean IoU over box answers."""
        metrics = super().aggregate(results)
        kinds: dict[str, list[dict[str, Any]]] = {}
        task_kinds: dict[str, set[str]] = {}
        for result in results:
            kind = (result.get("scores") or {}).get("kind", "text")
            kinds.setdefault(kind, []).append(result)
            task_kinds.setdefault(result["task"], set()).add(kind)
        kind_scores = {kind: mean(r["score"] for r in rows) for kind, rows in sorted(kinds.items())}
        metrics["metric"] = {task: " / ".join(KIND_METRICS[k] for k in sorted(task_kinds[task])) for task in metrics["scores"]}
        metrics["kind_scores"] = kind_scores
        metrics["kind_counts"] = {kind: len(rows) for kind, rows in sorted(kinds.items())}
        metrics["invalid"] = {task: sum(bool((r.get("scores") or {}).get("invalid")) for r in results if r["task"] == task)
                              for task in metrics["scores"]}
        if "box" in kinds:
            metrics[f"iou@{IOU_THRESHOLD}"] = kind_scores["box"]
            metrics["mean_iou"] = mean(r["scores"]["iou"] for r in kinds["box"])
            metrics["headline"].update({f"iou@{IOU_THRESHOLD}": metrics[f"iou@{IOU_THRESHOLD}"], "mean_iou": metrics["mean_iou"]})
        if len(kind_scores) > 1:
            metrics["breakdown"] = {**metrics["breakdown"], "per kind": kind_scores}
        return metrics
