"""The spatial JSONL record: structure (`parse_record`), media (`check_media`), files (`scan_records`, `read_records`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from PIL import Image

from helpers import draw_scene, grounding_record
from spatialtune.records import (
    Box,
    Mask,
    Point,
    RecordError,
    ReferGroup,
    check_media,
    parse_record,
    read_records,
    scan_records,
)

SIZE = (160, 120)  # (width, height) of the scenes drawn below: not square, so width/height mix-ups show


def _write_jsonl(path: Path, lines: list) -> Path:
    """One JSONL line per item: dicts are dumped, strings written as they are (blank or malformed lines)."""
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def _mask(path: Path, size=SIZE) -> Path:
    """A binary mask image of `size`."""
    Image.new("L", size, 0).save(path)
    return path


def _field_error(obj: dict, **kwargs) -> RecordError:
    """The RecordError parse_record raises for `obj`."""
    with pytest.raises(RecordError) as info:
        parse_record(obj, **kwargs)
    return info.value


# --- RecordError ---------------------------------------------------------------------------------------------


def test_record_error_message_names_file_line_and_field():
    error = RecordError("data/train.jsonl", 7, "boxes[0].bbox", "expected a list of 4 numbers")
    assert str(error) == "data/train.jsonl:7: field 'boxes[0].bbox': expected a list of 4 numbers"
    assert (error.file, error.line, error.field, error.message) == (
        "data/train.jsonl",
        7,
        "boxes[0].bbox",
        "expected a list of 4 numbers",
    )


def test_record_error_is_a_value_error():
    assert isinstance(RecordError("f", 1, "id", "m"), ValueError)


def test_parse_error_carries_the_given_file_and_line():
    obj = grounding_record()
    del obj["task"]
    error = _field_error(obj, file="set.jsonl", line=12)
    assert (error.file, error.line) == ("set.jsonl", 12)
    assert str(error).startswith("set.jsonl:12: field 'task': ")


# --- parse_record: good records --------------------------------------------------------------------------------


def test_good_record_parses_all_fields(tmp_path):
    obj = grounding_record(rid="s1")
    obj.update(
        points=[{"point": [35, 55], "image": 0, "label": "centre"}],
        masks=[{"path": "m.png", "image": 0, "label": "square"}],
        answer={"box": [10, 30, 60, 80]},
        choices=["A", "B"],
        meta={"split": "train"},
    )
    record = parse_record(obj, file="d.jsonl", line=3, base_dir=tmp_path)
    assert (record.id, record.task) == ("s1", "grounding")
    assert record.messages == obj["messages"]
    assert record.images == [tmp_path / "a.png"]
    assert record.boxes == [Box((10.0, 30.0, 60.0, 80.0), 0, "red square")]
    assert record.points == [Point((35.0, 55.0), 0, "centre")]
    assert record.masks == [Mask(tmp_path / "m.png", 0, "square")]
    assert record.answer == {"box": [10, 30, 60, 80]}
    assert record.choices == ["A", "B"]
    assert record.meta == {"split": "train"}
    assert record.source == ("d.jsonl", 3)
    assert record.image_sizes == []  # only check_media fills them


def test_box_as_bare_list_is_on_image_zero():
    obj = grounding_record()
    obj["boxes"] = [[1, 2, 3.5, 4]]
    assert parse_record(obj).boxes == [Box((1.0, 2.0, 3.5, 4.0), 0, "")]


def test_point_as_dict_keeps_image_and_label():
    obj = grounding_record()
    obj["points"] = [{"point": [5, 6], "image": 0, "label": "tip"}]
    assert parse_record(obj).points == [Point((5.0, 6.0), 0, "tip")]


def test_point_as_bare_list_is_on_image_zero():
    obj = grounding_record()
    obj["points"] = [[5, 6.5]]
    assert parse_record(obj).points == [Point((5.0, 6.5), 0, "")]


def test_mask_as_path_string_is_on_image_zero(tmp_path):
    obj = grounding_record()
    obj["masks"] = ["masks/m.png"]
    assert parse_record(obj, base_dir=tmp_path).masks == [Mask(tmp_path / "masks" / "m.png", 0, "")]


def test_mask_as_dict_keeps_image_and_label(tmp_path):
    obj = grounding_record()
    obj["masks"] = [{"path": "m.png", "image": 0, "label": "cup"}]
    assert parse_record(obj, base_dir=tmp_path).masks == [Mask(tmp_path / "m.png", 0, "cup")]


def test_integer_id_becomes_a_string():
    assert parse_record(grounding_record(rid=42)).id == "42"


def test_absolute_image_path_is_kept(tmp_path):
    absolute = tmp_path / "elsewhere" / "a.png"
    record = parse_record(grounding_record(image=str(absolute)), base_dir=tmp_path / "root")
    assert record.images == [absolute]


def test_message_with_string_content_is_accepted():
    obj = grounding_record()
    obj["messages"].insert(0, {"role": "system", "content": "You locate objects."})
    assert parse_record(obj).messages[0] == {"role": "system", "content": "You locate objects."}


# --- parse_record: structural errors name the field ------------------------------------------------------------


def test_missing_id_is_reported_on_field_id():
    obj = grounding_record()
    del obj["id"]
    assert _field_error(obj).field == "id"


def test_empty_id_is_reported_on_field_id():
    assert _field_error(grounding_record(rid="")).field == "id"


def test_missing_task_is_reported_on_field_task():
    obj = grounding_record()
    del obj["task"]
    assert _field_error(obj).field == "task"


def test_empty_messages_are_reported_on_field_messages():
    obj = grounding_record()
    obj["messages"] = []
    assert _field_error(obj).field == "messages"


def test_unknown_role_is_reported_on_the_message_role():
    obj = grounding_record()
    obj["messages"][0]["role"] = "narrator"
    error = _field_error(obj)
    assert error.field == "messages[0].role"
    assert "narrator" in error.message


def test_bad_content_part_is_reported_on_that_part():
    obj = grounding_record()
    obj["messages"][0]["content"][1] = {"type": "video"}
    assert _field_error(obj).field == "messages[0].content[1]"


def test_text_part_without_text_is_reported_on_that_part():
    obj = grounding_record()
    obj["messages"][0]["content"][1] = {"type": "text"}
    assert _field_error(obj).field == "messages[0].content[1]"


def test_images_not_a_list_are_reported_on_field_images():
    obj = grounding_record()
    obj["images"] = "a.png"
    assert _field_error(obj).field == "images"


def test_box_with_three_numbers_is_reported_on_its_bbox():
    obj = grounding_record()
    obj["boxes"] = [{"bbox": [1, 2, 3], "image": 0}]
    error = _field_error(obj)
    assert error.field == "boxes[0].bbox"
    assert "4 numbers" in error.message


def test_box_with_a_bool_is_reported_on_its_bbox():
    obj = grounding_record()
    obj["boxes"] = [{"bbox": [1, 2, True, 4], "image": 0}]
    assert _field_error(obj).field == "boxes[0].bbox"


def test_box_image_index_out_of_range_is_reported_on_its_image():
    obj = grounding_record()
    obj["boxes"][0]["image"] = 1
    error = _field_error(obj)
    assert error.field == "boxes[0].image"
    assert "1 image(s)" in error.message


def test_point_with_three_numbers_is_reported_on_its_point():
    obj = grounding_record()
    obj["points"] = [{"point": [1, 2, 3]}]
    assert _field_error(obj).field == "points[0].point"


def test_placeholder_beyond_the_boxes_is_reported_on_its_text():
    obj = grounding_record()
    obj["messages"][1]["content"][0]["text"] = "{box:3}"
    error = _field_error(obj)
    assert error.field == "messages[1].content[0].text"
    assert "{box:3}" in error.message


def test_point_placeholder_without_points_is_reported_on_its_string_content():
    obj = grounding_record()
    obj["messages"][1] = {"role": "assistant", "content": "It is at {point:0}."}
    assert _field_error(obj).field == "messages[1].content"


def test_fewer_image_placeholders_than_images_is_reported_on_messages():
    obj = grounding_record()
    obj["images"] = ["a.png", "b.png"]
    error = _field_error(obj)
    assert error.field == "messages"
    assert "1 image placeholder(s) but 2 image(s)" in error.message


def test_record_that_is_not_an_object_is_reported_on_the_record():
    assert _field_error(["not", "an", "object"]).field == "<record>"


# --- check_media ----------------------------------------------------------------------------------------------


def _checked(tmp_path: Path, obj: dict) -> RecordError:
    """The RecordError check_media raises for `obj` beside a drawn a.png."""
    draw_scene(tmp_path / "a.png", size=SIZE)
    record = parse_record(obj, file="d.jsonl", line=1, base_dir=tmp_path)
    with pytest.raises(RecordError) as info:
        check_media(record)
    return info.value


def test_check_media_fills_image_sizes_as_width_height(tmp_path):
    draw_scene(tmp_path / "a.png", size=SIZE)
    record = check_media(parse_record(grounding_record(), base_dir=tmp_path))
    assert record.image_sizes == [(160, 120)]


def test_check_media_accepts_geometry_on_the_image_border(tmp_path):
    draw_scene(tmp_path / "a.png", size=SIZE)
    obj = grounding_record(bbox=(0, 0, 160, 120))
    obj["points"] = [[160, 120]]
    assert check_media(parse_record(obj, base_dir=tmp_path)).image_sizes == [(160, 120)]


def test_point_outside_the_image_is_reported_on_the_point(tmp_path):
    obj = grounding_record()
    obj["points"] = [{"point": [170, 10]}]  # x beyond the width (160)
    assert _checked(tmp_path, obj).field == "points[0].point"


def test_point_below_the_image_is_reported_on_the_point(tmp_path):
    obj = grounding_record()
    obj["points"] = [[10, 130]]  # y beyond the height (120), though inside the width
    assert _checked(tmp_path, obj).field == "points[0].point"


def test_box_with_x1_not_below_x2_is_reported_on_the_bbox(tmp_path):
    error = _checked(tmp_path, grounding_record(bbox=(60, 30, 60, 80)))
    assert error.field == "boxes[0].bbox"
    assert "160×120" in error.message


def test_box_beyond_the_image_is_reported_on_the_bbox(tmp_path):
    assert _checked(tmp_path, grounding_record(bbox=(10, 30, 60, 121))).field == "boxes[0].bbox"


def test_mask_of_another_size_is_reported_on_the_mask_path(tmp_path):
    _mask(tmp_path / "m.png", size=(120, 160))  # transposed
    obj = grounding_record()
    obj["masks"] = ["m.png"]
    error = _checked(tmp_path, obj)
    assert error.field == "masks[0].path"
    assert "120×160" in error.message


def test_missing_mask_is_reported_on_the_mask_path(tmp_path):
    obj = grounding_record()
    obj["masks"] = [{"path": "nowhere.png"}]
    error = _checked(tmp_path, obj)
    assert error.field == "masks[0].path"
    assert "not found" in error.message


def test_missing_image_is_reported_on_the_image(tmp_path):
    record = parse_record(grounding_record(image="missing.png"), base_dir=tmp_path)
    with pytest.raises(RecordError) as info:
        check_media(record)
    assert info.value.field == "images[0]"


def test_unreadable_image_is_reported_on_the_image(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png")
    record = parse_record(grounding_record(), base_dir=tmp_path)
    with pytest.raises(RecordError) as info:
        check_media(record)
    assert info.value.field == "images[0]"
    assert "cannot read image" in info.value.message


def test_matching_mask_passes(tmp_path):
    draw_scene(tmp_path / "a.png", size=SIZE)
    _mask(tmp_path / "m.png")
    obj = grounding_record()
    obj["masks"] = ["m.png"]
    assert check_media(parse_record(obj, base_dir=tmp_path)).masks[0].path == tmp_path / "m.png"


# --- paths ----------------------------------------------------------------------------------------------------


def test_relative_image_path_resolves_against_the_file_folder(tmp_path):
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    draw_scene(folder / "img" / "a.png", size=SIZE)
    path = _write_jsonl(folder / "data.jsonl", [grounding_record(image="img/a.png")])
    [record] = read_records(path)
    assert record.images == [folder / "img" / "a.png"]
    assert record.image_sizes == [(160, 120)]


def test_relative_image_path_resolves_against_an_explicit_image_root(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    draw_scene(root / "a.png", size=SIZE)
    path = _write_jsonl(tmp_path / "data.jsonl", [grounding_record(image="a.png")])  # no a.png beside the file
    [record] = read_records(path, image_root=root)
    assert record.images == [root / "a.png"]


def test_relative_mask_path_resolves_against_an_explicit_image_root(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    draw_scene(root / "a.png", size=SIZE)
    _mask(root / "m.png")
    obj = grounding_record()
    obj["masks"] = ["m.png"]
    [record] = read_records(_write_jsonl(tmp_path / "data.jsonl", [obj]), image_root=root)
    assert record.masks[0].path == root / "m.png"


# --- scan_records / read_records -------------------------------------------------------------------------------


def test_scan_collects_one_error_per_bad_line_and_keeps_good_ones(tmp_path):
    draw_scene(tmp_path / "a.png", size=SIZE)
    no_task = grounding_record(rid="bad-task")
    del no_task["task"]
    path = _write_jsonl(
        tmp_path / "data.jsonl",
        [
            grounding_record(rid="good-1"),
            '{"id": "broken", ',  # malformed JSON
            no_task,
            grounding_record(rid="bad-box", bbox=(10, 30, 200, 80)),  # beyond the width: a media error
            grounding_record(rid="good-2"),
        ],
    )
    records, errors = scan_records(path)
    assert [r.id for r in records] == ["good-1", "good-2"]
    assert [(e.line, e.field) for e in errors] == [(2, "<json>"), (3, "task"), (4, "boxes[0].bbox")]
    assert all(e.file == str(path) for e in errors)


def test_scan_reports_duplicate_id_with_the_line_of_the_first(tmp_path):
    draw_scene(tmp_path / "a.png", size=SIZE)
    path = _write_jsonl(
        tmp_path / "data.jsonl", [grounding_record(rid="x"), grounding_record(rid="y"), grounding_record(rid="x")]
    )
    records, [error] = scan_records(path)
    assert [r.id for r in records] == ["x", "y"]
    assert (error.line, error.field) == (3, "id")
    assert "first on line 1" in error.message


def test_scan_skips_blank_lines_but_counts_them_in_line_numbers(tmp_path):
    draw_scene(tmp_path / "a.png", size=SIZE)
    path = _write_jsonl(tmp_path / "data.jsonl", ["", grounding_record(rid="a"), "   ", "", grounding_record(rid="")])
    records, [error] = scan_records(path)
    assert [r.id for r in records] == ["a"]
    assert records[0].source == (str(path), 2)
    assert (error.line, error.field) == (5, "id")


def test_scan_without_image_check_does_not_open_images(tmp_path):
    path = _write_jsonl(tmp_path / "data.jsonl", [grounding_record(image="missing.png")])
    records, errors = scan_records(path, check_images=False)
    assert errors == []
    assert records[0].image_sizes == []


def test_scan_of_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan_records(tmp_path / "absent.jsonl")


def test_read_records_raises_the_first_error(tmp_path):
    draw_scene(tmp_path / "a.png", size=SIZE)
    path = _write_jsonl(
        tmp_path / "data.jsonl",
        [grounding_record(rid="ok"), grounding_record(rid=""), grounding_record(rid="far", bbox=(0, 0, 999, 10))],
    )
    with pytest.raises(RecordError) as info:
        read_records(path)
    assert (info.value.line, info.value.field) == (2, "id")
    assert str(info.value) == f"{path}:2: field 'id': required: a non-empty string"


def test_read_records_returns_checked_records_of_a_clean_file(tmp_path):
    draw_scene(tmp_path / "a.png", size=SIZE)
    path = _write_jsonl(tmp_path / "data.jsonl", [grounding_record(rid="a"), grounding_record(rid="b")])
    records = read_records(path)
    assert [(r.id, r.image_sizes, r.source) for r in records] == [
        ("a", [(160, 120)], (str(path), 1)),
        ("b", [(160, 120)], (str(path), 2)),
    ]


def test_parse_does_not_copy_or_change_the_messages():
    obj = grounding_record()
    before = copy.deepcopy(obj)
    parse_record(obj)
    assert obj == before


# --- malformed mask fields ------------------------------------------------------------------------------------


def test_mask_with_non_integer_image_is_a_record_error_in_scan(tmp_path):
    draw_scene(tmp_path / "a.png", size=SIZE)
    obj = grounding_record(rid="m")
    obj["masks"] = [{"path": "m.png", "image": "first"}]
    records, errors = scan_records(_write_jsonl(tmp_path / "data.jsonl", [obj, grounding_record(rid="ok")]))
    assert [r.id for r in records] == ["ok"]
    assert [(e.line, e.field) for e in errors] == [(1, "masks[0].image")]


def test_masks_not_a_list_are_reported_on_field_masks():
    obj = grounding_record()
    obj["masks"] = "m.png"
    assert _field_error(obj).field == "masks"


# --- unknown top-level keys ---------------------------------------------------------------------------------------


def test_a_misspelt_key_is_an_error_naming_it_and_the_closest_known_key():
    obj = grounding_record()
    obj["boxs"] = obj.pop("boxes")
    obj["messages"][1]["content"][0]["text"] = "here"
    error = _field_error(obj, file="d.jsonl", line=4)
    assert str(error).startswith("d.jsonl:4: field 'boxs': unknown field (did you mean 'boxes'?)")
    assert "'meta'" in error.message


def test_an_unknown_key_nothing_is_close_to_points_to_meta():
    error = _field_error({**grounding_record(), "difficulty": 2})
    assert error.field == "difficulty" and "did you mean" not in error.message and "meta" in error.message


def test_hoi_benchmark_fields_may_ride_along_at_the_top_level():
    obj = {**grounding_record(), "file_name": "a.png", "width": 160, "height": 120, "gt_box_inds": [0, 0], "num_pairs": 1}
    assert parse_record(obj).boxes == [Box((10.0, 30.0, 60.0, 80.0), 0, "red square")]


# --- refer_boxes ----------------------------------------------------------------------------------------------------


def test_refer_boxes_as_bare_boxes_are_one_group_each_on_image_0():
    # the shape hoi-boxes writes: [person, object, interaction] of each pair, one box per referred region
    obj = {**grounding_record(), "refer_boxes": [[10, 30, 60, 80], [20, 40, 50, 70], [10, 30, 60, 80]]}
    groups = parse_record(obj).refer_boxes
    assert groups == [ReferGroup(((10.0, 30.0, 60.0, 80.0),)), ReferGroup(((20.0, 40.0, 50.0, 70.0),)), ReferGroup(((10.0, 30.0, 60.0, 80.0),))]


def test_refer_boxes_as_lists_of_boxes_are_groups_on_image_0():
    # the source pipeline's shape: [[person_box], [object_box], [interaction_box]]
    obj = {**grounding_record(), "refer_boxes": [[[10, 30, 60, 80]], [[20, 40, 50, 70], [1, 2, 3, 4]]]}
    assert parse_record(obj).refer_boxes[1] == ReferGroup(((20.0, 40.0, 50.0, 70.0), (1.0, 2.0, 3.0, 4.0)), 0, "")


def test_refer_boxes_as_objects_name_their_image_and_label():
    obj = {**grounding_record(), "refer_boxes": [{"boxes": [[10, 30, 60, 80]], "image": 0, "label": "riding"}]}
    assert parse_record(obj).refer_boxes == [ReferGroup(((10.0, 30.0, 60.0, 80.0),), 0, "riding")]


@pytest.mark.parametrize(
    "refer_boxes, field",
    [
        ([[10, 30, 60]], "refer_boxes[0]"),
        ([[10, 30, float("nan"), 80]], "refer_boxes[0]"),
        ([[10, 30, 10**400, 80]], "refer_boxes[0]"),
        ([[60, 30, 10, 80]], "refer_boxes[0]"),
        ([[[10, 30, 60, 80], [5, 5, 5, 9]]], "refer_boxes[0][1]"),
        ([{"boxes": [], "image": 0}], "refer_boxes[0].boxes"),
        ([{"boxes": [[10, 30, 60, "80"]]}], "refer_boxes[0].boxes[0]"),
        ([{"boxes": [[10, 30, 60, 80]], "image": 1}], "refer_boxes[0].image"),
        (["person"], "refer_boxes[0]"),
        ({"boxes": []}, "refer_boxes"),
    ],
    ids=["three-numbers", "nan", "huge-integer", "x1-after-x2", "x1-equals-x2-in-a-group", "empty-group", "string-number", "image-out-of-range",
         "not-a-box", "not-a-list"],
)
def test_a_bad_refer_box_is_reported_on_its_field(refer_boxes, field):
    assert _field_error({**grounding_record(), "refer_boxes": refer_boxes}).field == field


def test_a_refer_box_outside_its_image_is_reported_by_check_media(tmp_path):
    error = _checked(tmp_path, {**grounding_record(), "refer_boxes": [[10, 30, 60, 80], [100, 50, 170, 90]]})
    assert error.field == "refer_boxes[1]"
    assert "is not inside image 0 (160×120)" in error.message


# --- chosen / rejected ----------------------------------------------------------------------------------------------


def _pair(chosen, rejected) -> dict:
    return {**grounding_record(), "chosen": chosen, "rejected": rejected}


def test_a_string_answer_is_one_assistant_message():
    record = parse_record(_pair("{box:0}", [{"role": "assistant", "content": "not {box:0}"}]))
    assert record.chosen == [{"role": "assistant", "content": [{"type": "text", "text": "{box:0}"}]}]
    assert record.rejected == [{"role": "assistant", "content": "not {box:0}"}]


@pytest.mark.parametrize(
    "chosen, rejected, field",
    [
        ("{box:0}", None, "rejected"),
        (None, "{box:0}", "chosen"),
        ("", "no", "chosen"),
        ([{"role": "user", "content": "hi"}], "no", "chosen[0].role"),
        ([{"role": "assistant", "content": [{"type": "image"}]}], "no", "chosen[0].content[0]"),
        ("yes", [], "rejected"),
        ("yes", 3, "rejected"),
        ("yes", "at {box:1}", "rejected"),
        ("yes", [{"role": "assistant", "content": [{"type": "text", "text": "at {point:0}"}]}], "rejected[0].content[0].text"),
    ],
    ids=["no-rejected", "no-chosen", "empty-string", "user-turn", "image-part", "empty-list", "number", "box-beyond-string",
         "point-beyond-part"],
)
def test_a_bad_preference_pair_is_reported_on_its_field(chosen, rejected, field):
    obj = {k: v for k, v in _pair(chosen, rejected).items() if v is not None}
    assert _field_error(obj).field == field


def test_a_preference_prompt_must_hold_every_image():
    obj = _pair("yes", "no")
    obj["images"] = ["a.png", "a.png"]
    obj["messages"][1]["content"].insert(0, {"type": "image"})  # the second image sits in the reference answer
    error = _field_error(obj)
    assert error.field == "messages" and "preference prompt" in error.message


def test_counts_in_messages_read_as_words():
    from spatialtune.records import count_of

    assert (count_of(0, "point"), count_of(1, "box"), count_of(2, "box")) == ("0 points", "1 box", "2 boxes")
