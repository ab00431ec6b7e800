"""Box → merged visual-token maps (`geometry.MergedGrid`, `box_token_mask`, `refer_token_masks`) on images resized by
the real tiny Qwen2.5-VL (14 px) and Qwen3-VL (16 px) processors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from spatialtune.geometry import LinkingError, MergedGrid, ResizePolicy, box_token_mask, refer_token_masks
from spatialtune.models.loading import load_processor

SIZES = [(201, 147), (97, 263)]  # odd sides; 201×147 gives an odd number of token columns on both families


@pytest.fixture(scope="module", params=["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def resized(request):
    """(processor, image_grid_thw, patch, merge) of the SIZES images as the family's processor resizes them."""
    processor, _ = load_processor(request.param)
    ip = processor.image_processor
    grid_thw = ip(images=[Image.new("RGB", s) for s in SIZES], return_tensors="pt")["image_grid_thw"]
    return processor, grid_thw, ip.patch_size, ip.merge_size


def expected(grid: MergedGrid, rows: range, cols: range) -> torch.Tensor:
    """A mask built cell by cell: the tokens in `rows` × `cols`."""
    mask = torch.zeros(grid.rows, grid.cols, dtype=torch.bool)
    for r in rows:
        for c in cols:
            mask[r, c] = True
    return mask.flatten()


def test_grid_times_patch_size_is_the_processors_resize(resized):
    processor, grid_thw, patch, merge = resized
    for size, row in zip(SIZES, grid_thw):
        grid = MergedGrid.from_grid_thw(row.tolist(), patch, merge)
        assert grid.resized_size == ResizePolicy.from_processor(processor).resized_size(*size)
        assert grid.token_px == {14: 28, 16: 32}[patch]


def test_halves_and_quadrants_map_to_the_tokens_they_cover(resized):
    _, grid_thw, patch, merge = resized
    (w, h), grid = SIZES[0], MergedGrid.from_grid_thw(grid_thw[0].tolist(), patch, merge)
    half_c, half_r = range((grid.cols + 1) // 2), range((grid.rows + 1) // 2)  # an odd count: the middle cell is shared
    right_c, bottom_r = range(grid.cols // 2, grid.cols), range(grid.rows // 2, grid.rows)
    cases = {
        (0, 0, w / 2, h): (range(grid.rows), half_c),
        (w / 2, 0, w, h): (range(grid.rows), right_c),
        (0, 0, w, h / 2): (half_r, range(grid.cols)),
        (0, 0, w / 2, h / 2): (half_r, half_c),
        (w / 2, h / 2, w, h): (bottom_r, right_c),
        (0, 0, w, h): (range(grid.rows), range(grid.cols)),
    }
    for box, (rows, cols) in cases.items():
        assert torch.equal(box_token_mask(box, (w, h), grid), expected(grid, rows, cols)), box


def test_a_tiny_box_maps_to_exactly_one_token(resized):
    _, grid_thw, patch, merge = resized
    grid = MergedGrid.from_grid_thw(grid_thw[0].tolist(), patch, merge)
    assert box_token_mask((100, 70, 100.4, 70.4), SIZES[0], grid).sum() == 1
    assert box_token_mask((200, 146, 201, 147), SIZES[0], grid).nonzero().flatten().tolist() == [grid.n_tokens - 1]


def test_groups_map_to_their_own_image_with_offsets_and_union_masks(resized):
    _, grid_thw, patch, merge = resized
    (w0, h0), (w1, h1) = SIZES
    groups = [{"image": 1, "boxes": [[0, 0, w1, h1 / 2]]}, {"image": 0, "boxes": [[0, 0, 1, 1], [w0 - 1, h0 - 1, w0, h0]]}]
    [[on_second, on_first]] = refer_token_masks([groups], [SIZES], grid_thw, patch, merge)
    first = MergedGrid.from_grid_thw(grid_thw[0].tolist(), patch, merge)
    assert (on_second.image, on_second.offset, on_first.offset) == (1, first.n_tokens, 0)
    assert on_first.box_masks.shape == (2, first.n_tokens)
    assert on_first.mask.nonzero().flatten().tolist() == [0, first.n_tokens - 1]


def test_a_batch_maps_each_sample_to_its_own_images(resized):
    _, grid_thw, patch, merge = resized
    per_sample = refer_token_masks([[{"image": 0, "boxes": [[0, 0, 5, 5]]}]] * 2, [[SIZES[0]], [SIZES[1]]],
                                   grid_thw, patch, merge)
    assert [s[0].grid for s in per_sample] == [MergedGrid.from_grid_thw(r.tolist(), patch, merge) for r in grid_thw]


def test_a_group_on_a_missing_image_names_the_sample(resized):
    _, grid_thw, patch, merge = resized
    with pytest.raises(LinkingError, match="sample 0: refer_boxes\\[0\\] names image 2"):
        refer_token_masks([[{"image": 2, "boxes": [[0, 0, 5, 5]]}]], [SIZES], grid_thw, patch, merge)
