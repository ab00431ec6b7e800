"""Rewards on real outputs before paying for RL: score completions of a records file with chosen rewards, per sample
and in summary (what `spatialtune rewards score` prints and writes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.render import GeometryRenderer, dataset_row, record_to_row
from ..records import SpatialRecord
from . import REWARDS, Reward, RewardError, reward_columns
from ._sample import Sample


def reward_row(record: SpatialRecord, renderer: GeometryRenderer) -> dict[str, Any]:
    """A record as a GRPO dataset row holds it, less the prompt: the rendered row (free-form columns as JSON text)
    and `reward_columns`."""
    return {**dataset_row(record_to_row(record, renderer)), **reward_columns(record)}


def score_records(
    records: list[SpatialRecord], completions: dict[str, Any], names: list[str], renderer: GeometryRenderer,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per-sample rewards of every record that has a completion (by id): each reward's value (None where it does not
    apply), its accuracy part and the guard or shaping behind it; a completion of no record is an error."""
    known = {r.id for r in records}
    stray = sorted(set(completions) - known)
    if stray:
        raise RewardError(f"a completion has the id {stray[0]!r}, which no record of the data has ({len(stray)} such ids)")
    rewards: list[Reward] = [REWARDS.get(name)(renderer, **(options or {}).get(name, {})) for name in names]
    results = []
    for record in records:
        if record.id not in completions:
            continue
        row = reward_row(record, renderer)
        sample = Sample(completions[record.id], row)
        scored = {reward.name: reward.score(sample) for reward in rewards}
        results.append({
            "id": record.id,
            "task": record.task,
            "kind": (sample.expected or {}).get("kind"),
            "rewards": {n: None if s is None else s.value for n, s in scored.items()},
            "accuracy": {n: None if s is None else s.accuracy for n, s in scored.items()},
            "guards": {n: s.guard for n, s in scored.items() if s is not None and s.guard},
            "shaping": {n: s.shaping for n, s in scored.items() if s is not None and s.shaping},
        })
    return results


@dataclass(frozen=True)
class RewardSummary:
    """One reward over the scored samples: how many it applied to, mean / min / max, and how many a guard zeroed."""

    name: str
    samples: int
    mean: float | None
    low: float | None
    high: float | None
    guarded: int


def summarise(results: list[dict[str, Any]], names: list[str]) -> list[RewardSummary]:
    """A RewardSummary per reward name, in the order given."""
    summaries = []
    for name in names:
        values = [r["rewards"][name] for r in results if r["rewards"].get(name) is not None]
        guarded = sum(1 for r in results if name in r["guards"])
        summaries.append(RewardSummary(name, len(values), sum(values) / len(values) if values else None,
                                       min(values, default=None), max(values, default=None), guarded))
    return summaries
