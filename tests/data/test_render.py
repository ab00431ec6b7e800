"""Record → TRL row: `{box:N}` / `{point:N}` placeholders rendered in each model family's coordinate convention."""

from __future__ import annotations

import copy
import json

import pytest
from datasets import Dataset
from PIL import Image

from helpers import draw_scene, grounding_record
from spatialtune.data.render import GeometryRenderer, dataset_row, format_coords, record_to_row
from spatialtune.geometry import Convention, ImageFrame, ResizePolicy
from spatialtune.records import SpatialRecord, parse_record, read_records
from spatialtune.tasks.frames import NORM01_STATEMENT

QWEN25_BUDGET = 28 * 28 * 1280  # the released Qwen2.5-VL max_pixels: a 160×120 image is only snapped to multiples of 28


def _record(text: str = "{box:0}", sizes=((160, 120),), **fields) -> SpatialRecord:
    """A record with one image per size, the assistant saying `text`, and image sizes set as check_media would."""
    obj = {
        "id": "r0",
        "task": "grounding",
        "images": [f"{i}.png" for i in range(len(sizes))],
        "messages": [
            {"role": "user", "content": [{"type": "image"} for _ in sizes] + [{"type": "text", "text": "Where?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": text}]},
        ],
        "boxes": [[12, 30, 64, 84]],
        "points": [[40, 90]],
        **fields,
    }
    record = parse_record(obj)
    record.image_sizes = [tuple(s) for s in sizes]
    return record


def _answer(renderer: GeometryRenderer, record: SpatialRecord) -> str:
    """The rendered text of the assistant's (last) message."""
    return renderer.render_messages(record)[-1]["content"][0]["text"]


# --- format_coords ---------------------------------------------------------------------------------------------


def test_format_coords_writes_a_bracketed_comma_list():
    assert format_coords([1, 2, 30, 400]) == "[1, 2, 30, 400]"


def test_format_coords_keeps_fractions():
    assert format_coords([0.1, 0.333]) == "[0.1, 0.333]"


# --- qwen3_1000: a 0–1000 grid over the original image ----------------------------------------------------------


def test_box_placeholder_renders_on_the_1000_grid():
    # 160×120 image: x·1000/160, y·1000/120 → 12→75, 30→250, 64→400, 84→700
    assert _answer(GeometryRenderer(Convention.QWEN3_1000), _record("{box:0}")) == "[75, 250, 400, 700]"


def test_point_placeholder_renders_on_the_1000_grid():
    # (40, 90) on 160×120 → (250, 750)
    assert _answer(GeometryRenderer(Convention.QWEN3_1000), _record("{point:0}")) == "[250, 750]"


def test_1000_grid_rounds_halves_up_to_integers():
    # (10, 50) on 160×120 → (62.5, 416.67) → (63, 417)
    record = _record("{point:0}", points=[[10, 50]])
    assert _answer(GeometryRenderer(Convention.QWEN3_1000), record) == "[63, 417]"


def test_1000_grid_ignores_the_resize_policy():
    renderer = GeometryRenderer(Convention.QWEN3_1000, ResizePolicy(factor=28, min_pixels=3136, max_pixels=6272))
    assert _answer(renderer, _record("{box:0}")) == "[75, 250, 400, 700]"


# --- qwen25_abs: pixels of the image as the processor resizes it ------------------------------------------------
# Expected values are computed by hand from smart_resize's rule: each side is rounded to the nearest multiple of
# `factor`; if the area is then above max_pixels, both sides are scaled by beta = sqrt(h·w / max_pixels) and floored
# to multiples of `factor`; if below min_pixels, scaled by beta = sqrt(min_pixels / (h·w)) and ceiled.


def test_box_renders_in_pixels_of_the_snapped_image():
    # 160×120: 160/28 = 5.71 → 6·28 = 168, 120/28 = 4.29 → 4·28 = 112; 168·112 = 18816 within [3136, max]
    # box (12, 30, 64, 84) × (168/160, 112/120) = (12.6, 28, 67.2, 78.4) → [13, 28, 67, 78]
    renderer = GeometryRenderer(
        Convention.QWEN25_ABS, ResizePolicy(factor=28, min_pixels=3136, max_pixels=QWEN25_BUDGET)
    )
    assert _answer(renderer, _record("{box:0}")) == "[13, 28, 67, 78]"


