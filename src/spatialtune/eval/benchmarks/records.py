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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...answers.match import box_iou_pixel, normalised_match, point_in_box, point_in_mask
from ...answers.parse import (
    StrictCoordinates,
    final_answer,
    option_of_reply,
    parse_box_pixel,
    parse_numbers,
    parse_point_pixel,
    strict_coordinates_pixel,
)
from ...data.render import GeometryRenderer, Row, record_to_row
from ...media import read_mask
from ...records import (
    GEOMETRY_PLACEHOLDER,
    SpatialRecord,
    choice_index,
    count_of,
    finite_number,
    normalised_text,
    read_records,
)
from ...tools.crop import declare_tools
from ..scoring import row_frame
from . import Benchmark, SampleResult, last_assistant_text, mean, register

IOU_THRESHOLD = 0.5
# The per-sample metric of each answer kind.
KIND_METRICS = {"box": f"iou@{IOU_THRESHOLD}", "point": "point_in_region", "choice": "accuracy", "count": "exact_count",
                "text": "exact_match"}
_NUMBER_TEXT = re.compile(r"\s*-?\d+(?:\.\d+)?\s*")


@dataclass(frozen=True)
class Expected:
    """What a record's reply is scored against: its `kind` (KIND_METRICS) and a box / point index, option, number or text."""

    kind: str
    value: Any


# ---------------------------------------------------------------- the reference of a record


def _reference_option(reference: Any, choices: list[str]) -> str | None:
    """The option a reference names, read as the record layer's consistency check reads it (`records.choice_index`:
    an option's text or its letter), else None."""
    index = choice_index(reference, choices) if isinstance(reference, str) else None
    return choices[index] if index is not None else None


def _number(value: Any) -> int | float | None:
    """A JSON number, or a text that is one ("3", "2.5"), as an int when it is whole; else None."""
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        value = float(value)
    if not finite_number(value):
        return None
    return int(value) if float(value).is_integer() else float(value)


def _check_region(record: SpatialRecord, index: int, where: str) -> None:
    """A `{point:N}` answer needs a mask of point N's image, or a box of that image holding point N."""
    point = record.points[index]
    if any(m.image == point.image for m in record.masks):
        return
    if any(b.image == point.image and point_in_box(point.xy_pixel, b.bbox_pixel) for b in record.boxes):
        return
    raise record.error(where, f"{{point:{index}}} is scored inside a mask of image {point.image} or a box holding the point; "
                              "the record has neither: add a mask or a box")


def expected_answer(record: SpatialRecord) -> Expected:
    """What a record's reply is scored against (see the module docstring); raises a RecordError naming the field
    when the record holds no usable reference."""
    reply = final_answer(last_assistant_text(record.messages))
    answer = record.answer
    for where, text in (("messages", reply), ("answer", answer if isinstance(answer, str) else "")):
        placeholder = GEOMETRY_PLACEHOLDER.search(text)
        if placeholder:
            kind, index = placeholder.group(1), int(placeholder.group(2))
            available = len(record.boxes if kind == "box" else record.points)
            if index >= available:
                raise record.error(where, f"placeholder {{{kind}:{index}}} but the record has {count_of(available, kind)}")
            if kind == "point":
                _check_region(record, index, where)
            return Expected(kind, index)
    reference, where = (answer, "answer") if answer is not None else (reply, "messages")
    if record.choices:
        option = _reference_option(reference, record.choices)
        if option is None:
            raise record.error(where, f"{reference!r} is neither one of the choices {record.choices} nor an option letter")
        return Expected("choice", option)
    number = _number(reference)
    if number is not None:
        return Expected("count", number)
    if isinstance(reference, str) and normalised_text(reference):
        return Expected("text", reference)
    raise record.error(where, f"nothing to score against: expected a final assistant turn or an answer with text, a number, "
                              f"{{box:N}} or {{point:N}}, got {reference!r}")


# ---------------------------------------------------------------- scorers, one per answer kind


