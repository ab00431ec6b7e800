"""Boxes: `iou` (the IoU of the reply's box with the target box, in [0, 1]) and `iou-hit` (1 when IoU ≥ `threshold`,
0.5 by default: the `records` benchmark's box score). Boxes are read as the benchmark reads them: strictly (exactly
four numbers forming a proper box inside the image, in the model family's frame) unless `strict` is off.

Guards: a box more than `max_area_ratio` times the target's area (a box over the whole image) scores 0 — such a box
has IoU ≤ 1 / `max_area_ratio` anyway, and it earns nothing for covering the image; with `strict` off, a reply with
more than four numbers (several boxes) scores 0 where the lenient reading would take the first box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..answers.parse import parse_numbers
from ..answers.score import IOU_THRESHOLD, BoxScore, box_score
from ..geometry import box_area, is_proper
from . import register
from ._sample import KindReward, Sample, Scored, guarded


@register
class IoU(KindReward):
    """The IoU of the reply's box with the record's `{box:N}` target (0 for an unparsable or hedged reply)."""

    name = "iou"
    kinds = ("box",)

    @dataclass(frozen=True)
    class Options:
        """`strict`: the benchmark's reading (off: the first four numbers, as the `synthetic` benchmark reads them);
        `max_area_ratio`: the largest predicted / target area paid (null: no limit)."""

        strict: bool = True
        max_area_ratio: float | None = 4.0

    def _scored(self, sample: Sample, reference: dict[str, Any]) -> tuple[dict[str, Any], BoxScore]:
        """The target box column (pixels of its image) and the reply's box scored against it."""
        target = sample.column("boxes", self.name)[reference["value"]]
        frame = sample.frame(target["image"], self.renderer, self.name)
        return target, box_score(sample.reply, target["bbox"], frame, self.renderer.convention, self.options.strict)

    def judge(self, sample: Sample, reference: dict[str, Any]) -> Scored:
        """The IoU, zeroed by the guards of the module docstring."""
        target, scored = self._scored(sample, reference)
        return guarded(self.accuracy(scored.iou), self.guard(sample.reply, scored.reading.pixel, target["bbox"]))

    def accuracy(self, iou: float) -> float:
        """The reward's accuracy part: the IoU itself."""
        return iou

    def guard(self, reply: str, box: list[float] | None, target: list[float]) -> str | None:
        """Why a box earns nothing whatever its overlap (see the module docstring), or None."""
        if not self.options.strict and len(parse_numbers(reply)) > 4:
            return "several boxes"
        ratio = self.options.max_area_ratio
        if box is not None and ratio is not None and is_proper(box) and box_area(box) > ratio * box_area(target):
            return "oversized box"
        return None

    def parses(self, sample: Sample, reference: dict[str, Any]) -> bool:
        """The reply holds a box (read as `strict` says)."""
        return self._scored(sample, reference)[1].reading.pixel is not None


@register
class IoUHit(IoU):
    """1 when the reply's box has IoU ≥ `threshold` with the target (the `records` benchmark's box score at 0.5)."""

    name = "iou-hit"

    @dataclass(frozen=True)
    class Options:
        """`threshold`: the IoU that counts as a hit; `strict`, `max_area_ratio`: as for `iou`."""

        threshold: float = IOU_THRESHOLD
        strict: bool = True
        max_area_ratio: float | None = 4.0

    def accuracy(self, iou: float) -> float:
        """1 at IoU ≥ threshold."""
        return float(iou >= self.options.threshold)
