"""HOI samples as hoi-benchmarks' simplified SWIG-HOI / HICO-DET JSON writes them: what `hoi-grounding`
(`hoi_grounding.py`) and `hoi-referring` (`hoi_referring.py`) share.

A sample names its image (`file_name`, or embedded `image` bytes), the annotation frame (`width`, `height`) and
`boxes`, pixel [x1, y1, x2, y2] boxes in that frame. Grounding samples pair boxes through `gt_box_inds`
([person, object, person, object, …] indices into `boxes`, `num_pairs` pairs); referring samples through
`person_box_idx` / `object_box_idx`. A file is a JSON list of samples (or JSONL / parquet with the same fields).

Scores are computed in the annotation frame, as the original scripts do (they read Qwen3-VL's 0–1000 grid back with
`width` / `height`), so the ARs/m/l buckets use the annotation's pixel areas. When the image file is a resized copy
(e.g. `images_512`), boxes are scaled into it for prompts and drawings, and predictions are scaled back to score them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ... import media
from ...answers.parse import as_box
from ...data.render import GeometryRenderer, Row
from ...data.sources import Table, image_path, read_table
from ...geometry import Convention, is_proper
from ...records import finite_number
from . import first_rows, question_record, table_row

ASPECT_TOLERANCE = 0.02  # a resized copy keeps the aspect ratio; more than 2 % off means a different image


def sample_id(table: Table, line: int, item: dict[str, Any], seen: dict[str, int]) -> str:
    """The sample's `id` if it has one, else its 0-based position in the file (the originals' index); unique."""
    rid = str(item["id"]) if "id" in item else str(line - 1)
    if rid in seen:
        raise table.error(line, "id", f"duplicate id {rid!r} (first at row {seen[rid]})")
    seen[rid] = line
    return rid


def annotation_frame(table: Table, line: int, item: dict[str, Any]) -> tuple[float, float]:
    """(width, height) of the frame the sample's boxes are measured in."""
    for key in ("width", "height"):
        if not finite_number(item.get(key)) or item[key] <= 0:
            raise table.error(line, key, f"expected the annotation's image {key} in pixels (> 0), got {item.get(key)!r}")
    return float(item["width"]), float(item["height"])


def sample_box(table: Table, line: int, item: dict[str, Any], index: Any, field: str) -> list[float]:
    """`boxes[index]` as a proper pixel box; `field` names the index field in errors."""
    boxes = item.get("boxes")
    if not isinstance(boxes, list) or not boxes:
        raise table.error(line, "boxes", "expected a non-empty list of [x1, y1, x2, y2] pixel boxes")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(boxes):
        raise table.error(line, field, f"{index!r} is not an index into `boxes` ({len(boxes)} boxes)")
    box = as_box(boxes[index])
    if box is None or not is_proper(box):
        raise table.error(line, f"boxes[{index}]", f"expected [x1, y1, x2, y2] with x1 < x2 and y1 < y2, got {json.dumps(boxes[index])[:80]}")
    return box


def sample_image(table: Table, line: int, item: dict[str, Any], rid: str) -> str:
    """Path of the sample's image: `file_name` (relative to the image root) or embedded `image` bytes."""
    value = item.get("image") or item.get("file_name")
    if value is None:
        raise table.error(line, "file_name", "missing (the image path, relative to --image-root)")
    return image_path(table, value, line, "file_name" if "image" not in item else "image", rid)


def image_size(table: Table, line: int, path: str) -> tuple[int, int]:
    """(width, height) of the sample's image file, read from its header."""
    try:
        return media.image_size(path)
    except media.MediaError as e:  # "image not found: …" or "cannot read image …: …"
        raise table.error(line, "file_name", str(e)) from None


def frame_scale(table: Table, line: int, size: tuple[int, int], frame: tuple[float, float]) -> tuple[float, float]:
    """Image pixels per annotation pixel along x and y (1, 1 unless the image file is a resized copy)."""
    sx, sy = size[0] / frame[0], size[1] / frame[1]
    if abs(sx / sy - 1) > ASPECT_TOLERANCE:
        raise table.error(
            line, "width", f"the image is {size[0]}×{size[1]} but the sample's boxes are for {frame[0]:g}×{frame[1]:g} (another aspect ratio): wrong image?"
        )
    return sx, sy


def to_image_frame(box: Sequence[float], scale: tuple[float, float], size: tuple[int, int]) -> list[float]:
    """An annotation-frame box in pixels of the image file (scaled, then clipped to the image's `size`)."""
    sx, sy = scale
    width, height = size
    x1, y1, x2, y2 = box
    return [min(max(x1 * sx, 0.0), width), min(max(y1 * sy, 0.0), height), min(max(x2 * sx, 0.0), width), min(max(y2 * sy, 0.0), height)]


def to_annotation_frame(box: Sequence[float], scale: tuple[float, float]) -> list[float]:
    """A box in pixels of the image file back in the annotation frame (not clipped, like the originals)."""
    sx, sy = scale
    return [box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy]


def row_scale(row: Row, meta: dict[str, Any]) -> tuple[float, float]:
    """Image pixels per annotation pixel of a loaded row (its image size over the `width`/`height` in meta)."""
    width, height = row["image_sizes"][0]
    return width / meta["width"], height / meta["height"]


def boxes_in_image(table: Table, line: int, path: str, frame: tuple[float, float], boxes: list[tuple[int, list[float]]]) -> list[list[float]]:
    """Annotation-frame boxes (each with its index in `boxes`, for errors) in pixels of the image file at `path`."""
    size = image_size(table, line, path)
    scale = frame_scale(table, line, size, frame)
    placed = []
    for index, box in boxes:
        in_image = to_image_frame(box, scale, size)
        if not is_proper(in_image):
            raise table.error(line, f"boxes[{index}]", f"{box} lies outside the {frame[0]:g}×{frame[1]:g} image")
        placed.append(in_image)
    return placed


@dataclass(frozen=True)
class HoiSample:
    """What every HOI sample has: its id, its image's path and the annotation frame (width, height) of its boxes."""

    id: str
    image: str
    frame: tuple[float, float]

    def record(self, task: str, question: str, answer_text: str, boxes: list[dict], answer: Any, meta: dict[str, Any]) -> dict[str, Any]:
        """A spatial record (as JSON data) of this sample: one image, the question, the reference answer."""
        return question_record(self.id, task, [self.image], question, answer_text, boxes=boxes, answer=answer, meta=meta)


RecordBuilder = Callable[[Table, int, dict[str, Any], HoiSample], dict[str, Any]]


def hoi_rows(
    path: str | Path,
    processor,
    convention: Convention,
    build: RecordBuilder,
    image_root: str | Path | None = None,
    max_samples: int | None = None,
) -> list[dict[str, Any]]:
    """Rows of an HOI file: id, image and frame read here, the benchmark's record made by `build(table, line, item, sample)`."""
    table = read_table(path, image_root=image_root)
    renderer = GeometryRenderer.for_processor(processor, convention)
    seen: dict[str, int] = {}

    def row(line: int, item: dict[str, Any]) -> dict[str, Any]:
        rid = sample_id(table, line, item, seen)
        sample = HoiSample(rid, sample_image(table, line, item, rid), annotation_frame(table, line, item))
        return table_row(table, line, build(table, line, item, sample), renderer)

    return first_rows((row(line, item) for line, item in enumerate(table.rows, start=1)), max_samples)
