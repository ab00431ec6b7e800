"""scene-qa: ScanQA / SQA3D release files → multi-view records; splits in separate files without leakage, the same
scene images and prompt as the evaluation benchmarks, per-view geometry, and the outcome of each bad input."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import folder_digest
from spatialtune.cli import app
from spatialtune.data.builders import BuildError, run_builder
from spatialtune.data.builders.scene_qa import DEPTH_BIN_EDGES_M, SceneQASettings
from spatialtune.data.sources import evenly_spaced, scene_images
from spatialtune.records import read_records

FRAME_SIZE = (32, 24)
POSE = [[0.0, -1.0, 0.0, 1.5], [1.0, 0.0, 0.0, -0.25], [0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0]]
INTRINSIC = [[30.0, 0.0, 15.5, 0.0], [0.0, 31.0, 11.5, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
# (scene, question, answers) per ScanQA split; train and val scenes are disjoint, as in the release.
SCANQA = {
    "train": [("scene0000_00", "What color is the chair by the desk?", ["brown", "dark brown"]),
              ("scene0000_00", "Where is the lamp placed?", ["on the nightstand"]),
              ("scene0001_00", "What is under the window?", ["radiator"])],
    "val": [("scene0011_00", "What color is the table in the kitchen?", ["white"]),
            ("scene0015_00", "How many chairs are at the table?", ["4", "four"])],
}
SQA3D = {
    "train": [("scene0000_00", "I am sitting on the bed.", "What is on my left?", "lamp", "other")],
    "val": [("scene0011_00", "I am facing the fridge.", "Is the sink behind me?", "yes", "yes/no")],
    "test": [("scene0015_00", "I just came in.", "Which way is the table?", "left", "other")],
}


def frame(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", FRAME_SIZE, (shade, 100, 200 - shade)).save(path)


def depth_png(path: Path, millimetres: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(millimetres.astype(np.uint16)).save(path)


def write_matrix(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(" ".join(str(v) for v in row) for row in rows) + "\n")


def known_depth() -> np.ndarray:
    """Half the pixels at 1.2 m, a quarter without depth (0), a quarter at 9 m."""
    mm = np.full((FRAME_SIZE[1], FRAME_SIZE[0]), 1200)
    mm[:6] = 0
    mm[6:12] = 9000
    return mm


def write_scenes(root: Path) -> None:
    """scene0000_00: 12 ScanNet-style frames with pose/depth/intrinsic; scene0001_00: `_bev.png`; scene0011_00: 3 JPEG
    frames, no geometry; scene0015_00: `_bird.png`."""
    for k in range(12):
        name = f"{20 * k:06d}"
        frame(root / "scene0000_00" / f"{name}.png", 10 * k)
        write_matrix(root / "scene0000_00" / "pose" / f"{name}.txt", POSE)
        depth_png(root / "scene0000_00" / "depth" / f"{name}.png", known_depth())
    write_matrix(root / "scene0000_00" / "intrinsic" / "intrinsic_color.txt", INTRINSIC)
    frame(root / "scene0001_00_bev.png", 50)
    for k in range(3):
        path = root / "scene0011_00" / f"{k:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", FRAME_SIZE, (k * 60, 90, 90)).save(path)
    frame(root / "scene0015_00_bird.png", 70)


def scanqa_items(split: str, rows=None) -> list[dict]:
    return [{"answers": answers, "object_ids": [i], "object_names": [q.split()[-1].strip("?")], "question": q,
             "question_id": f"{split}-{scene.removesuffix('_00')}-{i}", "scene_id": scene}
            for i, (scene, q, answers) in enumerate(rows if rows is not None else SCANQA[split])]


def write_sqa3d(root: Path, split: str, rows) -> Path:
    questions, annotations = [], []
    for i, (scene, situation, question, answer, answer_type) in enumerate(rows):
        qid = 2206020000 + 100 * len(split) + i
        questions.append({"alternative_situation": [], "question": question, "question_id": qid, "scene_id": scene, "situation": situation})
        annotations.append({"answer_type": answer_type, "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": 1}],
                            "position": {"x": 0.5, "y": -1.0, "z": 0.0}, "question_id": qid, "question_type": "N/A",
                            "rotation": {"_w": 1.0, "_x": 0.0, "_y": 0.0, "_z": 0.0}, "scene_id": scene})
    path = root / f"v1_balanced_questions_{split}_scannetv2.json"
    path.write_text(json.dumps({"info": {}, "task_type": "sqa", "questions": questions}))
    (root / f"v1_balanced_sqa_annotations_{split}_scannetv2.json").write_text(json.dumps({"info": {}, "annotations": annotations}))
    return path


def write_release(root: Path) -> Path:
    """Every release file of both datasets (ScanQA's test file hides answers) with the scene images beside them."""
    root.mkdir(parents=True, exist_ok=True)
    write_scenes(root)
    for split in SCANQA:
        (root / f"ScanQA_v1.0_{split}.json").write_text(json.dumps(scanqa_items(split)))
    (root / "ScanQA_v1.0_test_w_obj.json").write_text(json.dumps([{k: v for k, v in x.items() if k != "answers"} for x in scanqa_items("val")]))
    for split, rows in SQA3D.items():
        write_sqa3d(root, split, rows)
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def built(release, tmp_path_factory) -> tuple[Path, dict, dict[str, list[dict]]]:
    out = tmp_path_factory.mktemp("out") / "qa"
    stats = run_builder("scene-qa", SceneQASettings(input=[str(release)], num_views=4), out)
    return out, stats, {p.name: _records(p) for p in sorted(out.glob("*.jsonl"))}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _build(tmp_path: Path, inputs: list[Path], name: str = "out", **options) -> tuple[dict, dict[str, list[dict]]]:
    stats = run_builder("scene-qa", SceneQASettings(input=[str(p) for p in inputs], **options), tmp_path / name)
    return stats, {p.name: _records(p) for p in sorted((tmp_path / name).glob("*.jsonl"))}


# ---------------------------------------------------------------- splits


def test_each_dataset_and_split_is_its_own_file(built, release):
    _, stats, files = built
    assert sorted(files) == ["scanqa_train.jsonl", "scanqa_val.jsonl", "sqa3d_test.jsonl", "sqa3d_train.jsonl", "sqa3d_val.jsonl"]
    assert {name: len(records) for name, records in files.items()} == {"scanqa_train.jsonl": 3, "scanqa_val.jsonl": 2, "sqa3d_test.jsonl": 1,
                                                                        "sqa3d_train.jsonl": 1, "sqa3d_val.jsonl": 1}
    assert stats["ignored_files"] == [str(release / "ScanQA_v1.0_test_w_obj.json")]
    assert all(r["meta"]["split"] == name.split("_")[1].removesuffix(".jsonl") for name, rs in files.items() for r in rs)


def test_train_and_evaluation_files_share_no_question_id_or_scene(built):
    files = built[2]
    train = [r for name, rs in files.items() if "_train" in name for r in rs]
    held_out = [r for name, rs in files.items() if "_train" not in name for r in rs]
    assert train and held_out
    assert not {r["meta"]["scene_id"] for r in train} & {r["meta"]["scene_id"] for r in held_out}
    assert not {(r["task"], r["id"]) for r in train} & {(r["task"], r["id"]) for r in held_out}


def test_train_question_on_an_evaluation_scene_is_dropped_and_counted(tmp_path):
    write_scenes(tmp_path)
    leaking = SCANQA["train"] + [("scene0011_00", "What is on the counter?", ["kettle"])]
    (tmp_path / "ScanQA_v1.0_train.json").write_text(json.dumps(scanqa_items("train", leaking)))
    (tmp_path / "ScanQA_v1.0_val.json").write_text(json.dumps(scanqa_items("val")))
    stats, files = _build(tmp_path, [tmp_path])
    assert stats["skipped"] == {"train_scene_in_eval_split": 1}
    assert "scene0011_00" not in {r["meta"]["scene_id"] for r in files["scanqa_train.jsonl"]}
    stats, files = _build(tmp_path, [tmp_path], name="kept", scene_disjoint=False)
    assert len(files["scanqa_train.jsonl"]) == 4 and not stats["skipped"]


def test_train_question_id_repeated_in_an_evaluation_split_is_dropped(tmp_path):
    write_scenes(tmp_path)
    train = scanqa_items("train")
    train[0]["question_id"] = scanqa_items("val")[0]["question_id"]
    (tmp_path / "ScanQA_v1.0_train.json").write_text(json.dumps(train))
    (tmp_path / "ScanQA_v1.0_val.json").write_text(json.dumps(scanqa_items("val")))
    stats, files = _build(tmp_path, [tmp_path], scene_disjoint=False)
    assert stats["skipped"] == {"train_question_in_eval_split": 1} and len(files["scanqa_train.jsonl"]) == 2


# ---------------------------------------------------------------- views: the layout the benchmarks read


def test_views_are_evenly_spaced_with_first_and_last_kept(built):
    record = next(r for r in built[2]["scanqa_train.jsonl"] if r["meta"]["scene_id"] == "scene0000_00")
    assert record["meta"]["views"] == [f"{20 * k:06d}.png" for k in (0, 4, 7, 11)]  # round(linspace(0, 11, 4))
    assert record["meta"]["view_kind"] == "frames" and len(record["images"]) == 4


def test_bird_eye_image_when_the_scene_has_no_frames(built):
    by_scene = {r["meta"]["scene_id"]: r for rs in built[2].values() for r in rs}
    assert Path(by_scene["scene0001_00"]["images"][0]).name == "scene0001_00_bev.png"
    assert Path(by_scene["scene0015_00"]["images"][0]).name == "scene0015_00_bird.png"
    assert by_scene["scene0015_00"]["meta"]["view_kind"] == "bev" and "geometry" not in by_scene["scene0015_00"]["meta"]


def test_evenly_spaced_keeps_first_and_last():
    items = list(range(10))
    assert evenly_spaced(items, 4) == [0, 3, 6, 9] and evenly_spaced(items, 1) == [0] and evenly_spaced(items[:3], 8) == [0, 1, 2]


def test_scene_images_prefer_the_frame_folder_then_bird_eye_files_in_frame_number_order(tmp_path):
    (tmp_path / "s1").mkdir()
    for k in (0, 20, 100, 40, 60):  # ScanNet's raw frame names: plain sorting would put 100 before 20
        Image.new("RGB", (8, 8)).save(tmp_path / "s1" / f"{k}.jpg")
    (tmp_path / "s1" / "notes.txt").write_text("not an image")
    for name in ("s1_bev.png", "s2_bird.png", "s3.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    assert [p.name for p in scene_images(tmp_path, "s1", 3)[0]] == ["0.jpg", "40.jpg", "100.jpg"]
    assert scene_images(tmp_path, "s2", 3) == ([tmp_path / "s2_bird.png"], "bev")
    assert scene_images(tmp_path, "s3", 3) == ([tmp_path / "s3.png"], "bev")
    assert scene_images(tmp_path, "s4", 3) == ([], "")


def _processor_stub() -> SimpleNamespace:
    """What GeometryRenderer.for_processor reads of a Qwen-VL processor (no model files needed)."""
    return SimpleNamespace(image_processor=SimpleNamespace(size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}, patch_size=14, merge_size=2))


@pytest.mark.parametrize("benchmark, data, file", [("scanqa", "ScanQA_v1.0_val.json", "scanqa_val.jsonl"),
                                                   ("sqa3d", "v1_balanced_questions_val_scannetv2.json", "sqa3d_val.jsonl")])
def test_records_show_what_the_evaluation_benchmark_shows(built, release, benchmark, data, file):
    from spatialtune.eval.benchmarks import get_benchmark
    from spatialtune.geometry import Convention

    rows = get_benchmark(benchmark, {"num_views": 4}).load(release / data, _processor_stub(), Convention.QWEN3_1000)
    records = {r["id"]: r for r in built[2][file]}
    assert len(rows) == len(records)
    for row in rows:
        record = records[row["id"]]
        assert [Path(p).resolve() for p in row["images"]] == [Path(p) for p in record["images"]]
        assert row["messages"][0]["content"][-1]["text"] == record["messages"][0]["content"][-1]["text"]
        assert row["answer"] == record["answer"]


def test_sqa3d_text_is_situation_then_question_then_instruction(built):
    record = built[2]["sqa3d_val.jsonl"][0]
    assert record["messages"][0]["content"][-1]["text"] == (
        "Situation: I am facing the fridge.\nQuestion: Is the sink behind me?\nAnswer the question using a single word or phrase.")
    assert record["messages"][1]["content"][0]["text"] == "yes" and record["answer"] == ["yes"]
    assert record["meta"]["label"] == "yes/no" and record["meta"]["rotation"] == {"_w": 1.0, "_x": 0.0, "_y": 0.0, "_z": 0.0}


def test_scanqa_answers_with_the_first_reference_and_keeps_all(built):
    record = built[2]["scanqa_train.jsonl"][0]
    assert record["answer"] == ["brown", "dark brown"] and record["messages"][1]["content"][0]["text"] == "brown"
    assert record["id"] == record["meta"]["question_id"] == "train-scene0000-0"


# ---------------------------------------------------------------- geometry


def test_geometry_reads_pose_intrinsics_and_depth(built):
    record = next(r for r in built[2]["scanqa_train.jsonl"] if r["meta"]["scene_id"] == "scene0000_00")
    views = record["meta"]["geometry"]
    assert [v["frame"] for v in views] == [Path(v).stem for v in record["meta"]["views"]]
    for view in views:
        assert view["R"] == [row[:3] for row in POSE[:3]] and view["t"] == [row[3] for row in POSE[:3]]
        assert view["K"] == [row[:3] for row in INTRINSIC[:3]]
        expected = [0.0] * (len(DEPTH_BIN_EDGES_M) - 1)
        expected[2], expected[-1] = round(2 / 3, 4), round(1 / 3, 4)  # 1.2 m in [1, 1.5); 9 m in [8, ∞)
        assert view["depth_hist"] == expected and view["depth_valid"] == 0.75


def test_scene_without_geometry_files_has_no_geometry(built):
    record = built[2]["scanqa_val.jsonl"][0]
    assert record["meta"]["scene_id"] == "scene0011_00" and "geometry" not in record["meta"]


def test_no_geometry_option(release, tmp_path):
    _, files = _build(tmp_path, [release / "ScanQA_v1.0_train.json"], geometry=False)
    assert all("geometry" not in r["meta"] for r in files["scanqa_train.jsonl"])


# ---------------------------------------------------------------- validity, determinism, CLI


def test_records_pass_validation_with_images(built):
    for path in sorted(built[0].glob("*.jsonl")):
        assert read_records(path)




def test_same_output_for_one_and_four_workers(release, tmp_path):
    for workers in (1, 4):
        _build(tmp_path, [release], name=f"w{workers}", workers=workers)
    assert folder_digest(tmp_path / "w1") == folder_digest(tmp_path / "w4")


def test_num_samples_caps_each_file(release, tmp_path):
    stats, files = _build(tmp_path, [release], num_samples=1, seed=4)
    assert {len(rs) for rs in files.values()} == {1}
    assert stats["counts"]["scanqa_train.jsonl"] == {"scanqa": 1}


def test_cli_build_then_data_check(release, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["data", "build", "scene-qa", "--input", str(release / "ScanQA_v1.0_train.json"),
                                 "--input", str(release / "v1_balanced_questions_val_scannetv2.json"), "--output", str(out), "--num-views", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["scanqa_train.jsonl", "sqa3d_val.jsonl"]
    check = runner.invoke(app, ["data", "check", str(out / "scanqa_train.jsonl"), "--model", "tiny-qwen3-vl"])
    assert check.exit_code == 0, check.output


# ---------------------------------------------------------------- bad input: counted skips


def test_malformed_questions_and_annotations_are_counted(tmp_path):
    write_scenes(tmp_path)
    items = scanqa_items("train")
    del items[0]["answers"]
    items[1]["question"] = ""
    items.append(items[2])  # the same question id twice
    (tmp_path / "ScanQA_v1.0_train.json").write_text(json.dumps(items))
    path = write_sqa3d(tmp_path, "val", SQA3D["val"] + [("scene0011_00", "I stand.", "Is it dark?", "no", "yes/no")] * 2)
    annotations_path = tmp_path / "v1_balanced_sqa_annotations_val_scannetv2.json"
    annotations = json.loads(annotations_path.read_text())
    annotations["annotations"][1]["answers"] = []  # the second question's annotation is malformed …
    del annotations["annotations"][2]  # … and the third has none
    annotations_path.write_text(json.dumps(annotations))
    stats, files = _build(tmp_path, [tmp_path / "ScanQA_v1.0_train.json", path])
    assert stats["skipped"] == {"malformed_question": 2, "duplicate_question_id": 1, "malformed_annotation": 1, "missing_annotation": 1}
    assert len(files["scanqa_train.jsonl"]) == 1 and len(files["sqa3d_val.jsonl"]) == 1
    assert "ScanQA_v1.0_train.json[0]" in stats["skip_examples"]["malformed_question"][0]


def test_questions_on_scenes_without_images_or_with_a_corrupt_view_are_skipped(tmp_path):
    write_scenes(tmp_path)
    (tmp_path / "scene0011_00" / "000002.jpg").write_bytes(b"\xff\xd8\xff truncated")
    rows = SCANQA["val"] + [("scene0404_00", "What is here?", ["nothing"])]
    (tmp_path / "ScanQA_v1.0_val.json").write_text(json.dumps(scanqa_items("val", rows)))
    stats, files = _build(tmp_path, [tmp_path])
    assert stats["skipped"] == {"unreadable_view": 1, "missing_scene_images": 1}
    assert [r["meta"]["scene_id"] for r in files["scanqa_val.jsonl"]] == ["scene0015_00"]
    assert "000002.jpg" in stats["skip_examples"]["unreadable_view"][0]


def test_bad_geometry_files_leave_that_part_out_and_are_counted(tmp_path):
    write_scenes(tmp_path)
    scene = tmp_path / "scene0000_00"
    write_matrix(scene / "pose" / "000000.txt", [["-inf"] * 4] * 4)  # ScanNet's invalid pose
    Image.new("L", FRAME_SIZE, 5).save(scene / "depth" / "000220.png")  # 8-bit, not millimetres
    (scene / "intrinsic" / "intrinsic_color.txt").write_text("not a matrix\n")
    (tmp_path / "ScanQA_v1.0_train.json").write_text(json.dumps(scanqa_items("train")))
    stats, files = _build(tmp_path, [tmp_path], num_views=4)
    assert stats["skipped"] == {"bad_pose": 1, "bad_depth": 1, "bad_intrinsics": 1}
    views = next(r for r in files["scanqa_train.jsonl"] if r["meta"]["scene_id"] == "scene0000_00")["meta"]["geometry"]
    assert views[0]["R"] is None and views[1]["R"] == [row[:3] for row in POSE[:3]]
    assert views[-1]["depth_hist"] is None and views[0]["depth_hist"] is not None
    assert all(v["K"] is None for v in views)


# ---------------------------------------------------------------- bad input: errors naming the file


@pytest.mark.parametrize("case, message", [
    ("missing", "input not found"),
    ("unknown_name", "not a ScanQA"),
    ("empty_folder", "no ScanQA_v1.0_<split>.json"),
    ("hidden_answers", "hide the answers"),
    ("invalid_json", r"ScanQA_v1\.0_train\.json:1: ScanQA questions is not valid JSON"),
    ("not_a_list", r"ScanQA_v1\.0_train\.json: expected a JSON list"),
    ("sqa3d_without_annotations", r"v1_balanced_sqa_annotations_val_scannetv2\.json: SQA3D annotations not found"),
    ("sqa3d_wrong_shape", r"v1_balanced_questions_val_scannetv2\.json: expected a JSON object with a 'questions' list"),
    ("twice", "is given twice"),
    ("no_scene_images", "no scene has images"),
])
def test_unusable_input_is_an_error_naming_it(case, message, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    inputs = [data / "ScanQA_v1.0_train.json"]
    if case != "no_scene_images":
        write_scenes(data)
    (data / "ScanQA_v1.0_train.json").write_text(json.dumps(scanqa_items("train")))
    if case == "missing":
        inputs = [data / "nope"]
    elif case == "unknown_name":
        inputs = [data / "questions.json"]
        inputs[0].write_text("[]")
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        inputs = [tmp_path / "empty"]
    elif case == "hidden_answers":
        inputs = [data / "ScanQA_v1.0_test_wo_obj.json"]
        inputs[0].write_text("[]")
    elif case == "invalid_json":
        inputs[0].write_text("[{")
    elif case == "not_a_list":
        inputs[0].write_text('{"questions": []}')
    elif case in ("sqa3d_without_annotations", "sqa3d_wrong_shape"):
        inputs = [write_sqa3d(data, "val", SQA3D["val"])]
        if case == "sqa3d_without_annotations":
            (data / "v1_balanced_sqa_annotations_val_scannetv2.json").unlink()
        else:
            inputs[0].write_text("[]")
    elif case == "twice":
        inputs = [data, data / "ScanQA_v1.0_train.json"]
    with pytest.raises(BuildError, match=message):
        _build(tmp_path, inputs)
    assert not (tmp_path / "out").exists()
