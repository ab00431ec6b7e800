"""Preference rows: a record's prompt with its chosen and rejected assistant turns, as TRL's DPO trainer reads them.

TRL 1.16's vision preference collator (`trl.trainer.dpo_trainer.DataCollatorForVisionPreference`) takes
conversational examples `{"prompt": [messages], "chosen": [assistant messages], "rejected": [assistant messages],
"images": [PIL images]}`, the prompt holding one `{"type": "image"}` part per image. A preference row is that with
image paths instead of images (`trl_preference_example` opens them), every text rendered in the model's frame like
`messages` (`{box:N}` / `{point:N}`), and the record's structured columns in the pixel frame. The prompt is the
record's `messages` before its last assistant turn (that turn, if any, is the reference answer SFT trains on).
`data.dataset.prepare_rows(..., rows="preference")` reads a file of pairs into such rows.
"""

from __future__ import annotations

from typing import Any, Sequence

from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

from ..records import SpatialRecord, prompt_turns
from .collate import open_images
from .render import GeometryRenderer, record_columns


def preference_prompt(record: SpatialRecord) -> list[dict[str, Any]]:
    """The messages a preference pair answers: the record's messages before its last assistant turn."""
    return prompt_turns(record.messages)


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


def preference_chat(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt and the chosen answer of a preference row: the sequence whose image tokens truncation must not cut
    (the images sit in the prompt, so the answer does not change where they end)."""
    return row["prompt"] + row["chosen"]


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
