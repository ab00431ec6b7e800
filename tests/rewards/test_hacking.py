"""The reward-hacking suite: every adversarial completion scores no more than the family's plain wrong answer, under
every reward that applies, and the right answer scores more."""

from __future__ import annotations

import pytest
from fixtures_rewards import RENDERERS
from hacking_suite import BASELINE, write_hacking_suite

from spatialtune.io import read_outputs_by_id
from spatialtune.records import read_records
from spatialtune.rewards import REWARDS
from spatialtune.rewards._report import score_records


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Every case's rewards by id, and the cases."""
    records, completions, cases = write_hacking_suite(tmp_path_factory.mktemp("hacking"))
    results = score_records(read_records(records), read_outputs_by_id(completions, ("completion",)), REWARDS.names(), RENDERERS["qwen3_1000"])
    return {r["id"]: r for r in results}, cases


def test_every_adversarial_case_scores_at_most_the_wrong_answer(scored):
    results, cases = scored
    too_high = []
    for case in cases:
        if case.case in BASELINE:
            continue
        wrong = results[f"{case.family}/wrong"]["rewards"]
        for name, value in results[case.id]["rewards"].items():
            if value is not None and value > wrong[name]:
                too_high.append(f"{case.id} {name}: {value} > wrong {wrong[name]}")
    assert not too_high, "\n".join(too_high)


def test_the_right_answer_beats_the_wrong_one_on_the_task_reward(scored):
    results, cases = scored
    for family in {case.family for case in cases}:
        assert results[f"{family}/correct"]["rewards"]["task"] == 1.0
        assert results[f"{family}/wrong"]["rewards"]["task"] < 1.0


def test_the_benchmark_would_pay_some_of_the_hacks_the_rewards_refuse(scored):
    results, _ = scored
    refused = [r for r in results.values() if r["accuracy"]["task"] == 1.0 and r["rewards"]["task"] == 0.0]
    assert {r["id"] for r in refused} >= {"choice/every-option", "count/exponent", "action/repeated-keys", "action/extra-keys"}
