"""Batches on TRL's vision-language collator, with the checks TRL does not make.

TRL's `DataCollatorForVisionLanguageModeling` with `assistant_only_loss=True` renders each chat through the
processor with a training variant of the official template and labels exactly the assistant turns. We add:
images opened from paths (errors name the record), the image-placeholder count check, a guard so truncation
never cuts image tokens, extra columns carried into the batch for add-ons, and with `spatial_linking` the referred
regions each `<|box_end|>` token links to (`LinkedBatch`). We never bypass the processor, so `mm_token_type_ids`
(which Qwen3-VL needs for M-RoPE) always comes from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence, TypedDict

from PIL import Image
from trl.chat_template_utils import get_training_chat_template
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from ..errors import SpatialtuneError
from ..media import MediaError, open_image
from ..tasks.linking import BOX_END
from ..tools.protocol import attach_images
from .packing import PACKING_MODES, PackingMode, RopeIndex, pack_batch

IMAGE_PAD = "<|image_pad|>"


class BatchError(SpatialtuneError):
    """A row that cannot be batched, named by its id and source line."""


def training_chat_template(processor) -> str | None:
    """TRL's training variant of the processor's template (generation markers), or None if it already has them."""
    return get_training_chat_template(processor)


def open_images(row: dict[str, Any]) -> list[Image.Image]:
    """Open a row's images as RGB; a missing or corrupt file raises naming the record."""
    images = []
    for i, path in enumerate(row["images"]):
        try:
            images.append(open_image(path, "RGB"))
        except MediaError as e:
            raise BatchError(f"{row.get('source', '?')}: record {row.get('id')!r}: field 'images[{i}]': cannot read {path}: {e.reason}") from None
    return images


@dataclass(frozen=True)
class SequenceLayout:
    """Where a row's tokens fall once images are expanded: total length, end of the last image's tokens, and end of
    the last `<|box_end|>` (0 if none: the referred regions a truncation must not cut either)."""

    length: int
    image_end: int
    image_placeholders: int
    box_end: int = 0


def known_token_id(tokenizer, token: str) -> int | None:
    """The id of a token the tokenizer holds; None when it does not (no id, or the unknown token's)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    return None if token_id is None or token_id == tokenizer.unk_token_id else token_id


def image_placeholder_id(processor) -> int:
    """The token a chat template writes once per image and the processor expands (Qwen-VL: `<|image_pad|>`)."""
    return processor.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", None) or IMAGE_PAD)


def image_token_counts(processor, image_sizes: Sequence[Sequence[int]]) -> list[int]:
    """Tokens each (width, height) image becomes, as the processor counts them (transformers' `_get_num_multimodal_tokens`,
    what vLLM plans with): exact for Qwen-VL (one per 2×2 merged patches of the resized image); for processors that
    also wrap each image in marker tokens (Idefics3) the image tokens alone; 1 where a processor cannot say."""
    if not image_sizes:
        return []
    count = getattr(processor, "_get_num_multimodal_tokens", None)
    tokens = count(image_sizes=[[h, w] for w, h in image_sizes]).num_image_tokens if count else None
    return [int(n) for n in tokens] if tokens else [1] * len(image_sizes)


def _expand(ids: Sequence[int], placeholder: int, per_image: list[int]) -> tuple[list[int], int, int]:
    """Position of each template token once the i-th placeholder stands for `per_image[i]` tokens; the end of the last
    image's tokens; the placeholders seen."""
    positions, position, image_end, seen = [], 0, 0, 0
    for token in ids:
        positions.append(position)
        if token == placeholder:
            position += per_image[seen] if seen < len(per_image) else 1
            seen += 1
            image_end = position
        else:
            position += 1
    positions.append(position)  # one past the end: the length
    return positions, image_end, seen


def sequence_layout(row: dict[str, Any], processor, chat_template: str | None = None, add_generation_prompt: bool = False) -> SequenceLayout:
    """Token layout of a row without processing pixels: template text tokens + visual tokens per image size."""
    text = processor.apply_chat_template(row["messages"], chat_template=chat_template, tokenize=False, add_generation_prompt=add_generation_prompt)
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    positions, image_end, seen = _expand(ids, image_placeholder_id(processor), image_token_counts(processor, row["image_sizes"]))
    box_end_id = known_token_id(processor.tokenizer, BOX_END)
    box_end = max((positions[i] + 1 for i, token in enumerate(ids) if token == box_end_id), default=0) if box_end_id is not None else 0
    return SequenceLayout(length=positions[-1], image_end=image_end, image_placeholders=seen, box_end=box_end)


