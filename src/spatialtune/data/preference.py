"""Preference rows: a record's prompt with its chosen and rejected assistant turns, as TRL's DPO trainer reads them.

TRL 1.16's vision preference collator (`trl.trainer.dpo_trainer.DataCollatorForVisionPreference`) takes
conversational examples `{"prompt": [messages], "chosen": [assistant messages], "rejected": [assistant messages],
"images": [PIL images]}`, the prompt holding one `{"type": "image"}` part per image. A preference row is that with
image paths instead of images (`trl_preference_example` opens them), every text rendered in the model's frame like
`messages` (`{box:N}` / `{point:N}`), and the record's structured columns in the pixel frame. The prompt is the
record's `messages` before its last assistant turn (that turn, if any, is the reference answer SFT trains on).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

from ..geometry import Convention
from ..records import SpatialRecord, last_assistant_index
from .collate import fit_rows, open_images
from .dataset import DatasetError, PreparedRows, load_records
from .render import GeometryRenderer, record_columns


def preference_prompt(record: SpatialRecord) -> list[dict[str, Any]]:
    """The messages a preference pair answers: the record's messages before its last assistant turn."""
    return record.messages[: last_assistant_index(record.messages)]


def record_to_preference_row(record: SpatialRecord, renderer: GeometryRenderer) -> dict[str, Any]:
    """A DPO-ready row: rendered prompt, chosen and rejected turns, image paths, structured columns in pixels."""
    if record.chosen is None or record.rejected is None:
        raise record.error("chosen", "not a preference pair: the record has no 'chosen' and 'rejected' turns")
    return {
        "id": record.id,
        "task": record.task,
        "source": f"{record.source[0]}:{record.source[1]}",
        "prompt": renderer.render_chat(preference_prompt(record), record),
        "chosen": renderer.render_chat(record.chosen, record),
        "rejected": renderer.render_chat(record.rejected, record),
        **record_columns(record),
    }


def trl_preference_example(row: dict[str, Any]) -> dict[str, Any]:
    """A preference row as TRL's vision preference collator takes it: prompt, chosen, rejected, the opened images."""
    return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"], "images": open_images(row)}


class SpatialPreferenceCollator:
    """TRL's vision preference collator fed from preference rows; `keep_columns` are copied into the batch as lists."""

    def __init__(self, processor, max_length: int | None = None, keep_columns: Sequence[str] = ()):
        self.keep_columns = tuple(keep_columns)
        self.trl_collator = DataCollatorForVisionPreference(processor=processor, max_length=max_length)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.trl_collator([trl_preference_example(row) for row in rows])
        for column in self.keep_columns:
            batch[column] = [row[column] for row in rows]
        return batch


def prepare_preference_rows(
    path: str | Path,
    processor,
    convention: Convention,
    *,
    image_root: str | Path | None = None,
    max_samples: int | None = None,
    tasks: list[str] | None = None,
    max_length: int | None = None,
    on_truncated_image: Literal["error", "skip"] = "error",
    chat_template: str | None = None,
) -> PreparedRows:
    """Every record validated and a preference pair; `tasks` and `max_samples` kept; rendered; truncation guarded
    (images sit in the prompt, so whether `max_length` cuts them does not depend on the answer)."""
    records = load_records(path, image_root, tasks, max_samples)
    unpaired = [r.error("chosen", "not a preference pair: give 'chosen' and 'rejected'") for r in records if r.chosen is None]
    if unpaired:
        raise DatasetError(path, unpaired)
    renderer = GeometryRenderer.for_processor(processor, convention)
    rows = [record_to_preference_row(r, renderer) for r in records]
    report = fit_rows(rows, processor, max_length, on_truncated_image, chat_template, chat=lambda row: row["prompt"] + row["chosen"])
    return PreparedRows(report.kept, report.skipped)
