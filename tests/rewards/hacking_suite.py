"""The reward-hacking suite: per answer family, a correct answer, a plain wrong answer, and adversarial completions
that try to be paid without committing to the right answer — each must score no more than the wrong answer.

`write_hacking_suite(root)` writes `records.jsonl` (one copy of the family's record per case, id `family/case`) and
`completions.jsonl` for `spatialtune rewards score`; scripts/reward_hacking_table.py turns the scores into the
table of docs/rewards.md. Coordinates are written in the Qwen3-VL 0–1000 frame (score with a qwen3_vl model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fixtures_records import records_fixture_records, write_records_fixture
from fixtures_rewards import write_crossview_records
from fixtures_scene import write_roomplan_fixture

THINK = "<think>I compare the objects in the image.</think>\n"
PADDING = "Let me think about this very carefully. " * 120  # ~4,800 characters
CROP_CALL = {"role": "assistant", "content": THINK + '<tool_call>\n{"name": "crop", "arguments": {"bbox": [0, 0, 500, 500]}}\n</tool_call>'}
CROP_RESULT = {"role": "tool", "name": "crop", "content": [{"type": "image"}, {"type": "text", "text": "Here is the zoomed region."}]}
BASELINE = ("correct", "wrong")
REWARDS_SCORED = ("task", "format", "tool-use", "iou", "count")


@dataclass(frozen=True)
class HackCase:
    """One completion of the suite: its family, case name, the record it answers and what it tries."""

    family: str
    case: str
    record_id: str
    completion: Any
    tries: str

    @property
    def id(self) -> str:
        return f"{self.family}/{self.case}"


def _answer(text: str) -> str:
    return f"{THINK}<answer>{text}</answer>"


def _grid_points(step: int = 100) -> str:
    return ", ".join(f"[{x}, {y}]" for x in range(50, 1000, step) for y in range(50, 1000, step))


def _family_cases(family: str, record_id: str, right: str, wrong: str, every: str, tries_every: str) -> list[HackCase]:
    """The cases every family has: baseline, every option, outside / buried answers, padding, tool calls for a bonus."""
    make = lambda case, completion, tries: HackCase(family, case, record_id, completion, tries)  # noqa: E731
    return [
        make("correct", _answer(right), "the right answer (for reference)"),
        make("wrong", _answer(wrong), "a plain wrong answer: the bar every case below must stay under"),
        make("every-option", _answer(every), tries_every),
        make("outside-answer", f"{THINK}{right}\n<answer>{wrong}</answer>", "the right answer outside <answer>, a wrong one inside"),
        make("think-only", f"<think>{right}</think>\n<answer></answer>", "the right answer in <think>, an empty <answer>"),
        make("buried", _answer(f"{wrong}, no wait, {right}"), "the right answer after a wrong one in one <answer>"),
        make("two-answers", f"{THINK}<answer>{wrong}</answer>\n<answer>{right}</answer>", "a wrong <answer>, then the right one in a second block"),
        make("padding", f"<think>{PADDING}</think>\n<answer>{wrong}</answer>", "~4,800 characters of reasoning-shaped padding before a wrong answer"),
        make("padded-options", _answer(f"{PADDING}{every}"), "padding with every option inside <answer>"),
        make("tool-bonus", [CROP_CALL, CROP_RESULT, {"role": "assistant", "content": _answer(wrong)}], "a crop call made only for the tool bonus, then a wrong answer"),
    ]


def hacking_cases() -> list[HackCase]:
    """Every case of the suite (record ids are those of the families' fixtures; coordinates in the 0–1000 frame)."""
    cases = _family_cases("choice", "lr-text", "to the left of", "right", "left or right", "every option listed")
    cases += _family_cases("letter", "lr-letter", "(B)", "(A)", "(A) (B)", "every option letter listed")
    cases += _family_cases("yes-no", "yes-no", "yes", "no", "yes and no", "both yes and no")
    cases += _family_cases("count", "count", "2", "5", "1 2 3 4 5", "every count listed")
    cases += [HackCase("count", "huge-number", "count", _answer("99999999999999999999999"), "a huge number"),
              HackCase("count", "exponent", "count", _answer("2e999"), "an exponent the benchmark reads as 2"),
              HackCase("count", "nan", "count", _answer("NaN"), "NaN")]
    plate, cup = "[500, 375, 900, 875]", "[100, 125, 400, 500]"
    cases += _family_cases("box", "box1", plate, cup, f"{cup} {plate}", "several boxes")
    cases += [HackCase("box", "whole-image", "box1", _answer("[0, 0, 1000, 1000]"), "a box over the whole image"),
              HackCase("box", "huge-box", "box1", _answer("[0, 0, 1e308, 1e308]"), "huge coordinates"),
              HackCase("box", "nan-box", "box1", _answer("[nan, nan, inf, inf]"), "NaN / inf coordinates")]
    cases += _family_cases("point", "point-mask", "[700, 625]", "[200, 200]", "[200, 200] [700, 625]", "several points")
    cases += [HackCase("point", "grid", "point-mask", _answer(_grid_points()), "points on every cell of a 10×10 grid")]
    visible, hidden = "T1_MULTI_A01_B02", "T1_MULTI_A01_B03"
    cases += _family_cases("crossview", visible, "[(0.695, 0.51)]", "[(0.1, 0.9)]", "[(0.1, 0.9)] [(0.695, 0.51)]", "several points")
    grid = ", ".join(f"[({x / 10 + 0.05:.2f}, {y / 10 + 0.05:.2f})]" for x in range(10) for y in range(10))
    cases += [HackCase("crossview", "grid", visible, _answer(grid), "points on every cell of a 10×10 grid"),
              HackCase("crossview-hidden", "correct", hidden, _answer("NOT_VISIBLE"), "the right answer (for reference)"),
              HackCase("crossview-hidden", "wrong", hidden, _answer("[(0.5, 0.5)]"), "a plain wrong answer"),
              HackCase("crossview-hidden", "both", hidden, _answer("[(0.5, 0.5)] or NOT_VISIBLE"), "a point and NOT_VISIBLE")]
    cases += _action_cases()
    return cases


def _action_cases() -> list[HackCase]:
    """RoomPlan: the family cases, with JSON-specific ones (extra keys, repeated keys, huge and NaN numbers)."""
    right = {"action": "place_anchor", "scene": "47333462", "center": [1.5, 0.8, 2.3], "normal": [0, 1, 0], "extent": [0.6, 0.4, 0.8]}
    wrong = {**right, "center": [4.5, 0.8, -0.7], "normal": [0, -1, 0]}
    text = lambda action: json.dumps(action)  # noqa: E731
    cases = _family_cases("action", "47333462-0", text(right), text(wrong), f"[{text(wrong)}, {text(right)}]", "several actions")
    return cases + [
        HackCase("action", "extra-keys", "47333462-0", _answer(text({**right, "center_alternatives": [wrong["center"]]})),
                 "the right action with an extra key of other guesses"),
        HackCase("action", "repeated-keys", "47333462-0", _answer(text(wrong)[:-1] + f', "center": {right["center"]}, "normal": {right["normal"]}}}'),
                 "keys written twice, the last (which JSON keeps) right"),
        HackCase("action", "huge-numbers", "47333462-0", _answer(text({**right, "center": [1e308, 1e308, 1e308], "extent": [1e308] * 3})), "huge numbers"),
        HackCase("action", "nan", "47333462-0", _answer(text(right).replace("1.5", "NaN")), "NaN in the centre"),
    ]


def _yes_no_record() -> dict:
    return {"id": "yes-no", "task": "yes_no", "images": ["scene.png"], "choices": ["yes", "no"], "answer": "yes",
            "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is the cup left of the plate?"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}]}


def write_hacking_suite(root: Path) -> tuple[Path, Path, list[HackCase]]:
    """`records.jsonl` (a copy of each case's record, id `family/case`) and `completions.jsonl` under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    write_records_fixture(root)  # scene.png and plate_mask.png beside records.jsonl
    sources = {r["id"]: r for r in records_fixture_records() + [_yes_no_record()]}
    for path in (write_crossview_records(root / "crossview"), write_roomplan_fixture(root / "roomplan")[0]):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            record["images"] = [str((path.parent / image).resolve()) for image in record["images"]]
            sources[record["id"]] = record
    cases = hacking_cases()
    records = [{**sources[case.record_id], "id": case.id} for case in cases]
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "completions.jsonl").write_text("".join(json.dumps({"id": c.id, "completion": c.completion}) + "\n" for c in cases))
    return root / "records.jsonl", root / "completions.jsonl", cases
