"""Record → TRL row: geometry placeholders rendered by the model family's convention, images by path.

A TRL row is what TRL's vision-language collator consumes (`messages` with `{"type": "image"}` parts, `images`)
plus the record's structured columns, kept for later add-ons (rewards, box-aware modules such as spatial linking's
`refer_boxes`, metrics). Preference rows (`prompt`, `chosen`, `rejected`) are made in `data/preference.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypedDict

from ..geometry import Convention, ImageFrame, ResizePolicy, pixel_to_model
from ..records import GEOMETRY_PLACEHOLDER, SpatialRecord, text_parts
from ..tasks import frames
from ..tasks.linking import BOX_END, box_span, regions_statement
from ..tools.protocol import from_user_turn_crops


def format_coords(values: list) -> str:
    """The text form of a box or point, as Qwen-VL models read and write it: `[x1, y1, x2, y2]`."""
    return "[" + ", ".join(str(v) for v in values) + "]"


def uses_coordinates(record: SpatialRecord) -> bool:
    """Whether a record shows coordinates: a `{box:N}` / `{point:N}` in any text (its turns, its preference turns, its
    answer), or referred regions (`refer_boxes`, which rendering shows in the prompt)."""
    turns = [*record.messages, *(record.chosen or []), *(record.rejected or [])]
    texts = [t for m in turns for t in text_parts(m.get("content"))] + [record.answer if isinstance(record.answer, str) else ""]
    return bool(record.refer_boxes) or any(GEOMETRY_PLACEHOLDER.search(t) for t in texts)


def _with_sentence(parts: list[dict[str, Any]], sentence: str) -> list[dict[str, Any]]:
    """Content parts with `sentence` on a new line at the end of the last text part (a new text part if there is none)."""
    last = max((i for i, p in enumerate(parts) if p.get("type") == "text"), default=None)
    if last is None:
        return [*parts, {"type": "text", "text": sentence}]
    return [*parts[:last], {"type": "text", "text": f"{parts[last]['text']}\n{sentence}"}, *parts[last + 1:]]


@dataclass(frozen=True)
class GeometryRenderer:
    """Renders `{box:N}` / `{point:N}` placeholders in a record's text for one model family and pixel budget."""

    convention: Convention
    policy: ResizePolicy | None = None  # needed for qwen25_abs (absolute pixels of the resized image)
    frame_statement: str | None = None  # ends the first user turn of a record with coordinates (see tasks.frames)

    @classmethod
    def for_processor(cls, processor, convention: Convention) -> "GeometryRenderer":
        """The renderer of a model family: images resized exactly as `processor` does (read only for qwen25_abs, the
        one frame that depends on it, so any processor will do for the others), and the frame stated in prompts with
        coordinates where the family has no native one (`norm01`)."""
        policy = ResizePolicy.from_processor(processor) if convention is Convention.QWEN25_ABS else None
        return cls(convention, policy, frames.frame_statement(convention))

    def frame(self, record: SpatialRecord, image: int) -> ImageFrame:
        """The coordinate frame of image `image` of a media-checked record."""
        if not record.image_sizes:
            raise ValueError(f"record {record.id!r}: image sizes unknown; load it with check_images=True")
        width, height = record.image_sizes[image]
        return ImageFrame.of(width, height, self.policy)

    def box_in_model_frame(self, box_pixel, record: SpatialRecord, image: int) -> list:
        """A pixel box (or point) of image `image` in the model's coordinates, as `{box:N}` renders it."""
        return pixel_to_model(box_pixel, self.frame(record, image), self.convention)

    def render_text(self, text: str, record: SpatialRecord) -> str:
        """Replace every geometry placeholder in `text` with coordinates in the model's frame."""

        def replace(match) -> str:
            kind, index = match.group(1), int(match.group(2))
            item = record.boxes[index] if kind == "box" else record.points[index]
            coords = item.bbox_pixel if kind == "box" else item.xy_pixel
            return format_coords(self.box_in_model_frame(coords, record, item.image))

        return GEOMETRY_PLACEHOLDER.sub(replace, text)

    def render_chat(self, messages: list[dict[str, Any]], record: SpatialRecord) -> list[dict[str, Any]]:
        """`messages` (the record's, or its chosen / rejected turns) in structured form with every text rendered; a crop
        shown back as a user turn (the source pipelines' chain-of-focus format) becomes the template-native tool message;
        the first user turn ends with the referred regions (`refer_boxes`, see `tasks.linking`), then the frame
        statement, if any, of a record with coordinates. For a record with `refer_boxes`, a chat whose `<|box_end|>`
        tokens are not exactly one per region (none in a chat without a user turn) is a RecordError on `refer_boxes`."""
        rendered = []
        first_user = True
        for message in from_user_turn_crops(messages):
            content = message.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            parts = [
                {"type": "text", "text": self.render_text(p["text"], record)} if p.get("type") == "text" else {"type": "image"}
                for p in content or []
            ]
            if first_user and message.get("role") == "user":
                if record.refer_boxes:
                    parts = _with_sentence(parts, self.regions_statement(record))
                if self.frame_statement is not None and uses_coordinates(record):
                    parts = _with_sentence(parts, self.frame_statement)
                first_user = False
            rendered.append({**message, "content": parts})
        expected = 0 if first_user else len(record.refer_boxes)
        found = sum(t.count(BOX_END) for m in rendered for t in text_parts(m["content"]))
        if record.refer_boxes and found != expected:
            raise record.error("refer_boxes", f"the rendered chat holds {found} {BOX_END} token(s) for {expected} referred "
                               f"region(s) of this chat ({len(record.refer_boxes)} in 'refer_boxes'): the k-th {BOX_END} "
                               "must be the k-th region, and rendering writes one per region after the first user turn; "
                               f"remove {BOX_END} written in the text, or give the chat a user turn")
        return rendered

    def regions_statement(self, record: SpatialRecord) -> str:
        """The line showing a record's referred regions in `refer_boxes` order, each as one box-token span of its boxes
        in the model's frame (rendered like `{box:N}`)."""
        spans = [box_span([format_coords(b) for b in group["boxes"]]) for group in self.refer_boxes_in_model_frame(record)]
        return regions_statement(spans, [g.label for g in record.refer_boxes])

    def render_messages(self, record: SpatialRecord) -> list[dict[str, Any]]:
        """The record's messages in structured form with every text rendered (the record is not modified)."""
        return self.render_chat(record.messages, record)

    def refer_boxes_in_model_frame(self, record: SpatialRecord) -> list[dict[str, Any]]:
        """The record's refer_boxes groups with every box in the model's coordinates (the row carries them in pixels)."""
        return [{"boxes": [self.box_in_model_frame(b, record, g.image) for b in g.boxes_pixel], "image": g.image, "label": g.label}
                for g in record.refer_boxes]


