"""Prompt rows for GRPO: the question a rollout answers, its images only, prompts that never run past the context."""

from __future__ import annotations

import pytest
from PIL import Image

from helpers import draw_scene, grounding_record
from spatialtune.data.collate import BatchError, sequence_layout
from spatialtune.data.prompts import fit_prompts, open_prompt_images, prepare_prompt_rows, rollout_prompt
from spatialtune.geometry import convention_for_model_type
from spatialtune.models.tiny import build_tiny
from spatialtune.tools.crop import crop_call_text, declare_tools
from spatialtune.tools.protocol import tool_message


def _text(t: str) -> dict:
    return {"type": "text", "text": t}


@pytest.fixture(scope="module")
def tiny():
    model, processor = build_tiny("tiny-qwen3-vl")
    return processor, convention_for_model_type(model.config.model_type)


def chain_of_focus_record(rid: str = "cof0") -> dict:
    """A record in the tool dialect: system with the crop tool, question, scripted crop call, the crop, the answer."""
    question = {"role": "user", "content": [{"type": "image"}, _text("Box of the red square?")]}
    call = {"role": "assistant", "content": [_text(crop_call_text("{box:1}"))]}
    crop = tool_message("Here is the zoomed region.", image="crop.png")
    answer = {"role": "assistant", "content": [_text("<answer>{box:0}</answer>")]}
    messages, meta = declare_tools([question, call, crop, answer], {})
    return {"id": rid, "task": "grounding", "images": ["a.png", "crop.png"], "messages": messages, "meta": meta,
            "boxes": [{"bbox": [10, 30, 60, 80], "image": 0, "label": "red square"}, {"bbox": [0, 20, 80, 100], "image": 0, "label": "crop"}]}


def test_the_rollout_prompt_stops_before_the_answer_to_the_last_question():
    first = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]
    assert rollout_prompt(first + [{"role": "assistant", "content": "A2"}]) == first
    assert rollout_prompt(first) == first  # nothing to cut


def test_a_chain_of_focus_record_leaves_the_crop_exchange_and_its_image_to_the_model(write_dataset, tiny, tmp_path):
    processor, convention = tiny
    path = write_dataset([chain_of_focus_record()])
    draw_scene(tmp_path / "crop.png", size=(80, 80))
    [row] = prepare_prompt_rows(path, processor, convention, max_length=4096, completion_length=64,
                                extra_columns=lambda record: {"expected": record.task}).rows
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["images"] == [str(tmp_path / "a.png")] and row["image_sizes"] == [[160, 120]]
    assert row["expected"] == "grounding" and "crop" in row["meta"]  # the record's columns stay for the rewards
    assert "<answer>[63, 250, 375, 667]</answer>" in str(row["messages"])  # geometry rendered in the model's frame


def test_a_prompt_that_leaves_no_room_for_its_completion_is_refused_naming_the_record(write_dataset, tiny):
    processor, convention = tiny
    path = write_dataset([grounding_record("long")])
    [row] = prepare_prompt_rows(path, processor, convention, max_length=4096, completion_length=0).rows
    length = sequence_layout({"messages": row["prompt"], "image_sizes": row["image_sizes"]}, processor, add_generation_prompt=True).length
    assert fit_prompts([row], processor, length + 8, 8).kept == [row]  # exactly fits
    with pytest.raises(BatchError, match=r"record 'long'.*passes max_length.*on_long_prompt=skip"):
        fit_prompts([row], processor, length + 7, 8)
    report = fit_prompts([row], processor, length + 7, 8, on_long_prompt="skip")
    assert report.kept == [] and report.skipped[0][0] == "long"


def test_images_open_when_a_row_is_read(write_dataset, tiny):
    processor, convention = tiny
    path = write_dataset([grounding_record("r0")])
    rows = prepare_prompt_rows(path, processor, convention, max_length=4096, completion_length=8).rows
    opened = open_prompt_images({key: [row[key] for row in rows] for key in rows[0]})
    assert isinstance(opened["images"][0][0], Image.Image) and opened["images"][0][0].size == (160, 120)
    assert opened["prompt"] == [rows[0]["prompt"]]
