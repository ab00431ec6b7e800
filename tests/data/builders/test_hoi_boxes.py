"""hoi-boxes: [person, object, interaction] groups per HOI pair, union boxes, clipping, renumbered placeholders, skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import draw_scene
from spatialtune.cli import app
from spatialtune.data.builders import BuildError, run_builder
from spatialtune.data.builders.hoi_boxes import HoiBoxesSettings
from spatialtune.geometry import interaction_box
from spatialtune.records import read_records

SIZE = (500, 450)  # (width, height) of the fixture images
PERSON, OBJECT = [100, 100, 300, 400], [250, 200, 450, 350]


def chat(question: str, answer: str) -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def referring(rid: str, person=PERSON, obj=OBJECT, image: str = "a.png", **extra) -> dict:
    """A referring record as the hoi-referring benchmark lays it out: boxes labelled person, then the object."""
    return {
        "id": rid, "task": "referring", "images": [image],
        "messages": chat("Person: {box:0}\nObject: {box:1}\nWhat is the person doing?", "riding bicycle"),
        "boxes": [{"bbox": person, "image": 0, "label": "person"}, {"bbox": obj, "image": 0, "label": "bicycle"}],
        "answer": ["riding bicycle"], **extra,
    }


def grounding(rid: str, boxes: list, pairs: list, answer: str, **extra) -> dict:
    """A grounding record with bare pixel boxes and its pairs in meta.hoi_pairs (hoi-spatial-sft's layout)."""
    return {
        "id": rid, "task": "grounding", "images": ["a.png"], "messages": chat("Find every person holding an umbrella.", answer),
        "boxes": boxes, "meta": {"hoi_pairs": pairs}, **extra,
    }


def write_input(folder: Path, records: list, name: str = "hoi.jsonl") -> Path:
    """The records (dicts, or raw strings for malformed lines) beside the 500×450 image `a.png`."""
    folder.mkdir(parents=True, exist_ok=True)
    draw_scene(folder / "a.png", size=SIZE, box=(100, 100, 300, 400))
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def build(tmp_path: Path, records: list, **settings) -> tuple[list[dict], dict]:
    """Run hoi-boxes on the records; (output records, stats)."""
    path = write_input(tmp_path / "in", records)
    stats = run_builder("hoi-boxes", HoiBoxesSettings(input=str(path), **settings), tmp_path / "out")
    lines = (tmp_path / "out" / "hoi.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], stats


def refer_boxes(record: dict) -> list[list[float]]:
    """The one box of each refer_boxes group of an output record."""
    return [group["boxes"][0] for group in record["refer_boxes"]]


def test_interaction_box_is_the_union_of_person_and_object():
    assert interaction_box(PERSON, OBJECT) == [100, 100, 450, 400]


def test_each_pair_becomes_person_object_interaction_in_boxes_and_refer_boxes(tmp_path):
    [record], _ = build(tmp_path, [referring("r")])
    assert [b["label"] for b in record["boxes"]] == ["person", "object", "interaction"]
    assert [b["bbox"] for b in record["boxes"]] == [PERSON, OBJECT, [100, 100, 450, 400]]
    assert refer_boxes(record) == [PERSON, OBJECT, [100, 100, 450, 400]]
    assert record["meta"]["hoi_pairs"] == [[0, 1]]


def test_each_group_is_labelled_and_on_its_pairs_image(tmp_path):
    record_in = grounding("g", [{"bbox": PERSON, "image": 1}, {"bbox": OBJECT, "image": 1}], [[0, 1]], "{box:0} {box:1}")
    record_in["images"] = ["a.png", "a.png"]
    record_in["messages"][0]["content"].insert(1, {"type": "image"})
    [record], _ = build(tmp_path, [record_in])
    assert [(g["label"], g["image"]) for g in record["refer_boxes"]] == [("person", 1), ("object", 1), ("interaction", 1)]


def test_every_pair_gets_its_own_group_and_placeholders_follow_their_boxes(tmp_path):
    person, umbrella_a, umbrella_b = [10, 10, 200, 400], [150, 20, 300, 120], [180, 300, 480, 440]
    answer = '[{"person_bbox": {box:0}, "object_bbox": {box:1}}, {"person_bbox": {box:0}, "object_bbox": {box:2}}]'
    record_in = grounding("g", [person, umbrella_a, umbrella_b], [[0, 1], [0, 2]], answer, gt_box_inds=[0, 1, 0, 2])
    [record], stats = build(tmp_path, [record_in])
    assert [b["label"] for b in record["boxes"]] == ["person", "object", "interaction"] * 2
    assert refer_boxes(record) == [person, umbrella_a, [10, 10, 300, 400], person, umbrella_b, [10, 10, 480, 440]]
    assert record["messages"][1]["content"][0]["text"] == answer.replace("{box:2}", "{box:4}")
    assert record["gt_box_inds"] == [0, 1, 0, 4] and record["meta"]["hoi_pairs"] == [[0, 1], [3, 4]]
    assert stats["refer_groups"] == 2


def test_boxes_not_in_a_pair_are_kept_after_the_groups(tmp_path):
    record_in = referring("r")
    record_in["boxes"] = [{"bbox": [0, 0, 50, 50], "image": 0, "label": "cup"}] + record_in["boxes"]
    record_in["meta"] = {"hoi_pairs": [[1, 2]]}
    record_in["messages"] = chat("Person {box:1}, bicycle {box:2}, cup {box:0}?", "riding bicycle")
    [record], _ = build(tmp_path, [record_in])
    assert [b["label"] for b in record["boxes"]] == ["person", "object", "interaction", "cup"]
    assert record["messages"][0]["content"][1]["text"] == "Person {box:0}, bicycle {box:1}, cup {box:3}?"


def test_a_box_reaching_outside_the_image_is_clipped_and_counted(tmp_path):
    [record], stats = build(tmp_path, [referring("r", obj=[400, 300, 600, 500])])
    assert refer_boxes(record)[1] == [400, 300, 500, 450]
    assert refer_boxes(record)[2] == [100, 100, 500, 450]
    assert stats["clipped_boxes"] == 1 and stats["skipped"] == {}
    assert "[400, 300, 600, 500] → [400, 300, 500, 450]" in stats["clipped_examples"][0]


def test_a_pair_with_a_dropped_box_is_dropped_and_the_record_keeps_its_other_pairs(tmp_path):
    person, inside, outside = [10, 10, 200, 400], [150, 20, 300, 120], [600, 500, 700, 600]
    record_in = grounding("g", [person, inside, outside], [[0, 1], [0, 2]], "{box:0} {box:1}")
    [record], stats = build(tmp_path, [record_in])
    assert refer_boxes(record) == [person, inside, [10, 10, 300, 400]]
    assert stats["skipped"] == {"box_outside_image": 1}


def test_an_index_field_naming_a_dropped_box_skips_the_record(tmp_path):
    # box 2 is dropped, so its pair goes; renumbering gt_box_inds would make its "2" point at pair 0's interaction box
    person, inside, outside = [10, 10, 200, 400], [150, 20, 300, 120], [600, 500, 700, 600]
    record_in = grounding("g", [person, inside, outside], [[0, 1], [0, 2]], "{box:0} {box:1}", gt_box_inds=[0, 1, 0, 2], num_pairs=2)
    records, stats = build(tmp_path, [record_in, referring("good", person_box_idx=0, object_box_idx=1)])
    assert [r["id"] for r in records] == ["good"] and records[0]["person_box_idx"] == 0 and records[0]["object_box_idx"] == 1
    assert stats["skipped"] == {"box_outside_image": 1, "field_names_dropped_box": 1}


def test_relative_mask_paths_are_made_absolute_and_pass_data_check(tmp_path):
    record_in = referring("r", masks=[{"path": "m.png", "image": 0, "label": "person"}, "m.png"])
    path = write_input(tmp_path / "in", [record_in])
    draw_scene(tmp_path / "in" / "m.png", size=SIZE, box=(100, 100, 300, 400))
    run_builder("hoi-boxes", HoiBoxesSettings(input=str(path)), tmp_path / "out")
    [record] = read_records(tmp_path / "out" / "hoi.jsonl")  # opens every image and mask
    assert [m.path for m in record.masks] == [(tmp_path / "in" / "m.png").resolve()] * 2 and record.masks[0].label == "person"


def test_a_pair_across_two_images_is_dropped_and_counted(tmp_path):
    record_in = grounding("g", [PERSON, OBJECT, {"bbox": OBJECT, "image": 1}], [[0, 1], [0, 2]], "{box:0} {box:1}")
    record_in["images"] = ["a.png", "a.png"]
    record_in["messages"][0]["content"].insert(1, {"type": "image"})
    [record], stats = build(tmp_path, [record_in])
    assert refer_boxes(record) == [PERSON, OBJECT, [100, 100, 450, 400]] and stats["skipped"] == {"pair_across_images": 1}


@pytest.mark.parametrize(
    "record, reason",
    [
        (referring("r", obj=[600, 500, 700, 600]), "text_shows_dropped_box"),  # the prompt shows the dropped object box
        (referring("r", obj=[300, 100, 250, 400]), "text_shows_dropped_box"),  # x1 > x2
        (referring("r", image="missing.png"), "missing_image"),
        (referring("r", image="broken.png"), "unreadable_image"),
        (referring("r", refer_boxes=[PERSON, OBJECT, PERSON]), "already_has_refer_boxes"),
        (referring("r", meta={"hoi_pairs": [[0, 5]]}), "invalid_hoi_pairs"),
        ({**referring("r"), "boxes": [{"bbox": OBJECT, "image": 0, "label": "bicycle"}], "messages": chat("What?", "riding bicycle")}, "no_hoi_pairs"),
        ({"id": "r", "task": "referring", "images": ["a.png"]}, "invalid_record"),
    ],
    ids=["outside", "inverted", "missing-image", "unreadable-image", "already-linked", "bad-hoi-pairs", "no-pairs", "invalid-record"],
)
def test_a_bad_record_is_a_counted_skip(tmp_path, record, reason):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    records, stats = build(tmp_path, [record, referring("good")])
    assert [r["id"] for r in records] == ["good"]
    assert stats["skipped"][reason] == 1 and stats["skip_examples"][reason]


def test_dropped_boxes_are_counted_by_reason(tmp_path):
    records, stats = build(tmp_path, [referring("a", obj=[600, 500, 700, 600]), referring("b", obj=[300, 100, 250, 400]), referring("ok")])
    assert stats["skipped"] == {"box_outside_image": 1, "invalid_box": 1, "text_shows_dropped_box": 2} and [r["id"] for r in records] == ["ok"]


def test_an_input_with_no_usable_record_is_an_error_listing_the_skips(tmp_path):
    with pytest.raises(BuildError, match="no usable item.*box_outside_image: 1, invalid_box: 1, text_shows_dropped_box: 2"):
        build(tmp_path, [referring("a", obj=[600, 500, 700, 600]), referring("b", obj=[300, 100, 250, 400])])


def test_a_repeated_id_is_a_counted_skip(tmp_path):
    records, stats = build(tmp_path, [referring("r"), referring("r", person=[0, 0, 10, 10])])
    assert len(records) == 1 and refer_boxes(records[0])[0] == PERSON and stats["skipped"] == {"duplicate_id": 1}


def test_a_line_that_is_not_json_is_an_error_naming_file_and_line(tmp_path):
    with pytest.raises(BuildError, match=r"hoi\.jsonl:2: invalid JSON"):
        build(tmp_path, [referring("r"), "{not json"])


def test_a_missing_input_file_is_an_error(tmp_path):
    with pytest.raises(BuildError, match="nowhere.jsonl: HOI record file not found"):
        run_builder("hoi-boxes", HoiBoxesSettings(input=str(tmp_path / "nowhere.jsonl")), tmp_path / "out")


def test_num_samples_keeps_a_seeded_subset_in_input_order(tmp_path):
    records, _ = build(tmp_path, [referring(f"r{i}") for i in range(10)], num_samples=4, seed=1)
    ids = [r["id"] for r in records]
    assert len(ids) == 4 and ids == sorted(ids, key=lambda s: int(s[1:]))


def test_output_is_identical_for_one_and_four_workers(tmp_path):
    records = [referring(f"r{i}", obj=[250, 200, 450 + 20 * i, 350]) for i in range(6)]
    path = write_input(tmp_path / "in", records)
    for workers in (1, 4):
        run_builder("hoi-boxes", HoiBoxesSettings(input=str(path), workers=workers), tmp_path / f"w{workers}")
    assert (tmp_path / "w1" / "hoi.jsonl").read_bytes() == (tmp_path / "w4" / "hoi.jsonl").read_bytes()


def test_cli_build_gives_records_that_pass_validation_and_data_check(tmp_path):
    path = write_input(tmp_path / "in", [referring("r"), grounding("g", [PERSON, OBJECT], [[0, 1]], "{box:0} {box:1}")])
    runner = CliRunner()
    result = runner.invoke(app, ["data", "build", "hoi-boxes", "--input", str(path), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    records = read_records(tmp_path / "out" / "hoi.jsonl")
    assert [len(r.boxes) for r in records] == [3, 3]
    check = runner.invoke(app, ["data", "check", str(tmp_path / "out" / "hoi.jsonl"), "--model", "tiny-qwen3-vl"])
    assert check.exit_code == 0, check.output
