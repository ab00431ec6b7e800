"""Chain-of-focus GRPO rollouts: the crop tool in TRL's tool loop through a CropSession, as the eval runner drives it."""

from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

import pytest
import torch
from transformers.utils import get_json_schema

from helpers import draw_scene
from spatialtune.config import ConfigError
from spatialtune.data.render import GeometryRenderer
from spatialtune.geometry import Convention
from spatialtune.models.loading import ModelConfig, load_model
from spatialtune.runs import RunConfig
from spatialtune.tools.crop import CROP_TOOL, ZOOMED_TEXT, ToolSettings, declare_tools
from spatialtune.tools.protocol import refusal_text
from spatialtune.train.environments import CropEnvironment
from spatialtune.train.grpo import (
    DataConfig,
    GRPORecipeConfig,
    GRPOSettings,
    ToolsConfig,
    TrainingConfig,
    row_columns,
    run_grpo,
)

QUESTION = "How many red squares are there? Answer with a number."


def crop_reply(bbox: list[int]) -> str:
    return f'<tool_call>\n{{"name": "crop", "arguments": {{"bbox": {json.dumps(bbox)}}}}}\n</tool_call>'


# The scripted model's reply after n tool answers: a crop, a crop too small to see, a crop past the budget, the answer.
REPLIES = [crop_reply([0, 0, 500, 500]), crop_reply([0, 0, 10, 10]), crop_reply([500, 500, 1000, 1000]), "<answer>2</answer>"]


def test_the_environment_exposes_exactly_the_crop_tool_with_its_schema():
    public = [name for name, _ in inspect.getmembers(CropEnvironment, inspect.isfunction) if not name.startswith("_")]
    assert sorted(public) == ["crop", "reset"]  # TRL exposes every public method but reset and get_reward
    environment = CropEnvironment(GeometryRenderer(Convention.QWEN3_1000), ToolSettings())
    assert get_json_schema(environment.crop) == CROP_TOOL  # what the template declares from `tools=`


def test_rows_use_the_crop_environment_only_where_their_record_declares_the_tool():
    source = SimpleNamespace(reward_columns=lambda record: {"expected": "{}"})
    declared, plain = SimpleNamespace(meta={"tools": ["crop"]}), SimpleNamespace(meta={"tools": ["ruler"]})
    assert row_columns(source, True, declared) == {"expected": "{}", "environment": "crop"}
    assert row_columns(source, True, plain) == {"expected": "{}", "environment": "none"}
    assert row_columns(source, False, declared) == {"expected": "{}"}  # no tools: no environment column


def cof_file(tmp_path, tools: bool = True):
    """Two single-image counting records; with `tools`, each declares the crop tool as cof-tool-sft writes it."""
    draw_scene(tmp_path / "a.png", size=(224, 112))
    lines = []
    for i in range(2):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "<answer>1</answer>"}]}]
        meta = {}
        if tools:
            messages, meta = declare_tools(messages, meta)
        lines.append(json.dumps({"id": f"c{i}", "task": "counting", "images": ["a.png"], "answer": 1, "messages": messages, "meta": meta}))
    (tmp_path / "cof.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "cof.jsonl"


def tools_config(tmp_path, train_file, model="tiny-qwen3-vl") -> GRPORecipeConfig:
    return GRPORecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        model=ModelConfig(name=model),
        data=DataConfig(train_file=str(train_file)),
        rewards={"spy": 1.0},
        grpo=GRPOSettings(num_generations=2, max_completion_length=400),
        tools=ToolsConfig(crop=True, max_calls=2),
        training=TrainingConfig(max_steps=1, per_device_train_batch_size=4, save_steps=100),
    )


def scripted(model, tokenizer):
    """Make `model.generate` write REPLIES by turn (the number of tool answers in its input), as a policy would."""
    pad, eos = tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")

    def generate(input_ids, **kwargs):
        replies = []
        for ids in input_ids.tolist():
            turn = tokenizer.decode(ids).count("<tool_response>")
            replies.append(tokenizer(REPLIES[turn], add_special_tokens=False)["input_ids"] + [eos])
        width = max(map(len, replies))
        tail = torch.tensor([r + [pad] * (width - len(r)) for r in replies])
        return torch.cat([input_ids, tail], dim=1)

    model.generate = generate
    return model


def test_a_rollout_crops_has_its_refused_calls_answered_and_counted_and_trains_on_the_crops(tmp_path, monkeypatch):
    import spatialtune.train.grpo as grpo

    loaded = load_model("tiny-qwen3-vl")
    scripted(loaded.model, loaded.processor.tokenizer)
    images_seen = []
    loaded.model.model.visual.register_forward_hook(lambda module, args, kwargs, out: images_seen.append(kwargs["grid_thw"].shape[0]), with_kwargs=True)
    monkeypatch.setattr(grpo, "load_policy", lambda model, adapters, resume_from=None: (loaded, loaded.model))
    seen = {}

    def spy(prompts, completions, environments, **columns):
        seen.update(completions=completions, environments=environments)
        return [float(i % 2) for i in range(len(completions))]

    source = SimpleNamespace(make_rewards=lambda *a, **k: ([spy], [1.0]), reward_columns=lambda record: {})
    result = run_grpo(tools_config(tmp_path, cof_file(tmp_path)), rewards=source, progress=False)

    completion = seen["completions"][0]
    assert [m["role"] for m in completion] == ["assistant", "tool"] * 3 + ["assistant"]
    crop, too_small, past_budget = (m["content"] for m in completion[1::2])
    assert crop[0]["image"].size == (112, 56) and crop[1] == {"type": "text", "text": ZOOMED_TEXT}  # [0, 0, 500, 500] of 224×112
    assert too_small == refusal_text("the crop region [0, 0, 3, 2] (pixels, clipped to the 224×112 image) is smaller than 28 px per side")
    assert past_budget == refusal_text("the call budget of 2 is spent; answer without calling a tool")
    sessions = [environment.session for environment in seen["environments"]]
    assert all(s.calls == 1 and len(s.refusals) == 2 for s in sessions)  # each rollout its own session
    logged = result.log_history[0]
    assert logged["tools/call_frequency"] == 3 and logged["tools/failure_frequency"] == pytest.approx(2 / 3)
    assert 8 in images_seen  # the loss forward of 4 rollouts: 4 originals and their 4 crops, processed by TRL


def test_tools_with_qwen25_vl_are_a_config_error_naming_the_fix(tmp_path):
    source = SimpleNamespace(make_rewards=lambda *a, **k: ([lambda **kw: []], [1.0]), reward_columns=lambda record: {})
    with pytest.raises(ConfigError, match="tiny-qwen2.5-vl's chat template cannot render tool calls.*Qwen3-VL"):
        run_grpo(tools_config(tmp_path, cof_file(tmp_path), model="tiny-qwen2.5-vl"), rewards=source, progress=False)


def test_tools_without_a_record_declaring_the_crop_tool_are_a_config_error(tmp_path):
    source = SimpleNamespace(make_rewards=lambda *a, **k: ([lambda **kw: []], [1.0]), reward_columns=lambda record: {})
    with pytest.raises(ConfigError, match="no record of .*cof.jsonl declares the crop tool"):
        run_grpo(tools_config(tmp_path, cof_file(tmp_path, tools=False)), rewards=source, progress=False)
