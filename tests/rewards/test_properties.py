"""Every reward, for any completion: no exception, a finite value in its documented range (10,000 random and
adversarial strings per reward, and conversational completions with tool turns)."""

from __future__ import annotations

import math
import random
import string

import pytest
from fixtures_rewards import RENDERERS, reward_rows

from spatialtune.rewards import REWARDS

STRINGS_PER_REWARD = 10_000
PIECES = (
    "<think>", "</think>", "<answer>", "</answer>", "<tool_call>", "</tool_call>", "NOT_VISIBLE", "not_visible", "[(", ")]",
    "(", ")", "[", "]", "{", "}", ",", ".", "-", "e", "E", "NaN", "nan", "inf", "-Infinity", "Infinity", "1e999", "1e-999",
    "0", "1", "2", "3", "7", "42", "0.5", "0.999", "-3", "500", "1000", "99999999999999999999999", "9" * 400, "left", "right",
    "above", "below", "yes", "no", "(A)", "B.", "Answer: C", "three", "twenty", '"center"', '"normal"', '"extent"', '"scene"',
    '"action"', '"place_anchor"', ":", '{"action": "place_anchor", "scene": "1", "center": [0, 0, 0], "normal": [0, 1, 0], "extent": [1, 1, 1]}',
    '{"name": "crop", "arguments": {"bbox": [0, 0, 10, 10]}}', "```json", "```", "\n", " ", "\t", "\u00a0", "½", "٣", "🙂", "\x00",
)


def _adversarial(rng: random.Random) -> str:
    """A string made of answer-shaped pieces, random characters, or a long padding / nesting run."""
    roll = rng.random()
    if roll < 0.5:
        return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 30)))
    if roll < 0.85:
        return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 200)))
    if roll < 0.88:
        return (rng.choice(PIECES) * 5000)[: rng.randint(1000, 5000)]
    return "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 100)))


def _conversation(rng: random.Random, text: str) -> list[dict]:
    """`text` as the final assistant turn after zero to two tool exchanges (some refused, some malformed)."""
    turns: list[dict] = []
    for _ in range(rng.randint(0, 2)):
        call = rng.choice(['<tool_call>\n{"name": "crop", "arguments": {"bbox": [1, 2, 30, 40]}}\n</tool_call>', "<tool_call>{", _adversarial(rng)])
        turns.append({"role": "assistant", "content": call} if rng.random() < 0.7 else
                     {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": rng.choice(["crop", "zoom"]), "arguments": {}}}]})
        result = rng.choice([[{"type": "image"}, {"type": "text", "text": "Here is the zoomed region."}], "{'error': 'bad box'}", _adversarial(rng)])
        turns.append({"role": "tool", "name": "crop", "content": result})
    final = {"role": "assistant", "content": rng.choice([text, [{"type": "text", "text": text}]])}
    return turns + ([final] if rng.random() < 0.95 else [])


@pytest.fixture(scope="module")
def strings():
    rng = random.Random(20)
    return [_adversarial(rng) for _ in range(STRINGS_PER_REWARD)]


@pytest.fixture(scope="module")
def rows(families):
    """Rows of every answer kind (box, point, choice, count, text, crossview, action), both frames."""
    found = []
    for renderer in RENDERERS.values():
        for family in families.values():
            found += [(renderer, row) for row in reward_rows(family.data, renderer).values()]
    return found


def _call(reward, completion, row) -> float | None:
    """One completion through TRL's call: every column as a one-item list, plus the trainer's extra arguments."""
    [value] = reward(prompts=[None], completions=[completion], **{k: [v] for k, v in row.items()}, trainer_state=None,
                     log_metric=lambda name, value: None, log_extra=lambda column, values: None)
    return value


@pytest.mark.parametrize("name", sorted(REWARDS.names()))
def test_every_reward_is_finite_and_in_range_for_any_completion(name, strings, rows):
    rewards = {id(renderer): REWARDS.get(name)(renderer) for renderer, _ in rows}
    mine = [(rewards[id(renderer)], row) for renderer, row in rows if _call(rewards[id(renderer)], "", row) is not None]
    assert mine, f"{name} applies to no fixture row"
    rng = random.Random(name)
    for index, text in enumerate(strings):
        reward, row = mine[index % len(mine)]
        completion = text if index % 5 else _conversation(rng, text)
        value = _call(reward, completion, row)
        assert value is not None and math.isfinite(value) and reward.low <= value <= reward.high, (name, completion, value)
