"""Coordinate frames: pixels of the original image ↔ the text coordinates each model family reads and writes.

A record stores geometry in ONE frame, `pixel` (of the original image). Models see other frames:
- `qwen25_abs`: Qwen2.5-VL, absolute pixels of the image *as resized by the processor* (smart_resize).
- `qwen3_1000`: Qwen3-VL, Qwen3.5 (and Qwen2-VL), a 0–1000 grid over the image, independent of resizing.
- `norm01`: fractions of width/height in [0, 1], for tasks that define their own answer format (x3), and the frame of
  every other model family (the prompts state it, since such a model has no native convention).
- merged visual tokens: the cells of `patch_size × merge_size` resized pixels the language model sees an image as
  (`MergedGrid`, `box_token_mask`, `refer_token_masks`, for spatial linking).
Rewards and metrics use the inverse conversions to read a model's answer back into pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import torch
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from .errors import SpatialtuneError


class Convention(str, Enum):
    """How a model family writes coordinates in text."""

    QWEN25_ABS = "qwen25_abs"
    QWEN3_1000 = "qwen3_1000"
    NORM01 = "norm01"


@dataclass(frozen=True)
class ResizePolicy:
    """The processor's resizing rule: sides become multiples of `factor`, area within [min_pixels, max_pixels]."""

    factor: int
    min_pixels: int
    max_pixels: int

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an image after the processor's smart_resize."""
        h, w = smart_resize(height, width, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return w, h

    @classmethod
    def from_processor(cls, processor) -> "ResizePolicy":
        """Read patch/merge size and the pixel budget from a Qwen-VL (image) processor."""
        ip = getattr(processor, "image_processor", processor)
        size = ip.size
        min_px = getattr(size, "shortest_edge", None) or size["shortest_edge"]
        max_px = getattr(size, "longest_edge", None) or size["longest_edge"]
        return cls(factor=ip.patch_size * ip.merge_size, min_pixels=int(min_px), max_pixels=int(max_px))


@dataclass(frozen=True)
class ImageFrame:
    """An original image size and its size after processor resizing (what `qwen25_abs` is measured in)."""

    width: int
    height: int
    resized_width: int
    resized_height: int

    @classmethod
    def of(cls, width: int, height: int, policy: ResizePolicy | None) -> "ImageFrame":
        """The frame of a `width`×`height` image under a resize policy (None: no resizing)."""
        rw, rh = policy.resized_size(width, height) if policy else (width, height)
        return cls(width, height, rw, rh)


def _scale(convention: Convention, frame: ImageFrame) -> tuple[float, float]:
    """Multipliers (sx, sy) from original pixels to the convention's units."""
    if convention is Convention.QWEN25_ABS:
        return frame.resized_width / frame.width, frame.resized_height / frame.height
    if convention is Convention.QWEN3_1000:
        return 1000.0 / frame.width, 1000.0 / frame.height
    return 1.0 / frame.width, 1.0 / frame.height


def _quantise(value: float, convention: Convention) -> float | int:
    """Integers for the Qwen conventions (what the models print); three decimals for norm01."""
    return round(value, 3) if convention is Convention.NORM01 else int(math.floor(value + 0.5))


def pixel_to_model(coords_pixel: Sequence[float], frame: ImageFrame, convention: Convention) -> list:
    """A box [x1, y1, x2, y2] or point [x, y] (any flat x, y, … list) in original pixels → the model's text frame."""
    sx, sy = _scale(convention, frame)
    return [_quantise(v * (sx if i % 2 == 0 else sy), convention) for i, v in enumerate(coords_pixel)]


def model_to_pixel(coords_model: Sequence[float], frame: ImageFrame, convention: Convention) -> list[float]:
    """A box or point in the model's text frame → original pixels (not clipped: callers decide)."""
    sx, sy = _scale(convention, frame)
    return [float(v) / (sx if i % 2 == 0 else sy) for i, v in enumerate(coords_model)]


def is_proper(box_pixel: Sequence[float]) -> bool:
    """Whether a box [x1, y1, x2, y2] has positive width and height (x1 < x2, y1 < y2); other boxes overlap nothing."""
    return box_pixel[0] < box_pixel[2] and box_pixel[1] < box_pixel[3]


def box_area(box_pixel: Sequence[float]) -> float:
    """Area of a proper [x1, y1, x2, y2] box in its frame's pixels."""
    return (box_pixel[2] - box_pixel[0]) * (box_pixel[3] - box_pixel[1])


def clip_box(box_pixel: Sequence[float], width: int, height: int) -> list[float] | None:
    """The box clipped to a width×height image (numbers as given where unchanged), or None when nothing is left."""
    x1, y1, x2, y2 = box_pixel
    clipped = [max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)]
    return clipped if is_proper(clipped) else None


