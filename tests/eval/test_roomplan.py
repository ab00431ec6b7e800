"""RoomPlan: parsing the structured action, malformed reasons, field errors on hand-computed cases, where the
reference action may live in a record, and runs end to end."""

from __future__ import annotations

import json
import math

import pytest
from fixtures_scene import ROOMPLAN_OBJECTS, roomplan_record, write_roomplan_fixture

from spatialtune.answers.match import action_errors
from spatialtune.answers.parse import malformed_reason, parse_action_object
from spatialtune.eval import runner, tool_use
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.runner import run_eval
from spatialtune.records import RecordError
from spatialtune.tasks.roomplan import FORMAT_HINT, canonical_action_text

GOOD = {"action": "place_anchor", "scene": "47333462", "center": [1.5, 0.8, 2.3], "normal": [0, 1, 0], "extent": [0.6, 0.4, 0.8]}


def _reply(**changes) -> str:
    action = {**GOOD, **changes}
    return json.dumps({k: v for k, v in action.items() if v is not ...})


# ---------------------------------------------------------------- parsing and malformed outputs


@pytest.mark.parametrize(
    "output, reason",
    [
        (_reply(), None),
        (f"Sure! ```json\n{_reply()}\n```", None),
        (f"[{_reply()}]", None),  # an object inside an array is taken
        ("center [1, 2, 3] then " + _reply(), None),  # a list before the object does not hide it
        (_reply(scene=47333462), None),  # integer scene ids are accepted
        ("", "no_json"),
        ("I would place it on the cabinet.", "no_json"),
        ('{"action": "place_anchor", "center": [1, 2', "no_json"),  # truncated
        ("[1.5, 0.8, 2.3]", "not_object"),
        (_reply(extent=...), "missing_keys"),
        (_reply(scene=...), "missing_keys"),
        (_reply(center=["1.5", "0.8", "2.3"]), "wrong_types"),
        (_reply(center=[1.5, 0.8]), "wrong_types"),
        (_reply(normal=[True, 0, 0]), "wrong_types"),
        (_reply(center=[1.5, 0.8, float("nan")]), "wrong_types"),  # json.dumps writes NaN, which Python's parser reads
        (_reply(center=[10**400, 0.8, 2.3]), "wrong_types"),  # an integer too large for a float: no OverflowError
        (_reply(action=1), "wrong_types"),
        (_reply(scene=None), "wrong_types"),
        (_reply(normal=[0, 0, 0]), "zero_normal"),
        (_reply(extent=[0.6, -0.4, 0.8]), "negative_extent"),
    ],
)
def test_malformed_replies_get_their_first_failing_reason(output, reason):
    assert malformed_reason(parse_action_object(output)) == reason


def test_the_canonical_answer_text_parses_back_to_the_action():
    assert parse_action_object(canonical_action_text(GOOD)) == GOOD
    assert canonical_action_text(GOOD).startswith('{"action": "place_anchor", "center": ')  # sorted keys


# ---------------------------------------------------------------- field errors


def test_field_errors_on_a_hand_computed_case():
    gt = {"center": [0.0, 0.0, 0.0], "normal": [0.0, 1.0, 0.0], "extent": [1.0, 1.0, 1.0]}
    errors = action_errors({"center": [3, 4, 0], "normal": [0, 0, 2], "extent": [1.3, 0.6, 1.0]}, gt)
    assert errors == pytest.approx({"center_l2_m": 5.0, "normal_angle_deg": 90.0, "extent_mae_m": 0.7 / 3, "extent_l2_m": 0.5})


@pytest.mark.parametrize("normal, degrees", [([0, 5, 0], 0.0), ([0, -1, 0], 180.0), ([1, 1, 0], 45.0), ([0, 1, 1e-12], 0.0)])
def test_normal_angle_is_oriented_and_scale_free(normal, degrees):
    gt = {"center": [0, 0, 0], "normal": [0.0, 1.0, 0.0], "extent": [1, 1, 1]}
    assert action_errors({"normal": normal}, gt)["normal_angle_deg"] == pytest.approx(degrees, abs=1e-6)


