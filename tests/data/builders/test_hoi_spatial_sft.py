"""hoi-spatial-sft: HICO-DET (QPIC/CDN JSON) → referring and grounding records, balanced over verbs, scorable by the
hoi-referring / hoi-grounding benchmarks; every bad input's outcome."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.data.builders import BuildError, run_builder
from spatialtune.data.builders.cof_tool_sft import CofToolSettings
from spatialtune.data.builders.hoi_boxes import HoiBoxesSettings
from spatialtune.data.builders.hoi_spatial_sft import HoiSpatialSettings, balanced_pick, gerund
from spatialtune.records import read_records

SIZE = (200, 160)
VERBS_TXT = "verb_id  verb_name\n------------------\n01  hold\n02  ride\n03  sit_on\n04  no_interaction\n05  carry\n"
OBJECTS = {"1": "person", "2": "bicycle", "15": "bench", "28": "umbrella", "47": "cup"}  # COCO ids, as QPIC/CDN use
P1, BIKE = [40, 10, 100, 120], [30, 70, 130, 150]


def annotation(boxes: list[tuple[list, int]], hois: list[tuple[int, int, int]], file_name: str) -> dict:
    """One QPIC/CDN image entry: (bbox, object id) annotations and (subject, object, verb id) HOIs."""
    return {
        "file_name": file_name, "img_id": 1,
        "annotations": [{"bbox": b, "category_id": c} for b, c in boxes],
        "hoi_annotation": [{"subject_id": s, "object_id": o, "category_id": v} for s, o, v in hois],
    }


ENTRIES = [
    annotation([(P1, 1), (BIKE, 2)], [(0, 1, 2), (0, 1, 1)], "HICO_train2015_00000001.jpg"),  # riding + holding one bicycle
    annotation([([10, 20, 60, 150], 1), ([50, 60, 70, 80], 47), ([120, 20, 180, 150], 1), ([110, 60, 134, 84], 47)], [(0, 1, 1), (2, 3, 1)],
               "HICO_train2015_00000002.jpg"),  # two people holding cups
    annotation([([80, 40, 130, 150], 1), ([70, 5, 150, 45], 28), ([140, 90, 190, 140], 28)], [(0, 1, 5), (0, 2, 5), (0, 1, 4)],
               "HICO_train2015_00000003.jpg"),  # one person carrying two umbrellas; a no_interaction HOI
    annotation([([20, 10, 90, 150], 1), ([20, 80, 250, 170], 15)], [(0, 1, 3)], "HICO_train2015_00000004.jpg"),  # bench box clipped
]


def draw(path: Path, boxes: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", SIZE, (128, 128, 128))
    for box in boxes:
        if box[0] < box[2] and box[1] < box[3]:
            ImageDraw.Draw(image).rectangle(box, outline="blue", width=2)
    image.save(path)


def write_hico(root: Path, entries: list = ENTRIES, bad_images: tuple[str, ...] = ()) -> Path:
    """The annotation JSON, `images/` and the name lists (HICO's text verb list, a COCO-id object mapping) under root."""
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("annotations"), list) and entry["file_name"] not in bad_images:
            draw(root / "images" / entry["file_name"], [a["bbox"] for a in entry["annotations"] if isinstance(a, dict)])
    for name in bad_images:
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / name).write_bytes(b"not a jpeg")
    (root / "hico_list_vb.txt").write_text(VERBS_TXT)
    (root / "objects.json").write_text(json.dumps(OBJECTS))
    path = root / "trainval_hico.json"
    path.write_text(json.dumps(entries))
    return path


def settings_for(root: Path, **extra) -> HoiSpatialSettings:
    return HoiSpatialSettings(input=str(root / "trainval_hico.json"), image_root=str(root / "images"),
                              verbs=str(root / "hico_list_vb.txt"), objects=str(root / "objects.json"), **extra)