def interaction_box(person_pixel: Sequence[float], object_pixel: Sequence[float]) -> list[float]:
    """The union box of a person and an object (the smallest box holding both): the region of their interaction."""
    return [min(person_pixel[0], object_pixel[0]), min(person_pixel[1], object_pixel[1]),
            max(person_pixel[2], object_pixel[2]), max(person_pixel[3], object_pixel[3])]


def convention_for_model_type(model_type: str) -> Convention:
    """The coordinate convention of a transformers `model_type` (Qwen2-VL, Qwen3-VL and Qwen3.5 use the 0–1000 grid)."""
    if model_type == "qwen2_5_vl":
        return Convention.QWEN25_ABS
    if model_type in {"qwen2_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"}:
        return Convention.QWEN3_1000
    return Convention.NORM01


# Box → visual-token maps (spatial linking). Qwen-VL processors resize an image to multiples of patch_size × merge_size
# (14 × 2 for Qwen2.5-VL, 16 × 2 for Qwen3-VL / Qwen3.5), cut it into patches (`image_grid_thw` counts them: frames,
# rows, columns) and merge 2×2 patches into one token before the language model. A box in pixels of the ORIGINAL image
# is scaled to the resized image (`image_grid_thw × patch_size`, per axis) and maps to every merged token whose cell it
# overlaps with positive area: at least one token, never the pre-merge grid. Here, in L0, because the model's linking
# module (models/) and the data side (data/) both need it and may not import each other.
_EPS = 1e-6  # in token cells: a box edge that lands on a cell border by float rounding stays on it


class LinkingError(SpatialtuneError):
    """Refer boxes that do not fit the batch they came with (images, sizes, `<|box_end|>` tokens)."""


