"""The contract a GRPO recipe relies on: rewards by name, `make_rewards`, `reward_columns`, and TRL's call (every
column a list, conversational completions, the trainer's extra arguments), through a `datasets.Dataset` too."""

from __future__ import annotations

import json
import pickle

import pytest
from datasets import Dataset
from fixtures_rewards import RENDERERS, reward_rows

from spatialtune.records import RecordError, parse_record
from spatialtune.rewards import REWARDS, RewardError, UnknownRewardError, make_rewards, reward_columns

RENDERER = RENDERERS["qwen3_1000"]
FAMILY_NAMES = {"action", "choice", "count", "format", "hit-at-mask", "iou", "iou-hit", "point", "task", "text", "tool-use"}


def _columns(rows: list[dict]) -> dict[str, list]:
    """Rows as TRL passes them to a reward: one list per column."""
    return {key: [row[key] for row in rows] for key in rows[0]}


def test_every_family_is_registered_and_an_unknown_name_says_what_is_close():
    assert set(REWARDS.names()) == FAMILY_NAMES
    with pytest.raises(UnknownRewardError, match="did you mean 'count'"):
        REWARDS.get("cuont")


def test_make_rewards_builds_named_functions_and_their_weights():
    functions, weights = make_rewards({"task": 1, "format": 0.1}, RENDERER, {"task": {"weights": {"box": 2.0}}})
    assert [f.__name__ for f in functions] == ["task", "format"] and weights == [1.0, 0.1]
    assert functions[0].weights["box"] == 2.0


@pytest.mark.parametrize("weights, options, message", [
    ({"count": 1.0}, {"count": {"partial": 0.2}}, "did you mean 'partial_credit'"),
    ({"count": 1.0}, {"count": {"partial_credit": 1.5}}, "partial_credit must be in"),
    ({"count": 1.0}, {"choice": {"letters_too": False}}, "not among the rewards"),
    ({"count": "high"}, None, "must be a number"),
    ({"task": 1.0}, {"task": {"weights": {"boxes": 1.0}}}, "names the kind 'boxes'"),
    ({"task": 1.0}, {"task": {"rewards": {"box": "count"}}}, "'count' does not score 'box' answers"),
])
def test_a_bad_weight_or_option_is_an_error_naming_it(weights, options, message):
    with pytest.raises(RewardError, match=message):
        make_rewards(weights, RENDERER, options)


def test_reward_columns_name_every_answer_kind_as_json_text(families):
    kinds = {}
    for family in families.values():
        for row in reward_rows(family.data, RENDERER).values():
            json.dumps(row)  # JSON-able, as a datasets.Dataset stores it
            kinds[json.loads(row["expected"])["kind"]] = family.name
    assert set(kinds) == {"box", "point", "choice", "count", "text", "crossview", "action"}


def test_a_record_with_nothing_to_score_against_is_an_error_naming_the_field(write_dataset):
    record = parse_record({"id": "r", "task": "t", "images": [], "messages": [{"role": "user", "content": "hi"}]}, file="d.jsonl", line=3)
    with pytest.raises(RecordError, match="d.jsonl:3: field 'messages'"):
        reward_columns(record)


def test_trl_passes_lists_of_columns_conversational_completions_and_extra_arguments(families):
    rows = list(reward_rows(families["records"].data, RENDERER).values())
    choice_row = next(r for r in rows if r["id"] == "lr-text")
    box_row = next(r for r in rows if r["id"] == "box1")
    completions = [[{"role": "assistant", "content": [{"type": "text", "text": "<think>a</think><answer>left</answer>"}]}],
                   [{"role": "assistant", "content": "<answer>[500, 375, 900, 875]</answer>"}]]
    [choice] = make_rewards({"choice": 1.0}, RENDERER)[0]
    logged = {}
    values = choice(prompts=[[], []], completions=completions, completion_ids=[[1], [2]], trainer_state=object(),
                    log_metric=logged.__setitem__, log_extra=print, **_columns([choice_row, box_row]))
    assert values == [1.0, None]  # `choice` does not apply to a box record
    assert logged == {"choice/guarded": 0.0}


def test_the_share_of_guarded_completions_is_logged(families):
    row = reward_rows(families["records"].data, RENDERER)["lr-text"]
    [choice] = make_rewards({"choice": 1.0}, RENDERER)[0]
    logged = {}
    choice(prompts=[None] * 4, completions=["left", "left or right", "right", "yes no left right"], log_metric=logged.__setitem__,
           **_columns([row] * 4))
    assert logged == {"choice/guarded": 0.5}


def test_rewards_read_the_columns_of_a_datasets_dataset(families):
    rows = list(reward_rows(families["records"].data, RENDERER).values())
    dataset = Dataset.from_list(rows)  # one schema per column: answer / meta / expected as JSON text
    [task] = make_rewards({"task": 1.0}, RENDERER)[0]
    completions = ["[500, 375, 900, 875]", "[700, 625]", "[70, 50]", "left", "(B)", "2", "a cup"]
    columns = {name: dataset[name] for name in dataset.column_names}
    assert task(prompts=[None] * len(rows), completions=completions, **columns) == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_a_row_without_the_expected_column_is_an_error_except_for_format(families):
    row = {k: v for k, v in next(iter(reward_rows(families["records"].data, RENDERER).values())).items() if k != "expected"}
    [task, form] = make_rewards({"task": 1.0, "format": 1.0}, RENDERER)[0]
    with pytest.raises(RewardError, match="reads the `expected` column"):
        task(prompts=[None], completions=["x"], **_columns([row]))
    assert form(prompts=[None], completions=["<think>a</think><answer>b</answer>"], **_columns([row])) == [1.0]


def test_a_reward_survives_pickling_with_its_options():
    [count] = make_rewards({"count": 1.0}, RENDERER, {"count": {"partial_credit": 0.25}})[0]
    again = pickle.loads(pickle.dumps(count))
    assert again.__name__ == "count" and again.options.partial_credit == 0.25
