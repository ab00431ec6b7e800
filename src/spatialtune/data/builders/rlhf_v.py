"""RLHF-V (`openbmb/RLHF-V-Dataset`) → preference records for DPO (`--mode preference`) or its chosen answers as SFT
records (`--mode sft`).

Input rows (local `.parquet`/`.jsonl`/`.json`, a snapshot folder, or the hub id when online; see `_public.py`):
`image` (`{"bytes", "path"}`, or a path), `text` (a JSON string — or object — with `question`, `chosen`, `rejected`),
`ds_name`, `origin_dataset`, `origin_split`, `idx`, `image_path` (used when `image` holds no image: relative to
`--image-root`). Rows in the RLAIF-V layout (`question`, `chosen`, `rejected` as columns) are read too. `<image>`
placeholders in the question are removed (images are message parts here).

Output `<split>.jsonl`, one record per usable row, id `rlhf-v/<row number, 6 digits>` (the source `idx` is kept in
meta, it is not known to be unique): the user turn is the image and the question, the assistant turn the chosen answer.
- `preference` (task `preference`): the record also holds top-level `chosen` and `rejected`, each a one-message list
  `[{"role": "assistant", "content": [{"type": "text", "text": …}]}]`. That is TRL 1.16's conversational vision
  preference format (`DataCollatorForVisionPreference`: `prompt`, `chosen`, `rejected`, `images`) with the prompt being
  `messages` minus its final assistant turn; `trl_preference_row` makes that row.
- `sft` (task `vqa`): the record without `chosen`/`rejected`; `answer` is the chosen answer.
`meta`: `source`, `idx`, `ds_name`, `origin_dataset`, `origin_split`, and `label` = `origin_dataset` (else "unknown").
Embedded images are written to `images/`; images on disk are referenced by absolute path.

Bad input: a missing / malformed file or an unreachable hub id → BuildError (see `_public.py`). Counted skips:
`invalid_text` (`text` not a JSON object, or question / chosen / rejected missing or empty), `identical_pair` (chosen
equals rejected: no preference to learn; preference mode only), `missing_image` (no image in the row, or its file is
missing), `unreadable_image`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...records import message
from . import BuildError, BuildReport, BuildSettings, Progress, builder, chat
from ._public import (
    Candidate,
    ImageSource,
    SourceRows,
    draw_records,
    image_source,
    json_object,
    load_rows,
    strip_image_tokens,
    text_field,
)

MODES = ("preference", "sft")


@dataclass
class RlhfVSettings(BuildSettings):
    """Where RLHF-V is, which split, and whether to emit preference pairs or SFT records."""

    input: str = field(default="", metadata={"required": True, "help": "RLHF-V as .parquet/.jsonl/.json, a snapshot folder, or the hub id openbmb/RLHF-V-Dataset."})
    mode: Literal["preference", "sft"] = field(default="preference", metadata={"help": "preference: DPO pairs (chosen/rejected); sft: chosen answers only."})
    split: str = field(default="train", metadata={"help": "Split to read (hub / snapshot folder) and name of the output file."})
    image_root: Path | None = field(default=None, metadata={"help": "Folder relative image paths resolve against (default: the input's folder)."})


@dataclass(frozen=True)
class PreferenceItem:
    """One RLHF-V row, checked: its image, question, answers and provenance."""

    number: int
    image: ImageSource
    question: str
    chosen: str
    rejected: str
    meta: dict[str, Any]


def parse_row(row: dict[str, Any], number: int, rows: SourceRows, mode: str) -> PreferenceItem | str:
    """A checked row, or the skip reason that rules it out."""
    text = json_object(row.get("text")) if "text" in row else row
    if text is None:
        return "invalid_text"
    question, chosen, rejected = (text_field(text.get(k)) for k in ("question", "chosen", "rejected"))
    question = strip_image_tokens(question) if question else None
    if not (question and chosen and rejected):
        return "invalid_text"
    if mode == "preference" and chosen == rejected:
        return "identical_pair"
    where = f"{rows.source}:{number}"
    image = image_source(row.get("image"), rows.image_root, where) or image_source(row.get("image_path"), rows.image_root, where)
    if image is None:
        return "missing_image"
    meta = {"source": "RLHF-V", **{k: row[k] for k in ("idx", "ds_name", "origin_dataset", "origin_split") if row.get(k) is not None}}
    meta["label"] = text_field(row.get("origin_dataset")) or "unknown"
    return PreferenceItem(number, image, question, chosen, rejected, meta)


def preference_record(item: PreferenceItem, images: list[str], mode: str) -> dict[str, Any]:
    """The record of one row: image + question → chosen answer, plus chosen/rejected in preference mode."""
    record: dict[str, Any] = {
        "id": f"rlhf-v/{item.number:06d}",
        "task": "preference" if mode == "preference" else "vqa",
        "images": images,
        "messages": chat(item.question, item.chosen),
        "answer": item.chosen,
        "meta": item.meta,
    }
    if mode == "preference":
        # TRL's preference format holds a completion as a one-message assistant conversation
        record["chosen"], record["rejected"] = [message("assistant", item.chosen)], [message("assistant", item.rejected)]
    return record


def trl_preference_row(record: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A preference record as TRL's vision DPO collator reads it: prompt, chosen, rejected, image paths (absolute)."""
    return {
        "prompt": record["messages"][:-1],
        "chosen": record["chosen"],
        "rejected": record["rejected"],
        "images": [str(p if Path(p).is_absolute() else base_dir / p) for p in record["images"]],
    }


@builder("rlhf-v", RlhfVSettings)
def build_rlhf_v(settings: RlhfVSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """RLHF-V preference pairs (TRL's vision DPO format) or its chosen answers as SFT records."""
    if settings.mode not in MODES:
        raise BuildError(f"--mode must be one of {', '.join(MODES)}, got {settings.mode!r}")
    rows = load_rows(settings.input, settings.split, settings.image_root)
    candidates = []
    for number, row in enumerate(rows.rows, start=1):
        item = parse_row(row, number, rows, settings.mode)
        if isinstance(item, str):
            report.skip(item, f"{rows.source}:{number}")
            continue
        candidates.append(Candidate(f"{rows.source}:{number}", (item.image,), lambda images, item=item: preference_record(item, images, settings.mode)))
    records = draw_records(candidates, out, report, seed=settings.seed, key="rlhf-v", num_samples=settings.num_samples,
                           workers=settings.workers, progress=progress)
    return {f"{settings.split}.jsonl": records}
