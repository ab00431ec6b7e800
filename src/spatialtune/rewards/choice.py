"""Options and short answers: `choice` (an option by its text or letter; relation phrases and yes/no are options) and
`text` (normalised exact match), the `records` benchmark's rules.

A relation option is named by any phrase holding its word: "to the left of", "on the left side of" and "left of" all
name the option `left`. A reply naming several options ("left or right", "yes and no", "(A) (B)") hedges: 0, although
the benchmark would read the first one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..answers.parse import named_options, option_of_reply
from ..answers.score import choice_score, text_score
from ..records import normalised_text
from . import register
from ._sample import KindReward, Sample, Scored, guarded


@register
class Choice(KindReward):
    """1 when the reply names the expected option and no other (the `records` benchmark's choice score otherwise)."""

    name = "choice"
    kinds = ("choice",)

    @dataclass(frozen=True)
    class Options:
        """`letters_too`: an option may be named by its letter ("(B)", "B.", "Answer: B"); off for the `synthetic`
        benchmark's reading (option words only)."""

        letters_too: bool = True

    def judge(self, sample: Sample, reference: dict[str, Any]) -> Scored:
        """The benchmark's choice score, zeroed when the reply names several options."""
        choices = sample.column("choices", self.name)
        _, accuracy = choice_score(sample.reply, choices, reference["value"], self.options.letters_too)
        several = len(named_options(sample.reply, choices, self.options.letters_too)) > 1
        return guarded(accuracy, "several options" if several else None)

    def parses(self, sample: Sample, reference: dict[str, Any]) -> bool:
        """The reply names an option."""
        return option_of_reply(sample.reply, sample.column("choices", self.name), self.options.letters_too) is not None


@register
class Text(KindReward):
    """1 when the reply equals the reference after `normalised_text` (the `records` benchmark's text score)."""

    name = "text"
    kinds = ("text",)

    def judge(self, sample: Sample, reference: dict[str, Any]) -> Scored:
        """The benchmark's exact match (a hedge like "yes or no" is simply not equal to "yes")."""
        return guarded(text_score(sample.reply, reference["value"])[1], None)

    def parses(self, sample: Sample, reference: dict[str, Any]) -> bool:
        """The reply has some text."""
        return bool(normalised_text(sample.reply))