class BoxColumn(TypedDict):
    """A box of a row, in pixels of image `image`."""

    bbox: list[float]
    image: int
    label: str


class PointColumn(TypedDict):
    """A point of a row, in pixels of image `image`."""

    point: list[float]
    image: int
    label: str


class MaskColumn(TypedDict):
    """A mask of a row: the path of a mask image aligned with image `image`."""

    path: str
    image: int
    label: str


class ReferGroupColumn(TypedDict):
    """A `refer_boxes` group of a row: the pixel boxes of one referred region on image `image`."""

    boxes: list[list[float]]
    image: int
    label: str


class RecordColumns(TypedDict):
    """What every row carries besides its chat: images and the structured ground truth in the pixel frame."""

    images: list[str]
    image_sizes: list[list[int]]
    boxes: list[BoxColumn]
    points: list[PointColumn]
    masks: list[MaskColumn]
    refer_boxes: list[ReferGroupColumn]
    answer: Any
    choices: list[str]
    meta: dict[str, Any]


class Row(RecordColumns):
    """One record as the runner, the benchmarks and the collator use it: the chat rendered in the model's frame."""

    id: str
    task: str
    source: str
    messages: list[dict[str, Any]]


FREE_FORM_COLUMNS = ("answer", "meta")  # any JSON value: encoded as text inside a datasets.Dataset (one schema)


def record_columns(record: SpatialRecord) -> RecordColumns:
    """The columns every row carries besides its chat: image paths and sizes, and the structured ground truth in the
    pixel frame (what rewards, metrics and add-ons read)."""
    return {
        "images": [str(p) for p in record.images],
        "image_sizes": [list(s) for s in record.image_sizes],
        "boxes": [{"bbox": list(b.bbox_pixel), "image": b.image, "label": b.label} for b in record.boxes],
        "points": [{"point": list(p.xy_pixel), "image": p.image, "label": p.label} for p in record.points],
        "masks": [{"path": str(m.path), "image": m.image, "label": m.label} for m in record.masks],
        "refer_boxes": [{"boxes": [list(b) for b in g.boxes_pixel], "image": g.image, "label": g.label} for g in record.refer_boxes],
        # plain JSON values (tuples become lists), as a record file or a results file holds them
        "answer": json.loads(json.dumps(record.answer)),
        "choices": record.choices or [],
        "meta": json.loads(json.dumps(record.meta)),
    }


def dataset_row(row: RecordColumns) -> dict[str, Any]:
    """A row as a `datasets.Dataset` stores it: the free-form columns (`answer`, `meta`) as JSON text."""
    return {**row, **{key: json.dumps(row[key]) for key in FREE_FORM_COLUMNS}}


def record_to_row(record: SpatialRecord, renderer: GeometryRenderer) -> Row:
    """A TRL-ready row: rendered messages, image paths, and the structured ground truth in the pixel frame."""
    return {
        "id": record.id,
        "task": record.task,
        "source": f"{record.source[0]}:{record.source[1]}",
        "messages": renderer.render_messages(record),
        **record_columns(record),
    }