def test_point_renders_in_pixels_of_the_snapped_image():
    # (40, 90) × (168/160, 112/120) = (42, 84)
    renderer = GeometryRenderer(
        Convention.QWEN25_ABS, ResizePolicy(factor=28, min_pixels=3136, max_pixels=QWEN25_BUDGET)
    )
    assert _answer(renderer, _record("{point:0}")) == "[42, 84]"


def test_box_renders_in_pixels_of_an_image_shrunk_to_max_pixels():
    # 160×120 snaps to 168×112 = 18816 > 6272: beta = sqrt(19200/6272) = 1.7496;
    # width floor(160/1.7496/28) = floor(3.27) = 3 → 84, height floor(120/1.7496/28) = floor(2.45) = 2 → 56
    # box (12, 30, 64, 84) × (84/160, 56/120) = (6.3, 14, 33.6, 39.2) → [6, 14, 34, 39]
    renderer = GeometryRenderer(Convention.QWEN25_ABS, ResizePolicy(factor=28, min_pixels=3136, max_pixels=6272))
    assert _answer(renderer, _record("{box:0}")) == "[6, 14, 34, 39]"


def test_box_renders_in_pixels_of_an_image_grown_to_min_pixels():
    # 40×30 snaps to 28×28 = 784 < 3136: beta = sqrt(3136/1200) = 1.6166;
    # width ceil(40·1.6166/28) = ceil(2.31) = 3 → 84, height ceil(30·1.6166/28) = ceil(1.73) = 2 → 56
    # box (4, 3, 20, 15) × (84/40, 56/30) = (8.4, 5.6, 42, 28) → [8, 6, 42, 28]
    renderer = GeometryRenderer(
        Convention.QWEN25_ABS, ResizePolicy(factor=28, min_pixels=3136, max_pixels=QWEN25_BUDGET)
    )
    record = _record("{box:0}", sizes=[(40, 30)], boxes=[[4, 3, 20, 15]])
    assert _answer(renderer, record) == "[8, 6, 42, 28]"


def test_frame_reports_original_and_resized_size():
    renderer = GeometryRenderer(Convention.QWEN25_ABS, ResizePolicy(factor=28, min_pixels=3136, max_pixels=6272))
    assert renderer.frame(_record(), 0) == ImageFrame(160, 120, 84, 56)


# --- norm01: fractions of width and height ----------------------------------------------------------------------


def test_box_renders_as_fractions_in_norm01():
    # (16, 30, 80, 90) / (160, 120, 160, 120)
    record = _record("{box:0}", boxes=[[16, 30, 80, 90]])
    assert _answer(GeometryRenderer(Convention.NORM01), record) == "[0.1, 0.25, 0.5, 0.75]"


def test_point_renders_as_three_decimal_fractions_in_norm01():
    # (40, 40) / (160, 120) = (0.25, 0.3333…) → three decimals
    record = _record("{point:0}", points=[[40, 40]])
    assert _answer(GeometryRenderer(Convention.NORM01), record) == "[0.25, 0.333]"


# --- several placeholders and images -----------------------------------------------------------------------------


def test_box_on_the_second_image_uses_that_images_size():
    # image 1 is 200×100: (20, 20, 100, 50) → [100, 200, 500, 500]; image 0's 160×120 would give [125, 167, 625, 417]
    record = _record(
        "{box:1}", sizes=[(160, 120), (200, 100)], boxes=[[12, 30, 64, 84], {"bbox": [20, 20, 100, 50], "image": 1}]
    )
    assert _answer(GeometryRenderer(Convention.QWEN3_1000), record) == "[100, 200, 500, 500]"


def test_every_placeholder_in_a_text_is_rendered():
    record = _record("Box {box:0}, point {point:0}, box again {box:0}.")
    expected = "Box [75, 250, 400, 700], point [250, 750], box again [75, 250, 400, 700]."
    assert _answer(GeometryRenderer(Convention.QWEN3_1000), record) == expected


# --- message structure -------------------------------------------------------------------------------------------


def test_string_content_becomes_a_structured_text_part():
    record = _record()
    record.messages[1] = {"role": "assistant", "content": "It is at {point:0}."}
    rendered = GeometryRenderer(Convention.QWEN3_1000).render_messages(record)
    assert rendered[1] == {"role": "assistant", "content": [{"type": "text", "text": "It is at [250, 750]."}]}