@dataclass(frozen=True)
class MergedGrid:
    """The merged-token grid of one image as the language model sees it, and the resized image it came from."""

    frames: int
    rows: int  # merged tokens per column
    cols: int  # merged tokens per row
    token_px: int  # side of one merged token in resized pixels (patch_size × merge_size)

    @classmethod
    def from_grid_thw(cls, grid_thw: Sequence[int], patch_size: int, merge_size: int) -> "MergedGrid":
        """The merged grid of an `image_grid_thw` row (counted in pre-merge patches)."""
        t, h, w = (int(v) for v in grid_thw)
        if h % merge_size or w % merge_size:
            raise LinkingError(f"image_grid_thw {[t, h, w]} is not a multiple of merge size {merge_size}")
        return cls(t, h // merge_size, w // merge_size, patch_size * merge_size)

    @property
    def resized_size(self) -> tuple[int, int]:
        """(width, height) of the image after the processor's resize."""
        return self.cols * self.token_px, self.rows * self.token_px

    @property
    def n_tokens(self) -> int:
        """How many merged tokens (placeholders in `input_ids`) the image has."""
        return self.frames * self.rows * self.cols


def _covered(low_px: float, high_px: float, cells: int, token_px: int) -> tuple[int, int]:
    """[first, last) cells of `cells` tokens that the span [low_px, high_px) in resized pixels overlaps (at least one)."""
    first = min(max(math.floor(low_px / token_px + _EPS), 0), cells - 1)
    last = min(max(math.ceil(high_px / token_px - _EPS), first + 1), cells)
    return first, last


def box_token_mask(box_pixel: Sequence[float], image_size: tuple[int, int], grid: MergedGrid) -> torch.Tensor:
    """Boolean mask over an image's merged tokens (`grid.n_tokens`, in placeholder order: frame, row, column) of the
    tokens an original-pixel box [x1, y1, x2, y2] overlaps; `image_size` is the original (width, height)."""
    width, height = image_size
    resized_w, resized_h = grid.resized_size
    x1, y1, x2, y2 = (float(v) for v in box_pixel)
    # Multiply before dividing: a half or quarter of an odd side lands exactly on the resized half or quarter.
    c0, c1 = _covered(x1 * resized_w / width, x2 * resized_w / width, grid.cols, grid.token_px)
    r0, r1 = _covered(y1 * resized_h / height, y2 * resized_h / height, grid.rows, grid.token_px)
    mask = torch.zeros(grid.frames, grid.rows, grid.cols, dtype=torch.bool)
    mask[:, r0:r1, c0:c1] = True
    return mask.flatten()


@dataclass
class ReferGroupTokens:
    """One `<|box_end|>` token's region: the image it is on, that image's grid, and the union mask of its boxes."""

    image: int  # index among the sample's images
    grid: MergedGrid
    offset: int  # where the image's tokens start among the sample's visual tokens
    mask: torch.Tensor  # [grid.n_tokens] bool: union of the group's boxes
    box_masks: torch.Tensor  # [n_boxes, grid.n_tokens] bool: one mask per box


def sample_grids(image_grid_thw: torch.Tensor, images_per_sample: Sequence[int], patch_size: int,
                 merge_size: int) -> list[list[MergedGrid]]:
    """The merged grids of each sample's images, from the batch's flat `image_grid_thw` (rows in sample order)."""
    rows = [MergedGrid.from_grid_thw(row.tolist(), patch_size, merge_size) for row in image_grid_thw]
    if len(rows) != sum(images_per_sample):
        raise LinkingError(f"image_grid_thw has {len(rows)} image(s) but image_sizes lists {sum(images_per_sample)}")
    grids, start = [], 0
    for n in images_per_sample:
        grids.append(rows[start:start + n])
        start += n
    return grids


def refer_token_masks(refer_boxes: Sequence[Sequence[dict]], image_sizes: Sequence[Sequence[tuple[int, int]]],
                      image_grid_thw: torch.Tensor, patch_size: int, merge_size: int) -> list[list[ReferGroupTokens]]:
    """Per sample, per refer group (`{"image": i, "boxes": [[x1, y1, x2, y2], ...]}` in original pixels of image i),
    the merged tokens its boxes cover: the batch side of spatial linking."""
    if len(refer_boxes) != len(image_sizes):
        raise LinkingError(f"refer_boxes has {len(refer_boxes)} sample(s) but image_sizes has {len(image_sizes)}")
    grids = sample_grids(image_grid_thw, [len(sizes) for sizes in image_sizes], patch_size, merge_size)
    out = []
    for b, (groups, sizes, sample_grid) in enumerate(zip(refer_boxes, image_sizes, grids)):
        offsets = [sum(g.n_tokens for g in sample_grid[:i]) for i in range(len(sample_grid))]
        sample = []
        for k, group in enumerate(groups):
            image = int(group.get("image", 0))
            if not 0 <= image < len(sample_grid) or not group.get("boxes"):
                raise LinkingError(f"sample {b}: refer_boxes[{k}] names image {image} of {len(sample_grid)} "
                                   f"with {len(group.get('boxes') or [])} box(es); it needs an existing image and a box")
            grid = sample_grid[image]
            box_masks = torch.stack([box_token_mask(box, tuple(sizes[image]), grid) for box in group["boxes"]])
            sample.append(ReferGroupTokens(image, grid, offsets[image], box_masks.any(0), box_masks))
        out.append(sample)
    return out
