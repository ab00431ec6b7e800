"""Shaping: `format` (the final turn is `<think>…</think><answer>…</answer>` and every earlier turn a valid crop call and
its executed result) and `tool-use` (a crop was executed and the answer is correct, as DeepEyes pays its tool bonus).

Both are paid only when the answer counts: `format` when the answer parses as an answer of the record's kind (as
SpatialThinker and ViLaSR pay format only for a usable answer), `tool-use` only when it is correct — a call made for
the bonus before a wrong answer earns nothing. Without the `expected` column `format` checks the form alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..records import text_parts
from ..tools.crop import TOOLS
from ..tools.protocol import ToolCallError, has_tool_call, is_refusal, parse_tool_call
from . import register
from ._sample import Reward, Sample, Scored
from .task import Task

_THINK_ANSWER = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)
_ANSWER_ONLY = re.compile(r"\s*(?:<think>(.*?)</think>\s*)?<answer>(.*?)</answer>\s*", re.S)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _text(message: dict[str, Any]) -> str:
    return " ".join(text_parts(message.get("content")))


def _valid_call(message: dict[str, Any]) -> bool:
    """An assistant turn that calls a declared tool: structured `tool_calls` (TRL's parsed response) or the
    `<tool_call>` JSON Qwen writes, and no answer."""
    text = _text(message)
    if "<answer>" in text:
        return False
    calls = message.get("tool_calls")
    if calls:
        return isinstance(calls, list) and all(
            isinstance(c, dict) and isinstance(c.get("function"), dict) and c["function"].get("name") in TOOLS for c in calls
        )
    try:
        return parse_tool_call(text, TOOLS) is not None
    except ToolCallError:
        return False


def executed_calls(sample: Sample) -> int | None:
    """How many tool calls the completion made that were executed (each answered by a tool turn that is no refusal);
    None when its turns are not a valid exchange (a malformed or refused call, a turn out of place, no final answer)."""
    turns = sample.turns
    if not turns or turns[-1].get("role") != "assistant" or turns[-1].get("tool_calls") or has_tool_call(sample.text):
        return None
    calls = 0
    for previous, message in zip([None, *turns[:-2]], turns[:-1]):
        role = message.get("role")
        if role == "assistant" and _valid_call(message):
            continue
        if role == "tool" and previous is not None and previous.get("role") in ("assistant", "tool") and not is_refusal(_text(message)):
            calls += 1
            continue
        return None
    return calls


@register
class Format(Reward):
    """1 for a well-formed completion whose answer parses as the record's kind, else 0."""

    name = "format"

    @dataclass(frozen=True)
    class Options:
        """`think`: require the `<think>` block (off: `<answer>` alone is enough); `task`: options of the `task` reward
        that decides whether the answer parses (e.g. `{options: {choice: {letters_too: false}}}`)."""

        think: bool = True
        task: dict[str, Any] = field(default_factory=dict)

    def __init__(self, renderer, **options: Any):
        super().__init__(renderer, **options)
        self.task = Task(renderer, **self.options.task)

    def score(self, sample: Sample) -> Scored:
        """1 or 0 (see the module docstring)."""
        text = sample.text
        pattern = _THINK_ANSWER if self.options.think else _ANSWER_ONLY
        match = pattern.fullmatch(text)
        if match is None or any(text.count(tag) > 1 for tag in _TAGS) or not match.group(2).strip():
            return Scored(0.0, 0.0)
        if match.group(1) is not None and not match.group(1).strip():
            return Scored(0.0, 0.0)
        if executed_calls(sample) is None:
            return Scored(0.0, 0.0, "invalid tool turn")
        if sample.expected is not None and sample.expected.get("kind") in self.task.kinds and not self.task.parses(sample, sample.expected):
            return Scored(0.0, 0.0, "answer does not parse")
        return Scored(1.0, 1.0)


@register
class ToolUse(Reward):
    """1 when the completion executed at least one crop and its answer is correct (`task` accuracy 1), else 0."""

    name = "tool-use"

    @dataclass(frozen=True)
    class Options:
        """`task`: options of the `task` reward that judges the answer."""

        task: dict[str, Any] = field(default_factory=dict)

    def __init__(self, renderer, **options: Any):
        super().__init__(renderer, **options)
        self.task = Task(renderer, **self.options.task)

    def score(self, sample: Sample) -> Scored | None:
        """1 or 0; None for a record of no answer kind."""
        answered = self.task.score(sample)
        if answered is None:
            return None
        paid = float(bool(executed_calls(sample)) and answered.accuracy >= 1.0 and answered.value > 0)
        return Scored(paid, paid)
