"""Attention you can look at: one referred region's attention over the merged visual tokens, drawn on its image.

Spatial linking's `<|box_end|>` query attends to the merged visual tokens (2×2 patches) of its image. The weights of
one region are a `grid_hw` = (rows, cols) grid over the processor's resized image, which covers the whole original
image, so each token cell is stretched over its share of the original image (nearest: one flat colour per token, no
invented detail between tokens), coloured by a matplotlib colour map, blended over the picture, and the region's box
outlined with `overlays.draw_shapes`. `attention_panel` puts person / object / interaction side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import SpatialtuneError
from ..media import open_image
from .overlays import GALLERY_SIDE, GROUND_TRUTH_COLOUR, draw_shapes, gallery_scale

ATTENTION_DIR = "attention"  # in an eval output folder: the heatmap PNGs of `eval --visualize-attention`
FIGURES_FILE = "figures.json"  # in ATTENTION_DIR: one entry per PNG (sample id, file, kind, groups, labels)
COLOUR_MAP = "inferno"
HEATMAP_ALPHA = 0.6  # share of the heatmap's colour in the blend (the rest is the picture)
TITLE_HEIGHT = 18  # pixels of the label strip above each panel


class AttentionShapeError(SpatialtuneError):
    """Attention weights whose size does not match the merged-token grid they are drawn on."""


def token_grid(weights: Any, grid_hw: tuple[int, int]) -> np.ndarray:
    """The weights as a (rows, cols) float grid: a flat row-major vector of rows·cols weights (the merged tokens in the
    order the language model reads them), or a (rows, cols) grid; leading dimensions (heads) are averaged."""
    rows, cols = grid_hw
    array = np.asarray(weights.detach().float().cpu() if hasattr(weights, "detach") else weights, dtype=np.float64)
    if array.shape[-1:] != (rows * cols,) and array.shape[-2:] != (rows, cols):
        raise AttentionShapeError(f"attention weights of shape {tuple(array.shape)} do not fit a {rows}×{cols} merged-token grid "
                                  f"(expected (…, {rows * cols}) or (…, {rows}, {cols}))")
    return array.reshape(-1, rows, cols).mean(axis=0)


def _coloured(grid: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The grid scaled to its maximum (all-zero stays zero), coloured by COLOUR_MAP, stretched to `size` token by token."""
    from matplotlib import colormaps

    peak = grid.max()
    scaled = grid / peak if peak > 0 else grid
    rgb = (colormaps[COLOUR_MAP](scaled)[..., :3] * 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.NEAREST)


def attention_heatmap(image: Image.Image | str | Path, weights: Any, grid_hw: tuple[int, int], box_pixel: Sequence[Any],
                      side: int | None = GALLERY_SIDE) -> Image.Image:
    """One region's attention over its image: the merged-token weights (`token_grid`) upsampled over the picture in a
    colour map, the region's box (or boxes) in pixels of the original image outlined; resized for a gallery to about
    `side` pixels (None: the original size)."""
    picture = open_image(image, "RGB") if isinstance(image, (str, Path)) else image.convert("RGB")
    scale = gallery_scale(picture.size, side) if side else 1.0
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR)
    drawn = Image.blend(picture, _coloured(token_grid(weights, grid_hw), size), HEATMAP_ALPHA)
    draw_shapes(drawn, list(box_pixel), GROUND_TRUTH_COLOUR, scale)
    return drawn


@dataclass(frozen=True)
class RegionAttention:
    """One referred region to draw: its label (person, object, interaction), its weights, its box(es) in pixels."""

    label: str
    weights: Any
    box_pixel: Sequence[Any]


def attention_panel(image: Image.Image | str | Path, regions: Sequence[RegionAttention], grid_hw: tuple[int, int],
                    side: int | None = GALLERY_SIDE) -> Image.Image:
    """The heatmaps of several regions of one image side by side (person / object / interaction), each under its label."""
    tiles = [attention_heatmap(image, r.weights, grid_hw, r.box_pixel, side) for r in regions]
    width, height = sum(t.width for t in tiles), max(t.height for t in tiles) + TITLE_HEIGHT
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    draw, x = ImageDraw.Draw(panel), 0
    for region, tile in zip(regions, tiles):
        panel.paste(tile, (x, TITLE_HEIGHT))
        draw.text((x + 4, 3), region.label, fill=(0, 0, 0))
        x += tile.width
    return panel
