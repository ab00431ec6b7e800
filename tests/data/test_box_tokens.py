"""Referred regions in the prompt and in the batch: the k-th `<|box_end|>` of a sample is its k-th `refer_boxes` group."""

from __future__ import annotations

import json
import re

import pytest
from datasets import Dataset

from helpers import draw_scene, grounding_record
from spatialtune.data.collate import BatchError, SpatialCollator, sequence_layout
from spatialtune.data.dataset import prepare_rows
from spatialtune.data.render import GeometryRenderer, format_coords
from spatialtune.geometry import Convention, ImageFrame, ResizePolicy, pixel_to_model
from spatialtune.records import RecordError, parse_record
from spatialtune.tasks.frames import NORM01_STATEMENT

SIZES = ((160, 120), (200, 100))
GROUPS = [{"boxes": [[12, 30, 64, 84]], "image": 0, "label": "person"},
          {"boxes": [[20, 20, 100, 50], [0, 0, 40, 30]], "image": 1, "label": "object"},
          {"boxes": [[12, 20, 100, 84]], "image": 0, "label": "interaction"}]
SPAN = re.compile(r"<\|box_start\|>(.*?)<\|box_end\|>")


def _linked(rid: str = "r0", text: str = "What is the person doing?", sizes=SIZES, groups=GROUPS) -> dict:
    """A record with one image per size and referred regions, the user asking `text`."""
    return {
        "id": rid, "task": "referring", "images": [f"{i}.png" for i in range(len(sizes))],
        "messages": [{"role": "user", "content": [*({"type": "image"} for _ in sizes), {"type": "text", "text": text}]},
                     {"role": "assistant", "content": [{"type": "text", "text": "riding"}]}],
        "refer_boxes": groups,
    }


def _parsed(obj: dict, sizes=SIZES):
    record = parse_record(obj, file="data.jsonl", line=7)
    record.image_sizes = [tuple(s) for s in sizes]
    return record


def _prompt(renderer: GeometryRenderer, record) -> str:
    return renderer.render_messages(record)[0]["content"][-1]["text"]


@pytest.mark.parametrize("convention, policy", [(Convention.QWEN3_1000, None),
                                                (Convention.QWEN25_ABS, ResizePolicy(28, 3136, 28 * 28 * 1280))])
def test_each_referred_group_is_one_box_span_in_the_model_frame_in_group_order(convention, policy):
    record = _parsed(_linked())
    spans = SPAN.findall(_prompt(GeometryRenderer(convention, policy), record))
    expected = [", ".join(format_coords(pixel_to_model(b, ImageFrame.of(*SIZES[g["image"]], policy), convention)) for b in g["boxes"])
                for g in GROUPS]
    assert spans == expected


def test_the_regions_line_names_each_groups_label_after_the_question():
    text = _prompt(GeometryRenderer(Convention.QWEN3_1000), _parsed(_linked()))
    assert text == ("What is the person doing?\nReferred regions: person <|box_start|>[75, 250, 400, 700]<|box_end|>; "
                    "object <|box_start|>[100, 200, 500, 500], [0, 0, 200, 300]<|box_end|>; "
                    "interaction <|box_start|>[75, 167, 625, 700]<|box_end|>")


def test_a_norm01_prompt_states_its_frame_after_the_regions():
    text = _prompt(GeometryRenderer(Convention.NORM01, None, NORM01_STATEMENT), _parsed(_linked(groups=GROUPS[:1])))
    assert text.endswith("Referred region: person <|box_start|>[0.075, 0.25, 0.4, 0.7]<|box_end|>\n" + NORM01_STATEMENT)


def test_box_tokens_written_in_the_text_are_an_error_naming_the_record_and_field():
    record = _parsed(_linked(text="Look at <|box_start|>[1, 2, 3, 4]<|box_end|>."))
    with pytest.raises(RecordError) as caught:
        GeometryRenderer(Convention.QWEN3_1000).render_messages(record)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("data.jsonl", 7, "refer_boxes")
    assert "4 <|box_end|> token(s) for 3 referred region(s)" in str(caught.value)


# --- the batch contract, on the tiny processors ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_processors():
    from spatialtune.models.tiny import build_tiny

    return {name: build_tiny(name)[1] for name in ("tiny-qwen2.5-vl", "tiny-qwen3-vl")}


