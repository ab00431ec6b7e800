"""The one-batch check: validate every record, render one batch through processor + TRL collator, report it.

Run it before training (x3 §8): it catches bad records, placeholder/image mismatches and truncated images
without loading model weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..models.loading import load_processor
from .collate import IMAGE_PAD, SpatialCollator
from .dataset import prepare_rows


@dataclass(frozen=True)
class SampleSummary:
    """What the model will see of one sample in the batch."""

    id: str
    images: int
    image_tokens: int
    tokens: int
    labelled_tokens: int
    labelled_text: str


@dataclass
class CheckReport:
    """Result of `check_file`: counts, per-sample batch summary, and skipped records."""

    path: Path
    model: str
    convention: str
    records: int
    batch: list[SampleSummary]
    batch_keys: dict[str, tuple[int, ...]]
    skipped: list[tuple[str, str]]


def check_file(
    path: str | Path,
    model: str = "tiny-qwen3-vl",
    batch_size: int = 2,
    image_root: str | Path | None = None,
    max_length: int | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> CheckReport:
    """Validate `path` fully and collate its first `batch_size` records; raises on the first problem."""
    processor, family = load_processor(model, min_pixels, max_pixels)
    collator = SpatialCollator(processor, max_length)
    prepared = prepare_rows(
        path, processor, family.convention, image_root=image_root, max_length=max_length,
        on_truncated_image="error", chat_template=collator.chat_template,
    )
    rows = prepared.rows[:batch_size]
    if not rows:
        raise ValueError(f"{path}: no records")
    batch = collator(rows)
    pad_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    summaries = []
    for i, row in enumerate(rows):
        ids = batch["input_ids"][i][batch["attention_mask"][i] == 1]
        labels = batch["labels"][i][batch["labels"][i] != -100]
        summaries.append(
            SampleSummary(
                id=row["id"],
                images=len(row["images"]),
                image_tokens=int((ids == pad_id).sum()),
                tokens=int(ids.numel()),
                labelled_tokens=int(labels.numel()),
                labelled_text=processor.tokenizer.decode(labels),
            )
        )
    keys = {k: tuple(v.shape) for k, v in batch.items() if hasattr(v, "shape")}
    return CheckReport(Path(path), model, family.convention.value, len(prepared.rows), summaries, keys, prepared.skipped)
