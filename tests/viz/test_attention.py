"""Attention heatmaps: merged-token weights drawn over their image, the referred box outlined."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spatialtune.viz.attention import (
    AttentionShapeError,
    RegionAttention,
    attention_heatmap,
    attention_panel,
    token_grid,
)
from spatialtune.viz.overlays import GROUND_TRUTH_COLOUR

GRID = (4, 6)  # merged tokens of a 120×80 image: each token covers 20×20 pixels
IMAGE = Image.new("RGB", (120, 80), (128, 128, 128))
BOX = [60, 20, 100, 60]  # tokens rows 1–2, cols 3–4


def _inside_box(rows=range(1, 3), cols=range(3, 5)) -> np.ndarray:
    weights = np.zeros(GRID)
    for r in rows:
        for c in cols:
            weights[r, c] = 0.25
    return weights.reshape(-1)


def _brightness(image: Image.Image, box) -> float:
    x1, y1, x2, y2 = box
    return float(np.asarray(image.convert("L"), dtype=float)[y1:y2, x1:x2].mean())


def test_weight_inside_the_box_makes_the_pixels_inside_hot_and_outside_cold():
    heatmap = attention_heatmap(IMAGE, _inside_box(), GRID, BOX, side=None)
    assert heatmap.size == IMAGE.size
    assert _brightness(heatmap, (64, 24, 96, 56)) > _brightness(heatmap, (4, 4, 56, 76)) + 60


def test_each_token_colours_exactly_its_own_cell_of_the_original_image():
    weights = np.zeros(GRID)
    weights[3, 0] = 1.0  # the bottom-left token: pixels x 0–20, y 60–80
    heatmap = np.asarray(attention_heatmap(IMAGE, weights.reshape(-1), GRID, [0, 0, 1, 1], side=None).convert("L"), dtype=float)
    assert heatmap[62:80, 0:20].min() > heatmap[40:58, 22:120].max()


def test_the_box_is_outlined_in_the_ground_truth_colour_scaled_with_the_gallery():
    heatmap = attention_heatmap(IMAGE, _inside_box(), GRID, BOX)  # 120 px → ×2 for the 256-px gallery
    assert heatmap.size == (240, 160)
    assert heatmap.getpixel((120, 80)) == GROUND_TRUTH_COLOUR and heatmap.getpixel((110, 80)) != GROUND_TRUTH_COLOUR


def test_heads_are_averaged_and_a_torch_grid_is_accepted():
    per_head = torch.tensor(np.stack([_inside_box(), np.zeros(24)]), dtype=torch.bfloat16)
    assert np.allclose(token_grid(per_head, GRID), _inside_box().reshape(GRID) / 2)
    assert np.array_equal(token_grid(torch.tensor(_inside_box().reshape(GRID)), GRID), _inside_box().reshape(GRID))


def test_weights_that_do_not_fit_the_grid_are_an_error_naming_both_shapes():
    with pytest.raises(AttentionShapeError, match=r"shape \(20,\) do not fit a 4×6 merged-token grid"):
        token_grid(np.zeros(20), GRID)


def test_the_panel_shows_each_region_side_by_side_with_its_own_hot_box():
    interaction = [20, 20, 100, 60]
    regions = [RegionAttention("person", _inside_box(cols=range(1, 2)), [20, 20, 40, 60]),
               RegionAttention("object", _inside_box(), BOX),
               RegionAttention("interaction", _inside_box(cols=range(1, 5)), interaction)]
    panel = attention_panel(IMAGE, regions, GRID, side=None)
    assert panel.size == (3 * 120, 80 + 18)
    tiles = [panel.crop((120 * k, 18, 120 * (k + 1), 98)) for k in range(3)]
    assert _brightness(tiles[1], (64, 24, 96, 56)) > _brightness(tiles[0], (64, 24, 96, 56)) + 60
    assert _brightness(tiles[0], (24, 24, 36, 56)) > _brightness(tiles[1], (24, 24, 36, 56)) + 60
