"""room-world: procedural rooms whose views, depth, questions and anchor actions agree with the exact 3-D truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import folder_digest, read_jsonl
from spatialtune.data.builders import BuildError, run_builder
from spatialtune.data.builders._room_render import Camera, WorldObject, project, render_view
from spatialtune.data.builders.room_world import DISTANCE_BUCKETS, DISTANCE_EDGES_M, RoomWorldSettings
from spatialtune.data.builders.scene_qa import depth_histogram
from spatialtune.records import scan_records
from spatialtune.tasks.multiple_choice import letters
from spatialtune.tasks.roomplan import canonical_action_text

SMALL = {"num_samples": 8, "test_samples": 4, "image_size": 64}
QUESTION_FILES = ("train.jsonl", "test.jsonl")
ALL_FILES = QUESTION_FILES + ("anchors_train.jsonl", "anchors_test.jsonl")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("room") / "world"
    run_builder("room-world", RoomWorldSettings(**SMALL), out)
    return out


def records(world: Path, *names: str) -> list[dict]:
    return [r for name in names or ALL_FILES for r in read_jsonl(world / name)]


def by_name(record: dict) -> dict[str, dict]:
    return {o["name"]: o for o in record["meta"]["objects"]}


def cameras(record: dict) -> list[Camera]:
    """The views' cameras from meta (the principal point is the image centre, so the side is 2·cx)."""
    return [Camera(np.array(v["R"]), np.array(v["t"]), np.array(v["K"]), round(v["K"][0][2] * 2))
            for v in record["meta"]["geometry"]]


def world_objects(record: dict) -> list[WorldObject]:
    return [WorldObject(o["name"].split()[0], (0, 0, 0), o["shape"], tuple(o["center"]), tuple(o["size"]), tuple(o["normal"]))
            for o in record["meta"]["objects"]]


def test_any_number_of_workers_gives_the_same_bytes_and_another_seed_differs(world, tmp_path):
    run_builder("room-world", RoomWorldSettings(**SMALL, workers=2), tmp_path / "two")
    assert folder_digest(tmp_path / "two") == folder_digest(world)
    run_builder("room-world", RoomWorldSettings(**SMALL, seed=1, tasks=["world_count"]), tmp_path / "other")
    assert (tmp_path / "other" / "test.jsonl").read_bytes() != (world / "test.jsonl").read_bytes()


def test_every_record_passes_the_record_checks_with_its_media(world):
    for name in ALL_FILES:
        parsed, errors = scan_records(world / name)
        assert not errors and len(parsed) == len(read_jsonl(world / name)) > 0


def test_labels_are_balanced_and_train_and_test_share_no_room(world):
    stats = json.loads((world / "stats.json").read_text())
    assert stats["labels"]["test.jsonl"]["world_closer"] == {"A": 2, "B": 2}
    assert stats["labels"]["test.jsonl"]["world_count"] == {"1": 1, "2": 1, "3": 1, "4": 1}
    assert stats["labels"]["test.jsonl"]["world_distance"] == dict.fromkeys(sorted(DISTANCE_BUCKETS), 1)
    assert stats["labels"]["anchors_test.jsonl"]["place_anchor"] == {"box": 1, "cylinder": 1, "panel": 1, "sphere": 1}
    room = lambda r: str((r["meta"]["room"], r["meta"]["objects"]))  # noqa: E731
    train = {room(r) for r in records(world, "train.jsonl", "anchors_train.jsonl")}
    assert not train & {room(r) for r in records(world, "test.jsonl", "anchors_test.jsonl")}


def test_rendered_depth_at_an_object_centre_is_its_front_surface(world):
    checked = 0
    for record in records(world):
        objects = world_objects(record)
        for view, camera in zip(record["meta"]["geometry"], cameras(record)):
            depth_m = np.asarray(Image.open(world / view["depth"]), dtype=np.float64) / 1000
            _, _, index = render_view(camera, tuple(record["meta"]["room"]), objects)
            for k, obj in enumerate(objects):
                u, v, z = project(camera, obj.center)
                if z > 0 and 0 <= u < camera.size and 0 <= v < camera.size and index[int(v), int(u)] == k:
                    d = depth_m[int(v), int(u)]
                    assert z - math.dist((0, 0, 0), obj.size) / 2 - 0.002 <= d <= z + 0.002, (record["id"], obj.name)
                    checked += 1
    assert checked > 50


def test_the_views_an_object_is_listed_in_are_those_that_show_it(world):
    for record in records(world, "test.jsonl"):
        objects = world_objects(record)
        for v, camera in enumerate(cameras(record)):
            _, _, index = render_view(camera, tuple(record["meta"]["room"]), objects)
            for k, listed in enumerate(record["meta"]["objects"]):
                assert (v in listed["views"]) == (np.count_nonzero(index == k) >= 12)