def test_a_malformed_field_is_left_out_while_the_others_are_measured():
    gt = {"center": [0, 0, 0], "normal": [0.0, 1.0, 0.0], "extent": [1, 1, 1]}
    assert set(action_errors({"center": [1, 0, 0], "normal": [0, 0, 0], "extent": "big"}, gt)) == {"center_l2_m"}


# ---------------------------------------------------------------- loading


@pytest.fixture
def qwen3(tiny_models):
    return tiny_models("tiny-qwen3-vl")


def _write(tmp_path, records):
    write_roomplan_fixture(tmp_path)  # the images
    path = tmp_path / "custom.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _load(path, model, **options):
    return get_benchmark("roomplan", options).load(path, model.processor, model.family.convention)


def test_the_fixture_loads_with_the_action_as_answer_and_views_as_images(tmp_path, qwen3):
    path, options = write_roomplan_fixture(tmp_path)
    rows = _load(path, qwen3, **options)
    assert len(rows) == len(ROOMPLAN_OBJECTS) and rows[0]["images"][0].endswith("images/47333462/view_0.png")
    assert rows[0]["answer"] == {**GOOD, "normal": [0.0, 1.0, 0.0]}
    assert rows[0]["meta"] == {"label": "cabinet", "source": "ARKitScenes 3dod", "scene_id": "47333462"}


@pytest.mark.parametrize("where", ["action", "action_json", "assistant"])
def test_the_reference_action_may_sit_in_other_fields(where, tmp_path, qwen3):
    record = roomplan_record(0, *ROOMPLAN_OBJECTS[0])
    action = record["meta"].pop("action")
    if where != "assistant":
        record[where] = {**action, "scene": 47333462}
    rows = _load(_write(tmp_path, [record]), qwen3)
    assert rows[0]["answer"]["scene"] == "47333462"


def test_a_reference_with_a_zero_normal_names_the_field(tmp_path, qwen3):
    record = roomplan_record(0, *ROOMPLAN_OBJECTS[0])
    record["meta"]["action"]["normal"] = [0, 0, 0]
    with pytest.raises(RecordError, match=r"custom.jsonl:1: field 'meta.action': not a valid place_anchor action \(zero_normal\)"):
        _load(_write(tmp_path, [record]), qwen3)


def test_a_record_without_any_reference_action_is_an_error(tmp_path, qwen3):
    record = roomplan_record(0, *ROOMPLAN_OBJECTS[0])
    del record["meta"]["action"]
    record["messages"][1]["content"][0]["text"] = "at the cabinet"
    with pytest.raises(RecordError, match=r"custom.jsonl:1: field 'meta.action': no reference action"):
        _load(_write(tmp_path, [record]), qwen3)


def test_the_format_hint_option_appends_the_json_format_to_the_prompt(tmp_path, qwen3):
    path, _ = write_roomplan_fixture(tmp_path)
    plain, hinted = _load(path, qwen3)[0], _load(path, qwen3, format_hint=True)[0]
    assert FORMAT_HINT not in json.dumps(plain["messages"])
    assert hinted["messages"][0]["content"][-1] == {"type": "text", "text": FORMAT_HINT}
    assert hinted["messages"][1] == plain["messages"][1]  # the answer is untouched


# ---------------------------------------------------------------- runs


def _scripted_replies() -> list[str]:
    """One reply per fixture record (in order), with hand-computed errors (see the test)."""
    scene0, scene1, scene2 = "47333462", "41069025", "42444949"
    return [
        json.dumps({"action": "place_anchor", "scene": scene0, "center": [1.5, 0.8, 2.5], "normal": [0, 1, 0], "extent": [0.6, 0.4, 0.8]}),
        json.dumps({"action": "place_anchor", "scene": scene0, "center": [-0.4, 0.75, 1.1], "normal": [0, -1, 0], "extent": [1.2, 0.05, 0.7]}),
        "```json\n" + json.dumps({"action": "move", "scene": int(scene1), "center": [2.0, 0.3, -0.5], "normal": [0, 1, 0], "extent": [2, 0.5, 1.6]}) + "\n```",
        json.dumps({"action": "place_anchor", "scene": scene1, "center": [0.2, 1.4], "normal": [0, 0, 1], "extent": [1.1, 0.65, 0.08]}),
        f"I cannot see a sofa in scene {scene2}.",
    ]


