"""What a record's reply is scored against: the kind of its answer and the reference, read once for the `records`
benchmark, the x3 and RoomPlan benchmarks and the rewards.

`expected_answer` is the `records` benchmark's rule: a `{box:N}` / `{point:N}` placeholder of the final answer, else
an option, a number or a short text. `crossview_reference` and `reference_action` read the x3 and RoomPlan references
(their own benchmarks' rules), which the `records` benchmark would only compare as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import (
    GEOMETRY_PLACEHOLDER,
    SpatialRecord,
    choice_index,
    count_of,
    final_answer,
    finite_number,
    last_assistant_text,
    normalised_text,
)
from ..tasks.crossview import infer_query_mask, named_kind, query_image_index, task_kind
from ..tasks.roomplan import VECTOR_KEYS
from .match import point_in_box
from .parse import malformed_reason, parse_action_object, scene_text, vector3
from .points import X3Answer, parse_ground_truth

_NUMBER_TEXT = re.compile(r"\s*-?\d+(?:\.\d+)?\s*")


@dataclass(frozen=True)
class Expected:
    """What a record's reply is scored against: its `kind` (box, point, choice, count, text) and a box / point index,
    option, number or text."""

    kind: str
    value: Any


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
    """What a record's reply is scored against by the `records` benchmark; raises a RecordError naming the field when
    the record holds no usable reference."""
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


# ---------------------------------------------------------------- x3 cross-view and RoomPlan references


@dataclass(frozen=True)
class CrossViewReference:
    """An x3 sample's ground truth, its kind (t1_multi, t1_concat, t2a, t2b), the mask its point is judged on (None:
    none found) and the index of the image the answer is on."""

    answer: X3Answer
    kind: str
    mask: Path | None
    image: int

    @property
    def concat(self) -> bool:
        """The answer is in the frame of one side-by-side image (its right half is the query)."""
        return self.kind == "t1_concat"


def crossview_reference(record: SpatialRecord, query: Path | None, declared: Any, file_name: str) -> CrossViewReference | None:
    """The x3 reference of a record as the `crossview` benchmark reads it (its answer, else its final assistant text;
    the query mask by the source's suffix rule, else the record's mask of the query image); None when the answer is
    neither NOT_VISIBLE nor a point `[(x, y)]`."""
    gt_value = record.answer if record.answer is not None else last_assistant_text(record.messages)
    gt = parse_ground_truth(gt_value)
    if gt is None:
        return None
    kind = task_kind(declared, file_name, len(record.images), query)
    image = 0 if kind == "t1_concat" else query_image_index(record.images, query)
    mask = infer_query_mask(query) if query is not None else None
    if mask is None and kind != "t1_concat":
        mask = next((m.path for m in record.masks if m.image == image), None)
    return CrossViewReference(gt, kind, mask, image)


def record_query(record: SpatialRecord) -> Path | None:
    """An x3 record's query image: `meta.query_original` (relative to the record file's folder), else the last of two
    or more images."""
    meta_query = record.meta.get("query_original")
    if isinstance(meta_query, str) and meta_query:
        path = Path(meta_query)
        return path if path.is_absolute() else Path(record.source[0]).parent / path
    return record.images[-1] if len(record.images) >= 2 else None


def is_crossview_record(record: SpatialRecord) -> bool:
    """Whether a record is an x3 cross-view sample: its `meta.task_kind` or task names an x3 kind (t1, t2a, t2b)."""
    return named_kind(str(record.meta.get("task_kind") or record.task)) is not None


def reference_action(item: dict[str, Any]) -> tuple[Any, str]:
    """The structured RoomPlan action of a record (as JSON data) and the field it came from: `meta.action`, `action`,
    `action_json` (the source pipeline's name), else the JSON object of the final assistant text (None if none)."""
    meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
    for where, value in (("meta.action", meta.get("action")), ("action", item.get("action")), ("action_json", item.get("action_json"))):
        if value is not None:
            return value, where
    text = last_assistant_text(item.get("messages"))
    return (parse_action_object(text) if text else None), "messages (assistant text)"


def plain_action(action: Any) -> dict[str, Any] | None:
    """A well-formed place_anchor action as plain data (scene as text, vectors as lists), else None."""
    if malformed_reason(action) is not None:
        return None
    return {"action": action["action"], "scene": scene_text(action["scene"]), **{k: list(vector3(action[k])) for k in VECTOR_KEYS}}
