"""`task`: one reward for a mixed dataset, the right one per record from what its answer is — the kind `reward_columns`
writes (`box`, `point`, `choice`, `count`, `text` as the `records` benchmark scores them; `crossview` and `action`
as the `crossview` and `roomplan` benchmarks do) — times that kind's weight.

By default a kind is paid by the reward that equals its benchmark's per-sample score (`iou-hit` for boxes, not the
continuous `iou`); `rewards` maps a kind to another registered reward and `options` gives that reward's options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import REWARDS, register
from ._sample import KindReward, RewardError, Sample, Scored

KIND_REWARDS = {"box": "iou-hit", "point": "point", "choice": "choice", "count": "count", "text": "text",
                "crossview": "hit-at-mask", "action": "action"}


@register
class Task(KindReward):
    """The reward of each record's answer kind, weighted per kind; range [0, the largest weight]."""

    name = "task"
    kinds = tuple(KIND_REWARDS)

    @dataclass(frozen=True)
    class Options:
        """`rewards`: kind → reward name (defaults: KIND_REWARDS); `weights`: kind → weight (default 1);
        `options`: reward name → its options."""

        rewards: dict[str, str] = field(default_factory=dict)
        weights: dict[str, float] = field(default_factory=dict)
        options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __init__(self, renderer, **options: Any):
        super().__init__(renderer, **options)
        o = self.options
        for where, keys in (("rewards", o.rewards), ("weights", o.weights)):
            unknown = sorted(set(keys) - set(KIND_REWARDS))
            if unknown:
                raise RewardError(f"reward 'task': {where} names the kind {unknown[0]!r}; kinds: {', '.join(KIND_REWARDS)}")
        for kind, weight in o.weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
                raise RewardError(f"reward 'task': the weight of {kind!r} must be a finite number ≥ 0, got {weight!r}")
        names = {kind: o.rewards.get(kind, default) for kind, default in KIND_REWARDS.items()}
        built = {name: REWARDS.get(name)(renderer, **o.options.get(name, {})) for name in set(names.values())}
        for kind, name in names.items():
            if not isinstance(built[name], KindReward) or kind not in built[name].kinds:
                raise RewardError(f"reward 'task': {name!r} does not score {kind!r} answers")
        self.by_kind: dict[str, KindReward] = {kind: built[name] for kind, name in names.items()}
        self.weights = {kind: float(o.weights.get(kind, 1.0)) for kind in KIND_REWARDS}
        self.high = max(self.weights.values())

    def judge(self, sample: Sample, reference: dict[str, Any]) -> Scored:
        """The kind's reward times its weight."""
        kind = reference["kind"]
        scored = self.by_kind[kind].judge(sample, reference)
        return Scored(self.weights[kind] * scored.value, scored.accuracy, scored.guard, scored.shaping)

    def parses(self, sample: Sample, reference: dict[str, Any]) -> bool:
        """Whether the reply holds an answer of the record's kind."""
        return self.by_kind[reference["kind"]].parses(sample, reference)