def _script(monkeypatch) -> None:
    replies = dict(zip([f"{obj[0]}-{i}" for i, obj in enumerate(ROOMPLAN_OBJECTS)], _scripted_replies()))
    monkeypatch.setattr(tool_use, "generate_batch", lambda model, processor, rows, n: [replies[r["id"]] for r in rows])


def test_a_scripted_run_pins_every_metric(tmp_path, qwen3, monkeypatch):
    path, options = write_roomplan_fixture(tmp_path / "data")
    _script(monkeypatch)
    m = run_eval(qwen3, get_benchmark("roomplan", options), path, tmp_path / "out", batch_size=2, progress=False).metrics
    # 0: 0.2 m off, success. 1: flipped normal (180°). 2: wrong action, 1 m off. 3: centre has 2 numbers. 4: no JSON.
    assert m["success"] == m["overall"] == pytest.approx(1 / 5)
    assert m["json_valid_rate"] == pytest.approx(4 / 5) and m["valid_rate"] == pytest.approx(3 / 5)
    assert m["action_match"] == pytest.approx(3 / 5) and m["scene_match"] == pytest.approx(4 / 5)
    assert m["center_l2_m"] == pytest.approx({"mean": 0.4, "median": 0.2, "count": 3})
    assert m["normal_angle_deg"] == pytest.approx({"mean": 45.0, "median": 0.0, "count": 4})
    assert m["extent_mae_m"] == pytest.approx({"mean": 0.0, "median": 0.0, "count": 4})
    assert m["center_success"] == pytest.approx({"0.1m": 1 / 5, "0.25m": 2 / 5, "0.5m": 2 / 5, "1m": 3 / 5})
    assert m["normal_success"] == pytest.approx({"15deg": 3 / 5, "30deg": 3 / 5, "45deg": 3 / 5})
    assert m["malformed"] == {"no_json": 1, "not_object": 0, "missing_keys": 0, "wrong_types": 1, "zero_normal": 0, "negative_extent": 0}
    assert m["malformed_total"] == 2 and m["unparsable"] == {"place_anchor": 1}
    assert m["breakdown"]["malformed replies by reason"]["wrong_types"] == 1.0 and "oriented" in m["definitions"]["normal_angle_deg"]


def test_looser_thresholds_change_success_only(tmp_path, qwen3, monkeypatch):
    path, _ = write_roomplan_fixture(tmp_path / "data")
    _script(monkeypatch)
    options = {"center_threshold_m": 0.1, "normal_threshold_deg": 180.0}
    m = run_eval(qwen3, get_benchmark("roomplan", options), path, tmp_path / "out", max_samples=2, batch_size=2, progress=False).metrics
    assert m["success"] == pytest.approx(1 / 2) and m["valid_rate"] == 1.0  # 0 fails 0.1 m; 1's flipped normal passes 180°
    assert math.isclose(m["center_l2_m"]["mean"], 0.1)


def test_malformed_counts_come_from_the_scored_answer_not_the_raw_reply(tmp_path, qwen3):
    path, options = write_roomplan_fixture(tmp_path / "data")
    bench = get_benchmark("roomplan", options)
    row = bench.load(path, qwen3.processor, qwen3.family.convention)[0]
    action = row["answer"]
    output = '<think>Maybe {"action": "place_anchor"} first.</think>' + json.dumps(action)  # the runner scores the part after </think>
    m = bench.aggregate([runner.result_row(bench, row, output, None)])
    assert m["valid_rate"] == 1.0 and m["malformed_total"] == 0 and m["malformed"]["missing_keys"] == 0


def test_real_generation_on_the_tiny_model_runs_end_to_end(tmp_path, qwen3):
    path, options = write_roomplan_fixture(tmp_path / "data")
    result = run_eval(qwen3, get_benchmark("roomplan", options), path, tmp_path / "out", max_samples=3, max_new_tokens=16, progress=False)
    m = result.metrics
    assert m["num_samples"] == 3 and sum(m["malformed"].values()) == m["malformed_total"] <= 3
    assert 0.0 <= m["json_valid_rate"] <= 1.0 and all("json_object" in r["scores"] for r in result.rows)