def build(tmp_path: Path, entries: list = ENTRIES, bad_images=(), **extra) -> tuple[dict[str, list[dict]], dict]:
    """Run the builder on a fixture; ({task: records}, stats)."""
    write_hico(tmp_path / "hico", entries, bad_images)
    stats = run_builder("hoi-spatial-sft", settings_for(tmp_path / "hico", **extra), tmp_path / "out")
    files = {}
    for task in ("referring", "grounding"):
        path = tmp_path / "out" / f"{task}.jsonl"
        files[task] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return files, stats


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, list[dict]], dict]:
    root = tmp_path_factory.mktemp("hoi-spatial")
    files, stats = build(root)
    return root, files, stats


def by_id(records: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in records}


# ---------------------------------------------------------------- names and text


@pytest.mark.parametrize("verb, expected", [("ride", "riding"), ("hold", "holding"), ("sit on", "sitting on"), ("lie on", "lying on"),
                                            ("hop on", "hopping on"), ("open", "opening"), ("row", "rowing"), ("see", "seeing"),
                                            ("stir", "stirring"), ("light", "lighting"), ("carry", "carrying"), ("exit", "exiting")])
def test_verbs_read_as_gerunds(verb, expected):
    assert gerund(verb) == expected


@pytest.mark.parametrize("form", ["hico-text", "bare-lines", "json-list", "json-object", "names-mapping"])
def test_every_documented_names_format_gives_the_same_records(tmp_path, built, form):
    _, expected, _ = built
    root = tmp_path / "hico"
    write_hico(root)
    verbs = ["hold", "ride", "sit_on", "no_interaction", "carry"]
    extra: dict = {}
    if form == "bare-lines":
        (root / "v.txt").write_text("\n".join(verbs) + "\n")
        extra["verbs"] = str(root / "v.txt")
    elif form == "json-list":
        (root / "v.json").write_text(json.dumps(verbs))
        extra["verbs"] = str(root / "v.json")
    elif form == "json-object":
        (root / "v.json").write_text(json.dumps({str(i + 1): v for i, v in enumerate(verbs)}))
        extra["verbs"] = str(root / "v.json")
    elif form == "names-mapping":
        (root / "names.json").write_text(json.dumps({"verbs": verbs, "objects": OBJECTS}))
        extra = {"names": str(root / "names.json"), "verbs": None, "objects": None}
    settings = settings_for(root)
    for key, value in extra.items():
        setattr(settings, key, value)
    run_builder("hoi-spatial-sft", settings, tmp_path / "out")
    records = [json.loads(line) for line in (tmp_path / "out" / "referring.jsonl").read_text().splitlines()]
    assert [(r["id"], r["gt_action"], r["meta"]) for r in records] == [(r["id"], r["gt_action"], r["meta"]) for r in expected["referring"]]


# ---------------------------------------------------------------- records


def test_referring_answers_the_drawn_verb_and_lists_every_verb_of_the_pair(built):
    _, files, _ = built
    record = by_id(files["referring"])["referring/HICO_train2015_00000001/0-1"]
    assert record["boxes"] == [P1, BIKE] and record["person_box_idx"] == 0 and record["object_box_idx"] == 1
    assert record["messages"][1]["content"][0]["text"] == record["gt_action"][0]
    assert sorted(record["gt_action"]) == ["holding bicycle", "riding bicycle"]
    assert record["meta"]["label"] == record["gt_action"][0].split()[0] and record["meta"]["hoi_pairs"] == [[0, 1]]
    assert "{box:0}" in record["messages"][0]["content"][1]["text"] and "{box:1}" in record["messages"][0]["content"][1]["text"]


def test_a_referring_pair_is_used_once_even_with_several_verbs(built):
    _, files, _ = built
    ids = [r["id"] for r in files["referring"]]
    assert len(ids) == len(set(ids)) == 6  # the bicycle pair (riding and holding), 2 cup pairs, 2 umbrella pairs, the bench pair
    assert ids.count("referring/HICO_train2015_00000001/0-1") == 1


