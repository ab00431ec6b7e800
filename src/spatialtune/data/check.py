"""The one-batch check: validate every record, render one batch through processor + TRL collator, report it.

Run it before training (the x3 cross-view source pipeline's one-batch dataloader check): it catches bad records,
placeholder/image mismatches and truncated images without loading model weights. The caller loads the processor
(the CLI through `models.loading.load_processor`), so this layer never imports models. Preference pairs are also
collated through TRL's vision preference collator; `refer_boxes` groups are counted. Over the whole file it counts the
samples that would train on zero tokens (cut by `max_length` before their answer, or without an assistant turn) and the
records whose boxes / points all look normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..geometry import Convention
from ..records import looks_normalised
from .collate import SpatialCollator, fit_rows, image_placeholder_id
from .dataset import DatasetError, load_records
from .preference import SpatialPreferenceCollator, preference_chat, record_to_preference_row
from .render import GeometryRenderer, record_to_row


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
    """Result of `check_file`: counts, per-sample batch summary, skipped records, and the new fields' counts."""

    path: Path
    convention: str
    records: int
    batch: list[SampleSummary]
    batch_keys: dict[str, tuple[int, ...]]
    skipped: list[tuple[str, str]]
    refer_boxes_records: int = 0  # records with refer_boxes
    refer_boxes_groups: int = 0  # refer_boxes groups over all records
    preference_pairs: int = 0  # records with chosen / rejected
    preference_batch_keys: dict[str, tuple[int, ...]] = field(default_factory=dict)  # the first pairs, collated
    unlabelled: list[str] = field(default_factory=list)  # ids that max_length cuts before their first answer token
    no_assistant: list[str] = field(default_factory=list)  # ids without an assistant turn (nothing to train on)
    normalised: list[str] = field(default_factory=list)  # ids whose boxes / points all look normalised ([0, 1])

    @property
    def zero_token_samples(self) -> int:
        """Samples of the whole file that would train on zero labelled tokens."""
        return len(self.unlabelled) + len(self.no_assistant)


def _shapes(batch: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in batch.items() if hasattr(v, "shape")}


def check_file(
    path: str | Path,
    processor,
    convention: Convention,
    batch_size: int = 2,
    image_root: str | Path | None = None,
    max_length: int | None = None,
) -> CheckReport:
    """Validate `path` fully and collate its first `batch_size` records (and pairs) with `processor`; raises on the
    first problem."""
    collator = SpatialCollator(processor, max_length)
    records = load_records(path, image_root)
    renderer = GeometryRenderer.for_processor(processor, convention)
    prepared = fit_rows([record_to_row(r, renderer) for r in records], processor, max_length, "error", collator.chat_template,
                        on_unlabelled="skip")
    rows = prepared.kept[:batch_size]
    if not rows:
        raise DatasetError(path, [], f"every record would train on zero tokens at max_length {max_length}" if prepared.unlabelled else "no records")
    batch = collator(rows)
    pad_id = image_placeholder_id(processor)
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
    pairs = [record_to_preference_row(r, renderer) for r in records if r.chosen is not None]
    pair_batch = {}
    if pairs:
        first = fit_rows(pairs[:batch_size], processor, max_length, "error", chat=preference_chat).kept
        pair_batch = _shapes(SpatialPreferenceCollator(processor, max_length)(first))
    return CheckReport(
        Path(path), convention.value, len(prepared.kept), summaries, _shapes(batch), prepared.skipped,
        refer_boxes_records=sum(1 for r in records if r.refer_boxes),
        refer_boxes_groups=sum(len(r.refer_boxes) for r in records),
        preference_pairs=len(pairs),
        preference_batch_keys=pair_batch,
        unlabelled=prepared.unlabelled,
        no_assistant=[r.id for r in records if not any(m.get("role") == "assistant" for m in r.messages)],
        normalised=[r.id for r in records if looks_normalised(r)],
    )
