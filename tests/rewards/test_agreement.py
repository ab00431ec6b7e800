"""One definition of correct: on thousands of generated completions per task family, the accuracy part of every
reward equals the benchmark's per-sample score of the same completion (the runner scores `final_answer(output)`)."""

from __future__ import annotations

import random

import pytest
from fixtures_rewards import RENDERERS, completions_for, reward_rows, sample, stand_in_processor

from spatialtune.answers.parse import final_answer
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.rewards import REWARDS

COMPLETIONS_PER_FAMILY = 2400
# The rewards of each family, with the options that read answers as its benchmark does.
FAMILY_REWARDS = {
    "records": {"task": {}, "iou": {}, "iou-hit": {}, "point": {}, "choice": {}, "count": {}, "text": {}},
    "synthetic": {"iou-hit": {"strict": False}, "point": {"strict": False}, "choice": {"letters_too": False}},
    "crossview": {"task": {}, "hit-at-mask": {}},
    "roomplan": {"task": {}, "action": {}},
}
CASES = [(name, convention) for name in FAMILY_REWARDS for convention in RENDERERS if name != "crossview" or convention == "qwen3_1000"]


def _check(reward, scored, benchmark_result) -> None:
    """The accuracy part is the benchmark's score (IoU for `iou`); the value departs from it only by a named guard
    (to 0) or a named shaping term (a wrong answer's partial credit, below 1)."""
    expected = benchmark_result.scores["iou"] if reward.name == "iou" else benchmark_result.score
    assert scored.accuracy == pytest.approx(expected, abs=1e-12)
    if scored.guard:
        assert scored.value == 0.0
    elif scored.shaping:
        assert scored.accuracy == 0.0 and 0.0 < scored.value < 1.0
    else:
        assert scored.value == scored.accuracy


@pytest.mark.parametrize("family_name, convention", CASES)
def test_the_accuracy_part_of_every_reward_equals_the_benchmark_score(families, family_name, convention):
    family, renderer = families[family_name], RENDERERS[convention]
    bench = get_benchmark(family.benchmark, family.benchmark_options)
    bench_rows = {row["id"]: row for row in bench.load(family.data, stand_in_processor(), renderer.convention)}
    rows = reward_rows(family.data, renderer)
    options = dict(FAMILY_REWARDS[family_name])
    if "task" in options:
        options["task"] = family.task_options
    rewards = [REWARDS.get(name)(renderer, **opts) for name, opts in options.items()]
    rng = random.Random(f"{family_name}-{convention}")
    per_row = COMPLETIONS_PER_FAMILY // len(rows) + 1
    checked = 0
    for rid, row in rows.items():
        for completion in completions_for(row, renderer, rng, per_row):
            result = bench.score(bench_rows[rid], final_answer(completion), renderer)
            for reward in rewards:
                scored = reward.score(sample(completion, row))
                if scored is not None:
                    _check(reward, scored, result)
                    checked += 1
    assert checked >= COMPLETIONS_PER_FAMILY


def test_the_synthetic_family_agrees_through_the_task_reward_too(families):
    family, renderer = families["synthetic"], RENDERERS["qwen3_1000"]
    bench = get_benchmark("synthetic")
    bench_rows = {row["id"]: row for row in bench.load(family.data, stand_in_processor(), renderer.convention)}
    task = REWARDS.get("task")(renderer, **family.task_options)
    rng = random.Random(3)
    for rid, row in reward_rows(family.data, renderer).items():
        for completion in completions_for(row, renderer, rng, 20):
            scored = task.score(sample(completion, row))
            assert scored.accuracy == bench.score(bench_rows[rid], final_answer(completion), renderer).score
