"""Reading record files and checking their media: every image opened, geometry inside its image, one RecordError per
bad line (all of them), a warning for geometry that looks normalised."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import MissingFileError
from ..media import MediaError, image_size
from .consistency import looks_normalised
from .record import RecordError, SpatialRecord, parse_record

log = logging.getLogger(__name__)


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
