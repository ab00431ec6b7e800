"""roomplan-actions: ARKitScenes 3DOD boxes → place_anchor records the roomplan benchmark reads and scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import folder_digest, read_jsonl
from spatialtune.cli import app
from spatialtune.data.builders import BuildError, run_builder
from spatialtune.data.builders.roomplan_actions import (
    RoomPlanSettings,
    orthonormality_error,
    up_normal,
    view_indices,
)
from spatialtune.records import read_records
from spatialtune.tasks.roomplan import canonical_action_text

IDENTITY = [1, 0, 0, 0, 1, 0, 0, 0, 1]
C, S = math.cos(math.radians(30)), math.sin(math.radians(30))
YAW_30 = [C, S, 0, -S, C, 0, 0, 0, 1]  # rotation about z: a gravity-aligned box
T, U = math.cos(math.radians(10)), math.sin(math.radians(10))
TILT_10_FLIPPED = [1, 0, 0, 0, T, U, 0, U, -T]  # tilted 10° about x, the near-vertical third axis pointing down


def box(centroid, lengths, axes=IDENTITY, key="obbAligned") -> dict:
    return {key: {"centroid": centroid, "axesLengths": lengths, "normalizedAxes": axes}}


def write_scan(root: Path, video_id: str, entries: list[dict], frames: int = 12, skipped: bool = False) -> Path:
    """One scan folder as ARKitScenes ships it: annotation JSON and lowres_wide frames named by timestamp."""
    folder = root / video_id
    folder.mkdir(parents=True)
    (folder / f"{video_id}_3dod_annotation.json").write_text(json.dumps({"data": entries, "skipped": skipped, "stats": {}}))
    for k in range(frames):
        path = folder / f"{video_id}_frames" / "lowres_wide" / f"{video_id}_{6845.7 + k * 0.1:.3f}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (20 * k, 100, 200 - 10 * k)).save(path)
    return folder


def obj(label, uid, segments) -> dict:
    return {"label": label, "uid": uid, "segments": segments}


@pytest.fixture
def arkit(tmp_path) -> Path:
    root = tmp_path / "3dod"
    write_scan(root / "Training", "41069025", [
        obj("cabinet", "c1", box([1.23456, -0.5, 0.4], [0.6, 0.4, 0.8], YAW_30)),
        obj("chair", "ch1", box([0, 0, 0.4], [0.5, 0.5, 0.9])),
        obj("chair", "ch2", box([1, 0, 0.4], [0.5, 0.5, 0.9])),
        obj("tv monitor", "tv", box([0.2, -3.0, 1.4], [1.1, 0.08, 0.65])),
        obj("stool", "st", box([2, 2, 0.3], [0.4, 0.4, 0.6], key="obb")),
        obj("bed", "b", {"obbAligned": {"axesLengths": [2, 1.6, 0.5], "normalizedAxes": IDENTITY}}),
        obj("sofa", "so", box([0, 1, 0.4], [2.1, 0.0, 0.9])),
        obj("table", "ta", box([0, 1, 0.4], [1.2, 0.7, 0.75], [1, 0, 0, 0.5, 1, 0, 0, 0, 1])),
        obj("plant", "p", box([0, 0, 0], [0.3, 0.3, 0.3])),
        {"uid": "nolabel", "segments": box([0, 0, 0], [0.3, 0.3, 0.3])},
    ])
    write_scan(root / "Validation", "42444949", [obj("bed", "b2", box([2.0, 0.3, 0.25], [2.0, 1.6, 0.5], TILT_10_FLIPPED))])
    write_scan(root / "Training", "47333462", [obj("sink", "s", box([0, 0, 0.9], [0.5, 0.4, 0.2]))], skipped=True)
    write_scan(root / "Training", "47000000", [obj("oven", "o", box([0, 0, 0.5], [0.6, 0.6, 0.6]))], frames=0)
    return root


def build(arkit: Path, out: Path, **options) -> dict:
    return run_builder("roomplan-actions", RoomPlanSettings(input=arkit, **options), out)






def test_unique_objects_become_actions_with_fixed_precision_and_the_split_of_their_folder(arkit, tmp_path):
    build(arkit, tmp_path / "out")
    train = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert sorted(train) == ["41069025/c1", "41069025/st", "41069025/tv"]
    assert train["41069025/c1"]["meta"]["action"] == {
        "action": "place_anchor", "scene": "41069025", "center": [1.235, -0.5, 0.4], "normal": [0.0, 0.0, 1.0], "extent": [0.6, 0.4, 0.8]}
    assert train["41069025/tv"]["meta"]["label"] == "tv_monitor" and "centre of the tv monitor." in train["41069025/tv"]["messages"][0]["content"][-1]["text"]
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "val.jsonl")] == ["42444949/b2"]


def test_the_answer_is_the_canonical_text_of_meta_action(arkit, tmp_path):
    build(arkit, tmp_path / "out")
    for record in read_jsonl(tmp_path / "out" / "train.jsonl"):
        text = record["messages"][1]["content"][0]["text"]
        assert text == record["answer"] == canonical_action_text(record["meta"]["action"])
        assert text.index('"action"') < text.index('"center"') < text.index('"extent"') < text.index('"normal"') < text.index('"scene"')


def test_the_normal_is_the_box_axis_closest_to_up_pointing_up(arkit, tmp_path):
    build(arkit, tmp_path / "out")
    action = read_jsonl(tmp_path / "out" / "val.jsonl")[0]["meta"]["action"]
    assert action["normal"] == [0.0, -round(U, 3), round(T, 3)]  # the third axis, flipped to point up
    axes = [(1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)]
    assert up_normal(axes, (0.0, 0.0, 1.0)) == (0.0, 0.0, 1.0) and up_normal(axes, (0.0, 1.0, 0.0)) == (0.0, 1.0, 0.0)


def test_every_dropped_object_is_counted_by_reason(arkit, tmp_path):
    stats = build(arkit, tmp_path / "out")
    assert stats["skipped"] == {
        "ambiguous_category": 2, "degenerate_extent": 1, "missing_geometry": 1, "missing_label": 1, "non_orthonormal_axes": 1,
        "other_category": 1, "scene_marked_skipped": 1, "scene_without_frames": 1}
    assert stats["labels"]["train.jsonl"]["place_anchor"] == {"cabinet": 1, "stool": 1, "tv_monitor": 1}
    assert orthonormality_error([(1, 0, 0), (0.5, 1, 0), (0, 0, 1)]) > 1e-3 > orthonormality_error([tuple(YAW_30[i:i + 3]) for i in (0, 3, 6)])


def test_views_are_evenly_spaced_frames_copied_beside_the_records(arkit, tmp_path):
    assert view_indices(12, 4) == [1, 4, 7, 10] and view_indices(3, 8) == [0, 1, 2]
    build(arkit, tmp_path / "out", num_views=4)
    record = read_jsonl(tmp_path / "out" / "val.jsonl")[0]
    frames = sorted((arkit / "Validation" / "42444949" / "42444949_frames" / "lowres_wide").iterdir())
    assert record["images"] == [f"images/42444949/view_{k}.png" for k in range(4)]
    assert record["meta"]["frames"] == [frames[i].name for i in (1, 4, 7, 10)]
    assert [(tmp_path / "out" / p).read_bytes() for p in record["images"]] == [frames[i].read_bytes() for i in (1, 4, 7, 10)]
    assert sum(part["type"] == "image" for part in record["messages"][0]["content"]) == 4
    assert len(read_records(tmp_path / "out" / "val.jsonl")) == 1 and len(read_records(tmp_path / "out" / "train.jsonl")) == 3


def test_output_is_identical_for_one_and_four_workers_and_the_sample_is_seeded(arkit, tmp_path):
    build(arkit, tmp_path / "w1", workers=1)
    build(arkit, tmp_path / "w4", workers=4)
    assert folder_digest(tmp_path / "w1") == folder_digest(tmp_path / "w4")

    def sample(seed: int, name: str) -> tuple[str, ...]:
        build(arkit, tmp_path / name, num_samples=2, seed=seed)
        return tuple(r["id"] for p in sorted((tmp_path / name).glob("*.jsonl")) for r in read_jsonl(p))

    assert sample(1, "s1") == sample(1, "s1b") and len(sample(1, "s1c")) == 2
    assert len({sample(seed, f"seed{seed}") for seed in range(6)}) > 1


@pytest.mark.parametrize("content, message", [
    ("{not json", r"41069025_3dod_annotation.json:1: ARKitScenes 3DOD annotation is not valid JSON"),
    ('{"objects": []}', r"41069025_3dod_annotation.json: expected an object with a 'data' list"),
    ('{"data": [{"label": "bed"}, 7]}', r"41069025_3dod_annotation.json: data\[1\] is not an object"),
])
def test_a_malformed_annotation_file_is_an_error_naming_it(arkit, tmp_path, content, message):
    (arkit / "Training" / "41069025" / "41069025_3dod_annotation.json").write_text(content)
    with pytest.raises(BuildError, match=message):
        build(arkit, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_without_annotations_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError, match="no <video_id>_3dod_annotation.json"):
        build(tmp_path / "empty", tmp_path / "out")


def test_an_unreadable_view_skips_the_objects_of_its_scan(arkit, tmp_path):
    frames = sorted((arkit / "Validation" / "42444949" / "42444949_frames" / "lowres_wide").iterdir())
    frames[4].write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    stats = build(arkit, tmp_path / "out", num_views=4)
    assert stats["skipped"]["unreadable_frame"] == 1 and not (tmp_path / "out" / "val.jsonl").exists()
    assert not (tmp_path / "out" / "images" / "42444949").exists()


def test_the_roomplan_benchmark_reads_the_records_and_scores_the_answer_as_a_success(arkit, tmp_path):
    from spatialtune.eval.benchmarks import get_benchmark
    from spatialtune.models.loading import load_processor

    build(arkit, tmp_path / "out", num_views=2)
    processor, family = load_processor("tiny-qwen3-vl")
    benchmark = get_benchmark("roomplan")
    rows = benchmark.load(tmp_path / "out" / "train.jsonl", processor, family.convention)
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [r["answer"] for r in rows] == [r["meta"]["action"] for r in records]
    assert all(benchmark.score(row, record["answer"], None).score == 1.0 for row, record in zip(rows, records))


def test_the_cli_builds_it_and_data_check_accepts_it(arkit, tmp_path):
    result = CliRunner().invoke(app, ["data", "build", "roomplan-actions", "--input", str(arkit), "--num-views", "2",
                                      "--category", "cabinet", "--category", "bed", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "scene_without_frames" not in result.output and "other_category" in result.output
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")] == ["41069025/c1"]
    check = CliRunner().invoke(app, ["data", "check", str(tmp_path / "out" / "train.jsonl"), "--model", "tiny-qwen3-vl"])
    assert check.exit_code == 0, check.output
