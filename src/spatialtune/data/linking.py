"""Box → visual-token maps: which merged visual tokens of the language model's input a pixel box covers.

Qwen-VL processors resize an image to multiples of `patch_size × merge_size` (14 × 2 for Qwen2.5-VL, 16 × 2 for
Qwen3-VL / Qwen3.5), cut it into patches (`image_grid_thw` counts them: frames, rows, columns) and merge 2×2 patches
into one token before the language model. A box in pixels of the ORIGINAL image is scaled to the resized image
(`image_grid_thw × patch_size`, per axis) and maps to every merged token whose cell it overlaps with positive area,
so a box always maps to at least one token, and never to the pre-merge grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import SpatialtuneError

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