def test_image_parts_stay_bare_image_parts_in_place():
    record = _record(sizes=[(160, 120), (200, 100)])
    record.messages[0]["content"][1] = {"type": "image", "image": "1.png"}  # an extra key is dropped
    rendered = GeometryRenderer(Convention.QWEN3_1000).render_messages(record)
    assert rendered[0]["content"] == [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Where?"}]


def test_other_message_keys_are_kept():
    record = _record()
    record.messages[1]["name"] = "locator"
    rendered = GeometryRenderer(Convention.QWEN3_1000).render_messages(record)
    assert rendered[1]["role"] == "assistant" and rendered[1]["name"] == "locator"


def test_rendering_does_not_modify_the_records_messages():
    record = _record("{box:0} and {point:0}")
    record.messages[0]["content"] = "Where? {point:0}"
    before = copy.deepcopy(record.messages)
    GeometryRenderer(Convention.QWEN3_1000).render_messages(record)
    assert record.messages == before


def test_text_without_placeholders_is_unchanged():
    assert (
        _answer(GeometryRenderer(Convention.QWEN3_1000), _record("A red square, top left."))
        == "A red square, top left."
    )


def test_json_like_text_is_unchanged():
    text = 'Call {"name": "crop", "arguments": {"box": [1, 2, 3, 4]}} with {box} or { box:0 } or {box:}.'
    assert _answer(GeometryRenderer(Convention.QWEN3_1000), _record(text)) == text


def test_rendering_without_image_sizes_raises_value_error():
    record = _record("{box:0}")
    record.image_sizes = []
    with pytest.raises(ValueError, match="image sizes unknown"):
        GeometryRenderer(Convention.QWEN3_1000).render_messages(record)


# --- record_to_row ----------------------------------------------------------------------------------------------


@pytest.fixture
def checked_record(tmp_path) -> SpatialRecord:
    """A record read from a JSONL file (on line 2) with its image and a mask, media-checked."""
    draw_scene(tmp_path / "a.png", size=(160, 120))
    Image.new("L", (160, 120), 0).save(tmp_path / "m.png")
    obj = grounding_record(rid="row-1", bbox=(12, 30, 64, 84))
    obj.update(
        points=[{"point": [40, 90], "image": 0, "label": "tip"}],
        masks=[{"path": "m.png", "label": "square"}],
        answer={"box": [12, 30, 64, 84]},
        choices=["left", "right"],
        meta={"source": "synthetic", "difficulty": 1},
    )
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(grounding_record(rid="row-0")) + "\n" + json.dumps(obj) + "\n")
    return read_records(path)[1]


def test_row_has_exactly_the_trl_and_structured_columns(checked_record):
    row = record_to_row(checked_record, GeometryRenderer(Convention.QWEN3_1000))
    assert set(row) == {
        "id",
        "task",
        "source",
        "messages",
        "images",
        "image_sizes",
        "boxes",
        "points",
        "masks",
        "refer_boxes",
        "answer",
        "choices",
        "meta",
    }


def test_row_identifies_the_record_and_its_source_line(checked_record, tmp_path):
    row = record_to_row(checked_record, GeometryRenderer(Convention.QWEN3_1000))
    assert (row["id"], row["task"], row["source"]) == ("row-1", "grounding", f"{tmp_path / 'data.jsonl'}:2")


def test_row_messages_are_rendered(checked_record):
    row = record_to_row(checked_record, GeometryRenderer(Convention.QWEN3_1000))
    assert row["messages"][1]["content"] == [{"type": "text", "text": "[75, 250, 400, 700]"}]


def test_row_images_are_path_strings_with_sizes(checked_record, tmp_path):
    row = record_to_row(checked_record, GeometryRenderer(Convention.QWEN3_1000))
    assert row["images"] == [str(tmp_path / "a.png")]
    assert row["image_sizes"] == [[160, 120]]


def test_row_geometry_stays_in_original_pixels(checked_record, tmp_path):
    row = record_to_row(checked_record, GeometryRenderer(Convention.QWEN3_1000))
    assert row["boxes"] == [{"bbox": [12.0, 30.0, 64.0, 84.0], "image": 0, "label": "red square"}]
    assert row["points"] == [{"point": [40.0, 90.0], "image": 0, "label": "tip"}]
    assert row["masks"] == [{"path": str(tmp_path / "m.png"), "image": 0, "label": "square"}]