@dataclass
class FitReport:
    """What `fit_rows` kept and skipped (skips are counted and reported, never silent)."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    unlabelled: list[str] = field(default_factory=list)  # ids skipped because max_length leaves no labelled token


def label_start(row: dict[str, Any], processor, chat_template: str | None = None) -> int | None:
    """Where a row's first labelled token sits once images are expanded: the first token inside the template's
    `{% generation %}` markers, from the same assistant mask TRL's collator labels with (Qwen-VL: right after
    `<|im_start|>assistant\\n`, so Qwen3.5's `<think>` block is labelled too); None if nothing is (it trains on nothing)."""
    template = chat_template or training_chat_template(processor) or processor.chat_template  # the one with markers
    encoded = processor.tokenizer.apply_chat_template(
        row["messages"], chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    first = next((i for i, m in enumerate(encoded["assistant_masks"]) if m), None)
    if first is None:
        return None
    positions, _, _ = _expand(encoded["input_ids"], image_placeholder_id(processor), image_token_counts(processor, row["image_sizes"]))
    return positions[first]


def fit_rows(
    rows: Sequence[dict[str, Any]],
    processor,
    max_length: int | None,
    on_truncated_image: Literal["error", "skip"] = "error",
    chat_template: str | None = None,
    chat: Callable[[dict[str, Any]], list[dict[str, Any]]] = lambda row: row["messages"],
    on_unlabelled: Literal["error", "skip"] | None = None,
) -> FitReport:
    """Check each row's image placeholders, that truncation to `max_length` never cuts an image's tokens, and that it
    leaves at least one labelled (assistant) token.

    Text after the last image may be truncated (TRL keeps the start). A row whose image tokens (or referred regions'
    `<|box_end|>` tokens) would be cut raises a BatchError naming it, or with `on_truncated_image="skip"` is skipped
    and reported. A row that `max_length`
    cuts before its first assistant token (it would train on zero tokens: `loss 0`) is handled by `on_unlabelled`
    (default: as `on_truncated_image`), skipped ones also listed in `unlabelled`. `chat` gives the conversation a row
    is trained on (a preference row: its prompt and its longer answer).
    """
    report = FitReport()
    on_unlabelled = on_unlabelled or on_truncated_image
    for row in rows:
        trained = {**row, "messages": chat(row)}
        layout = sequence_layout(trained, processor, chat_template)
        where = f"{row.get('source', '?')}: record {row['id']!r}"
        if layout.image_placeholders != len(row["images"]):
            raise BatchError(f"{where}: field 'messages': the chat template rendered {layout.image_placeholders} image placeholder(s) for {len(row['images'])} image(s)")
        cut = [(field_name, f"{what} end at {end} > max_length {max_length}") for field_name, what, end in
               (("images", "image tokens", layout.image_end), ("refer_boxes", f"referred regions ({BOX_END})", layout.box_end if row.get("refer_boxes") else 0))
               if max_length is not None and end > max_length]
        if cut:
            field_name, reason = cut[0]
            if on_truncated_image == "error":
                raise BatchError(f"{where}: field '{field_name}': {reason}; raise max_length, lower max_pixels, or set on_truncated_image=skip")
            report.skipped.append((row["id"], reason))
            continue
        start = label_start(trained, processor, chat_template) if max_length is not None else None
        if start is not None and start >= max_length:
            reason = f"no labelled token: the answer starts at token {start} >= max_length {max_length}"
            if on_unlabelled == "error":
                raise BatchError(f"{where}: field 'messages': {reason}; raise max_length, lower max_pixels, or set on_truncated_image=skip")
            report.skipped.append((row["id"], reason))
            report.unlabelled.append(row["id"])
            continue
        report.kept.append(row)
    return report


class LinkedGroup(TypedDict):
    """One referred region as spatial linking reads it: its boxes [x1, y1, x2, y2] in pixels of ORIGINAL image `image`."""

    image: int
    boxes: list[list[float]]


class LinkedBatch(TypedDict):
    """What `SpatialCollator(spatial_linking=True)` adds to a batch, one item per sample: `refer_boxes[b][k]` is the
    region the k-th `<|box_end|>` token of sample b links to, `image_sizes[b][i]` the (width, height) of its original
    image i (what maps a pixel box onto the processor's resized image and its merged visual tokens)."""

    refer_boxes: list[list[LinkedGroup]]
    image_sizes: list[list[tuple[int, int]]]


def box_end_token_id(processor) -> int:
    """The id of `<|box_end|>` in the processor's tokenizer (Qwen-VL families); another family cannot link boxes."""
    token_id = known_token_id(processor.tokenizer, BOX_END)
    if token_id is None:
        raise BatchError(f"spatial linking needs the {BOX_END} token, which this model's tokenizer does not have (Qwen-VL families do)")
    return token_id


def linked_batch(rows: Sequence[dict[str, Any]], input_ids, box_end_id: int) -> LinkedBatch:
    """The linking columns of a batch, after checking that each sample's `input_ids` hold exactly one `<|box_end|>` per
    referred region (a BatchError naming the record otherwise: text that writes box tokens itself, or truncation)."""
    for row, ids in zip(rows, input_ids):
        found, groups = int((ids == box_end_id).sum()), len(row["refer_boxes"])
        if found != groups:
            raise BatchError(f"{row.get('source', '?')}: record {row.get('id')!r}: field 'refer_boxes': {groups} referred "
                             f"region(s) but {found} {BOX_END} token(s) in the batched sequence; the k-th {BOX_END} links "
                             "to the k-th region (raise max_length if truncation cut them)")
    return {
        "refer_boxes": [[{"image": g["image"], "boxes": [list(map(float, b)) for b in g["boxes"]]} for g in row["refer_boxes"]] for row in rows],
        "image_sizes": [[(int(w), int(h)) for w, h in row["image_sizes"]] for row in rows],
    }


class SpatialCollator:
    """TRL's vision-language collator with assistant-only labels, fed from spatial rows.

    `keep_columns` are copied into the batch as Python lists (e.g. `boxes` for a box-aware module); leave it
    empty when the model's forward does not take them. `spatial_linking=True` adds `LinkedBatch`'s columns for a model
    wrapped with spatial linking (the SFT recipe sets it when `model.spatial_linking` is configured).
    `packing="padding_free"` or `"packed"` repacks each batch without padding (`data.packing`): rows of concatenated
    samples whose position ids come from `rope_index`, the model's own M-RoPE function (see `data.packing`).
    """

    def __init__(self, processor, max_length: int | None = None, keep_columns: Sequence[str] = (), spatial_linking: bool = False,
                 packing: PackingMode = "none", rope_index: RopeIndex | None = None):
        if packing not in PACKING_MODES:
            raise BatchError(f"packing: unknown mode {packing!r}; expected one of {', '.join(PACKING_MODES)}")
        if packing != "none" and (rope_index is None or spatial_linking or keep_columns):
            what = "the model's rope-index function" if rope_index is None else "no spatial linking and no keep_columns (not supported yet)"
            raise BatchError(f"packing={packing!r} needs {what}")
        self.processor = processor
        self.max_length = max_length
        self.packing, self.rope_index = packing, rope_index
        self.keep_columns = tuple(keep_columns)
        self.box_end_id = box_end_token_id(processor) if spatial_linking else None
        self.chat_template = training_chat_template(processor)
        self.trl_collator = DataCollatorForVisionLanguageModeling(
            processor=processor,
            max_length=max_length,
            assistant_only_loss=True,
            chat_template=self.chat_template,
        )

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        # Images are attached to their parts here: TRL's prepare_multimodal_messages skips tool messages (the crops).
        examples = [{"messages": attach_images(row["messages"], open_images(row)), "images": []} for row in rows]
        batch = self.trl_collator(examples)
        if self.packing != "none":
            packed = pack_batch(batch, [len(row["images"]) for row in rows], self.packing, self.rope_index,
                                self.processor.tokenizer.pad_token_id, self.max_length)
            # transformers reads sample boundaries from the text positions only without a cache (TRL also sets this)
            return {**packed, "use_cache": False}
        for column in self.keep_columns:
            batch[column] = [row[column] for row in rows]
        if self.box_end_id is not None:
            batch.update(linked_batch(rows, batch["input_ids"], self.box_end_id))
        return batch