def test_grounding_answer_holds_every_pair_of_the_hoi_through_placeholders(built):
    _, files, _ = built
    record = by_id(files["grounding"])["grounding/HICO_train2015_00000003/5-28"]
    assert record["action"] == "carrying" and record["object_category"] == "umbrella" and record["num_pairs"] == 2
    assert record["gt_box_inds"] == [0, 1, 0, 2] and record["meta"]["hoi_pairs"] == [[0, 1], [0, 2]]
    assert record["messages"][1]["content"][0]["text"] == (
        '[{"pair_id": 1, "person_bbox": {box:0}, "object_bbox": {box:1}}, {"pair_id": 2, "person_bbox": {box:0}, "object_bbox": {box:2}}]'
    )
    assert record["answer"] == {"pairs": [[[80, 40, 130, 150], [70, 5, 150, 45]], [[80, 40, 130, 150], [140, 90, 190, 140]]]}


def test_boxes_reaching_outside_the_image_are_clipped_and_counted(built):
    _, files, stats = built
    record = by_id(files["grounding"])["grounding/HICO_train2015_00000004/3-15"]
    assert record["boxes"][1] == [20, 80, 200, 160] and stats["clipped_boxes"] == 1


def test_excluded_verbs_are_counted_and_never_shown(built):
    _, files, stats = built
    assert stats["skipped"] == {"excluded_verb": 1}
    assert all("interaction" not in r["meta"]["label"] for records in files.values() for r in records)


def test_records_are_scored_perfectly_by_the_hoi_benchmarks_from_their_own_answers(built):
    from spatialtune.data.render import GeometryRenderer
    from spatialtune.eval.benchmarks import get_benchmark
    from spatialtune.models.loading import load_processor

    root, _, _ = built
    processor, family = load_processor("tiny-qwen3-vl")
    renderer = GeometryRenderer.for_processor(processor, family.convention)
    for name, task in (("hoi-referring", "referring"), ("hoi-grounding", "grounding")):
        bench = get_benchmark(name)
        rows = bench.load(root / "out" / f"{task}.jsonl", processor, family.convention)
        own = {r.id: r for r in read_records(root / "out" / f"{task}.jsonl")}
        assert len(rows) == len(own) > 0
        for row in rows:
            reference = renderer.render_text(own[row["id"]].messages[1]["content"][0]["text"], own[row["id"]])
            assert row["messages"][0] == renderer.render_messages(own[row["id"]])[0]  # the same prompt
            assert bench.score(row, reference, renderer).score == 1.0, (row["id"], reference)


# ---------------------------------------------------------------- balance


def skewed_entries(counts: dict[int, int]) -> list[dict]:
    """One image per HOI: `counts[verb]` person–bicycle pairs per verb, each in its own image."""
    entries = []
    for verb, n in counts.items():
        for k in range(n):
            entries.append(annotation([(P1, 1), (BIKE, 2)], [(0, 1, verb)], f"v{verb}_{k:03d}.jpg"))
    return entries


def test_verbs_take_turns_so_counts_differ_by_at_most_one_among_verbs_with_candidates_left(tmp_path):
    files, stats = build(tmp_path, skewed_entries({1: 30, 2: 12, 3: 20, 5: 3}), tasks=["referring"], num_samples=31)
    counts = Counter(r["meta"]["label"] for r in files["referring"])
    assert counts["carrying"] == 3 and sorted(counts.values()) == [3, 9, 9, 10]  # carrying ran out; the others take turns
    assert stats["tasks"]["referring"] == {"requested": 31, "records": 31, "verbs": 4, "verbs_available": 4, "candidates": 65}


def test_no_verb_exceeds_the_per_verb_cap(tmp_path):
    files, stats = build(tmp_path, skewed_entries({1: 30, 2: 12, 5: 3}), tasks=["referring"], num_samples=40, per_verb_cap=5)
    assert Counter(r["meta"]["label"] for r in files["referring"]) == {"holding": 5, "riding": 5, "carrying": 3}
    assert stats["tasks"]["referring"]["requested"] == 40 and stats["tasks"]["referring"]["records"] == 13


def test_balanced_pick_passes_over_candidates_taken_by_another_verb():
    picks = balanced_pick({1: ["a", "b"], 2: ["a"]}, quota=10, cap=10, seed=0, task="referring")
    assert sorted(c for _, c in picks) == ["a", "b"]


