"""qualitative-relations: 8 relations balanced, labels that agree with the 3D centroids beyond the margin, chains of
thought without numbers, and the documented outcome of each bad input."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from helpers import folder_digest
from spatialtune.cli import app
from spatialtune.data.builders import BuildError, run_builder
from spatialtune.data.builders._qualitative_lift import default_intrinsics, lift_region
from spatialtune.data.builders.qualitative_relations import CHAINS, RELATIONS, QualitativeSettings, relation_quotas
from spatialtune.records import read_records

W, H = 128, 96
LABELS = ("chair", "table", "lamp", "sofa", "plant", "vase", "bed", "desk")
MARGIN = 0.1
# Independent of the builder: digits, number words (cardinal, ordinal, multiplicative) and units of length/angle.
NUMBERLESS_VIOLATION = re.compile(
    r"\d|%|°|\b(zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|hundred|thousand|million|"
    r"first|second|third|half|quarter|twice|double|dozen|single|couple|once|"
    r"m|cm|mm|km|meters?|metres?|centimet(er|re)s?|millimet(er|re)s?|inch(es)?|ft|foot|feet|yards?|miles?|px|pixels?|percent|degrees?)\b",
    re.IGNORECASE,
)


# ---------------------------------------------------------------- fixtures in the documented input layout


def place_objects(rng: random.Random, count: int, intrinsics, mask_every: int = 0) -> list[dict]:
    """Non-overlapping square objects with distinct labels: pixel centre, half size, depth and the exact 3D centre."""
    fx, fy, cx, cy = intrinsics
    placed: list[dict] = []
    labels = rng.sample(LABELS, count)
    while len(placed) < count:
        s = rng.randint(5, 9)
        iu, iv = rng.randint(s, W - s - 1), rng.randint(s, H - s - 1)
        box = (iu - s, iv - s, iu + s + 1, iv + s + 1)
        if any(box[0] <= p["box"][2] and p["box"][0] <= box[2] and box[1] <= p["box"][3] and p["box"][1] <= box[3] for p in placed):
            continue
        z = round(rng.uniform(1.5, 6.0), 3)
        k = len(placed)
        placed.append({"label": labels[k], "box": box, "centre": (iu, iv), "half": s, "z": z, "mask": bool(mask_every) and k % mask_every == 0,
                       "xyz": ((iu - cx) * z / fx, (iv - cy) * z / fy, z)})
    return placed


def disk(centre, radius: int) -> np.ndarray:
    """A filled disk (symmetric about its centre pixel, so its pixel mean is the centre)."""
    rows, cols = np.mgrid[0:H, 0:W]
    return (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius**2


def write_image_entry(root: Path, name: str, objects: list[dict], *, intrinsics=None, depth_format: str = "npy", background: float = 9.0) -> dict:
    """Image, depth map (and masks) for `objects`; returns the input line. Mask objects get depth only on a small disk."""
    depth = np.full((H, W), background)
    image = Image.new("RGB", (W, H), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    line: dict = {"id": name, "image": f"images/{name}.png", "objects": []}
    for k, obj in enumerate(objects):
        x1, y1, x2, y2 = obj["box"]
        entry = {"label": obj["label"], "bbox": list(obj["box"])}
        if obj["mask"]:
            region = disk(obj["centre"], obj["half"] // 2)  # covers well under half of the box
            depth[region] = obj["z"]
            (root / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray((region * 255).astype(np.uint8)).save(root / "masks" / f"{name}_{k}.png")
            entry["mask"] = f"masks/{name}_{k}.png"
        else:
            depth[y1:y2, x1:x2] = obj["z"]
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=(40 * k % 255, 90, 160))
        line["objects"].append(entry)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    image.save(root / "images" / f"{name}.png")
    if depth_format == "npy":
        np.save(root / "depth" / f"{name}.npy", depth.astype(np.float32))
        line["depth"] = f"depth/{name}.npy"
    else:
        Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(root / "depth" / f"{name}.png")
        line["depth"] = f"depth/{name}.png"
    if intrinsics is not None:
        line["intrinsics"] = dict(zip(("fx", "fy", "cx", "cy"), intrinsics))
    return line


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def write_scenes(root: Path, count: int = 14, seed: int = 0) -> tuple[Path, dict[str, list[dict]]]:
    """`count` images of 5 objects (every 3rd image with given intrinsics, every 2nd with a PNG depth map, masks on
    some objects); returns the input file and the ground truth objects per image id."""
    rng, lines, truth = random.Random(seed), [], {}
    for i in range(count):
        intrinsics = (70.0, 72.0, 60.0, 50.0) if i % 3 == 0 else None
        objects = place_objects(rng, 5, intrinsics or default_intrinsics(W, H, 60.0), mask_every=3)
        name = f"scene_{i:02d}"
        lines.append(write_image_entry(root, name, objects, intrinsics=intrinsics, depth_format="png" if i % 2 else "npy"))
        truth[name] = objects
    return write_jsonl(root / "detections.jsonl", lines), truth


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> tuple[Path, dict]:
    return write_scenes(tmp_path_factory.mktemp("qualitative"))


@pytest.fixture(scope="module")
def built(scenes, tmp_path_factory) -> tuple[Path, dict, list[dict]]:
    out = tmp_path_factory.mktemp("out") / "rel"
    stats = run_builder("qualitative-relations", QualitativeSettings(input=str(scenes[0]), num_samples=160, per_image=3, margin=MARGIN, seed=1), out)
    return out, stats, _records(out)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


def _build(tmp_path: Path, lines: list, name: str = "out", **options) -> tuple[dict, list[dict]]:
    source = write_jsonl(tmp_path / "detections.jsonl", lines)
    stats = run_builder("qualitative-relations", QualitativeSettings(input=str(source), **options), tmp_path / name)
    return stats, _records(tmp_path / name)


def _good_line(root: Path, name: str = "good") -> dict:
    rng = random.Random(5)
    return write_image_entry(root, name, place_objects(rng, 4, default_intrinsics(W, H, 60.0)))


# ---------------------------------------------------------------- balance


def test_every_relation_is_within_ten_percent_of_an_eighth(built):
    _, stats, records = built
    counts = {r: sum(rec["meta"]["relation"] == r for rec in records) for r in RELATIONS}
    assert len(records) == 160
    assert all(abs(n - 160 / 8) <= 0.1 * 160 / 8 for n in counts.values()), counts
    assert {r: v["records"] for r, v in stats["relations"].items()} == counts


def test_default_size_is_eight_times_the_scarcest_relation(scenes, tmp_path):
    stats = run_builder("qualitative-relations", QualitativeSettings(input=str(scenes[0]), per_image=1), tmp_path / "out")
    scarcest = min(v["available"] for v in stats["relations"].values())
    assert {v["records"] for v in stats["relations"].values()} == {scarcest}
    assert len(_records(tmp_path / "out")) == 8 * scarcest


def test_quotas_split_equally_and_share_a_shortfall():
    plenty = dict.fromkeys(RELATIONS, 100)
    assert set(relation_quotas(plenty, 160).values()) == {20}
    assert sorted(relation_quotas(plenty, 163).values()) == [20] * 5 + [21] * 3
    short = {**plenty, "behind": 6}
    quotas = relation_quotas(short, 160)
    assert quotas["behind"] == 6 and sum(quotas.values()) == 160 and max(quotas.values()) - min(v for r, v in quotas.items() if r != "behind") <= 1
    assert relation_quotas({**plenty, "above": 0}, None) == {**dict.fromkeys(RELATIONS, 100), "above": 0}
    assert sum(relation_quotas(dict.fromkeys(RELATIONS, 3), 1000).values()) == 24


def test_correct_option_is_a_for_half_of_each_relation(built):
    for relation in RELATIONS:
        letters = [r["answer"] for r in built[2] if r["meta"]["relation"] == relation]
        assert abs(letters.count("A") - letters.count("B")) <= 1, relation


# ---------------------------------------------------------------- labels agree with 3D


def _holds(relation: str, objs: list[tuple[float, float, float]], uv: list[tuple[float, float]] | None, margin: float) -> bool:
    """Whether `relation` holds beyond `margin` for (subject-or-answer, other[, reference]) centroids."""
    a, b = objs[0], objs[1]
    if relation in ("left_of", "right_of", "above", "below"):
        axis = 0 if relation in ("left_of", "right_of") else 1
        sign = 1 if relation in ("left_of", "above") else -1
        image_ok = uv is None or sign * (uv[1][axis] - uv[0][axis]) > 0
        return sign * (b[axis] - a[axis]) > margin and image_ok
    if relation in ("in_front_of", "behind"):
        return (1 if relation == "in_front_of" else -1) * (b[2] - a[2]) > margin
    ref = objs[2]
    return (1 if relation == "closer_to" else -1) * (math.dist(b, ref) - math.dist(a, ref)) > margin


def _subject_first(record: dict) -> list[dict]:
    """meta.objects reordered to (subject or answer, other[, reference])."""
    objs = record["meta"]["objects"]
    if record["meta"]["relation"] in ("left_of", "right_of", "above", "below"):
        return objs  # the subject is {box:0} whatever the option order
    return objs if record["answer"] == "A" else [objs[1], objs[0], *objs[2:]]


def test_every_label_agrees_with_the_true_3d_centres_beyond_the_margin(built, scenes):
    truth = scenes[1]
    for record in built[2]:
        objects = truth[record["meta"]["image_id"]]
        ordered = [objects[o["index"]] for o in _subject_first(record)]
        assert _holds(record["meta"]["relation"], [o["xyz"] for o in ordered], [o["centre"] for o in ordered], MARGIN), record["id"]


def test_every_label_agrees_with_the_stored_centroids_beyond_the_margin(built):
    for record in built[2]:
        ordered = _subject_first(record)
        assert _holds(record["meta"]["relation"], [o["centroid_m"] for o in ordered], None, MARGIN), record["id"]
        assert record["meta"]["gap_m"] > MARGIN


def test_stored_centroids_are_the_true_centres(built, scenes):
    for record in built[2][:40]:
        for obj in record["meta"]["objects"]:
            true = scenes[1][record["meta"]["image_id"]][obj["index"]]["xyz"]
            assert obj["centroid_m"] == pytest.approx(true, abs=1e-5)


def test_answer_letter_names_the_correct_choice(built):
    for record in built[2]:
        relation, choices = record["meta"]["relation"], record["choices"]
        correct = choices["AB".index(record["answer"])]
        if relation in ("left_of", "right_of", "above", "below"):
            assert correct == {"left_of": "left", "right_of": "right", "above": "above", "below": "below"}[relation]
        else:
            assert correct == _subject_first(record)[0]["label"]
        assert record["meta"]["answer_text"] == correct


# ---------------------------------------------------------------- text


def test_no_chain_of_thought_states_a_number(built):
    chains = [r["meta"]["cot"] for r in built[2]]
    assert len(chains) == 160 and all(chains)
    assert [c for c in chains if NUMBERLESS_VIOLATION.search(c)] == []


def test_no_chain_template_states_a_number():
    for relation, templates in CHAINS.items():
        for template in templates:
            text = template.format(w="chair", o="table", r="lamp")
            assert not NUMBERLESS_VIOLATION.search(text), (relation, text)


def test_reply_is_think_then_answer_letter(built):
    for record in built[2]:
        reply = record["messages"][1]["content"][0]["text"]
        assert reply == f"<think>{record['meta']['cot']}</think>\n<answer>({record['answer']})</answer>"


def test_question_shows_each_object_by_box_placeholder_in_option_order(built):
    for record in built[2]:
        text = record["messages"][0]["content"][1]["text"]
        n = 3 if record["task"] == "relative_distance" else 2
        assert [f"{{box:{k}}}" in text for k in range(n)] == [True] * n and f"{{box:{n}}}" not in text
        assert [b["label"] for b in record["boxes"]] == [o["label"] for o in record["meta"]["objects"]]
        assert f"(A) {record['choices'][0]}\n(B) {record['choices'][1]}" in text
        if record["task"] != "spatial_relation":
            assert [b["label"] for b in record["boxes"][:2]] == record["choices"]


def test_no_cot_replies_with_the_letter_only(scenes, tmp_path):
    run_builder("qualitative-relations", QualitativeSettings(input=str(scenes[0]), num_samples=16, cot=False, boxes_in_prompt=False), tmp_path / "o")
    for record in _records(tmp_path / "o"):
        assert record["messages"][1]["content"][0]["text"] == f"({record['answer']})"
        assert "{box:" not in record["messages"][0]["content"][1]["text"]


# ---------------------------------------------------------------- validity, determinism, CLI


def test_records_pass_validation_with_images(built):
    records = read_records(built[0] / "train.jsonl")
    assert len(records) == 160 and {r.task for r in records} == {"spatial_relation", "depth_order", "relative_distance"}




def test_same_output_for_one_and_four_workers(scenes, tmp_path):
    for workers in (1, 4):
        run_builder("qualitative-relations", QualitativeSettings(input=str(scenes[0]), num_samples=40, workers=workers), tmp_path / f"w{workers}")
    assert folder_digest(tmp_path / "w1") == folder_digest(tmp_path / "w4")


def test_cli_build_then_data_check(scenes, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["data", "build", "qualitative-relations", "--input", str(scenes[0]), "--output", str(out),
                                 "--num-samples", "16", "--margin", "0.2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert len(_records(out)) == 16 and json.loads((out / "stats.json").read_text())["settings"]["margin"] == 0.2
    check = runner.invoke(app, ["data", "check", str(out / "train.jsonl"), "--model", "tiny-qwen3-vl"])
    assert check.exit_code == 0, check.output


# ---------------------------------------------------------------- lifting


def test_centroid_depth_comes_from_the_mask_not_the_box():
    depth = np.full((H, W), 8.0)
    region = disk((40, 30), 3)
    depth[region] = 2.0  # the object covers a small disk inside a 19×19 box of background
    box = np.zeros((H, W), dtype=bool)
    box[21:40, 31:50] = True
    intrinsics = (100.0, 100.0, 63.5, 47.5)
    assert lift_region(region, depth, intrinsics) == ((40.0, 30.0), ((40 - 63.5) * 2.0 / 100, (30 - 47.5) * 2.0 / 100, 2.0))
    assert lift_region(box, depth, intrinsics)[1][2] == 8.0


def test_default_intrinsics_follow_the_field_of_view():
    fx, fy, cx, cy = default_intrinsics(128, 96, 90.0)
    assert (fx, fy, cx, cy) == (pytest.approx(64.0), pytest.approx(64.0), 63.5, 47.5)


def test_png_millimetres_and_npy_metres_give_the_same_records(tmp_path):
    objects = place_objects(random.Random(9), 5, default_intrinsics(W, H, 60.0))
    npy = write_image_entry(tmp_path / "a", "s", objects, depth_format="npy")
    png = write_image_entry(tmp_path / "b", "s", objects, depth_format="png")
    stats_a, a = _build(tmp_path / "a", [npy], per_image=5)
    stats_b, b = _build(tmp_path / "b", [png], per_image=5)
    assert [r["meta"]["objects"] for r in a] == [r["meta"]["objects"] for r in b] and a


def test_pairs_inside_the_margin_are_skipped_and_counted(tmp_path):
    f = default_intrinsics(W, H, 60.0)
    # chair and table: same depth and same height in the image, 0.05 m apart sideways (< margin); lamp far away.
    objs = [{"label": "chair", "box": (30, 40, 41, 51), "centre": (35, 45), "half": 5, "z": 3.0, "mask": False},
            {"label": "table", "box": (32, 60, 43, 71), "centre": (37, 65), "half": 5, "z": 3.0, "mask": False},
            {"label": "lamp", "box": (100, 10, 111, 21), "centre": (105, 15), "half": 5, "z": 6.0, "mask": False}]
    assert abs((37 - 35) * 3.0 / f[0]) < MARGIN
    stats, records = _build(tmp_path, [write_image_entry(tmp_path, "m", objs)], per_image=5, margin=MARGIN)
    assert stats["skipped"]["ambiguous_horizontal"] == 1 and stats["skipped"]["ambiguous_depth"] == 1
    assert not any(r["meta"]["relation"] in ("left_of", "right_of") and {o["label"] for o in r["meta"]["objects"]} == {"chair", "table"} for r in records)


# ---------------------------------------------------------------- bad input


def _bad(root: Path, case: str) -> dict:
    """An input line exhibiting `case` (written beside the good scene)."""
    objects = place_objects(random.Random(11), 3, default_intrinsics(W, H, 60.0))
    line = write_image_entry(root, case, objects)
    if case == "unreadable_image":
        (root / line["image"]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    elif case == "depth_size_mismatch":
        np.save(root / line["depth"], np.ones((H // 2, W), dtype=np.float32))
    elif case == "unreadable_depth":
        line["depth"] = "depth/missing.npy"
    elif case == "eight_bit_depth":
        Image.new("L", (W, H), 3).save(root / "depth" / "eight.png")
        line["depth"] = "depth/eight.png"
    elif case == "malformed_entry":
        del line["objects"]
    elif case == "box_outside_image":
        line["objects"][0]["bbox"] = [W + 5, 10, W + 20, 30]
    elif case == "invalid_box":
        line["objects"][0]["bbox"] = [40, 10, 20, 30]
    elif case == "malformed_object":
        line["objects"][0] = {"bbox": [1, 2, 3]}
    elif case == "numeric_label":
        line["objects"][0]["label"] = "chair 2"
    elif case == "mask_size_mismatch":
        Image.new("L", (W // 2, H), 255).save(root / "masks_small.png")
        line["objects"][0]["mask"] = "masks_small.png"
    elif case == "empty_mask":
        Image.new("L", (W, H), 0).save(root / "mask_empty.png")
        line["objects"][0]["mask"] = "mask_empty.png"
    elif case == "unreadable_mask":
        line["objects"][0]["mask"] = "no_such_mask.png"
    elif case == "object_without_depth":
        depth = np.load(root / line["depth"])
        x1, y1, x2, y2 = line["objects"][0]["bbox"]
        depth[y1:y2, x1:x2] = 0.0
        np.save(root / line["depth"], depth)
    elif case == "same_label_pair":
        line["objects"][1]["label"] = line["objects"][0]["label"]
    elif case == "same_label_other_case":
        line["objects"][1]["label"] = line["objects"][0]["label"].upper()  # "the chair or the CHAIR" names no one object
    return line


@pytest.mark.parametrize("case, key", [
    ("unreadable_image", "unreadable_image"), ("depth_size_mismatch", "depth_size_mismatch"), ("unreadable_depth", "unreadable_depth"),
    ("eight_bit_depth", "unreadable_depth"), ("malformed_entry", "malformed_entry"), ("box_outside_image", "box_outside_image"),
    ("invalid_box", "invalid_box"), ("malformed_object", "malformed_object"), ("numeric_label", "numeric_label"),
    ("mask_size_mismatch", "mask_size_mismatch"), ("empty_mask", "empty_mask"), ("unreadable_mask", "unreadable_mask"),
    ("object_without_depth", "object_without_depth"), ("same_label_pair", "same_label_pair"),
    ("same_label_other_case", "same_label_pair"),
])
def test_bad_item_is_skipped_and_counted(case, key, tmp_path):
    stats, records = _build(tmp_path, [_good_line(tmp_path), _bad(tmp_path, case)], per_image=5)
    assert stats["skipped"].get(key, 0) >= 1, stats["skipped"]
    assert any(case in where or "detections.jsonl:2:" in where for where in stats["skip_examples"][key])  # names the item
    assert records and all(r["meta"]["image_id"] in ("good", case) for r in records)


def test_box_past_the_edge_is_clipped_and_counted(tmp_path):
    line = _good_line(tmp_path)
    x1, y1, x2, y2 = line["objects"][0]["bbox"]
    line["objects"][0]["bbox"] = [x1 - 200, y1, x2, y2]  # still covers the object's pixels, and the background left of it
    stats, records = _build(tmp_path, [line], per_image=5)
    assert stats["boxes_clipped"] == 1
    boxes = [b["bbox"] for r in records for b, o in zip(r["boxes"], r["meta"]["objects"]) if o["index"] == 0]
    assert boxes and all(b == [0.0, y1, x2, y2] for b in boxes)


def test_repeated_image_id_is_a_malformed_entry(tmp_path):
    good = _good_line(tmp_path)
    stats, _ = _build(tmp_path, [good, dict(good)])
    assert stats["skipped"]["malformed_entry"] == 1


def test_invalid_json_line_is_an_error_naming_file_and_line(tmp_path):
    with pytest.raises(BuildError, match=r"detections\.jsonl:2: invalid JSON"):
        _build(tmp_path, [_good_line(tmp_path), '{"image": '])


def test_missing_input_is_an_error(tmp_path):
    with pytest.raises(BuildError, match="detections file not found"):
        run_builder("qualitative-relations", QualitativeSettings(input=str(tmp_path / "none.jsonl")), tmp_path / "o")


def test_input_without_a_usable_image_is_an_error(tmp_path):
    with pytest.raises(BuildError, match="no image gave a usable question.*unreadable_image: 1"):
        _build(tmp_path, [_bad(tmp_path, "unreadable_image")])
    assert not (tmp_path / "out").exists()


def test_negative_margin_is_refused(scenes, tmp_path):
    with pytest.raises(BuildError, match="--margin"):
        run_builder("qualitative-relations", QualitativeSettings(input=str(scenes[0]), margin=-1), tmp_path / "o")
