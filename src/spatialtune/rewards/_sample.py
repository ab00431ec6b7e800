"""What every reward shares: one completion and its row (`Sample`), a score with its accuracy part (`Scored`), and the
`Reward` base class that turns a per-sample score into TRL's batched reward callable."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from ..config import from_dict
from ..data.render import GeometryRenderer
from ..errors import SpatialtuneError
from ..geometry import ImageFrame
from ..media import read_mask
from ..records import answer_blocks, final_answer, text_parts

MASK_CACHE = 256  # masks kept in memory: a GRPO group scores one record's mask many times


class RewardError(SpatialtuneError):
    """A reward that cannot be built or fed: an unknown option, a missing dataset column, a bad weight."""


@dataclass(frozen=True)
class Scored:
    """One completion's reward (`value`), its accuracy part (`accuracy`: the benchmark's per-sample score on the
    same completion) and the guard that zeroed or the shaping that changed the value, if any."""

    value: float
    accuracy: float
    guard: str | None = None  # e.g. "several options": an answer that hedges scores 0 whatever the benchmark reads
    shaping: str | None = None  # e.g. "partial count": credit paid for a parsed answer that is not exactly right


@dataclass
class Sample:
    """One completion with its row's columns (each column's value for this completion), as TRL passes them."""

    completion: Any  # a string, or the completion's messages (assistant turns, tool turns)
    columns: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def turns(self) -> list[dict[str, Any]]:
        """The completion as messages: a plain string is one assistant turn."""
        if isinstance(self.completion, str):
            return [{"role": "assistant", "content": self.completion}]
        if isinstance(self.completion, list):
            return [m for m in self.completion if isinstance(m, dict)]
        return []

    @cached_property
    def text(self) -> str:
        """The text of the final turn when it is the assistant's ("" when the completion ends on a tool turn)."""
        turns = self.turns
        if not turns or turns[-1].get("role") != "assistant":
            return ""
        return " ".join(text_parts(turns[-1].get("content")))

    @cached_property
    def reply(self) -> str:
        """The scored part of the final turn (`final_answer`: its last `<answer>…</answer>`, else the text without `<think>`)."""
        return final_answer(self.text)

    @cached_property
    def several_answers(self) -> bool:
        """The final turn holds more than one `<answer>` block (only the last is scored: a hedge across blocks)."""
        return len(answer_blocks(self.text)) > 1

    @cached_property
    def expected(self) -> dict[str, Any] | None:
        """The row's `expected` column (`reward_columns`) as data, or None when the row has none."""
        value = self.columns.get("expected")
        return json.loads(value) if isinstance(value, str) else value

    def reference(self, reward: str) -> dict[str, Any]:
        """The `expected` column; a row without it is an error naming the reward that needs it."""
        if self.expected is None:
            raise RewardError(f"reward {reward!r} reads the `expected` column: add `rewards.reward_columns(record)` to every row")
        return self.expected

    def column(self, name: str, reward: str) -> Any:
        """A column of the row; a missing one is an error naming the reward that needs it."""
        if name not in self.columns:
            raise RewardError(f"reward {reward!r} reads the column {name!r}, which the rows lack (rows are "
                              "`data.render.dataset_row(record_to_row(record, renderer))` plus `reward_columns(record)`)")
        return self.columns[name]

    def frame(self, image: int, renderer: GeometryRenderer, reward: str) -> ImageFrame:
        """The coordinate frame of image `image` of the row (its size, resized by the renderer's policy)."""
        width, height = self.column("image_sizes", reward)[image]
        return ImageFrame.of(width, height, renderer.policy)


def _per_completion(value: Any, n: int) -> bool:
    """A column with one value per completion (a list, or a sequence such as a `datasets` column), not a scalar
    argument (`trainer_state`, `log_metric`) nor a text."""
    return hasattr(value, "__len__") and hasattr(value, "__getitem__") and not isinstance(value, (str, bytes, dict)) and len(value) == n


def samples(completions: list[Any], columns: dict[str, Any]) -> list[Sample]:
    """One Sample per completion; each column is split by completion, other arguments (`trainer_state`, …) skipped."""
    per_row = {k: list(v) for k, v in columns.items() if _per_completion(v, len(completions))}
    return [Sample(c, {k: v[i] for k, v in per_row.items()}) for i, c in enumerate(completions)]


@functools.lru_cache(maxsize=MASK_CACHE)
def cached_mask(path: str) -> np.ndarray:
    """A mask file as a boolean array (`media.read_mask`), read once per path."""
    return read_mask(path)


@dataclass(frozen=True)
class NoOptions:
    """A reward without options."""


class Reward:
    """A TRL reward callable: `reward(prompts, completions, **columns) -> list[float | None]`, scoring each completion
    with `score`; `__name__` is the registered name. Subclasses set `name`, `Options` and `score`."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    low: ClassVar[float] = 0.0  # the documented range of `value` (tests/rewards/test_properties.py holds every reward to it)
    high: ClassVar[float] = 1.0

    def __init__(self, renderer: GeometryRenderer, **options: Any):
        self.renderer = renderer
        try:
            self.options = from_dict(self.Options, options, where=f"rewards.{self.name}")
        except ValueError as e:  # ConfigError, or a check in the Options' __post_init__
            raise RewardError(f"reward {self.name!r}: {e}") from None
        self.__name__ = self.name

    def score(self, sample: Sample) -> Scored | None:
        """The reward of one completion, None where it does not apply to the record."""
        raise NotImplementedError

    def __call__(self, prompts: list[Any] | None = None, completions: list[Any] | None = None, **columns: Any) -> list[float | None]:
        """TRL's call: one value per completion; with TRL's `log_metric`, the share of the completions it applied to
        that a guard zeroed is logged as `<name>/guarded` (a policy drifting toward hedges shows there)."""
        scored = [self.score(sample) for sample in samples(list(completions or []), columns)]
        applied = [s for s in scored if s is not None]
        log_metric = columns.get("log_metric")
        if callable(log_metric) and applied:
            log_metric(f"{self.name}/guarded", sum(s.guard is not None for s in applied) / len(applied))
        return [None if s is None else s.value for s in scored]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.options})"


class KindReward(Reward):
    """A reward for records whose answer is of one of `kinds` (the `expected` column's kind); None for other records.
    An answer hedged across several `<answer>` blocks scores 0 (only the last is read, as the benchmarks read it)."""

    kinds: ClassVar[tuple[str, ...]] = ()

    def score(self, sample: Sample) -> Scored | None:
        """`judge` for a record of this reward's kinds, zeroed when the final turn holds several answers."""
        reference = sample.reference(self.name)
        if reference.get("kind") not in self.kinds:
            return None
        scored = self.judge(sample, reference)
        if sample.several_answers and scored.guard is None:
            return Scored(0.0, scored.accuracy, "several <answer> blocks")
        return scored

    def judge(self, sample: Sample, reference: dict[str, Any]) -> Scored:
        """The reward of one completion against the record's reference."""
        raise NotImplementedError

    def parses(self, sample: Sample, reference: dict[str, Any]) -> bool:
        """Whether the reply holds an answer of the record's kind at all (what shaping terms are paid on)."""
        raise NotImplementedError


def guarded(accuracy: float, guard: str | None) -> Scored:
    """The accuracy as the reward, or 0 when a guard fired (the answer hedges or games the benchmark's reading)."""
    return Scored(0.0 if guard else accuracy, accuracy, guard or None)
