"""cof-tool-sft: chain-of-focus SFT records — the assistant answers directly, or first zooms in with the crop tool and
answers after seeing the real crop.

Input (`--input`, repeatable): JSONL files of single-image HOI records, as hoi-spatial-sft (`referring.jsonl`,
`grounding.jsonl`) or hoi-boxes write them: one user turn (the image and the question) and one assistant turn (the
answer), boxes in pixels, the HOI pairs named by `meta.hoi_pairs` or by alternating person/object box labels (see
hoi-boxes). Relative image paths resolve against `--image-root`, else each file's folder.

Output `train.jsonl`: every record keeps its task, boxes, answer and other fields (image and mask paths made
absolute), and becomes a conversation in the tool dialect of `spatialtune.tools.protocol` (the chat templates' own turns):
- system: `spatialtune.tools.crop.crop_system_prompt()` — the instructions and the crop tool in Qwen's `# Tools` block,
  the same text the eval runner uses;
- direct: user question → `<think>…</think>\\n<answer>ANSWER</answer>`;
- tool: user question → `<think>…</think>\\n<tool_call>\\n{"name": "crop", "arguments": {"bbox": {box:K}}}\\n</tool_call>`
  → `{"role": "tool", "name": "crop"}` message with the crop image (the record's second image, written to `crops/`)
  and the crop tool's text ("Here is the zoomed region.") → `<think>…</think>\\n<answer>ANSWER</answer>`.
ANSWER is the input's answer text (its `{box:N}` placeholders kept). The crop box is `boxes[K]` (label "crop", image
0), so the call shows it in the model family's convention, as the eval runner reads it back over image 0: the union of
the record's HOI pair boxes, padded on each side by `--crop-padding` × its width / height, grown to the runner's
smallest crop side (28 px) where smaller, clipped to the image, in whole pixels. Every record gets
`meta.tools = ["crop"]` (the runner then executes calls on it), `meta.uses_tool`, `meta.label` ("tool" / "direct")
and, with the tool, `meta.crop_box`.

Tool quota: of the N records (`--num-samples`, a seeded subset; default all), exactly round(`--tool-ratio` · N),
rounded half up, use the tool, chosen with the seed. Thoughts are fixed templates naming the object category.

Bad input: a missing file, a line that is not JSON, or a `--tool-ratio` outside [0, 1] / negative `--crop-padding` →
BuildError. Counted skips, per record, all decided before the quota is drawn so that it stays exact:
`invalid_record`, `duplicate_id` (also across files), `already_tool_record` (meta.tools set), `not_single_image`,
`not_single_turn` (not one user turn with the image, then one assistant turn), `invalid_hoi_pairs`, `no_hoi_pairs`,
`missing_image`, `unreadable_image`, `invalid_box` (x1 ≥ x2 or y1 ≥ y2), `box_outside_image` (a box not inside its
image: run hoi-boxes first to clip), `image_too_small` (narrower or lower than the smallest crop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Sequence

from ...records import SpatialRecord, text_parts
from ...tools.crop import ZOOMED_TEXT, ToolSettings, crop_call_text, crop_file_stem, crop_system_prompt, cut_crop
from ...tools.protocol import tool_message
from . import (
    BuildError,
    BuildReport,
    BuildSettings,
    Progress,
    builder,
    item_rng,
    message,
    parallel_map,
    seeded_subset,
)
from ._hoi import absolute_media, check_box, hoi_pairs, image_sizes, read_hoi_records

CROPS_DIR = "crops"


@dataclass
class CofToolSettings(BuildSettings):
    """HOI record files, the share of samples that zoom, and how much context a crop keeps."""

    input: list[str] = field(default_factory=list, metadata={"required": True, "help": "JSONL file of HOI records (repeat the option), e.g. hoi-spatial-sft's referring.jsonl."})
    image_root: str | None = field(default=None, metadata={"help": "Folder relative image paths resolve against (default: each input file's folder)."})
    tool_ratio: float = field(default=0.35, metadata={"help": "Share of records that call the crop tool: exactly round(ratio · N)."})
    crop_padding: float = field(default=0.15, metadata={"help": "Context around the HOI boxes in a crop, as a fraction of their union's width / height per side."})


@dataclass(frozen=True)
class Candidate:
    """A usable input record: its JSON, the parsed record, where it came from, and its crop box in pixels."""

    obj: dict
    record: SpatialRecord
    where: str
    crop_box: tuple[int, int, int, int]


def tool_count(ratio: float, n: int) -> int:
    """round(ratio · n), half up: the exact number of records that use the tool."""
    return math.floor(ratio * n + 0.5 + 1e-9)


def _grow(lo: float, hi: float, min_side: float, limit: int) -> tuple[float, float]:
    """An interval grown to `min_side` around its centre and shifted inside [0, limit] where it fits."""
    if hi - lo < min_side:
        centre = (lo + hi) / 2
        lo, hi = centre - min_side / 2, centre + min_side / 2
    if lo < 0:
        lo, hi = 0.0, hi - lo
    if hi > limit:
        lo, hi = lo - (hi - limit), float(limit)
    return max(lo, 0.0), min(hi, float(limit))


def crop_region(boxes_pixel: Sequence[Sequence[float]], width: int, height: int, padding: float, min_side: int) -> tuple[int, int, int, int] | None:
    """The padded union of the boxes, at least `min_side` per side, clipped to the image, in whole pixels (None: image too small)."""
    x1, y1 = min(b[0] for b in boxes_pixel), min(b[1] for b in boxes_pixel)
    x2, y2 = max(b[2] for b in boxes_pixel), max(b[3] for b in boxes_pixel)
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left, right = _grow(x1 - pad_x, x2 + pad_x, min_side, width)
    top, bottom = _grow(y1 - pad_y, y2 + pad_y, min_side, height)
    box = (max(0, math.floor(left)), max(0, math.floor(top)), min(width, math.ceil(right)), min(height, math.ceil(bottom)))
    return box if box[2] - box[0] >= min_side and box[3] - box[1] >= min_side else None


def is_single_turn(record: SpatialRecord) -> bool:
    """One user turn holding the record's only image, then one assistant turn."""
    messages = record.messages
    return (
        len(messages) == 2 and messages[0]["role"] == "user" and messages[1]["role"] == "assistant"
        and isinstance(messages[0].get("content"), list) and record.image_placeholder_count() == 1
    )


