"""Pixel ↔ model-convention conversions, checked on images resized by the real Qwen-VL image processors."""

from __future__ import annotations

import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

from spatialtune.geometry import (
    Convention,
    ImageFrame,
    ResizePolicy,
    box_area,
    clip_box,
    convention_for_model_type,
    interaction_box,
    is_proper,
    model_to_pixel,
    pixel_to_model,
)

# Released settings: Qwen2.5-VL (patch 14, 3136..12845056 px), Qwen3-VL (patch 16, 65536..16777216 px) and Qwen3.5
# (the same image processor class for model_type qwen3_5, released with Qwen3-VL's settings), plus small training budgets.
PROCESSORS = {
    "qwen2_5_vl": dict(patch_size=14, size={"shortest_edge": 3136, "longest_edge": 12845056}),
    "qwen2_5_vl_small": dict(patch_size=14, size={"shortest_edge": 3136, "longest_edge": 256 * 28 * 28}),
    "qwen3_vl": dict(patch_size=16, size={"shortest_edge": 65536, "longest_edge": 16777216}),
    "qwen3_vl_small": dict(patch_size=16, size={"shortest_edge": 4096, "longest_edge": 256 * 32 * 32}),
    "qwen3_5": dict(patch_size=16, size={"shortest_edge": 65536, "longest_edge": 16777216}),
    "qwen3_5_small": dict(patch_size=16, size={"shortest_edge": 4 * 32 * 32, "longest_edge": 64 * 32 * 32}),  # tiny-qwen3.5's
}
SIZES = [(640, 480), (480, 640), (1000, 200), (333, 777), (1920, 1080), (50, 60)]


def _processor(name: str) -> Qwen2VLImageProcessor:
    return Qwen2VLImageProcessor(merge_size=2, **PROCESSORS[name])


def _resized_by_processor(processor, width: int, height: int) -> tuple[int, int]:
    """The size the real processor resized to, read from its patch grid."""
    _, gh, gw = processor(images=[Image.new("RGB", (width, height))], return_tensors="pt")["image_grid_thw"][0].tolist()
    return gw * processor.patch_size, gh * processor.patch_size


@pytest.mark.parametrize("name", sorted(PROCESSORS))
@pytest.mark.parametrize("size", SIZES)
def test_resize_policy_agrees_with_the_real_processor(name, size):
    processor = _processor(name)
    assert ResizePolicy.from_processor(processor).resized_size(*size) == _resized_by_processor(processor, *size)


@pytest.mark.parametrize("name", sorted(PROCESSORS))
@pytest.mark.parametrize("size", SIZES)
def test_box_round_trips_within_one_resized_pixel(name, size):
    processor = _processor(name)
    width, height = size
    frame = ImageFrame.of(width, height, ResizePolicy.from_processor(processor))
    convention = Convention.QWEN25_ABS if name.startswith("qwen2_5") else Convention.QWEN3_1000
    box = [0.13 * width, 0.27 * height, 0.71 * width, 0.94 * height]
    back = model_to_pixel(pixel_to_model(box, frame, convention), frame, convention)
    # One resized pixel in original pixels; the 0–1000 grid is coarser only where the resized image exceeds 1000 px.
    tol_x = width / min(frame.resized_width, 1000 if convention is Convention.QWEN3_1000 else frame.resized_width)
    tol_y = height / min(frame.resized_height, 1000 if convention is Convention.QWEN3_1000 else frame.resized_height)
    for i, (a, b) in enumerate(zip(box, back)):
        assert abs(a - b) <= (tol_x if i % 2 == 0 else tol_y) / 2 + 1e-9


def test_qwen25_absolute_coordinates_follow_the_resized_image():
    frame = ImageFrame.of(640, 480, ResizePolicy(factor=28, min_pixels=3136, max_pixels=256 * 28 * 28))
    assert (frame.resized_width, frame.resized_height) == (504, 364)  # smart_resize floors under max_pixels
    assert pixel_to_model([320, 240], frame, Convention.QWEN25_ABS) == [252, 182]


def test_qwen3_grid_is_independent_of_resizing():
    small = ImageFrame.of(640, 480, ResizePolicy(16 * 2, 4096, 64 * 32 * 32))
    large = ImageFrame.of(640, 480, None)
    for frame in (small, large):
        assert pixel_to_model([0, 0, 640, 480], frame, Convention.QWEN3_1000) == [0, 0, 1000, 1000]
    assert model_to_pixel([500, 250], small, Convention.QWEN3_1000) == pytest.approx([320.0, 120.0])


def test_norm01_keeps_three_decimals():
    frame = ImageFrame.of(300, 200, None)
    assert pixel_to_model([100, 50], frame, Convention.NORM01) == [0.333, 0.25]


def test_model_types_map_to_their_conventions():
    assert convention_for_model_type("qwen2_5_vl") is Convention.QWEN25_ABS
    assert convention_for_model_type("qwen3_vl") is Convention.QWEN3_1000
    assert convention_for_model_type("qwen2_vl") is Convention.QWEN3_1000
    assert convention_for_model_type("qwen3_5") is convention_for_model_type("qwen3_5_moe") is Convention.QWEN3_1000
    assert convention_for_model_type("llava") is convention_for_model_type("gemma3") is Convention.NORM01


def test_qwen3_5_resizes_with_the_qwen_vl_image_processor():
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    assert IMAGE_PROCESSOR_MAPPING_NAMES["qwen3_5"] == IMAGE_PROCESSOR_MAPPING_NAMES["qwen3_vl"]
    assert IMAGE_PROCESSOR_MAPPING_NAMES["qwen3_5"]["torchvision"] == Qwen2VLImageProcessor.__name__


@pytest.mark.parametrize("box, proper", [([0, 0, 1, 1], True), ([1, 0, 1, 5], False), ([0, 5, 3, 2], False), ([0.5, 0.5, 0.6, 0.7], True)])
def test_a_box_is_proper_only_with_positive_width_and_height(box, proper):
    assert is_proper(box) is proper


def test_box_area_is_width_times_height():
    assert box_area([10, 20, 40, 30]) == 300


def test_clip_box_keeps_the_numbers_inside_and_drops_a_box_outside_the_image():
    assert clip_box([-5, 2.5, 30, 12], 20, 10) == [0, 2.5, 20, 10]
    assert clip_box([25, 0, 30, 5], 20, 10) is None


def test_interaction_box_is_the_union_of_person_and_object():
    assert interaction_box([10, 10, 20, 40], [15, 5, 50, 30]) == [10, 5, 50, 40]
