"""Coordinate frames: pixels of the original image ↔ the text coordinates each model family reads and writes.

A record stores geometry in ONE frame, `pixel` (of the original image). Models see other frames:
- `qwen25_abs`: Qwen2.5-VL, absolute pixels of the image *as resized by the processor* (smart_resize).
- `qwen3_1000`: Qwen3-VL, Qwen3.5 (and Qwen2-VL), a 0–1000 grid over the image, independent of resizing.
- `norm01`: fractions of width/height in [0, 1], for tasks that define their own answer format (x3), and the frame of
  every other model family (the prompts state it, since such a model has no native convention).
Rewards and metrics use the inverse conversions to read a model's answer back into pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize


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
