"""Training batches of a multi-view model: view dropout, the chat rendered with TRL's training template and labelled on
the assistant turns, padded by TRL's collator.

The model's processor (passed in: `data` does not import `models`) turns a row's chat, views and cameras into text
with placeholders and tensors; the chat template's `{% generation %}` markers give transformers' assistant mask, which
becomes the labels exactly as TRL folds it in when it prepares a text dataset; TRL's `DataCollatorForLanguageModeling`
pads. View dropout draws from an RNG of (seed, epoch, record id), so a resumed run drops the same views as an
uninterrupted one (the trainer sets `epoch`; the data loader collates ahead of the step, so a global generator would not).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from trl.chat_template_utils import get_training_chat_template
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from ..geometry import Convention
from .builders import item_rng
from .collate import BatchError
from .dataset import DataSource, PreparedRows, load_mixed_records, load_records
from .render import GeometryRenderer, record_to_row

VIEWS_COLUMN = "views"  # a training row's view paths (not `images`: TRL treats a dataset with images as one for a VLM)


def kept_views(num_views: int, dropout: float, rng: random.Random) -> list[int]:
    """The views a training sample keeps: each dropped with probability `dropout`, never all of them (if every view
    was drawn for dropping, one of them, at random, stays)."""
    if num_views < 1:
        raise ValueError("a multi-view sample needs at least one view")
    dropped = [rng.random() < dropout for _ in range(num_views)]
    if all(dropped):
        dropped[rng.randrange(num_views)] = False
    return [k for k in range(num_views) if not dropped[k]]


def multiview_row(row: dict[str, Any]) -> dict[str, Any]:
    """A rendered row as the training Dataset holds it: image paths under `views`, free-form columns as JSON text."""
    out = {key: value for key, value in row.items() if key not in ("images", "image_sizes")}
    out[VIEWS_COLUMN] = list(row["images"])
    for key in ("answer", "meta"):
        out[key] = json.dumps(row.get(key))
    return out


def prepare_multiview_rows(
    path: str | Path,
    processor,
    *,
    image_root: str | Path | None = None,
    max_samples: int | None = None,
    tasks: list[str] | None = None,
    max_length: int | None = None,
    on_truncated_image: Literal["error", "skip"] = "error",
    sources: list[DataSource] | None = None,
    seed: int = 0,
) -> PreparedRows:
    """Validated records (or `sources`' weighted mix) → training rows of a multi-view model; a row longer than
    `max_length` with every view kept is an error (or skipped, `on_truncated_image: skip`): cutting would cut
    placeholders, as it would cut an image's tokens."""
    if sources:
        records = load_mixed_records(sources, seed, image_root, tasks)[:max_samples]
    else:
        records = load_records(path, image_root, tasks, max_samples)
    renderer = GeometryRenderer.for_processor(processor, Convention.NORM01)
    template = get_training_chat_template(processor.tokenizer)
    kept, skipped = [], []
    for record in records:
        row = record_to_row(record, renderer)
        length = len(processor.apply_chat_template(row["messages"], chat_template=template, tokenize=True, return_dict=True)["input_ids"])
        if max_length is not None and length > max_length:
            reason = f"{length} tokens with every view exceed data.max_length {max_length}"
            if on_truncated_image == "error":
                raise BatchError(f"{row['source']}: record {row['id']!r}: {reason} (placeholders cannot be cut): raise "
                                 "data.max_length, or set data.on_truncated_image: skip")
            skipped.append((row["id"], reason))
            continue
        kept.append(multiview_row(row))
    return PreparedRows(kept, skipped)


@dataclass
class MultiViewCollator:
    """Rows (`messages`, `views`, `meta`) → `input_ids`, `attention_mask`, `labels` (assistant turns only), `views`,
    `view_mask`, `cameras`; `view_dropout` > 0 drops views at random (training only), drawn per (seed, epoch, id)."""

    processor: Any
    max_length: int | None = None
    view_dropout: float = 0.0
    seed: int = 0
    epoch: int = 0  # set by the trainer at each epoch's start

    def __post_init__(self):
        if not 0.0 <= self.view_dropout < 1.0:
            raise ValueError(f"view_dropout must be in [0, 1), got {self.view_dropout}")
        tokenizer = self.processor.tokenizer
        self.chat_template = get_training_chat_template(tokenizer)  # None: the tokenizer's own has the markers
        self.pad = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)

    def encode(self, row: dict[str, Any], keep: list[int] | None) -> tuple[dict[str, list[int]], tuple[torch.Tensor, torch.Tensor]]:
        """One row's token ids and labels, and its (views, cameras); over-long or unlabelled rows raise naming it."""
        where = f"{row.get('source', '?')}: record {row.get('id')!r}: "
        chat, visual = self.processor.sample(row["messages"], row[VIEWS_COLUMN], row.get("meta"), keep, where)
        encoded = self.processor.tokenizer.apply_chat_template(chat, chat_template=self.chat_template, tokenize=True,
                                                               return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = list(encoded["input_ids"]), list(encoded["assistant_masks"])
        if 1 not in mask:
            raise BatchError(f"{where}no assistant tokens: the chat has no assistant turn to train on")
        if self.max_length is not None and len(ids) > self.max_length:
            raise BatchError(f"{where}{len(ids)} tokens exceed data.max_length {self.max_length} (scene and geometry "
                             "placeholders cannot be cut): raise data.max_length")
        return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}, visual

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        texts, visual = [], []
        for row in rows:
            rng = item_rng(self.seed, "view-dropout", self.epoch, row["id"])
            keep = kept_views(len(row[VIEWS_COLUMN]), self.view_dropout, rng) if self.view_dropout else None
            text, sample = self.encode(row, keep)
            texts.append(text)
            visual.append(sample)
        return {**self.pad(texts), **self.processor.visual_inputs(visual)}
