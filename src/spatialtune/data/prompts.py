"""Prompt rows: a record's question as TRL's GRPO trainer samples completions for it.

GRPOTrainer (TRL 1.16) reads a conversational `prompt` with one `{"type": "image"}` part per image and the images
themselves from an `images` column; every other column goes to the reward functions (and to an environment's
`reset`). A prompt row is the record's row (`render.record_to_row`, as a `datasets.Dataset` stores it) with:
- `prompt`: the rendered chat up to the question a rollout answers — the messages before the first assistant turn
  after the last user turn, so a chain-of-focus record's scripted crop exchange is left for the model to make;
- `images`, `image_sizes`: the prompt's images only (the crops of a scripted exchange are not shown);
- the caller's extra columns (what its rewards read, which environment a row uses).
TRL never truncates a prompt: `fit_prompts` refuses (or skips and reports) a row whose prompt, images expanded, leaves
less than the completion budget within `max_length`, so a rollout never runs past the context with images inside it.
`open_prompt_images` opens the image files as TRL reads a row (a `datasets` transform): the table holds paths only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from ..geometry import Convention
from ..records import SpatialRecord
from .collate import BatchError, FitReport, open_images, sequence_layout
from .dataset import PreparedRows, load_records
from .render import GeometryRenderer, dataset_row, record_to_row

ExtraColumns = Callable[[SpatialRecord], dict[str, Any]]


def rollout_prompt(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages a rollout continues: everything before the first assistant turn after the last user turn."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    end = next((i for i in range(last_user + 1, len(messages)) if messages[i]["role"] == "assistant"), len(messages))
    return messages[:end]


def image_parts(messages: list[dict[str, Any]]) -> int:
    """How many image parts a chat holds (each stands for the next image of the row)."""
    return sum(1 for m in messages if isinstance(m.get("content"), list) for p in m["content"] if p.get("type") == "image")


def record_to_prompt_row(record: SpatialRecord, renderer: GeometryRenderer, extra_columns: ExtraColumns | None = None) -> dict[str, Any]:
    """A GRPO-ready row: the record's row as a Dataset stores it, its rollout prompt and that prompt's images only."""
    row = record_to_row(record, renderer)
    prompt = rollout_prompt(row["messages"])
    shown = image_parts(prompt)
    return {
        **dataset_row(row),
        "prompt": prompt,
        "images": row["images"][:shown],
        "image_sizes": row["image_sizes"][:shown],
        **(extra_columns(record) if extra_columns else {}),
    }


def fit_prompts(
    rows: Sequence[dict[str, Any]],
    processor,
    max_length: int,
    completion_length: int,
    on_long_prompt: Literal["error", "skip"] = "error",
) -> FitReport:
    """Check each row's image placeholders, and that its prompt (images expanded, generation header included) plus
    `completion_length` tokens fits in `max_length`; a row that does not raises a BatchError naming it, or with
    `on_long_prompt="skip"` is skipped and reported."""
    report = FitReport()
    for row in rows:
        layout = sequence_layout({"messages": row["prompt"], "image_sizes": row["image_sizes"]}, processor, add_generation_prompt=True)
        where = f"{row.get('source', '?')}: record {row['id']!r}"
        if layout.image_placeholders != len(row["images"]):
            raise BatchError(f"{where}: field 'messages': the chat template rendered {layout.image_placeholders} image placeholder(s) for the prompt's {len(row['images'])} image(s)")
        if layout.length + completion_length > max_length:
            reason = f"the prompt takes {layout.length} tokens (images expanded): with {completion_length} completion tokens it passes max_length {max_length}"
            if on_long_prompt == "error":
                raise BatchError(f"{where}: field 'images': {reason}; raise data.max_length, lower model.max_pixels or the completion length, or set data.on_long_prompt=skip")
            report.skipped.append((row["id"], reason))
            continue
        report.kept.append(row)
    return report


def prepare_prompt_rows(
    path: str | Path,
    processor,
    convention: Convention,
    *,
    max_length: int,
    completion_length: int,
    image_root: str | Path | None = None,
    max_samples: int | None = None,
    tasks: list[str] | None = None,
    on_long_prompt: Literal["error", "skip"] = "error",
    extra_columns: ExtraColumns | None = None,
) -> PreparedRows:
    """Validate every record, keep `tasks` (all if None) and the first `max_samples`, render prompts, fit them."""
    renderer = GeometryRenderer.for_processor(processor, convention)
    rows = [record_to_prompt_row(r, renderer, extra_columns) for r in load_records(path, image_root, tasks, max_samples)]
    report = fit_prompts(rows, processor, max_length, completion_length, on_long_prompt)
    return PreparedRows(report.kept, report.skipped)


def open_prompt_images(batch: dict[str, list]) -> dict[str, list]:
    """A `datasets` transform: the batch with its `images` paths opened as RGB (an unreadable file names its record)."""
    opened = [
        open_images({"images": paths, "id": row_id, "source": source})
        for paths, row_id, source in zip(batch["images"], batch["id"], batch["source"])
    ]
    return {**batch, "images": opened}
