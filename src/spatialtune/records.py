"""The spatial record: one JSONL line = one sample, with geometry in ONE frame (pixels of the original image).

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
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MissingFileError, SpatialtuneError
from .geometry import is_proper
from .media import MediaError, image_size
from .registry import did_you_mean

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant", "tool")
GEOMETRY_PLACEHOLDER = re.compile(r"\{(box|point):(\d+)\}")
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


def last_assistant_index(messages: list[dict[str, Any]]) -> int:
    """Index of a chat's last assistant turn (the answer a model is asked for), len(messages) when there is none."""
    return max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))


def count_of(n: int, kind: str) -> str:
    """`n` geometry items in words: "1 box", "2 boxes", "0 points"."""
    return f"{n} {kind}" if n == 1 else f"{n} {kind}{'es' if kind.endswith('x') else 's'}"


def finite_number(value: Any) -> bool:
    """A JSON number as Python reads it (int or float, not bool) that is finite; an int too large for a float is not
    (a 400-digit integer in a file or a model reply must be refused, not crash `math.isfinite`)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def text_parts(content: Any) -> list[str]:
    """The texts of a message's content: the string itself, or the text parts of a list (other shapes: none)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
    return []


def finite_numbers(value: Any, n: int) -> tuple[float, ...] | None:
    """`n` finite JSON numbers (a list or tuple; see `finite_number`) as floats, else None."""
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(finite_number(v) for v in value):
        return None
    return tuple(float(v) for v in value)


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
    in_prompt = image_placeholder_count(record.messages[: last_assistant_index(record.messages)]) if chosen else len(images)
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


# ---------------------------------------------------------------- consistency: answer, choices, final assistant turn

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S)  # an unclosed block runs to the end
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
NORMALISED_STRIP = " \t\n.,;:!?\"'`"
_LETTER = re.compile(r"\(?([A-Z])\)?[.:]?")  # "A", "(A)", "A.", "(A):"
_LETTER_THEN_TEXT = re.compile(r"\(?([A-Z])[).:]\s+\S.*", re.S)  # "(A) left", "A. left", "A) left", "A: left"


def normalised_text(text: str) -> str:
    """A short answer for exact matching: lowercase, runs of whitespace as one space, surrounding whitespace and
    punctuation (`. , ; : ! ? " ' ``) removed (the records benchmark scores with it; the consistency checks compare
    with it, so a record that passes them scores 1 when the model reproduces its training target)."""
    return " ".join(text.lower().split()).strip(NORMALISED_STRIP)


def final_answer(output: str) -> str:
    """The part of a reply to score: the last `<answer>…</answer>` if any, else the reply without `<think>` blocks."""
    answers = _ANSWER_TAG.findall(output)
    if answers:
        return answers[-1].strip()
    return _THINK.sub("", output).strip()


def _pixel_text(text: str, record: SpatialRecord) -> str:
    """`text` with each `{box:N}` / `{point:N}` as its pixel coordinates (the frame every convention renders from, so two
    texts that agree here agree in every model family's rendering)."""

    def replace(match) -> str:
        kind, index = match.group(1), int(match.group(2))
        coords = record.boxes[index].bbox_pixel if kind == "box" else record.points[index].xy_pixel
        return "[" + ", ".join(f"{v:g}" for v in coords) + "]"

    return GEOMETRY_PLACEHOLDER.sub(replace, text)


def _scalar_text(value: Any) -> str | None:
    """A string answer as is, a number as its shortest text (3, 2.5); other values: None (not compared)."""
    if isinstance(value, str):
        return value
    if finite_number(value):
        return f"{value:g}"
    return None


def choice_index(text: str, choices: list[str]) -> int | None:
    """The option `text` names: an option's text (normalised), else its letter — `A`, `(A)`, `A.`, `(A) option text`, `A. option text` —
    among the first len(choices) letters; None if it names none."""
    wanted = normalised_text(text)
    matches = [i for i, choice in enumerate(choices) if normalised_text(choice) == wanted]
    if len(matches) == 1:
        return matches[0]
    letter = _LETTER.fullmatch(text.strip()) or _LETTER_THEN_TEXT.fullmatch(text.strip())
    if letter and ord(letter.group(1)) - ord("A") < len(choices):
        return ord(letter.group(1)) - ord("A")
    return None


def _answers(answer: Any) -> list[str] | None:
    """The texts an answer accepts: one string or number, or each of a list of them; None for other shapes (a dict such
    as hoi-grounding's pairs), which the checks leave alone."""
    items = answer if isinstance(answer, list) else [answer]
    texts = [_scalar_text(a) for a in items]
    return None if not texts or None in texts else texts  # type: ignore[return-value]


def _agrees(answer: str, reply: str, record: SpatialRecord) -> bool:
    if record.choices:
        return choice_index(answer, record.choices) == choice_index(reply, record.choices)
    if normalised_text(_pixel_text(answer, record)) == normalised_text(reply):
        return True
    try:  # a number answer: the reply's number equals it (3 and "3.0")
        return float(answer) == float(reply)
    except ValueError:
        return False


