"""cof-tool-sft: the exact seeded tool quota, conversations in the tool dialect (the crop comes back in a `role: "tool"`
message), real crops referenced as the second image, crop calls the eval runner reads back over image 0, padded crop
boxes clipped to the image, and every bad input's outcome."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.data.builders import BuildError, run_builder
from spatialtune.data.builders.cof_tool_sft import CofToolSettings, crop_region, tool_count
from spatialtune.records import read_records

SIZE = (240, 180)
PERSON, CUP = [60, 30, 120, 170], [110, 80, 140, 110]


def referring(rid: str, person=PERSON, obj=CUP, image: str = "a.png", **extra) -> dict:
    """A referring record as hoi-spatial-sft writes it: bare pixel boxes, the pair in meta.hoi_pairs."""
    return {
        "id": rid, "task": "referring", "images": [image],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Person {box:0}, object {box:1}: what action?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "holding cup"}]},
        ],
        "boxes": [person, obj], "answer": ["holding cup"],
        "meta": {"hoi_pairs": [[0, 1]], "object_category": "cup", **extra.pop("meta", {})}, **extra,
    }


def write_input(folder: Path, records: list, name: str = "referring.jsonl") -> Path:
    """The records (dicts, or raw strings) beside `a.png`, a 240×180 image of random pixels (crops are compared exactly)."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def build(tmp_path: Path, records: list, **settings) -> tuple[list[dict], dict]:
    path = write_input(tmp_path / "in", records)
    stats = run_builder("cof-tool-sft", CofToolSettings(input=[str(path)], **settings), tmp_path / "out")
    return [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()], stats


def many(n: int) -> list[dict]:
    return [referring(f"r{i:02d}", person=[60 + i % 5, 30, 120, 170]) for i in range(n)]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[dict], dict]:
    root = tmp_path_factory.mktemp("cof")
    records, stats = build(root, many(20))
    return root, records, stats


def tool_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r["meta"]["uses_tool"]]


# ---------------------------------------------------------------- quota


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_exactly_round_ratio_times_n_records_use_the_tool_for_every_seed(tmp_path, seed):
    records, stats = build(tmp_path, many(20), seed=seed)
    assert len(tool_records(records)) == round(0.35 * 20) == 7
    assert stats["tool_quota"] == {"records": 20, "with_tool": 7, "direct": 13, "requested_ratio": 0.35, "realised_ratio": 0.35}
    assert stats["labels"]["train.jsonl"]["referring"] == {"direct": 13, "tool": 7}


def test_the_seed_chooses_which_records_use_the_tool(tmp_path):
    chosen = [{r["id"] for r in tool_records(build(tmp_path / str(seed), many(20), seed=seed)[0])} for seed in range(3)]
    assert chosen[0] != chosen[1] != chosen[2]


@pytest.mark.parametrize("ratio, n, expected", [(0.35, 20, 7), (0.5, 9, 5), (0.35, 10, 4), (0.25, 2, 1), (0.0, 5, 0), (1.0, 5, 5), (0.35, 0, 0)])
def test_the_quota_is_rounded_half_up(ratio, n, expected):
    assert tool_count(ratio, n) == expected


def test_the_quota_counts_only_records_that_are_kept(tmp_path):
    records, stats = build(tmp_path, many(10) + [referring("bad", image="missing.png")], tool_ratio=0.5)
    assert len(records) == 10 and len(tool_records(records)) == 5 and stats["skipped"] == {"missing_image": 1}


def test_num_samples_takes_a_seeded_subset_before_the_quota(tmp_path):
    records, stats = build(tmp_path, many(20), num_samples=8)
    assert len(records) == 8 and len(tool_records(records)) == 3 and stats["tool_quota"]["with_tool"] == 3


# ---------------------------------------------------------------- the conversation


def test_every_record_declares_the_crop_tool_in_the_eval_runners_system_prompt(built):
    from spatialtune.tools.crop import crop_system_prompt

    _, records, _ = built
    for record in records:
        assert record["messages"][0] == {"role": "system", "content": [{"type": "text", "text": crop_system_prompt()}]}
        assert record["meta"]["tools"] == ["crop"]


