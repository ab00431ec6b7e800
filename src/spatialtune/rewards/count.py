"""Counts: `count` pays 1 for the exact number (the `records` benchmark's exact count: the reply's first number) and
partial credit for a near one, `partial_credit · max(0, 1 − |n − N| / max(|N|, 1))`, below 1 by construction.

A reply holding several different numbers ("3 or 4", "1 2 3 4 5"), or a number the benchmark misreads ("1e999" reads
as 1, "NaN", "inf"), scores 0. With `number_words` a reply without digits is read by its number word ("three"): more
lenient than the benchmark, which reads digits only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..answers.parse import has_number_like_text, parse_number_words, parse_numbers
from ..answers.score import count_score
from . import register
from ._sample import KindReward, Sample, Scored, guarded


@register
class Count(KindReward):
    """1 for the exact count, documented partial credit for a near one, 0 for a hedge or a malformed number."""

    name = "count"
    kinds = ("count",)

    @dataclass(frozen=True)
    class Options:
        """`partial_credit`: the most a wrong count earns (at |n − N| → 0), in [0, 1); `number_words`: read "three" too."""

        partial_credit: float = 0.5
        number_words: bool = False

        def __post_init__(self):
            if not 0.0 <= self.partial_credit < 1.0:
                raise ValueError(f"partial_credit must be in [0, 1), got {self.partial_credit}")

    def _count(self, reply: str) -> tuple[int | float | None, list[float]]:
        """(the count a reply gives, every number it writes): digits as the benchmark reads them, else (with
        `number_words`) its number words."""
        numbers = parse_numbers(reply)
        if numbers or not self.options.number_words:
            return (numbers[0] if numbers else None), numbers
        words = parse_number_words(reply)
        return (words[0] if words else None), [float(w) for w in words]

    def judge(self, sample: Sample, reference: dict[str, Any]) -> Scored:
        """Exact, partial or 0 (see the module docstring)."""
        expected = reference["value"]
        parsed, accuracy = count_score(sample.reply, expected)
        count, numbers = self._count(sample.reply)
        if self.options.number_words and parsed is None and count is not None:
            accuracy = float(count == expected)
        guard = "several numbers" if len(set(numbers)) > 1 else "number-like text" if has_number_like_text(sample.reply) else None
        if guard or accuracy or count is None:
            return guarded(accuracy, guard)
        partial = self.options.partial_credit * max(0.0, 1.0 - abs(count - expected) / max(abs(expected), 1.0))
        return Scored(partial, accuracy, shaping="partial count" if partial else None)

    def parses(self, sample: Sample, reference: dict[str, Any]) -> bool:
        """The reply gives a count."""
        return self._count(sample.reply)[0] is not None