def object_name(record: SpatialRecord, pairs: list[tuple[int, int]]) -> str:
    """What the person interacts with, for the thoughts: meta.object_category, else the first object box's label."""
    category = record.meta.get("object_category")
    if isinstance(category, str) and category.strip():
        return category.strip()
    label = record.boxes[pairs[0][1]].label
    return label if label and label != "object" else "object"


def candidate(obj: dict, record: SpatialRecord, where: str, size: tuple[int, int], settings: CofToolSettings, min_side: int, report: BuildReport) -> Candidate | None:
    """The record with its crop box, or None after counting why it cannot be used."""
    pairs = hoi_pairs(record)
    if pairs is None or not pairs:
        report.skip("invalid_hoi_pairs" if pairs is None else "no_hoi_pairs", where)
        return None
    for i, box in enumerate(record.boxes):
        checked = check_box(box.bbox_pixel, *size)
        if checked.skip_reason or checked.clipped:
            report.skip(checked.skip_reason or "box_outside_image", f"{where}: boxes[{i}] {list(box.bbox_pixel)} in a {size[0]}×{size[1]} image")
            return None
    paired = [record.boxes[i].bbox_pixel for pair in pairs for i in pair]
    crop = crop_region(paired, size[0], size[1], settings.crop_padding, min_side)
    if crop is None:
        report.skip("image_too_small", f"{where}: {size[0]}×{size[1]}")
        return None
    return Candidate(obj, record, where, crop)


def read_candidates(settings: CofToolSettings, min_side: int, report: BuildReport, progress: Progress) -> list[Candidate]:
    """Every usable record of the input files, in input order; the others are counted skips."""
    rows, seen = [], set()
    for name in settings.input:
        path = Path(name)
        for line, obj, record in read_hoi_records(path, Path(settings.image_root) if settings.image_root else None, report):
            where = f"{path}:{line} ({record.id})"
            if record.id in seen:
                report.skip("duplicate_id", where)
            elif record.meta.get("tools"):
                report.skip("already_tool_record", where)
            elif len(record.images) != 1:
                report.skip("not_single_image", where)
            elif not is_single_turn(record):
                report.skip("not_single_turn", where)
            else:
                seen.add(record.id)
                rows.append((obj, record, where))
    sizes = image_sizes([r for _, r, _ in rows], settings.workers, progress)
    candidates = []
    for obj, record, where in rows:
        image = sizes[str(record.images[0])]
        if image.size is None:
            report.skip(image.skip_reason, where)
            continue
        found = candidate(obj, record, where, image.size, settings, min_side, report)
        if found is not None:
            candidates.append(found)
    return candidates


