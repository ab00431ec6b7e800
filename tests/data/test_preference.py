"""Preference rows: prompt, chosen and rejected rendered in the model's frame, in the form TRL's DPO collator takes."""

from __future__ import annotations

import pytest

from helpers import grounding_record
from spatialtune.data.dataset import DatasetError, prepare_rows
from spatialtune.data.preference import SpatialPreferenceCollator, record_to_preference_row
from spatialtune.data.render import GeometryRenderer
from spatialtune.geometry import Convention, ResizePolicy
from spatialtune.records import RecordError, parse_record

QWEN25_BUDGET = 28 * 28 * 1280  # a 160×120 image is only snapped to 168×112


def _text(t: str) -> dict:
    return {"type": "text", "text": t}


def preference_record(rid: str = "p0", chosen="{box:0}", rejected=None) -> dict:
    """A grounding record whose pair prefers the true box over a wrong one, both shown through placeholders."""
    obj = grounding_record(rid)
    obj["boxes"].append({"bbox": [100, 10, 150, 50], "image": 0, "label": "wrong"})
    obj["chosen"] = chosen
    obj["rejected"] = rejected if rejected is not None else [{"role": "assistant", "content": [_text("It is at {box:0}? No: {box:1}.")]}]
    return obj


def _parsed(obj: dict, sizes=((160, 120),)):
    record = parse_record(obj)
    record.image_sizes = list(sizes)
    return record


@pytest.mark.parametrize(
    "renderer, rendered",
    [
        # 1000 grid over 160×120: (10, 30, 60, 80) → [63, 250, 375, 667]; (100, 10, 150, 50) → [625, 83, 938, 417]
        (GeometryRenderer(Convention.QWEN3_1000), "It is at [63, 250, 375, 667]? No: [625, 83, 938, 417]."),
        # pixels of the 168×112 snapped image: × (1.05, 0.9333) → [11, 28, 63, 75] and [105, 9, 158, 47]
        (GeometryRenderer(Convention.QWEN25_ABS, ResizePolicy(factor=28, min_pixels=3136, max_pixels=QWEN25_BUDGET)),
         "It is at [11, 28, 63, 75]? No: [105, 9, 158, 47]."),
    ],
    ids=["qwen3_1000", "qwen25_abs"],
)
def test_box_placeholders_in_rejected_render_in_the_models_frame(renderer, rendered):
    row = record_to_preference_row(_parsed(preference_record()), renderer)
    assert row["rejected"] == [{"role": "assistant", "content": [_text(rendered)]}]


def test_a_string_answer_becomes_one_rendered_assistant_message():
    row = record_to_preference_row(_parsed(preference_record(chosen="{box:0}")), GeometryRenderer(Convention.QWEN3_1000))
    assert row["chosen"] == [{"role": "assistant", "content": [_text("[63, 250, 375, 667]")]}]


def test_the_prompt_is_the_messages_before_the_last_assistant_turn():
    row = record_to_preference_row(_parsed(preference_record()), GeometryRenderer(Convention.QWEN3_1000))
    assert row["prompt"] == [{"role": "user", "content": [{"type": "image"}, _text("Box of the red square?")]}]


def test_the_row_keeps_images_and_ground_truth_in_pixels():
    row = record_to_preference_row(_parsed(preference_record()), GeometryRenderer(Convention.QWEN3_1000))
    assert row["images"] == ["a.png"] and row["image_sizes"] == [[160, 120]]
    assert row["boxes"][1] == {"bbox": [100.0, 10.0, 150.0, 50.0], "image": 0, "label": "wrong"}
    assert row["meta"] == {} and row["id"] == "p0"


def test_a_record_without_a_pair_is_not_a_preference_row():
    with pytest.raises(RecordError, match="field 'chosen': not a preference pair"):
        record_to_preference_row(_parsed(grounding_record()), GeometryRenderer(Convention.QWEN3_1000))


def test_preparing_a_file_with_a_record_without_a_pair_names_its_line(write_dataset, tiny_processors):
    path = write_dataset([preference_record("p0"), grounding_record("plain")])
    processor = tiny_processors["tiny-qwen3-vl"]
    with pytest.raises(DatasetError, match=rf"{path}:2: field 'chosen': not a preference pair"):
        prepare_rows(path, processor, Convention.QWEN3_1000, rows="preference")


@pytest.fixture(scope="module")
def tiny_processors():
    from spatialtune.models.tiny import build_tiny

    return {name: build_tiny(name)[1] for name in ("tiny-qwen2.5-vl", "tiny-qwen3-vl")}


@pytest.mark.parametrize("model, convention", [("tiny-qwen2.5-vl", Convention.QWEN25_ABS), ("tiny-qwen3-vl", Convention.QWEN3_1000)])
def test_trls_vision_preference_collator_takes_the_rows(model, convention, write_dataset, tiny_processors):
    processor = tiny_processors[model]
    path = write_dataset([preference_record("p0"), preference_record("p1", chosen="The square: {box:0}")])
    rows = prepare_rows(path, processor, convention, rows="preference").rows
    batch = SpatialPreferenceCollator(processor, keep_columns=["boxes"])(rows)
    assert batch["input_ids"].shape[0] == 4  # chosen of each pair, then rejected of each pair
    completions = [processor.tokenizer.decode(ids[mask == 1]) for ids, mask in zip(batch["input_ids"], batch["completion_mask"])]
    assert completions[1].startswith(f"The square: {rows[1]['chosen'][0]['content'][0]['text'].split(': ')[1]}")
    assert completions[2].startswith(rows[0]["rejected"][0]["content"][0]["text"])
    assert batch["boxes"] == [rows[0]["boxes"], rows[1]["boxes"]]