def test_num_samples_defaults_to_5000_split_evenly_over_the_tasks(built):
    _, _, stats = built
    assert HoiSpatialSettings().num_samples == 5000
    assert stats["tasks"]["referring"]["requested"] == stats["tasks"]["grounding"]["requested"] == 2500


def test_another_seed_draws_another_balanced_sample(tmp_path):
    entries = skewed_entries({1: 30, 2: 30})
    a, _ = build(tmp_path / "a", entries, tasks=["referring"], num_samples=10, seed=1)
    b, _ = build(tmp_path / "b", entries, tasks=["referring"], num_samples=10, seed=2)
    assert {r["id"] for r in a["referring"]} != {r["id"] for r in b["referring"]}
    assert Counter(r["meta"]["label"] for r in a["referring"]) == Counter(r["meta"]["label"] for r in b["referring"]) == {"holding": 5, "riding": 5}


# ---------------------------------------------------------------- bad input


GOOD = ENTRIES[0]


@pytest.mark.parametrize(
    "entry, reason",
    [
        ({"file_name": "x.jpg", "annotations": []}, "malformed_annotation"),
        (["not", "an", "entry"], "malformed_annotation"),
        ({**GOOD}, "duplicate_image_entry"),
        ({**GOOD, "file_name": "missing.jpg", "annotations": "none"}, "malformed_annotation"),
        (annotation([(P1, 1), (BIKE, 2)], [(0, 9, 2)], "bad_index.jpg"), "malformed_hoi"),
        (annotation([(BIKE, 2), (P1, 1)], [(0, 1, 2)], "bike_subject.jpg"), "subject_not_person"),
        (annotation([(P1, 1), ([130, 70, 30, 150], 2)], [(0, 1, 2)], "inverted.jpg"), "invalid_box"),
        (annotation([(P1, 1), ([300, 200, 400, 300], 2)], [(0, 1, 2)], "outside.jpg"), "box_outside_image"),
    ],
    ids=["no-hoi-list", "not-a-dict", "duplicate-entry", "annotations-not-a-list", "bad-index", "bike-subject", "inverted-box", "outside-box"],
)
def test_a_bad_entry_or_hoi_is_a_counted_skip(tmp_path, entry, reason):
    files, stats = build(tmp_path, [GOOD, entry], tasks=["referring"])
    assert [r["id"] for r in files["referring"]] == ["referring/HICO_train2015_00000001/0-1"]
    assert stats["skipped"] == {reason: 1} and stats["skip_examples"][reason]


def test_missing_and_unreadable_images_are_counted_skips(tmp_path):
    missing = annotation([(P1, 1), (BIKE, 2)], [(0, 1, 2)], "gone.jpg")
    broken = annotation([(P1, 1), (BIKE, 2)], [(0, 1, 2)], "broken.jpg")
    root = tmp_path / "hico"
    write_hico(root, [GOOD, missing, broken], bad_images=("broken.jpg",))
    (root / "images" / "gone.jpg").unlink()
    stats = run_builder("hoi-spatial-sft", settings_for(root, tasks=["referring"]), tmp_path / "out")
    assert stats["skipped"] == {"missing_image": 1, "unreadable_image": 1} and stats["counts"]["referring.jsonl"] == {"referring": 1}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda root: (root / "trainval_hico.json").write_text('{"file_name": "a.jpg"}'), "expected a JSON list"),
        (lambda root: (root / "trainval_hico.json").write_text("[{"), "is not valid JSON"),
        (lambda root: (root / "trainval_hico.json").write_text(json.dumps([annotation([(P1, 1), (BIKE, 2)], [(0, 1, 99)], GOOD["file_name"])])), "verb id 99 has no name"),
        (lambda root: (root / "trainval_hico.json").write_text(json.dumps([annotation([(P1, 1), (BIKE, 77)], [(0, 1, 2)], GOOD["file_name"])])), "COCO category ids"),
        (lambda root: (root / "objects.json").write_text(json.dumps({"1": "human", "2": "bicycle"})), "no object is named 'person'"),
        (lambda root: (root / "objects.json").write_text(json.dumps({"one": "person"})), "keys must be ids"),
        (lambda root: (root / "hico_list_vb.txt").unlink(), "verb names not found"),
        (lambda root: (root / "hico_list_vb.txt").write_text("\n\n"), "no verb names"),
    ],
    ids=["not-a-list", "not-json", "unknown-verb", "unknown-object", "no-person", "bad-mapping", "no-verb-file", "empty-verb-file"],
)
def test_an_unusable_input_is_an_error_naming_the_file(tmp_path, change, message):
    root = tmp_path / "hico"
    write_hico(root)
    change(root)
    with pytest.raises(BuildError, match=message):
        run_builder("hoi-spatial-sft", settings_for(root), tmp_path / "out")


