"""hoi-boxes: add spatial-linking `refer_boxes` — [person, object, interaction] per HOI pair — to HOI SFT records.

Input (`--input`): a JSONL file of spatial records, boxes in pixels of their image (hoi-spatial-sft's
`referring.jsonl` / `grounding.jsonl`, or any HOI SFT file in the record format). Relative image paths resolve
against `--image-root`, else the file's folder.

Which boxes are HOI pairs, in this order of precedence:
1. `meta.hoi_pairs`: `[[person_index, object_index], …]`, indices into the record's `boxes` (hoi-spatial-sft writes it);
2. else the box labels: boxes 0, 1 / 2, 3 / … are (person, object) pairs when every even box is labelled "person"
   (any case) and every odd box is not (the layout of the hoi-grounding and hoi-referring benchmarks' records).

Output: `<input stem>.jsonl`, the same records (input order) with
- `boxes`: pair k as boxes 3k, 3k+1, 3k+2 labelled "person", "object", "interaction" (the union box: the smallest box
  holding both, `[100,100,300,400] ∪ [250,200,450,350] = [100,100,450,400]`), then the record's other boxes;
- `refer_boxes`: the same 3·P pixel boxes, one group each `{"boxes": [box], "image": i, "label": "person" | "object" |
  "interaction"}` on the pair's image; rendering shows them after the first user turn's text, one
  `<|box_start|>[…]<|box_end|>` per group in the model's frame (`Referred regions: person <…>; object <…>;
  interaction <…>`, see `tasks.linking`), so the k-th `<|box_end|>` of the prompt is `refer_boxes[k]` and the
  interaction box is shown too (the records' own text is unchanged);
- every `{box:N}` placeholder renumbered to the box's new index (a box shared by two pairs: its first copy), and
  `meta.hoi_pairs`, `person_box_idx`, `object_box_idx`, `gt_box_inds` (hoi-benchmarks fields) renumbered too;
- image and mask paths made absolute (they point into the input's files).
`--num-samples` keeps a seeded subset (input order kept).

Box checks: a box must have x1 < x2 and y1 < y2, else it is dropped (skip `invalid_box`, per box); a box reaching
outside its image is clipped to it (counted in stats.json `clipped_boxes`, with examples); a box with nothing left
inside is dropped (skip `box_outside_image`, per box). A pair with a dropped box is dropped with it; a pair whose boxes
lie on different images is dropped (`pair_across_images`).

Bad input: a missing input file or a line that is not JSON → BuildError naming file and line. Counted skips of whole
records: `invalid_record` (fails the record validation), `duplicate_id`, `already_has_refer_boxes` (run it on the
original records), `invalid_hoi_pairs` (malformed `meta.hoi_pairs`), `missing_image`, `unreadable_image`,
`text_shows_dropped_box` (a placeholder names a dropped box), `field_names_dropped_box` (`person_box_idx`,
`object_box_idx` or `gt_box_inds` names a dropped box: renumbering it would point at another box), `no_hoi_pairs`
(none found, or none left).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...geometry import interaction_box
from ...records import GEOMETRY_PLACEHOLDER, SpatialRecord
from ...tasks.linking import PAIR_LABELS
from . import (
    BuildReport,
    BuildSettings,
    Progress,
    builder,
    seeded_subset,
)
from ._hoi import absolute_media, check_box, hoi_pairs, image_sizes, note_clipped, read_hoi_records

INDEX_FIELDS = ("person_box_idx", "object_box_idx", "gt_box_inds")  # hoi-benchmarks fields that index `boxes`


@dataclass
class HoiBoxesSettings(BuildSettings):
    """The HOI record file to extend and where its relative image paths start."""

    input: str = field(default="", metadata={"required": True, "help": "JSONL file of HOI spatial records (boxes in pixels)."})
    image_root: str | None = field(default=None, metadata={"help": "Folder relative image paths resolve against (default: the input file's folder)."})


def renumber_placeholders(obj: Any, new_index: dict[int, int]) -> Any:
    """A copy of the messages with every `{box:N}` renumbered through `new_index` (points untouched)."""
    if isinstance(obj, str):
        return GEOMETRY_PLACEHOLDER.sub(lambda m: f"{{box:{new_index[int(m.group(2))]}}}" if m.group(1) == "box" else m.group(0), obj)
    if isinstance(obj, list):
        return [renumber_placeholders(x, new_index) for x in obj]
    if isinstance(obj, dict):
        return {k: renumber_placeholders(v, new_index) for k, v in obj.items()}
    return obj


def shown_boxes(messages: list[dict]) -> set[int]:
    """Indices of the boxes the record's text shows through `{box:N}`."""
    shown: set[int] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, str):
            shown.update(int(i) for kind, i in GEOMETRY_PLACEHOLDER.findall(obj) if kind == "box")
        elif isinstance(obj, list):
            for x in obj:
                walk(x)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x)

    walk(messages)
    return shown


def _box_dict(box: Any, bbox: list[float], label: str) -> dict:
    """A record box item with new coordinates and label (other keys of a dict item kept)."""
    item = dict(box) if isinstance(box, dict) else {"image": 0}
    return {**item, "bbox": bbox, "label": label}