def test_a_direct_record_thinks_then_answers_the_original_answer(built):
    from spatialtune.answers.parse import final_answer  # the eval's reading of a reply

    _, records, _ = built
    direct = next(r for r in records if not r["meta"]["uses_tool"])
    assert [m["role"] for m in direct["messages"]] == ["system", "user", "assistant"] and len(direct["images"]) == 1
    text = direct["messages"][2]["content"][0]["text"]
    assert re.fullmatch(r"<think>[^<]+</think>\n<answer>holding cup</answer>", text) and final_answer(text) == "holding cup"


def test_a_tool_record_calls_crop_then_sees_the_crop_in_a_tool_message_and_answers(built):
    from spatialtune.tools.crop import ZOOMED_TEXT

    _, records, _ = built
    record = tool_records(records)[0]
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    call = r'<tool_call>\n\{"name": "crop", "arguments": \{"bbox": \{box:2\}\}\}\n</tool_call>'  # the templates' spacing
    assert re.fullmatch(r"<think>[^<]+</think>\n" + call, record["messages"][2]["content"][0]["text"])
    assert record["messages"][3] == {"role": "tool", "name": "crop", "content": [{"type": "image"}, {"type": "text", "text": ZOOMED_TEXT}]}
    assert re.fullmatch(r"<think>[^<]+</think>\n<answer>holding cup</answer>", record["messages"][4]["content"][0]["text"])
    assert record["boxes"][2] == {"bbox": record["meta"]["crop_box"], "image": 0, "label": "crop"}


def test_the_crop_is_the_real_image_region_written_as_the_second_image(built):
    root, records, _ = built
    for record in tool_records(records):
        crop_file = root / "out" / record["images"][1]
        assert record["images"][1].startswith("crops/") and crop_file.is_file()
        with Image.open(record["images"][0]) as original, Image.open(crop_file) as crop:
            assert np.array_equal(np.asarray(crop), np.asarray(original.convert("RGB").crop(tuple(record["meta"]["crop_box"]))))


def test_the_eval_runner_reads_the_rendered_call_back_to_the_crop_box(built):
    from spatialtune.data.render import GeometryRenderer, record_to_row
    from spatialtune.geometry import Convention
    from spatialtune.tools.crop import TOOLS, ToolSettings, crop_box_pixel
    from spatialtune.tools.protocol import parse_tool_call

    root, _, _ = built
    for convention in (Convention.QWEN3_1000, Convention.QWEN25_ABS):
        renderer = GeometryRenderer(convention)
        for record in (r for r in read_records(root / "out" / "train.jsonl") if r.meta["uses_tool"]):
            row = record_to_row(record, renderer)
            call = parse_tool_call(row["messages"][2]["content"][0]["text"], TOOLS)
            read_back = crop_box_pixel(call["arguments"]["bbox"], renderer.frame(record, 0), convention, ToolSettings().min_size)
            assert all(abs(a - b) <= 1 for a, b in zip(read_back, record.meta["crop_box"])), (read_back, record.meta["crop_box"])


def test_relative_mask_paths_are_made_absolute(tmp_path):
    path = write_input(tmp_path / "in", [referring("r", masks=["m.png"])])
    Image.new("L", SIZE, 255).save(tmp_path / "in" / "m.png")
    run_builder("cof-tool-sft", CofToolSettings(input=[str(path)], tool_ratio=1.0), tmp_path / "out")
    [record] = read_records(tmp_path / "out" / "train.jsonl")  # opens every image and mask
    assert [m.path for m in record.masks] == [(tmp_path / "in" / "m.png").resolve()]


def test_the_crop_box_is_the_padded_union_of_the_pair_clipped_to_the_image():
    assert crop_region([PERSON, CUP], 240, 180, 0.25, 28) == (40, 0, 160, 180)  # union [60,30,140,170] ± 20 / 35, clipped at 0 and 180
    assert crop_region([PERSON, CUP], 240, 180, 0.0, 28) == (60, 30, 140, 170)


def test_a_small_crop_grows_to_the_runners_smallest_side_inside_the_image():
    assert crop_region([[0, 0, 10, 10]], 240, 180, 0.1, 28) == (0, 0, 28, 28)
    assert crop_region([[0, 0, 10, 10]], 20, 180, 0.1, 28) is None


