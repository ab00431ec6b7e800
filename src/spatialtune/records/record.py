"""The spatial record, parsed and validated: one JSONL line = one sample, with geometry in ONE frame (pixels of the original image).

```json
{"id": "s1", "task": "grounding",
 "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is the cup?"}]},
              {"role": "assistant", "content": [{"type": "text", "text": "{box:0}"}]}],
 "images": ["img/0001.png"],
 "boxes": [{"bbox": [10, 20, 110, 90], "image": 0, "label": "cup"}],
 "points": [{"point": [60, 55], "image": 0}], "masks": [{"path": "img/0001_mask.png", "image": 0}],
 "refer_boxes": [{"boxes": [[10, 20, 110, 90]], "image": 0, "label": "cup"}],
 "answer": "...", "choices": ["A", "B"], "meta": {}}
```

Text that shows geometry to a model is written as placeholders — `{box:N}`, `{point:N}` — and rendered
from these fields at load time by the model family's convention (see `spatialtune.data.render`).
`refer_boxes` are the boxes spatial linking ties to the referred regions (one group per region, each group on one
image); `chosen` / `rejected` are the preferred and dispreferred assistant turns of a preference pair, whose prompt is
`messages` before its last assistant turn. Any other top-level key is an error: free-form data goes in `meta`.
Relative image/mask paths resolve against `image_root` if given, else the dataset file's folder.
Every validation error names the file, the line and the field.
"""


from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpatialtuneError
from ..geometry import is_proper
from ..registry import did_you_mean
from .consistency import check_answer
from .text import GEOMETRY_PLACEHOLDER, count_of, finite_numbers, prompt_turns

ROLES = ("system", "user", "assistant", "tool")
RECORD_KEYS = ("id", "task", "messages", "images", "boxes", "points", "masks", "refer_boxes", "answer", "choices",
               "chosen", "rejected", "meta")
# Fields of benchmarks' own row formats that a record may carry beside its own, so that one file is both training data
# and a benchmark table: hoi-spatial-sft writes the hoi-referring / hoi-grounding fields, and the roomplan benchmark
# reads a reference `action` / `action_json` (the RoomPlan source pipeline's name). Those benchmarks read them; the
# record does not carry them.
BENCHMARK_ROW_KEYS = ("file_name", "width", "height", "person_box_idx", "object_box_idx", "gt_action", "object_category",
                      "action", "gt_box_inds", "num_pairs", "action_json")


class RecordError(SpatialtuneError):
    """A record that cannot be used, located by file, line and field."""

    def __init__(self, file: str | Path, line: int, field: str, message: str):
        self.file, self.line, self.field, self.message = str(file), line, field, message
        super().__init__(f"{self.file}:{line}: field '{field}': {message}")


@dataclass(frozen=True)
class Box:
    """A box [x1, y1, x2, y2] in pixels of image `image` of its record."""

    bbox_pixel: tuple[float, float, float, float]
    image: int = 0
    label: str = ""


@dataclass(frozen=True)
class Point:
    """A point [x, y] in pixels of image `image` of its record."""

    xy_pixel: tuple[float, float]
    image: int = 0
    label: str = ""


@dataclass(frozen=True)
class ReferGroup:
    """The pixel boxes [x1, y1, x2, y2] of one referred region (what one `<|box_end|>` links to), on image `image`."""

    boxes_pixel: tuple[tuple[float, float, float, float], ...]
    image: int = 0
    label: str = ""


@dataclass(frozen=True)
class Mask:
    """A binary mask image (non-zero = inside) aligned with image `image` of its record."""

    path: Path
    image: int = 0
    label: str = ""


@dataclass
class SpatialRecord:
    """One sample: a chat, its images, and structured ground truth in the pixel frame."""

    id: str
    task: str
    messages: list[dict[str, Any]]
    images: list[Path] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    masks: list[Mask] = field(default_factory=list)
    refer_boxes: list[ReferGroup] = field(default_factory=list)
    answer: Any = None
    choices: list[str] | None = None
    chosen: list[dict[str, Any]] | None = None  # preferred assistant turns of a preference pair
    rejected: list[dict[str, Any]] | None = None  # dispreferred assistant turns
    meta: dict[str, Any] = field(default_factory=dict)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height), filled by `check_media`
    source: tuple[str, int] = ("<memory>", 0)  # (file, line) for error messages

    def error(self, field_name: str, message: str) -> RecordError:
        """A RecordError located at this record's file and line."""
        return RecordError(self.source[0], self.source[1], field_name, message)

    def image_placeholder_count(self) -> int:
        """Number of `{"type": "image"}` parts across all messages."""
        return image_placeholder_count(self.messages)