def check_answer(record: SpatialRecord) -> None:
    """Raise a RecordError if the record's `answer` is not among its `choices`, or disagrees with its final assistant
    turn (the training target) after rendering. The rules (docs/data.md, "Consistency checks"):

    - `answer` with `choices`: an option's text or its letter (`A`, `(A)`); a list answer: each item.
    - answer vs the last message, when that is an assistant turn with text: its final answer (`<think>` dropped, the last
      `<answer>…</answer>` if tagged) must name the same option (with choices); else equal `answer` once placeholders
      are pixel coordinates (`{box:1}` agrees with `{box:1}` or a box of the same coordinates) and both are normalised
      (`normalised_text`), or equal it as a number. A list answer agrees if one item does.
    - an answer that is not a string, a number or a list of them (e.g. a dict), or no answer: not checked.
    """
    texts = _answers(record.answer) if record.answer is not None else None
    if texts is None:
        return
    if record.choices:
        for text in texts:
            if choice_index(text, record.choices) is None:
                options = ", ".join(chr(ord("A") + i) for i in range(min(len(record.choices), 26)))
                raise record.error("answer", f"{text!r} is not one of the choices {record.choices}: give an option's text or "
                                   f"its letter ({options})")
    last = len(record.messages) - 1
    if record.messages[last].get("role") != "assistant":
        return
    turn = " ".join(text_parts(record.messages[last].get("content")))
    if not turn.strip():
        return
    reply = final_answer(_pixel_text(turn, record))
    if not any(_agrees(text, reply, record) for text in texts):
        raise record.error("answer", f"{json.dumps(record.answer)[:80]} disagrees with the final assistant turn "
                           f"messages[{last}], which trains {reply[:80]!r}: make them the same answer")


# ---------------------------------------------------------------- media

NORMALISED_IMAGE_SIDE = 4  # a geometry all within [0, 1] is suspicious only on an image wider and taller than this


def looks_normalised(record: SpatialRecord) -> bool:
    """True when a media-checked record has boxes or points (refer_boxes included) and every coordinate is within
    [0, 1] on images wider and taller than NORMALISED_IMAGE_SIDE pixels: most likely written normalised, not in pixels."""
    items = [(b.bbox_pixel, b.image) for b in record.boxes] + [(p.xy_pixel, p.image) for p in record.points]
    items += [(box, g.image) for g in record.refer_boxes for box in g.boxes_pixel]
    if not items or not record.image_sizes:
        return False
    return all(0 <= v <= 1 for coords, _ in items for v in coords) and all(
        min(record.image_sizes[image]) > NORMALISED_IMAGE_SIDE for _, image in items)


def _open_image_size(path: Path, err, field_name: str) -> tuple[int, int]:
    if not path.is_file():
        raise err(field_name, f"image not found: {path}")
    try:
        return image_size(path, decode=True)
    except MediaError as e:
        raise err(field_name, str(e)) from None


def check_media(record: SpatialRecord) -> SpatialRecord:
    """Open every image and mask; check boxes, refer_boxes and points lie inside their image. Fills `image_sizes`."""
    sizes = [_open_image_size(p, record.error, f"images[{i}]") for i, p in enumerate(record.images)]
    boxes = [(f"boxes[{i}].bbox", box.bbox_pixel, box.image) for i, box in enumerate(record.boxes)]
    for i, group in enumerate(record.refer_boxes):
        boxes += [(f"refer_boxes[{i}]", coords, group.image) for coords in group.boxes_pixel]
    for where, (x1, y1, x2, y2), image in boxes:
        w, h = sizes[image]
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise record.error(where, f"{[x1, y1, x2, y2]} is not inside image {image} ({w}×{h}) with x1 < x2, y1 < y2")
    for i, point in enumerate(record.points):
        w, h = sizes[point.image]
        x, y = point.xy_pixel
        if not (0 <= x <= w and 0 <= y <= h):
            raise record.error(f"points[{i}].point", f"{list(point.xy_pixel)} is outside image {point.image} ({w}×{h})")
    for i, mask in enumerate(record.masks):
        mw, mh = _open_image_size(mask.path, record.error, f"masks[{i}].path")
        if (mw, mh) != sizes[mask.image]:
            raise record.error(f"masks[{i}].path", f"mask is {mw}×{mh} but image {mask.image} is {sizes[mask.image][0]}×{sizes[mask.image][1]}")
    record.image_sizes = sizes
    if looks_normalised(record):
        image = (record.boxes or record.points or record.refer_boxes)[0].image
        log.warning("%s:%d: record %r: every box/point coordinate is within [0, 1] on a %d×%d image: records hold pixels "
                    "of the original image, not normalised coordinates", record.source[0], record.source[1], record.id,
                    *sizes[image])
    return record


def scan_records(path: str | Path, image_root: str | Path | None = None, check_images: bool = True) -> tuple[list[SpatialRecord], list[RecordError]]:
    """Read a JSONL file, returning the good records and one RecordError per bad line (all of them)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"dataset file not found: {path}")
    base_dir = Path(image_root) if image_root else path.parent
    records, errors, seen = [], [], {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise RecordError(path, line_no, "<json>", f"malformed JSON: {e.msg} at column {e.colno}") from None
                record = parse_record(obj, file=path, line=line_no, base_dir=base_dir)
                if record.id in seen:
                    raise record.error("id", f"duplicate id {record.id!r} (first on line {seen[record.id]})")
                seen[record.id] = line_no
                records.append(check_media(record) if check_images else record)
            except RecordError as e:
                errors.append(e)
    return records, errors


def read_records(path: str | Path, image_root: str | Path | None = None, check_images: bool = True) -> list[SpatialRecord]:
    """Read and validate a JSONL dataset; raise the first RecordError (use `scan_records` to collect all)."""
    records, errors = scan_records(path, image_root, check_images)
    if errors:
        raise errors[0]
    return records