def crop_path(record_id: str) -> str:
    """Where a record's crop is written, relative to the dataset folder (readable and unique per id)."""
    return f"{CROPS_DIR}/{crop_file_stem(record_id)}.png"


def write_crop(out: Path, job: tuple[str, tuple[int, int, int, int], str]) -> None:
    """Cut the crop box from the source image and save it as PNG under the dataset folder."""
    source, box, relative = job
    cut_crop(source, box, out / relative)


def cof_record(c: Candidate, uses_tool: bool, system_prompt: str) -> dict:
    """The chain-of-focus conversation of one record: direct answer, or crop call → crop image → answer."""
    obj, record = c.obj, c.record
    thing = object_name(record, hoi_pairs(record) or [])
    answer = "".join(text_parts(record.messages[1].get("content")))
    system = message("system", system_prompt)
    out = {**obj, **absolute_media(obj, record)}
    meta = {**record.meta, "tools": ["crop"], "uses_tool": uses_tool, "label": "tool" if uses_tool else "direct"}
    if not uses_tool:
        thought = f"The person and the {thing} are clearly visible, so I can answer without zooming in."
        out["messages"] = [system, obj["messages"][0], message("assistant", f"<think>{thought}</think>\n<answer>{answer}</answer>")]
        return {**out, "meta": meta}
    call = crop_call_text(f"{{box:{len(obj.get('boxes') or [])}}}")
    zoom = f"To see how the person interacts with the {thing}, I will zoom in on the region around them."
    seen = f"The zoomed region shows the person and the {thing} up close."
    out["messages"] = [
        system,
        obj["messages"][0],
        message("assistant", f"<think>{zoom}</think>\n{call}"),
        tool_message(ZOOMED_TEXT, image=crop_path(record.id)),
        message("assistant", f"<think>{seen}</think>\n<answer>{answer}</answer>"),
    ]
    out["images"].append(crop_path(record.id))
    out["boxes"] = list(obj.get("boxes") or []) + [{"bbox": list(c.crop_box), "image": 0, "label": "crop"}]
    return {**out, "meta": {**meta, "crop_box": list(c.crop_box)}}


@builder("cof-tool-sft", CofToolSettings)
def build_cof_tool_sft(settings: CofToolSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """Chain-of-focus SFT: direct answers and crop-tool conversations with real crops, in an exact seeded ratio."""
    if not settings.input:
        raise BuildError("cof-tool-sft needs --input (a JSONL file of HOI records; repeat the option for more)")
    if not 0 <= settings.tool_ratio <= 1:
        raise BuildError(f"--tool-ratio must be in [0, 1], got {settings.tool_ratio}")
    if settings.crop_padding < 0:
        raise BuildError(f"--crop-padding must be ≥ 0, got {settings.crop_padding}")
    candidates = seeded_subset(read_candidates(settings, ToolSettings().min_size, report, progress), settings.num_samples, settings.seed, "cof-tool-sft")
    n_tool = tool_count(settings.tool_ratio, len(candidates))
    with_tool = set(item_rng(settings.seed, "cof-tool-sft", "tool-choice").sample(range(len(candidates)), n_tool))
    jobs = [(str(c.record.images[0]), c.crop_box, crop_path(c.record.id)) for i, c in enumerate(candidates) if i in with_tool]
    (out / CROPS_DIR).mkdir(parents=True, exist_ok=True)
    parallel_map(partial(write_crop, out), jobs, settings.workers, progress)
    system_prompt = crop_system_prompt()
    records = [cof_record(c, i in with_tool, system_prompt) for i, c in enumerate(candidates)]
    report.extra["tool_quota"] = {"records": len(records), "with_tool": n_tool, "direct": len(records) - n_tool,
                                  "requested_ratio": settings.tool_ratio, "realised_ratio": n_tool / len(records) if records else 0.0}
    return {"train.jsonl": records}

