"""What the HOI-record builders share (hoi-boxes, hoi-spatial-sft, cof-tool-sft, and qualitative-relations for boxes):
checking and clipping pixel boxes, reading HOI record files, person–object pairs, image sizes, absolute media paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ...geometry import clip_box, is_proper
from ...records import RecordError, SpatialRecord, parse_record
from . import BuildReport, ImageCheck, Progress, check_image, parallel_map, read_jsonl_file

MAX_CLIP_EXAMPLES = 5


@dataclass(frozen=True)
class CheckedBox:
    """What validating one pixel box against its image gave: the usable box (or None) and why."""

    box_pixel: list[float] | None
    skip_reason: str | None = None
    clipped: bool = False


def check_box(box_pixel: Sequence[float], width: int, height: int) -> CheckedBox:
    """Validate a box (x1 < x2, y1 < y2) and clip it to its image; a box with nothing inside is dropped."""
    if not is_proper(box_pixel):
        return CheckedBox(None, "invalid_box")
    clipped = clip_box(box_pixel, width, height)
    if clipped is None:
        return CheckedBox(None, "box_outside_image")
    return CheckedBox(clipped, None, clipped != list(box_pixel))


def note_clipped(report: BuildReport, where: str, before: Sequence[float], after: Sequence[float]) -> None:
    """Count a clipped box in stats.json (`clipped_boxes`) with the first few examples."""
    report.extra["clipped_boxes"] = report.extra.get("clipped_boxes", 0) + 1
    examples = report.extra.setdefault("clipped_examples", [])
    if len(examples) < MAX_CLIP_EXAMPLES:
        examples.append(f"{where}: {list(before)} → {list(after)}")


# ---------------------------------------------------------------- HOI records


def hoi_pairs(record: SpatialRecord) -> list[tuple[int, int]] | None:
    """(person index, object index) pairs of a record: `meta.hoi_pairs`, else alternating person/other labels;
    [] when there are none, None when `meta.hoi_pairs` is malformed."""
    if "hoi_pairs" in record.meta:
        pairs = record.meta["hoi_pairs"]
        ok = isinstance(pairs, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(record.boxes) for i in p)
            for p in pairs
        )
        return [(p[0], p[1]) for p in pairs] if ok else None
    labels = [b.label.strip().lower() for b in record.boxes]
    if not labels or len(labels) % 2 or any((label == "person") != (i % 2 == 0) for i, label in enumerate(labels)):
        return []
    return [(i, i + 1) for i in range(0, len(labels), 2)]


def read_hoi_records(path: Path, image_root: Path | None, report: BuildReport) -> list[tuple[int, dict, SpatialRecord]]:
    """(line, object, parsed record) of every valid record with a unique id; the others are counted skips."""
    base = image_root or path.parent
    rows, seen = [], set()
    for line, obj in read_jsonl_file(path, "HOI record file"):
        try:
            record = parse_record(obj, file=path, line=line, base_dir=base)
        except RecordError as e:
            report.skip("invalid_record", str(e))
            continue
        if record.id in seen:
            report.skip("duplicate_id", f"{path}:{line}: {record.id}")
            continue
        seen.add(record.id)
        rows.append((line, obj, record))
    return rows


def image_sizes(records: list[SpatialRecord], workers: int, progress: Progress) -> dict[str, ImageCheck]:
    """Size (or skip reason) of every image the records use, each decoded once over `workers` processes."""
    paths = sorted({str(p) for r in records for p in r.images})
    return dict(zip(paths, parallel_map(check_image, paths, workers, progress)))


def absolute_media(obj: dict, record: SpatialRecord) -> dict:
    """`images` (and `masks`, when the record has any) with absolute paths, so the record works from another folder."""
    media: dict[str, Any] = {"images": [str(p.resolve()) for p in record.images]}
    if record.masks:
        media["masks"] = [str(m.path.resolve()) if isinstance(raw, str) else {**raw, "path": str(m.path.resolve())}
                          for raw, m in zip(obj["masks"], record.masks)]
    return media