def test_row_answer_and_meta_are_values(checked_record):
    row = record_to_row(checked_record, GeometryRenderer(Convention.QWEN3_1000))
    assert row["answer"] == {"box": [12, 30, 64, 84]} and row["meta"] == {"source": "synthetic", "difficulty": 1}


def test_a_dataset_row_holds_answer_and_meta_as_json_text(checked_record):
    row = dataset_row(record_to_row(checked_record, GeometryRenderer(Convention.QWEN3_1000)))
    assert json.loads(row["answer"]) == {"box": [12, 30, 64, 84]}
    assert json.loads(row["meta"]) == {"source": "synthetic", "difficulty": 1}
    assert Dataset.from_list([row, {**row, "answer": json.dumps("left")}])[1]["answer"] == '"left"'


def test_row_choices_are_a_list(checked_record):
    assert record_to_row(checked_record, GeometryRenderer(Convention.QWEN3_1000))["choices"] == ["left", "right"]


def test_row_of_a_record_without_answer_choices_or_meta_has_uniform_empty_values():
    record = _record("{box:0}")
    row = dataset_row(record_to_row(record, GeometryRenderer(Convention.QWEN3_1000)))
    assert (row["answer"], row["choices"], row["meta"], row["masks"], row["refer_boxes"]) == ("null", [], "{}", [], [])


# --- refer_boxes: pixels in the row, the model's frame through the renderer --------------------------------------

REFER = [[12, 30, 64, 84], {"boxes": [[20, 20, 100, 50], [0, 0, 40, 30]], "image": 1, "label": "pair"}]


def test_row_carries_refer_boxes_as_groups_in_pixels():
    record = _record(sizes=[(160, 120), (200, 100)], refer_boxes=REFER)
    row = record_to_row(record, GeometryRenderer(Convention.QWEN3_1000))
    assert row["refer_boxes"] == [
        {"boxes": [[12.0, 30.0, 64.0, 84.0]], "image": 0, "label": ""},
        {"boxes": [[20.0, 20.0, 100.0, 50.0], [0.0, 0.0, 40.0, 30.0]], "image": 1, "label": "pair"},
    ]


def test_refer_boxes_render_in_the_model_frame_of_their_own_image():
    # group 0 on 160×120 → the 1000 grid as {box:0} renders; group 1 on image 1 (200×100): (20, 20, 100, 50) → [100, 200, 500, 500]
    record = _record(sizes=[(160, 120), (200, 100)], refer_boxes=REFER)
    groups = GeometryRenderer(Convention.QWEN3_1000).refer_boxes_in_model_frame(record)
    assert groups == [{"boxes": [[75, 250, 400, 700]], "image": 0, "label": ""},
                      {"boxes": [[100, 200, 500, 500], [0, 0, 200, 300]], "image": 1, "label": "pair"}]


def test_refer_boxes_render_like_box_placeholders_in_qwen25_abs():
    renderer = GeometryRenderer(Convention.QWEN25_ABS, ResizePolicy(factor=28, min_pixels=3136, max_pixels=QWEN25_BUDGET))
    record = _record("{box:0}", refer_boxes=[[12, 30, 64, 84]])
    assert renderer.refer_boxes_in_model_frame(record)[0]["boxes"] == [[13, 28, 67, 78]] and _answer(renderer, record) == "[13, 28, 67, 78]"


# --- GeometryRenderer.for_processor ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_qwen25_processor():
    from spatialtune.models.tiny import build_tiny

    return build_tiny("tiny-qwen2.5-vl")[1]


def test_for_processor_reads_the_processors_resize_policy(tiny_qwen25_processor):
    renderer = GeometryRenderer.for_processor(tiny_qwen25_processor, Convention.QWEN25_ABS)
    ip = tiny_qwen25_processor.image_processor
    assert renderer.convention is Convention.QWEN25_ABS
    assert renderer.policy == ResizePolicy(
        factor=ip.patch_size * ip.merge_size, min_pixels=ip.size["shortest_edge"], max_pixels=ip.size["longest_edge"]
    )