def _renumber_field(value: Any, new_index: dict[int, int]) -> Any:
    """An index (or list of indices) into `boxes` renumbered; values that are not valid indices are left as they are."""
    if isinstance(value, list):
        return [_renumber_field(v, new_index) for v in value]
    return new_index.get(value, value) if isinstance(value, int) and not isinstance(value, bool) else value


def _field_indices(value: Any, n_boxes: int) -> set[int]:
    """The valid indices into `boxes` that an index field (an index or a list of them) names."""
    if isinstance(value, list):
        return {i for v in value for i in _field_indices(v, n_boxes)}
    return {value} if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n_boxes else set()


def add_refer_boxes(obj: dict, record: SpatialRecord, sizes: list[tuple[int, int]], report: BuildReport, where: str) -> dict | None:
    """The record with [person, object, interaction] groups first in `boxes` and in `refer_boxes`; None if skipped."""
    if "refer_boxes" in obj:
        report.skip("already_has_refer_boxes", where)
        return None
    pairs = hoi_pairs(record)
    if pairs is None:
        report.skip("invalid_hoi_pairs", f"{where}: meta.hoi_pairs must be [[person_index, object_index], …] into boxes")
        return None
    checked: list[list[float] | None] = []
    for i, (box, item) in enumerate(zip(record.boxes, obj["boxes"] if record.boxes else [])):
        width, height = sizes[box.image]
        coords = item["bbox"] if isinstance(item, dict) else item  # as written (ints stay ints)
        result = check_box(coords, width, height)
        if result.skip_reason:
            report.skip(result.skip_reason, f"{where}: boxes[{i}] {coords} in a {width}×{height} image")
        elif result.clipped:
            note_clipped(report, f"{where}: boxes[{i}]", coords, result.box_pixel)
        checked.append(result.box_pixel)
    groups, new_index, kept_pairs = [], {}, []
    for person, obj_index in pairs:
        if checked[person] is None or checked[obj_index] is None:
            continue
        if record.boxes[person].image != record.boxes[obj_index].image:
            report.skip("pair_across_images", f"{where}: boxes {person} and {obj_index}")
            continue
        base = len(groups)
        union = interaction_box(checked[person], checked[obj_index])
        for index, bbox, label in zip((person, obj_index, None), (checked[person], checked[obj_index], union), PAIR_LABELS):
            if index is not None:
                new_index.setdefault(index, len(groups))
            groups.append(_box_dict(obj["boxes"][person if index is None else index], bbox, label))
        kept_pairs.append([base, base + 1])
    others = []
    for i, box in enumerate(record.boxes):
        if i not in new_index and checked[i] is not None:
            new_index[i] = len(groups) + len(others)
            others.append(_box_dict(obj["boxes"][i], checked[i], box.label))
    dropped = sorted(shown_boxes(record.messages) - set(new_index))
    if dropped:
        report.skip("text_shows_dropped_box", f"{where}: {{box:{dropped[0]}}}")
        return None
    named = sorted(i for key in INDEX_FIELDS if key in obj for i in _field_indices(obj[key], len(record.boxes)) if i not in new_index)
    if named:
        report.skip("field_names_dropped_box", f"{where}: box {named[0]}")
        return None
    if not groups:
        report.skip("no_hoi_pairs", where)
        return None
    out = {**obj, "messages": renumber_placeholders(obj["messages"], new_index)}
    out.update(absolute_media(obj, record))
    out["boxes"] = groups + others
    out["refer_boxes"] = [{"boxes": [g["bbox"]], "image": g.get("image", 0), "label": g["label"]} for g in groups]
    out["meta"] = {**record.meta, "hoi_pairs": kept_pairs}
    for key in INDEX_FIELDS:
        if key in out:
            out[key] = _renumber_field(out[key], new_index)
    return out


@builder("hoi-boxes", HoiBoxesSettings)
def build_hoi_boxes(settings: HoiBoxesSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """Add [person, object, interaction] refer_boxes (one group per HOI pair) to HOI SFT records."""
    path = Path(settings.input)
    rows = read_hoi_records(path, Path(settings.image_root) if settings.image_root else None, report)
    sizes = image_sizes([r for _, _, r in rows], settings.workers, progress)
    records = []
    for line, obj, record in rows:
        where = f"{path}:{line} ({record.id})"
        bad = next((sizes[str(p)].skip_reason for p in record.images if sizes[str(p)].size is None), None)
        if bad is not None:
            report.skip(bad, where)
            continue
        extended = add_refer_boxes(obj, record, [sizes[str(p)].size for p in record.images], report, where)
        if extended is not None:
            records.append(extended)
    records = seeded_subset(records, settings.num_samples, settings.seed, "hoi-boxes")
    report.extra.setdefault("clipped_boxes", 0)
    report.extra["refer_groups"] = sum(len(r["refer_boxes"]) // len(PAIR_LABELS) for r in records)
    return {f"{path.stem}.jsonl": records}