CONVENTIONS = {"tiny-qwen2.5-vl": Convention.QWEN25_ABS, "tiny-qwen3-vl": Convention.QWEN3_1000}


def _rows(tmp_path, processor, model, records, max_length=None):
    for i, size in enumerate(SIZES):
        draw_scene(tmp_path / f"{i}.png", size=size)
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    collator = SpatialCollator(processor, max_length, spatial_linking=True)
    rows = prepare_rows(path, processor, CONVENTIONS[model], chat_template=collator.chat_template).rows
    return collator, list(Dataset.from_list(rows))  # through a datasets.Dataset, as the trainer feeds them


@pytest.mark.parametrize("model", list(CONVENTIONS))
def test_the_batch_carries_each_samples_groups_in_pixels_and_its_original_image_sizes(model, tiny_processors, tmp_path):
    one_image = {**grounding_record("plain", image="0.png"), "images": ["0.png"]}
    collator, rows = _rows(tmp_path, tiny_processors[model], model, [_linked(), one_image])
    batch = collator(rows)
    assert batch["refer_boxes"] == [[{"image": 0, "boxes": [[12.0, 30.0, 64.0, 84.0]]},
                                     {"image": 1, "boxes": [[20.0, 20.0, 100.0, 50.0], [0.0, 0.0, 40.0, 30.0]]},
                                     {"image": 0, "boxes": [[12.0, 20.0, 100.0, 84.0]]}], []]
    assert batch["image_sizes"] == [[(160, 120), (200, 100)], [(160, 120)]]


@pytest.mark.parametrize("model", list(CONVENTIONS))
def test_the_kth_box_end_token_closes_the_kth_groups_coordinates(model, tiny_processors, tmp_path):
    processor = tiny_processors[model]
    collator, rows = _rows(tmp_path, processor, model, [_linked()])
    text = processor.tokenizer.decode(collator(rows)["input_ids"][0])
    renderer = GeometryRenderer.for_processor(processor, CONVENTIONS[model])
    frames = [ImageFrame.of(*size, renderer.policy) for size in SIZES]
    assert SPAN.findall(text) == [", ".join(format_coords(pixel_to_model(b, frames[g["image"]], renderer.convention)) for b in g["boxes"])
                                  for g in GROUPS]


def test_truncation_that_cuts_a_box_end_token_is_an_error_naming_the_record(tiny_processors, tmp_path):
    processor = tiny_processors["tiny-qwen3-vl"]
    collator, rows = _rows(tmp_path, processor, "tiny-qwen3-vl", [_linked()])
    image_end = sequence_layout(rows[0], processor, collator.chat_template).image_end
    with pytest.raises(BatchError, match=r"data.jsonl:1: record 'r0': field 'refer_boxes': 3 referred region\(s\) but 0"):
        SpatialCollator(processor, max_length=image_end + 3, spatial_linking=True)(rows)


def test_a_max_length_that_would_cut_the_regions_is_caught_when_rows_are_prepared(tiny_processors, tmp_path):
    processor = tiny_processors["tiny-qwen3-vl"]
    collator, rows = _rows(tmp_path, processor, "tiny-qwen3-vl", [_linked()])
    layout = sequence_layout(rows[0], processor, collator.chat_template)
    assert layout.image_end < layout.box_end < layout.length
    path = tmp_path / "data.jsonl"
    with pytest.raises(BatchError, match=rf"data.jsonl:1: record 'r0': field 'refer_boxes': referred regions \(<\|box_end\|>\) end at {layout.box_end} > max_length"):
        prepare_rows(path, processor, Convention.QWEN3_1000, max_length=layout.box_end - 1, chat_template=collator.chat_template)
    kept = prepare_rows(path, processor, Convention.QWEN3_1000, max_length=layout.box_end - 1, on_truncated_image="skip",
                        chat_template=collator.chat_template)
    assert kept.rows == [] and kept.skipped[0][0] == "r0"


def test_without_linking_the_batch_has_no_linking_columns(tiny_processors, tmp_path):
    processor = tiny_processors["tiny-qwen3-vl"]
    _, rows = _rows(tmp_path, processor, "tiny-qwen3-vl", [_linked()])
    batch = SpatialCollator(processor)(rows)
    assert "refer_boxes" not in batch and "image_sizes" not in batch