def test_for_processor_resizes_like_the_processor(tiny_qwen25_processor):
    ip = tiny_qwen25_processor.image_processor
    grid = ip(images=[Image.new("RGB", (500, 300))], return_tensors="pt")["image_grid_thw"][0].tolist()
    processed = (grid[2] * ip.patch_size, grid[1] * ip.patch_size)  # (width, height) the model actually sees
    renderer = GeometryRenderer.for_processor(tiny_qwen25_processor, Convention.QWEN25_ABS)
    frame = renderer.frame(_record(sizes=[(500, 300)], boxes=[[50, 30, 450, 270]]), 0)
    assert (frame.resized_width, frame.resized_height) == processed
    assert processed != (500, 300)  # the tiny pixel budget (max 50176) really shrinks it


def test_for_processor_renders_boxes_in_the_processed_images_pixels(tiny_qwen25_processor):
    # tiny budget: factor 28, max 50176; 500×300 snaps to 504×308 = 155232 > 50176: beta = sqrt(150000/50176) = 1.729;
    # width floor(500/1.729/28) = 10 → 280, height floor(300/1.729/28) = 6 → 168
    # box (50, 30, 450, 270) × (280/500, 168/300) = (28, 16.8, 252, 151.2) → [28, 17, 252, 151]
    renderer = GeometryRenderer.for_processor(tiny_qwen25_processor, Convention.QWEN25_ABS)
    record = _record("{box:0}", sizes=[(500, 300)], boxes=[[50, 30, 450, 270]])
    assert _answer(renderer, record) == "[28, 17, 252, 151]"


def test_a_crop_shown_back_as_a_user_turn_renders_as_the_tool_dialect():
    call = '<tool_call>{"name": "crop", "arguments": {"bbox": {box:0}}}</tool_call>'
    chat = lambda second: [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": call}]},
        {"role": second, "content": [{"type": "image"}, {"type": "text", "text": "Here is the zoomed region."}],
         **({"name": "crop"} if second == "tool" else {})},
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>left</answer>"}]},
    ]
    renderer = GeometryRenderer(Convention.QWEN3_1000)
    old, new = _record(sizes=((160, 120), (52, 54))), _record(sizes=((160, 120), (52, 54)))
    old.messages, new.messages = chat("user"), chat("tool")
    rendered_old, rendered_new = renderer.render_messages(old), renderer.render_messages(new)
    assert rendered_old[2]["role"] == "tool" and rendered_old == rendered_new
    assert '"bbox": [75, 250, 400, 700]' in rendered_old[1]["content"][0]["text"]


# --- the frame stated in prompts (families without a native frame) ----------------------------------------------


class _OtherFamilyProcessor:
    """A processor with no Qwen-VL resizing (Gemma 3, Idefics3, …): `for_processor` must not read one."""

    image_processor = object()


def _user_text(rendered: list[dict]) -> str:
    return "".join(p["text"] for p in rendered[0]["content"] if p["type"] == "text")


def test_norm01_models_are_told_their_frame_at_the_end_of_the_first_user_turn():
    renderer = GeometryRenderer.for_processor(_OtherFamilyProcessor(), Convention.NORM01)
    assert renderer.policy is None and renderer.frame_statement == NORM01_STATEMENT
    rendered = renderer.render_messages(_record("{box:0}"))
    assert _user_text(rendered) == f"Where?\n{NORM01_STATEMENT}" and rendered[0]["content"][0] == {"type": "image"}
    assert rendered[-1]["content"][0]["text"] == "[0.075, 0.25, 0.4, 0.7]"


def test_the_frame_is_stated_only_where_a_record_shows_or_asks_coordinates():
    renderer = GeometryRenderer.for_processor(_OtherFamilyProcessor(), Convention.NORM01)
    assert _user_text(renderer.render_messages(_record("left"))) == "Where?"
    shown = _record("riding")  # coordinates in the question only (HOI referring's person and object boxes)
    shown.messages[0]["content"][-1]["text"] = "What does the person at {box:0} do?"
    assert _user_text(renderer.render_messages(shown)) == f"What does the person at [0.075, 0.25, 0.4, 0.7] do?\n{NORM01_STATEMENT}"


@pytest.mark.parametrize("convention", [Convention.QWEN3_1000, Convention.QWEN25_ABS])
def test_qwen_families_are_not_told_their_native_frame(convention, tiny_qwen25_processor):
    renderer = GeometryRenderer.for_processor(tiny_qwen25_processor, convention)
    assert renderer.frame_statement is None and _user_text(renderer.render_messages(_record("{box:0}"))) == "Where?"