def _first_mask(row: Row, image: int) -> dict[str, Any] | None:
    return next((m for m in row["masks"] if m["image"] == image), None)


def _read(output: str, count: int, row: Row, image: int, renderer: GeometryRenderer, strict: bool) -> StrictCoordinates:
    """The reply's box (4) or point (2) in pixels of image `image`: strictly, or leniently (the first numbers, as read
    by `parse_box_pixel` / `parse_point_pixel`, with no check of their order or range)."""
    frame = row_frame(row, image, renderer)
    if strict:
        return strict_coordinates_pixel(output, count, frame, renderer.convention)
    lenient = parse_box_pixel if count == 4 else parse_point_pixel
    pixel = lenient(output, frame, renderer.convention)
    return StrictCoordinates(pixel, None if pixel is not None else "unparsable")


def _problem(reading: StrictCoordinates) -> dict[str, str]:
    return {"invalid": reading.problem} if reading.invalid else {}


def score_box(row: Row, output: str, renderer: GeometryRenderer, index: int, strict: bool = True) -> SampleResult:
    """1 if the reply's box has IoU ≥ 0.5 with box `index` of the row; `scores` holds the IoU (0 without a box)."""
    target = row["boxes"][index]
    reading = _read(output, 4, row, target["image"], renderer, strict)
    box = reading.pixel
    iou = box_iou_pixel(box, target["bbox"]) if box is not None else 0.0
    mask = _first_mask(row, target["image"])
    draw = {"image": target["image"], "pred": {"boxes": [box] if box else []}, "gt": {"boxes": [target["bbox"]]}}
    scores = {"kind": "box", "iou": iou, **_problem(reading)}
    return SampleResult(float(iou >= IOU_THRESHOLD), box, target["bbox"], mask["path"] if mask else None, scores, draw)


def score_point(row: Row, output: str, renderer: GeometryRenderer, index: int, strict: bool = True) -> SampleResult:
    """1 if the reply's point lies in the mask of point `index`'s image (the first one), else in a box of that image
    holding point `index`; `scores` holds the distance to the point in pixels."""
    target = row["points"][index]
    reading = _read(output, 2, row, target["image"], renderer, strict)
    point, mask = reading.pixel, _first_mask(row, target["image"])
    boxes = [] if mask else [b["bbox"] for b in row["boxes"] if b["image"] == target["image"] and point_in_box(target["point"], b["bbox"])]
    if point is None:
        hit = False
    else:
        hit = point_in_mask(point, read_mask(mask["path"])) if mask else any(point_in_box(point, b) for b in boxes)
    scores = {"kind": "point", **({"distance_px": math.dist(point, target["point"])} if point else {}), **_problem(reading)}
    draw = {"image": target["image"], "pred": {"points": [point] if point else []}, "gt": {"points": [target["point"]], "boxes": boxes}}
    return SampleResult(float(hit), point, target["point"], mask["path"] if mask else None, scores, draw)


def score_choice(output: str, choices: list[str], expected: str, letters_too: bool = True) -> SampleResult:
    """1 if the option the reply names (`answers.parse.option_of_reply`) is the expected option."""
    parsed = option_of_reply(output, choices, letters_too)
    return SampleResult(float(parsed == expected), parsed, expected, scores={"kind": "choice"})


def score_count(output: str, expected: int | float) -> SampleResult:
    """1 if the first number of the reply equals the expected number."""
    numbers = [n for n in parse_numbers(output)[:1] if math.isfinite(n)]
    parsed = (int(numbers[0]) if numbers[0].is_integer() else numbers[0]) if numbers else None
    return SampleResult(float(parsed == expected), parsed, expected, scores={"kind": "count"})


def score_text(output: str, expected: str) -> SampleResult:
    """1 if the reply equals the expected text after `normalised_text`; an empty reply is unparsable."""
    parsed = normalised_text(output) or None
    return SampleResult(float(normalised_match(output, expected)), parsed, expected, scores={"kind": "text"})


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