def test_annotations_with_no_usable_hoi_are_an_error_that_suggests_the_object_ids(tmp_path):
    root = tmp_path / "hico"
    write_hico(root)
    (root / "objects.json").write_text(json.dumps({"1": "airplane", "2": "bicycle", "15": "bench", "28": "umbrella", "47": "cup", "49": "person"}))
    with pytest.raises(BuildError, match="no usable HOI.*COCO ids"):
        run_builder("hoi-spatial-sft", settings_for(root), tmp_path / "out")


@pytest.mark.parametrize("extra, message", [({"tasks": ["captioning"]}, "--tasks"), ({"verb_form": "past"}, "--verb-form"), ({"per_verb_cap": 0}, "--per-verb-cap")])
def test_settings_that_cannot_work_are_errors(tmp_path, extra, message):
    write_hico(tmp_path / "hico")
    with pytest.raises(BuildError, match=message):
        run_builder("hoi-spatial-sft", settings_for(tmp_path / "hico", **extra), tmp_path / "out")


# ---------------------------------------------------------------- contract and pipeline


def test_output_is_identical_for_one_and_four_workers(tmp_path):
    root = tmp_path / "hico"
    write_hico(root, ENTRIES + skewed_entries({1: 4, 2: 4}))
    for workers in (1, 4):
        run_builder("hoi-spatial-sft", settings_for(root, workers=workers), tmp_path / f"w{workers}")
    for name in ("referring.jsonl", "grounding.jsonl"):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w4" / name).read_bytes()


def test_cli_build_gives_records_that_pass_validation_and_data_check(tmp_path):
    root = tmp_path / "hico"
    write_hico(root)
    runner = CliRunner()
    result = runner.invoke(app, [
        "data", "build", "hoi-spatial-sft", "--input", str(root / "trainval_hico.json"), "--image-root", str(root / "images"),
        "--verbs", str(root / "hico_list_vb.txt"), "--objects", str(root / "objects.json"), "--output", str(tmp_path / "out"),
    ])
    assert result.exit_code == 0, result.output
    for task, count in (("referring", 6), ("grounding", 5)):
        assert len(read_records(tmp_path / "out" / f"{task}.jsonl")) == count
        check = runner.invoke(app, ["data", "check", str(tmp_path / "out" / f"{task}.jsonl"), "--model", "tiny-qwen3-vl"])
        assert check.exit_code == 0, check.output


def test_output_feeds_hoi_boxes_and_cof_tool_sft(built, tmp_path):
    root, files, _ = built
    grounding = root / "out" / "grounding.jsonl"
    linked = run_builder("hoi-boxes", HoiBoxesSettings(input=str(grounding)), tmp_path / "linked")
    assert linked["skipped"] == {} and linked["refer_groups"] == sum(r["num_pairs"] for r in files["grounding"])
    cof = run_builder("cof-tool-sft", CofToolSettings(input=[str(root / "out" / "referring.jsonl"), str(grounding)]), tmp_path / "cof")
    assert cof["skipped"] == {} and cof["tool_quota"]["records"] == len(files["referring"]) + len(files["grounding"])
    assert len(read_records(tmp_path / "cof" / "train.jsonl")) == cof["tool_quota"]["records"]