def image_placeholder_count(messages: list[dict[str, Any]]) -> int:
    """Number of `{"type": "image"}` parts across `messages`."""
    return sum(1 for m in messages if isinstance(m.get("content"), list) for part in m["content"] if part.get("type") == "image")


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def _numbers(value: Any, n: int, err, field_name: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise err(field_name, f"expected a list of {n} numbers, got {json.dumps(value)[:80]}")
    return tuple(float(v) for v in value)


def _image_index(item: dict, where: str, err) -> int:
    image = item.get("image", 0)
    if not isinstance(image, int) or isinstance(image, bool):
        raise err(f"{where}.image", f"expected an image index, got {image!r}")
    return image


def _list_field(obj: dict, key: str, err) -> list:
    items = obj.get(key) or []
    if not isinstance(items, list):
        raise err(key, "expected a list")
    return items


def _geometry_items(obj: dict, key: str, coord_key: str, n: int, err) -> list[tuple[tuple[float, ...], int, str]]:
    """Parse `boxes`/`points`: each a bare coordinate list (image 0) or {coord_key: [...], "image": i, "label": s}."""
    parsed = []
    for i, item in enumerate(_list_field(obj, key, err)):
        where = f"{key}[{i}]"
        if isinstance(item, dict):
            coords = _numbers(item.get(coord_key), n, err, f"{where}.{coord_key}")
            image, label = _image_index(item, where, err), item.get("label") or ""
        else:
            coords, image, label = _numbers(item, n, err, where), 0, ""
        parsed.append((coords, image, str(label)))
    return parsed


def _check_messages(messages: Any, err, key: str = "messages", roles: tuple[str, ...] = ROLES, images: bool = True) -> None:
    if not isinstance(messages, list) or not messages:
        raise err(key, "expected a non-empty list of {role, content} messages")
    for i, m in enumerate(messages):
        where = f"{key}[{i}]"
        if not isinstance(m, dict) or m.get("role") not in roles:
            raise err(f"{where}.role", f"expected one of {roles}, got {m.get('role') if isinstance(m, dict) else m!r}")
        content = m.get("content")
        if isinstance(content, str) or (content is None and m.get("tool_calls")):
            continue
        if not isinstance(content, list):
            raise err(f"{where}.content", "expected a string or a list of {type: image|text} parts" if images else "expected a string or a list of {type: text} parts")
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind != "image" or not images:
                expected = "{'type': 'image'} or {'type': 'text', 'text': str}" if images else "{'type': 'text', 'text': str} (no images here)"
                raise err(f"{where}.content[{j}]", f"expected {expected}, got {part!r}")


def _message_texts(messages: list[dict], key: str = "messages") -> list[tuple[str, str]]:
    """(field path, text) of every text in the messages."""
    out = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if isinstance(content, str):
            out.append((f"{key}[{i}].content", content))
        elif isinstance(content, list):
            out += [(f"{key}[{i}].content[{j}].text", p["text"]) for j, p in enumerate(content) if p.get("type") == "text"]
    return out


def _preference_turns(obj: dict, key: str, err) -> tuple[list[dict[str, Any]] | None, list[tuple[str, str]]]:
    """`chosen` / `rejected`: a string (one assistant text) or a list of assistant messages → (messages, texts)."""
    value = obj.get(key)
    if value is None:
        return None, []
    if isinstance(value, str) and value:
        return [{"role": "assistant", "content": [{"type": "text", "text": value}]}], [(key, value)]
    if isinstance(value, str):
        raise err(key, "expected a non-empty string or a list of assistant messages")
    _check_messages(value, err, key, roles=("assistant",), images=False)
    return value, _message_texts(value, key)


def _proper_box(value: Any, err, field_name: str) -> tuple[float, float, float, float]:
    """Four finite numbers [x1, y1, x2, y2] with x1 < x2 and y1 < y2."""
    box = finite_numbers(value, 4)
    if box is None:
        raise err(field_name, f"expected a box of 4 finite numbers [x1, y1, x2, y2], got {json.dumps(value)[:80]}")
    if not is_proper(box):
        raise err(field_name, f"expected x1 < x2 and y1 < y2, got {json.dumps(value)[:80]}")
    return box


def _refer_groups(obj: dict, err) -> list[ReferGroup]:
    """Parse `refer_boxes`: each item a bare box (a group of one on image 0), a list of boxes (a group on image 0), or
    {"boxes": [box, …], "image": i, "label": s}."""
    groups = []
    for i, item in enumerate(_list_field(obj, "refer_boxes", err)):
        where = f"refer_boxes[{i}]"
        if isinstance(item, dict):
            boxes, image, label, boxes_at = item.get("boxes"), _image_index(item, where, err), str(item.get("label") or ""), f"{where}.boxes"
        elif isinstance(item, list) and item and isinstance(item[0], (list, tuple)):
            boxes, image, label, boxes_at = item, 0, "", where
        elif isinstance(item, list):
            groups.append(ReferGroup((_proper_box(item, err, where),), 0, ""))
            continue
        else:
            raise err(where, f"expected a box [x1, y1, x2, y2], a list of boxes, or {{boxes, image, label}}, got {json.dumps(item)[:80]}")
        if not isinstance(boxes, list) or not boxes:
            raise err(boxes_at, "expected a non-empty list of [x1, y1, x2, y2] pixel boxes")
        groups.append(ReferGroup(tuple(_proper_box(b, err, f"{boxes_at}[{j}]") for j, b in enumerate(boxes)), image, label))
    return groups


def parse_record(obj: Any, *, file: str | Path = "<memory>", line: int = 0, base_dir: Path | None = None) -> SpatialRecord:
    """Validate the structure of one decoded JSON record (no file IO) and build a SpatialRecord."""
    err = lambda f, msg: RecordError(file, line, f, msg)  # noqa: E731
    if not isinstance(obj, dict):
        raise err("<record>", f"expected a JSON object, got {type(obj).__name__}")
    unknown = [str(key) for key in obj if key not in RECORD_KEYS + BENCHMARK_ROW_KEYS]
    if unknown:
        raise err(unknown[0], f"unknown field{did_you_mean(unknown[0], RECORD_KEYS + BENCHMARK_ROW_KEYS)}; free-form data goes in 'meta'")
    for key in ("id", "task"):
        if not isinstance(obj.get(key), (str, int)) or isinstance(obj.get(key), bool) or obj.get(key) == "":
            raise err(key, "required: a non-empty string")
    _check_messages(obj.get("messages"), err)
    images = obj.get("images") or []
    if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
        raise err("images", "expected a list of image paths")
    base_dir = base_dir or Path(".")
    boxes = [Box(c, im, lb) for c, im, lb in _geometry_items(obj, "boxes", "bbox", 4, err)]  # type: ignore[arg-type]
    points = [Point(c, im, lb) for c, im, lb in _geometry_items(obj, "points", "point", 2, err)]  # type: ignore[arg-type]
    masks = []
    for i, item in enumerate(_list_field(obj, "masks", err)):
        item = {"path": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise err(f"masks[{i}]", "expected a path or {path, image, label}")
        image = _image_index(item, f"masks[{i}]", err)
        masks.append(Mask(_resolve(item["path"], base_dir), image, str(item.get("label") or "")))
    refer_boxes = _refer_groups(obj, err)
    choices = obj.get("choices")
    if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        raise err("choices", "expected a list of strings")
    (chosen, chosen_texts), (rejected, rejected_texts) = _preference_turns(obj, "chosen", err), _preference_turns(obj, "rejected", err)
    if (chosen is None) != (rejected is None):
        raise err("rejected" if chosen is not None else "chosen", "a preference pair needs both 'chosen' and 'rejected'")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise err("meta", "expected an object")
    record = SpatialRecord(
        id=str(obj["id"]),
        task=str(obj["task"]),
        messages=obj["messages"],
        images=[_resolve(p, base_dir) for p in images],
        boxes=boxes,
        points=points,
        masks=masks,
        refer_boxes=refer_boxes,
        answer=obj.get("answer"),
        choices=choices,
        chosen=chosen,
        rejected=rejected,
        meta=meta,
        source=(str(file), line),
    )
    n_placeholders = record.image_placeholder_count()
    if n_placeholders != len(images):
        raise err(
            "messages",
            f"{n_placeholders} image placeholder(s) but {len(images)} image(s) in 'images': "
            'put one {"type": "image"} part where each image goes',
        )
    in_prompt = image_placeholder_count(prompt_turns(record.messages)) if chosen else len(images)
    if in_prompt != len(images):  # TRL's preference collator gives every image to the prompt
        raise err("messages", f"the preference prompt (the messages before the last assistant turn) holds {in_prompt} of "
                  f"the {len(images)} image placeholder(s): put every image before the answer")
    for kind, items in (("boxes", boxes), ("points", points), ("masks", masks), ("refer_boxes", refer_boxes)):
        for i, item in enumerate(items):
            if not 0 <= item.image < len(images):
                raise err(f"{kind}[{i}].image", f"image index {item.image} but the record has {len(images)} image(s)")
    for where, text in _message_texts(record.messages) + chosen_texts + rejected_texts:
        for kind, index in GEOMETRY_PLACEHOLDER.findall(text):
            available = len(boxes if kind == "box" else points)
            if int(index) >= available:
                raise err(where, f"placeholder {{{kind}:{index}}} but the record has {count_of(available, kind)}")
    check_answer(record)
    return record
