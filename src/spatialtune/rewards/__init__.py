"""Reward functions for GRPO, by name: each a plain TRL reward callable `f(prompts, completions, **columns) ->
list[float | None]` (None: the reward does not apply to that record), one file per family.

A reward reads the ground truth from the row's pixel-frame columns (`data.render.record_columns`) and the `expected`
column `reward_columns` adds, and the model's answer through `answers/` — the very rules the benchmarks score with,
so the accuracy part of a reward equals the benchmark's per-sample score on the same completion. Every reward returns
a finite value in its documented range for any completion (see docs/rewards.md).

    reward_funcs, weights = make_rewards({"task": 1.0, "format": 0.1}, renderer)
    GRPOTrainer(..., reward_funcs=reward_funcs, args=GRPOConfig(reward_weights=weights, ...))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Protocol

from ..answers.expected import (
    crossview_reference,
    expected_answer,
    is_crossview_record,
    plain_action,
    record_query,
    reference_action,
)
from ..data.render import GeometryRenderer
from ..errors import UnknownNameError
from ..records import SpatialRecord
from ..registry import Registry
from ._sample import Reward, RewardError, Sample, Scored

__all__ = ["REWARDS", "Reward", "RewardError", "RewardFactory", "RewardFunction", "Sample", "Scored", "UnknownRewardError",
           "make_rewards", "register", "reward_columns", "reward_names"]


class UnknownRewardError(UnknownNameError):
    """A reward name that no module of `spatialtune.rewards` registers."""


class RewardFunction(Protocol):
    """TRL's reward callable: one value per completion (None where the reward does not apply); `__name__` is the
    registered name (TRL logs each reward under it)."""

    __name__: str

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]: ...


class RewardFactory(Protocol):
    """What the registry holds: a reward for one model family's coordinate frame, with its options."""

    def __call__(self, renderer: GeometryRenderer, **options: Any) -> RewardFunction: ...


REWARDS: Registry[RewardFactory] = Registry("reward", package=__name__, error=UnknownRewardError)


def register(cls: type[Reward]) -> type[Reward]:
    """Class decorator: make a Reward subclass available by its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} must set a class attribute `name` to be registered")
    return REWARDS.register(cls.name, cls)


def reward_names() -> list[str]:
    """Every registered reward name (every module of this package is imported on the first lookup)."""
    return REWARDS.names()


def reference_of(record: SpatialRecord) -> dict[str, Any]:
    """What a record's reply is rewarded against, as JSON data: an x3 cross-view answer (kind `crossview`, with its
    query mask and frame), a RoomPlan action (`action`), else the `records` benchmark's reference (`box`, `point`,
    `choice`, `count`, `text`); a record without one raises a RecordError naming the field."""
    if is_crossview_record(record):
        declared = record.meta.get("task_kind") or record.task
        reference = crossview_reference(record, record_query(record), declared, Path(record.source[0]).name)
        if reference is not None:
            return {"kind": "crossview", "value": reference.answer.as_json(), "kind_x3": reference.kind,
                    "mask": str(reference.mask) if reference.mask else None, "concat": reference.concat}
    action = plain_action(reference_action({"meta": record.meta, "messages": record.messages})[0])
    if action is not None:
        return {"kind": "action", "value": action}
    expected = expected_answer(record)
    return {"kind": expected.kind, "value": expected.value}


def reward_columns(record: SpatialRecord) -> dict[str, Any]:
    """The dataset columns rewards read beyond `data.render.record_columns`: `expected`, the JSON text of
    `reference_of(record)` (one schema per column in a `datasets.Dataset`)."""
    return {"expected": json.dumps(reference_of(record))}


def make_rewards(
    weights: Mapping[str, float], renderer: GeometryRenderer, options: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[list[RewardFunction], list[float]]:
    """The rewards named in `weights` (with `options[name]`), and their weights, for `GRPOTrainer(reward_funcs=…)` and
    `GRPOConfig(reward_weights=…)`; unknown names, options or weights raise naming them."""
    options = dict(options or {})
    stray = sorted(set(options) - set(weights))
    if stray:
        raise RewardError(f"options for {stray[0]!r}, which is not among the rewards {sorted(weights)}: give it a weight or drop its options")
    functions, values = [], []
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise RewardError(f"reward {name!r}: the weight must be a number, got {weight!r}")
        functions.append(REWARDS.get(name)(renderer, **dict(options.get(name) or {})))
        values.append(float(weight))
    return functions, values