def test_grounding_crops_cover_every_pair(tmp_path):
    other_person, other_cup = [180, 20, 230, 160], [170, 60, 190, 80]
    record = referring("g", task="grounding", meta={"hoi_pairs": [[0, 1], [2, 3]]})
    record["boxes"] = [PERSON, CUP, other_person, other_cup]
    records, _ = build(tmp_path, [record], tool_ratio=1.0, crop_padding=0.0)
    assert records[0]["meta"]["crop_box"] == [60, 20, 230, 170]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "record, reason",
    [
        (referring("r", meta={"tools": ["crop"]}), "already_tool_record"),
        ({**referring("r"), "images": ["a.png", "a.png"], "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "holding cup"}]}]}, "not_single_image"),
        ({**referring("r"), "messages": [{"role": "system", "content": "Be brief."}, *referring("r")["messages"]]}, "not_single_turn"),
        (referring("r", meta={"hoi_pairs": [[0, 7]]}), "invalid_hoi_pairs"),
        ({**referring("r"), "meta": {}}, "no_hoi_pairs"),
        (referring("r", image="missing.png"), "missing_image"),
        (referring("r", image="broken.png"), "unreadable_image"),
        (referring("r", obj=[140, 110, 110, 80]), "invalid_box"),
        (referring("r", obj=[200, 100, 300, 200]), "box_outside_image"),
        (referring("r", image="tiny.png", person=[0, 0, 10, 10], obj=[5, 5, 15, 15]), "image_too_small"),
        ({"id": "r", "task": "referring"}, "invalid_record"),
    ],
    ids=["already-tool", "two-images", "system-turn", "bad-pairs", "no-pairs", "missing-image", "unreadable-image", "inverted-box",
         "outside-box", "tiny-image", "invalid-record"],
)
def test_a_bad_record_is_a_counted_skip(tmp_path, record, reason):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (20, 20)).save(tmp_path / "in" / "tiny.png")
    records, stats = build(tmp_path, [record, referring("good")])
    assert [r["id"] for r in records] == ["good"]
    assert stats["skipped"] == {reason: 1} and stats["skip_examples"][reason]


def test_a_repeated_id_across_input_files_is_a_counted_skip(tmp_path):
    first = write_input(tmp_path / "in", [referring("r")], "a.jsonl")
    second = write_input(tmp_path / "in", [referring("r")], "b.jsonl")
    stats = run_builder("cof-tool-sft", CofToolSettings(input=[str(first), str(second)]), tmp_path / "out")
    assert stats["skipped"] == {"duplicate_id": 1} and stats["tool_quota"]["records"] == 1


@pytest.mark.parametrize("settings, message", [({"tool_ratio": 1.5}, "--tool-ratio"), ({"crop_padding": -0.1}, "--crop-padding")])
def test_settings_that_cannot_work_are_errors(tmp_path, settings, message):
    with pytest.raises(BuildError, match=message):
        build(tmp_path, [referring("r")], **settings)


def test_a_line_that_is_not_json_is_an_error_naming_file_and_line(tmp_path):
    with pytest.raises(BuildError, match=r"referring\.jsonl:2: invalid JSON"):
        build(tmp_path, [referring("r"), "{oops"])


# ---------------------------------------------------------------- contract


def test_output_is_identical_for_one_and_four_workers(tmp_path):
    path = write_input(tmp_path / "in", many(12))
    for workers in (1, 4):
        run_builder("cof-tool-sft", CofToolSettings(input=[str(path)], workers=workers, seed=5), tmp_path / f"w{workers}")
    files = sorted(p.relative_to(tmp_path / "w1") for p in (tmp_path / "w1").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "w4") for p in (tmp_path / "w4").rglob("*") if p.is_file())
    assert all((tmp_path / "w1" / f).read_bytes() == (tmp_path / "w4" / f).read_bytes() for f in files)


def test_cli_build_gives_records_that_pass_validation_and_data_check(tmp_path):
    path = write_input(tmp_path / "in", many(6))
    runner = CliRunner()
    result = runner.invoke(app, ["data", "build", "cof-tool-sft", "--input", str(path), "--tool-ratio", "0.5", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    records = read_records(tmp_path / "out" / "train.jsonl")
    assert sum(r.meta["uses_tool"] for r in records) == 3 and all(len(r.images) == 1 + r.meta["uses_tool"] for r in records)
    check = runner.invoke(app, ["data", "check", str(tmp_path / "out" / "train.jsonl"), "--model", "tiny-qwen3-vl", "--batch-size", "6"])
    assert check.exit_code == 0, check.output