def test_the_depth_histogram_is_scene_qa_s_of_the_depth_png(world):
    record = records(world, "test.jsonl")[0]
    for view in record["meta"]["geometry"]:
        assert (view["depth_hist"], view["depth_valid"]) == depth_histogram(world / view["depth"], 0.001)
        assert view["depth_valid"] == 1.0 and math.isclose(sum(view["depth_hist"]), 1.0, abs_tol=1e-3)


def test_the_closer_answer_follows_the_3d_distances_of_objects_never_in_one_view(world):
    for record in (r for r in records(world) if r["task"] == "world_closer"):
        objects = by_name(record)
        a, b = (objects[name] for name in record["choices"])
        c = objects[record["messages"][0]["content"][-1]["text"].split("closer to the ")[1].split("?")[0]]
        da, db = math.dist(a["center"], c["center"]), math.dist(b["center"], c["center"])
        assert record["answer"] == ("A" if da < db else "B") and abs(da - db) >= 0.3
        assert not set(a["views"]) & set(b["views"]) and a["views"] and b["views"] and c["views"]


def test_the_count_is_the_number_of_distinct_objects_though_views_overlap(world):
    for record in (r for r in records(world) if r["task"] == "world_count"):
        shape = record["meta"]["shape"]
        same = [o for o in record["meta"]["objects"] if o["shape"] == shape]
        assert record["answer"] == str(len(same)) and all(o["views"] for o in same)
        assert sum(len(o["views"]) for o in same) > len(same)  # adding up the views over-counts


def test_the_distance_bucket_is_that_of_the_centres(world):
    for record in (r for r in records(world) if r["task"] == "world_distance"):
        a, b = (record["meta"]["objects"][k] for k in record["meta"]["objects_asked"])
        bucket = sum(math.dist(a["center"], b["center"]) >= e for e in DISTANCE_EDGES_M)
        assert record["answer"] == letters(4)[bucket] and record["choices"] == list(DISTANCE_BUCKETS)


def test_anchor_actions_are_the_exact_object_geometry_in_canonical_json(world):
    for record in records(world, "anchors_train.jsonl", "anchors_test.jsonl"):
        action = record["meta"]["action"]
        obj = record["meta"]["objects"][record["meta"]["objects_asked"][0]]
        assert record["answer"] == canonical_action_text(action) == record["messages"][-1]["content"][0]["text"]
        assert action["scene"] == record["id"] and action["extent"] == [round(s, 3) for s in obj["size"]]
        assert action["center"] == [round(c, 3) for c in obj["center"]] and action["normal"] == obj["normal"]
        room = record["meta"]["room"]
        inside = [c + 0.5 * n for c, n in zip(obj["center"], obj["normal"])]  # half a metre along the normal is in the room
        assert all(0 < x < r for x, r in zip(inside, room)) and (obj["shape"] == "panel") == (action["normal"][2] == 0)


def test_the_benchmarks_score_the_ground_truth_1_and_a_wrong_answer_0(world):
    from spatialtune.eval.benchmarks import get_benchmark
    from spatialtune.models.loading import load_processor

    processor, family = load_processor("tiny-qwen3-vl")
    rows = get_benchmark("records").load(world, processor, family.convention)
    bench = get_benchmark("records")
    for row, record in zip(rows, read_jsonl(world / "test.jsonl")):
        assert bench.score(row, record["answer"], None).score == 1.0
        wrong = "B" if record["answer"] == "A" else "A" if record.get("choices") else str(int(record["answer"]) + 1)
        assert bench.score(row, wrong, None).score == 0.0
    roomplan = get_benchmark("roomplan")
    anchors = roomplan.load(world / "anchors_test.jsonl", processor, family.convention)
    assert [roomplan.score(row, r["answer"], None).score for row, r in zip(anchors, read_jsonl(world / "anchors_test.jsonl"))] == [1.0] * 4


def test_settings_no_room_can_satisfy_are_an_error_naming_the_reasons(tmp_path):
    with pytest.raises(BuildError, match="no room fits world_count.*counted_object_not_visible"):
        run_builder("room-world", RoomWorldSettings(num_samples=0, test_samples=1, tasks=["world_count"],
                                                      num_views=2, image_size=32, min_visible_pixels=10**6), tmp_path / "x")


def test_bad_settings_are_refused_with_the_bad_value(tmp_path):
    with pytest.raises(BuildError, match="num-views must be ≥ 2"):
        run_builder("room-world", RoomWorldSettings(num_views=1), tmp_path / "x")
    with pytest.raises(BuildError, match="unknown task"):
        run_builder("room-world", RoomWorldSettings(tasks=["nope"]), tmp_path / "y")
