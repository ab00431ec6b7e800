"""Eval-only scoring helpers: a letter answer as a SampleResult, and the coordinate frame of a row's image."""

from __future__ import annotations

from ..answers.match import letter_score
from ..data.render import GeometryRenderer, Row
from ..geometry import ImageFrame
from .benchmarks import SampleResult


def letter_result(row: Row, output: str) -> SampleResult:
    """Score 1 if the option letter read from `output` (shared parser, earliest form wins) is the row's answer."""
    answer = row["answer"]
    parsed, score = letter_score(output, answer, len(row["choices"]))
    return SampleResult(score, parsed, answer)


def row_frame(row: Row, image: int, renderer: GeometryRenderer) -> ImageFrame:
    """The coordinate frame of image `image` of a row (its original size and the processor's resized size)."""
    width, height = row["image_sizes"][image]
    return ImageFrame.of(width, height, renderer.policy)
