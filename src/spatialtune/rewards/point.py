"""Points: `point` (the reply's point lies in the mask of the target's image, else in a box of that image holding the
target: the `records` benchmark's point score) and `hit-at-mask` (x3 cross-view: Hit@Mask for a visible target with
the concat rule, NOT_VISIBLE correctness for a hidden one: the `crossview` benchmark's per-sample score).

Guards: a reply with several points (more than two numbers where `point` reads leniently; more than one `(x, y)`
tuple for `hit-at-mask`), or both a point and NOT_VISIBLE, scores 0 where the benchmarks would read the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..answers.parse import StrictCoordinates, parse_numbers, parse_tuples
from ..answers.points import parse_ground_truth, parse_prediction
from ..answers.score import crossview_score, point_hit, point_region, read_coordinates
from ..tasks.crossview import NOT_VISIBLE
from . import register
from ._sample import KindReward, Sample, Scored, cached_mask, guarded


@register
class Point(KindReward):
    """1 when the reply's point lands in the target region of a `{point:N}` record."""

    name = "point"
    kinds = ("point",)

    @dataclass(frozen=True)
    class Options:
        """`strict`: the benchmark's reading, exactly two numbers inside the image (off: the first two numbers)."""

        strict: bool = True

    def _reading(self, sample: Sample, reference: dict[str, Any]) -> tuple[dict[str, Any], StrictCoordinates]:
        """The target point column (pixels of its image) and the reply's point read in that image's frame."""
        target = sample.column("points", self.name)[reference["value"]]
        frame = sample.frame(target["image"], self.renderer, self.name)
        return target, read_coordinates(sample.reply, 2, frame, self.renderer.convention, self.options.strict)

    def judge(self, sample: Sample, reference: dict[str, Any]) -> Scored:
        """Hit or miss, zeroed for several points under the lenient reading."""
        target, reading = self._reading(sample, reference)
        mask, boxes = point_region(target, sample.column("boxes", self.name), sample.column("masks", self.name))
        hit = reading.pixel is not None and point_hit(reading.pixel, cached_mask(mask["path"]) if mask else None, boxes)
        several = not self.options.strict and len(parse_numbers(sample.reply)) > 2
        return guarded(float(hit), "several points" if several else None)

    def parses(self, sample: Sample, reference: dict[str, Any]) -> bool:
        """The reply holds a point."""
        return self._reading(sample, reference)[1].pixel is not None


@register
class HitAtMask(KindReward):
    """x3 cross-view: 1 for a point on the query mask (visible target) or NOT_VISIBLE (hidden target)."""

    name = "hit-at-mask"
    kinds = ("crossview",)

    @dataclass(frozen=True)
    class Options:
        """`strict_brackets`: read only `[(x, y)]`, as the source's script does (off: a bare `(x, y)` too)."""

        strict_brackets: bool = False

    def judge(self, sample: Sample, reference: dict[str, Any]) -> Scored:
        """The `crossview` benchmark's per-sample score, zeroed for a hedge."""
        gt = parse_ground_truth(reference["value"])
        mask = cached_mask(reference["mask"]) if reference.get("mask") and not gt.not_visible else None
        scored = crossview_score(sample.reply, gt, mask, bool(reference.get("concat")), self.options.strict_brackets)
        points = len(parse_tuples(sample.reply))
        if points > 1:
            guard = "several points"
        elif points and NOT_VISIBLE in sample.reply.upper():
            guard = "point and NOT_VISIBLE"
        else:
            guard = None
        return guarded(scored.score, guard)

    def parses(self, sample: Sample, reference: dict[str, Any]) -> bool:
        """The reply holds NOT_VISIBLE or a point."""
        return parse_prediction(sample.reply, self.options.strict_brackets) is not None
