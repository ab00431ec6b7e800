"""Chain-of-focus tool use run by the eval runner: a crop call is executed on the real image, shown back as a tool
message, and counted; refusals are tool messages too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from spatialtune.answers.parse import final_answer
from spatialtune.eval import tool_use
from spatialtune.eval.runner import run_eval
from spatialtune.tools.crop import ToolSettings, crop_call_text


def _call(bbox) -> str:
    return "<think>zoom in</think>\n" + crop_call_text(json.dumps(bbox))


def scripted(replies_by_round: list[str], seen: list):
    """A fake model: the k-th time it sees a row it gives replies_by_round[k]; records each row it was given."""

    def generate(model, processor, rows, max_new_tokens):
        seen.extend(rows)
        return [replies_by_round[min(len(row["images"]) - 1 + _errors(row), len(replies_by_round) - 1)] for row in rows]

    return generate


def _errors(row) -> int:
    return sum(1 for m in row["messages"] if m["role"] == "tool" and m["content"][-1]["text"].startswith("{'error'"))


@pytest.fixture
def one_lr_record(synthetic_dataset):
    """A one-record synthetic dataset (absolute left/right: 128×128 image) for tool-use runs."""
    return synthetic_dataset(1)


def test_a_crop_call_then_an_answer_is_a_two_image_exchange_with_the_real_crop(one_lr_record, tiny_models, tmp_path, monkeypatch):
    loaded = tiny_models("tiny-qwen3-vl")
    seen: list = []
    monkeypatch.setattr(tool_use, "generate_batch", scripted([_call([0, 0, 500, 500]), "<think>it is on the left</think><answer>left</answer>"], seen))
    result = run_eval(loaded, "synthetic", one_lr_record, tmp_path / "out", options={"tools": True}, progress=False)
    row = result.rows[0]
    assert len(seen) == 2 and len(seen[1]["images"]) == 2  # the model saw the crop as a second image
    assert [m["role"] for m in seen[1]["messages"]][:4] == ["system", "user", "assistant", "tool"]
    assert seen[1]["messages"][3]["content"] == [{"type": "image"}, {"type": "text", "text": "Here is the zoomed region."}]
    assert "<tools>" in seen[0]["messages"][0]["content"][0]["text"]
    tools = row["tools"]
    assert tools["calls"] == 1 and tools["errors"] == [] and [t["role"] for t in tools["turns"]] == ["assistant", "tool", "assistant"]
    crop_path = tools["turns"][1]["image"]
    assert tools["turns"][1]["crop_box"] == [0, 0, 64, 64]  # 0–500 of the 0–1000 grid on a 128 px image
    original = np.asarray(Image.open(row["images"][0]).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(crop_path)), original[:64, :64])
    assert row["output"].endswith("<answer>left</answer>")
    expected = json.loads((one_lr_record.parent / "test.jsonl").read_text().splitlines()[0])["answer"]
    assert row["score"] == float(expected == "left")
    assert result.metrics["tool_use"]["tool_use_rate"] == 1.0 and result.metrics["tool_use"]["calls"] == 1


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("<tool_call>crop(0, 0, 500, 500)</tool_call>", "not valid JSON"),
        ('<tool_call>{"name": "exec", "arguments": {"code": "import os"}}</tool_call>', "unknown tool"),
        ('<tool_call>{"name": "crop", "arguments": {"bbox": "__import__(\'os\').system(\'x\')"}}</tool_call>', "four numbers"),
        (_call([1200, 1200, 1500, 1500]), "smaller than"),  # outside the image: nothing left after clipping
        (_call([0, 0, 100, 100]), "smaller than"),  # 12.8 px on a 128 px image < 28 px
        ('<tool_call>{"name": "crop", "arguments": {"bbox": [0, 0, 500, 500]}', "not closed"),
    ],
)
def test_malformed_and_out_of_bounds_calls_get_an_error_tool_message_and_are_counted(bad, reason, one_lr_record, tiny_models, tmp_path, monkeypatch):
    seen: list = []
    monkeypatch.setattr(tool_use, "generate_batch", scripted([bad, "<answer>right</answer>"], seen))
    result = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", one_lr_record, tmp_path / "out", options={"tools": True}, progress=False)
    tools = result.rows[0]["tools"]
    assert tools["calls"] == 0 and len(tools["errors"]) == 1 and reason in tools["errors"][0]
    refusal = seen[1]["messages"][-2]
    assert len(seen[1]["images"]) == 1 and refusal["role"] == "tool" and refusal["content"][0]["text"].startswith("{'error': ")
    assert not (tmp_path / "out" / "crops").exists()
    assert result.metrics["tool_use"]["refused_calls"] == 1 and result.metrics["tool_use"]["tool_use_rate"] == 0.0


def test_the_call_budget_stops_a_model_that_never_answers(one_lr_record, tiny_models, tmp_path, monkeypatch):
    seen: list = []
    monkeypatch.setattr(tool_use, "generate_batch", scripted([_call([0, 0, 600, 600])], seen))
    result = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", one_lr_record, tmp_path / "out", options={"tools": True},
                      tools=ToolSettings(max_calls=2), progress=False)
    tools = result.rows[0]["tools"]
    assert len(seen) == 4 and tools["calls"] == 2 and result.rows[0]["score"] == 0.0
    assert len(tools["errors"]) == 1 and "budget" in tools["errors"][0]  # the third call is refused, shown, counted
    assert "budget" in seen[3]["messages"][-2]["content"][0]["text"]  # ... and the model saw the refusal


def test_rows_without_tools_never_execute_a_call(one_lr_record, tiny_models, tmp_path, monkeypatch):
    seen: list = []
    monkeypatch.setattr(tool_use, "generate_batch", scripted([_call([0, 0, 500, 500])], seen))
    result = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", one_lr_record, tmp_path / "out", progress=False)
    assert len(seen) == 1 and result.rows[0]["tools"] is None and "tool_use" not in result.metrics


def test_real_generation_with_tools_runs_on_the_tiny_model(one_lr_record, tiny_models, tmp_path):
    result = run_eval(tiny_models("tiny-qwen2.5-vl"), "synthetic", one_lr_record, tmp_path / "out", options={"tools": True},
                      max_new_tokens=8, progress=False)
    assert result.rows[0]["tools"] is not None and result.metrics["tool_use"]["rows_allowing_tools"] == 1


def test_final_answer_unwraps_answer_tags_and_drops_thinking():
    assert final_answer("<think>hmm (A)?</think> (B)") == "(B)"
    assert final_answer("<think>x</think><answer>left</answer>") == "left"
    assert final_answer("plain") == "plain"


def test_hoi_referring_runs_chain_of_focus_with_the_tools_option(tiny_models, tmp_path, monkeypatch):
    from fixtures_hoi import write_hoi_referring_fixture

    data, options = write_hoi_referring_fixture(tmp_path / "hoi")
    seen: list = []
    monkeypatch.setattr(tool_use, "generate_batch", scripted([_call([100, 100, 900, 900]), "<think>zoomed</think><answer>Ride bicycle.</answer>"], seen))
    result = run_eval(tiny_models("tiny-qwen3-vl"), "hoi-referring", data, tmp_path / "out", options={**options, "tools": True},
                      max_samples=2, progress=False)
    assert all(r["tools"]["calls"] == 1 for r in result.rows) and result.metrics["tool_use"]["tool_use_rate"] == 1.0
    assert [r["parsed"] for r in result.rows] == ["ride bicycle"] * 2  # scored on the <answer>, cleaned
    assert [len(row["images"]) for row in seen] == [1, 1, 2, 2]  # the second round sees each sample's crop


@pytest.mark.parametrize("digits", [400, 5000])  # past float range; past Python's int-from-text limit
def test_huge_integers_in_a_call_are_refused_not_crashes(digits, one_lr_record, tiny_models, tmp_path, monkeypatch):
    seen: list = []
    call = '<tool_call>{"name": "crop", "arguments": {"bbox": [0, 0, ' + "9" * digits + ', 500]}}</tool_call>'
    monkeypatch.setattr(tool_use, "generate_batch", scripted([call, "<answer>left</answer>"], seen))
    result = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", one_lr_record, tmp_path / "out", options={"tools": True}, progress=False)
    assert result.rows[0]["tools"]["calls"] == 0 and len(result.rows[0]["tools"]["errors"]) == 1
