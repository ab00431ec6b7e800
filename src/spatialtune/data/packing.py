"""Padding-free and packed vision-language batches with per-sample M-RoPE position ids.

A padded batch of samples becomes one row holding every sample (`padding_free`) or rows of at most `max_length`
tokens filled best-fit decreasing (`packed`). Qwen-VL language models in transformers 5.x take `position_ids` of
shape [4, rows, length]: row 0 is a text position restarting at 0 for every sample, which transformers'
`find_packed_sequence_indices` reads (when `attention_mask` is None) to build a block-diagonal causal mask on every
attention backend; rows 1–3 are the temporal/height/width M-RoPE positions each sample gets alone from the model's own
`get_rope_index`. The rope-index function is passed in (`data` does not import `models`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import torch

from ..errors import SpatialtuneError

PackingMode = Literal["none", "padding_free", "packed"]
PACKING_MODES: tuple[str, ...] = ("none", "padding_free", "packed")
IGNORE_INDEX = -100  # the label transformers and TRL never score

# (input_ids [1, n], mm_token_type_ids [1, n], image_grid_thw [k, 3] or None) -> M-RoPE positions [3, 1, n]
RopeIndex = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class PackingError(SpatialtuneError):
    """A batch that cannot be packed as asked (a sample longer than a row, a missing processor column)."""


@dataclass(frozen=True)
class SampleFeatures:
    """One sample's processed tokens without padding, and the pixels and grids of its images in token order."""

    input_ids: torch.Tensor  # [n]
    labels: torch.Tensor  # [n]
    mm_token_type_ids: torch.Tensor  # [n]: 0 text, 1 image, 2 video (from the processor)
    pixel_values: torch.Tensor | None  # [patches, patch_dim], the rows of this sample's images
    image_grid_thw: torch.Tensor | None  # [images, 3]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def split_batch(batch: dict[str, Any], images_per_sample: Sequence[int]) -> list[SampleFeatures]:
    """A right-padded collator batch cut back into its samples: tokens up to each row's attention-mask length, and each
    sample's slice of `pixel_values` (one row per patch: `prod(image_grid_thw)` rows per image) and grids."""
    missing = [k for k in ("input_ids", "attention_mask", "labels", "mm_token_type_ids") if k not in batch]
    if missing:
        raise PackingError(f"packing needs the processor's {missing} in the batch (Qwen-VL processors give them)")
    grids = batch.get("image_grid_thw")
    if sum(images_per_sample) != (0 if grids is None else len(grids)):
        raise PackingError(f"the batch has {0 if grids is None else len(grids)} image grid(s) for {sum(images_per_sample)} image(s)")
    patches = [] if grids is None else grids.prod(-1).tolist()
    samples, image, patch = [], 0, 0
    for b, count in enumerate(images_per_sample):
        n = int(batch["attention_mask"][b].sum())
        sample_patches = sum(patches[image:image + count])
        samples.append(SampleFeatures(
            input_ids=batch["input_ids"][b, :n],
            labels=batch["labels"][b, :n],
            mm_token_type_ids=batch["mm_token_type_ids"][b, :n],
            pixel_values=batch["pixel_values"][patch:patch + sample_patches] if count else None,
            image_grid_thw=grids[image:image + count] if count else None,
        ))
        image, patch = image + count, patch + sample_patches
    return samples


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Sample indices grouped into bins of at most `capacity` tokens: longest first (ties by index), each into the
    fullest bin it still fits (ties: the earliest bin); within a bin the original order. Deterministic."""
    too_long = [(i, n) for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        raise PackingError(f"sample {too_long[0][0]} has {too_long[0][1]} tokens > max_length {capacity}")
    bins: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        fits = [b for b in range(len(bins)) if free[b] >= lengths[i]]
        if fits:
            best = min(fits, key=lambda b: (free[b], b))
            bins[best].append(i)
            free[best] -= lengths[i]
        else:
            bins.append([i])
            free.append(capacity - lengths[i])
    return [sorted(b) for b in bins]


def sample_position_ids(sample: SampleFeatures, rope_index: RopeIndex) -> torch.Tensor:
    """A sample's [4, n] position ids as the model computes them for it alone: text positions 0..n-1, then the three
    M-RoPE rows of its own `get_rope_index`."""
    mrope = rope_index(sample.input_ids[None], sample.mm_token_type_ids[None], sample.image_grid_thw)
    text = torch.arange(len(sample), dtype=mrope.dtype)
    return torch.cat([text[None], mrope[:, 0].to(text.device)], dim=0)


def pack_samples(samples: Sequence[SampleFeatures], rows: Sequence[Sequence[int]], rope_index: RopeIndex,
                 pad_token_id: int) -> dict[str, torch.Tensor]:
    """Samples laid out in `rows` (lists of sample indices), padded only at row ends, with no `attention_mask`:
    input_ids, labels and mm_token_type_ids [R, L]; position_ids [4, R, L]; pixel_values and image_grid_thw in the
    order the image tokens appear row by row. A sample's first label is IGNORE_INDEX, so no token is ever predicted
    from the sample before it; padding is its own segment (text positions restart at 0) and is never labelled."""
    length = max(sum(len(samples[i]) for i in row) for row in rows)
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=samples[0].input_ids.dtype)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=samples[0].labels.dtype)
    mm_token_type_ids = torch.zeros((len(rows), length), dtype=samples[0].mm_token_type_ids.dtype)
    position_ids = torch.arange(length).repeat(4, len(rows), 1)  # padding tails are overwritten below
    pixels, grids = [], []
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            sample, end = samples[i], start + len(samples[i])
            input_ids[r, start:end] = sample.input_ids
            labels[r, start:end] = sample.labels
            labels[r, start] = IGNORE_INDEX
            mm_token_type_ids[r, start:end] = sample.mm_token_type_ids
            position_ids[:, r, start:end] = sample_position_ids(sample, rope_index)
            if sample.image_grid_thw is not None:
                pixels.append(sample.pixel_values)
                grids.append(sample.image_grid_thw)
            start = end
        position_ids[:, r, start:] = torch.arange(length - start)  # padding: a segment of its own
    packed = {"input_ids": input_ids, "labels": labels, "mm_token_type_ids": mm_token_type_ids, "position_ids": position_ids}
    if grids:
        packed["pixel_values"] = torch.cat(pixels)
        packed["image_grid_thw"] = torch.cat(grids)
    return packed


def pack_batch(batch: dict[str, Any], images_per_sample: Sequence[int], mode: Literal["padding_free", "packed"],
               rope_index: RopeIndex, pad_token_id: int, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """A padded collator batch repacked: `padding_free` puts every sample in one row (batch order), `packed` fills rows
    of at most `max_length` tokens best-fit decreasing. Loss and gradients equal those of the padded batch."""
    samples = split_batch(batch, images_per_sample)
    if mode == "padding_free":
        rows = [list(range(len(samples)))]
    elif mode == "packed":
        if max_length is None:
            raise PackingError("packing='packed' needs a max_length (the row size); set data.max_length or use padding_free")
        rows = best_fit_decreasing([len(s) for s in samples], max_length)
    else:
        raise PackingError(f"unknown packing mode {mode!r}; expected one of {PACKING_MODES[1:]}")
    return pack_samples(samples, rows, rope_index, pad_token_id)
