"""crossview-x3: pairing, the GT rule, the concat transform, NOT_VISIBLE, the red overlay, workers, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import read_jsonl
from spatialtune.cli import app
from spatialtune.data.builders import BuildError, item_rng, run_builder
from spatialtune.data.builders.crossview_x3 import CrossViewX3Settings, gt_point, overlay_mask
from spatialtune.media import read_mask
from spatialtune.records import read_records
from spatialtune.tasks.crossview import format_point, query_to_concat, reference_to_concat

W, H = 48, 32
COLOURS = {"01": (100, 100, 100), "02": (30, 160, 60), "03": (200, 40, 120), "04": (20, 60, 220)}


def box(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """A filled rectangle mask, corners inclusive."""
    mask = np.zeros((H, W), bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def ring() -> np.ndarray:
    """A square ring 3 px thick: its bbox centre falls in the hole."""
    return box(10, 6, 30, 26) & ~box(13, 9, 27, 23)


def u_shape() -> np.ndarray:
    """A U: two legs and a bottom bar; its bbox centre is between the legs."""
    return box(8, 4, 12, 24) | box(28, 4, 32, 24) | box(8, 20, 32, 24)


EMPTY = np.zeros((H, W), bool)


def dilate(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel (4-neighbourhood), as the `_mask_dialated.png` files are."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def write_view(uid_dir: Path, index: str, mask: np.ndarray, size: tuple[int, int] = (W, H)) -> str:
    """The four files of one view (frame = index·100); returns the view name `NN_frame`."""
    uid_dir.mkdir(parents=True, exist_ok=True)
    name = f"{index}_{int(index) * 100:06d}"
    Image.new("RGB", size, COLOURS[index]).save(uid_dir / f"{name}_original.png")
    Image.new("RGB", size, (128, 128, 128)).save(uid_dir / f"{name}_inpainted.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(uid_dir / f"{name}_mask.png")
    Image.fromarray(dilate(mask).astype(np.uint8) * 255).save(uid_dir / f"{name}_mask_dialated.png")
    return name


def write_x3(root: Path) -> Path:
    """train: uid_1 (box, ring, empty), uid_2 (box, U); validation: uid_7 (box, empty, box, ring)."""
    for index, mask in zip(("01", "02", "03"), (box(5, 5, 15, 12), ring(), EMPTY)):
        write_view(root / "train" / "sceneA" / "uid_1", index, mask)
    for index, mask in zip(("01", "02"), (box(20, 10, 40, 20), u_shape())):
        write_view(root / "train" / "sceneA" / "uid_2", index, mask)
    for index, mask in zip(("01", "02", "03", "04"), (box(2, 2, 9, 9), EMPTY, box(30, 4, 44, 28), ring())):
        write_view(root / "validation" / "sceneB" / "uid_7", index, mask)
    return root


def build(tmp_path: Path, name: str = "out", input_root: Path | None = None, **settings) -> tuple[Path, dict]:
    """Run the builder on the standard fixture (or `input_root`); returns (output folder, stats)."""
    root = input_root or write_x3(tmp_path / "x3")
    out = tmp_path / name
    stats = run_builder("crossview-x3", CrossViewX3Settings(input=str(root), **settings), out)
    return out, stats




# ---------------------------------------------------------------- the GT rule


def test_gt_point_is_the_bbox_centre_when_it_lies_in_the_mask():
    point = gt_point(box(10, 5, 20, 9), rng=None)  # the RNG is not touched
    assert point.rule == "bbox_center" and point.xy_norm01 == (15.5 / W, 7.5 / H)


@pytest.mark.parametrize("mask", [ring(), u_shape()], ids=["ring", "U"])
def test_gt_point_falls_back_to_a_seeded_uniform_mask_pixel_when_the_centre_is_outside(mask):
    ys, xs = np.nonzero(mask)
    index = item_rng(3, "key").randrange(xs.size)  # the draw the rule makes: one index into the row-major pixels
    point = gt_point(mask, item_rng(3, "key"))
    assert point.rule == "random_mask_pixel"
    assert point.xy_norm01 == ((xs[index] + 0.5) / W, (ys[index] + 0.5) / H)
    drawn = {gt_point(mask, item_rng(seed, "key")).xy_norm01 for seed in range(20)}
    assert len(drawn) > 5  # depends on the seed ...
    for x, y in drawn:  # ... and always lands on the mask
        assert mask[int(y * H), int(x * W)]


def test_an_empty_mask_has_no_point():
    assert gt_point(EMPTY, item_rng(0, "k")) is None


def test_the_pair_gt_is_keyed_by_the_pair_not_by_the_order_it_is_built_in(tmp_path):
    root = write_x3(tmp_path / "x3")
    anchor, _ = build(tmp_path, "anchor", root, mode="anchor")
    every, _ = build(tmp_path, "all", root, mode="all")
    ring_pair = "T1_MULTI_sceneA_uid1_A01_000100_B02_000200"
    answers = {r["id"]: r for r in read_jsonl(anchor / "t1_train_multi.jsonl")}
    assert answers[ring_pair] == {r["id"]: r for r in read_jsonl(every / "t1_train_multi.jsonl")}[ring_pair]
    record = answers[ring_pair]
    assert record["meta"]["gt_rule"] == "random_mask_pixel"
    expected = gt_point(dilate(ring()), item_rng(0, "x3", "pair", "train", "sceneA", "1", "01_000100", "02_000200"))
    assert record["answer"] == format_point(expected.xy_norm01)
    other_seed, _ = build(tmp_path, "seed7", root, seed=7)
    assert [r["answer"] for r in read_jsonl(other_seed / "t1_train_multi.jsonl")] != [r["answer"] for r in read_jsonl(anchor / "t1_train_multi.jsonl")]


def test_answers_are_points_with_four_decimals_normalised_to_the_query(tmp_path):
    out, _ = build(tmp_path)
    [u_pair] = [r for r in read_jsonl(out / "t1_train_multi.jsonl") if "uid2" in r["id"]]
    assert u_pair["meta"]["gt_rule"] == "random_mask_pixel"  # the U's centre is between its legs
    assert format_point((0.5, 0.03125)) == "[(0.5000, 0.0312)]"
    t2b = {r["id"]: r for r in read_jsonl(out / "t2b_train_multi.jsonl")}
    box_view = t2b["T2B_MULTI_sceneA_uid1_K01_000100"]
    # dilated box(5, 5, 15, 12) spans x 4..16, y 4..13: centre (10, 8.5) → ((10.5)/48, 9/32)
    assert box_view["answer"] == "[(0.2188, 0.2812)]" and box_view["meta"]["gt_rule"] == "bbox_center"
    assert box_view["points"] == [{"point": [10.5, 9.0], "image": 1, "label": "target"}]


# ---------------------------------------------------------------- pairs


@pytest.mark.parametrize("mode, k, expected", [("anchor", 1, 3), ("anchor", 2, 6), ("anchor", 4, 12), ("anchor", 9, 12), ("all", 1, 12)])
def test_pair_counts_for_anchor_and_all_modes(tmp_path, mode, k, expected):
    root = tmp_path / "x3"
    for index, x in zip(("01", "02", "03", "04"), (2, 12, 22, 32)):
        write_view(root / "train" / "s" / "uid_5", index, box(x, 4, x + 8, 20))
    out, stats = build(tmp_path, input_root=root, mode=mode, anchor_k=k)
    records = read_jsonl(out / "t1_train_multi.jsonl")
    assert len(records) == len(read_jsonl(out / "t1_train_concat.jsonl")) == expected
    references = sorted({r["meta"]["reference_view"] for r in records})
    assert references == ["01_000100", "02_000200", "03_000300", "04_000400"][: min(k, 4) if mode == "anchor" else 4]
    assert all(r["meta"]["reference_view"] != r["meta"]["query_view"] for r in records)
    assert stats["per_split"]["train"]["pairs"] == expected


def test_anchor_references_are_the_first_k_views_in_view_order(tmp_path):
    root = tmp_path / "x3"
    for index in ("03", "01", "04", "02"):
        write_view(root / "train" / "s" / "uid_5", index, box(10, 4, 30, 20))
    out, _ = build(tmp_path, input_root=root, anchor_k=2)
    pairs = [(r["meta"]["reference_view"][:2], r["meta"]["query_view"][:2]) for r in read_jsonl(out / "t1_train_multi.jsonl")]
    assert pairs == [("01", "02"), ("01", "03"), ("01", "04"), ("02", "01"), ("02", "03"), ("02", "04")]


def test_a_pair_whose_reference_mask_is_empty_is_a_counted_skip(tmp_path):
    _, stats = build(tmp_path, mode="all")
    assert stats["skipped"]["empty_reference_mask"] == 2 + 3  # train uid_1 view 03; validation uid_7 view 02
    assert stats["per_split"] == {
        "train": {"uids": 2, "views": 5, "pairs": 6, "pairs_kept": 6, "t2a": 2, "t2b_views": 4, "t2b_kept": 4},
        "validation": {"uids": 1, "views": 4, "pairs": 9, "pairs_kept": 9, "t2a": 3, "t2b_views": 3, "t2b_kept": 3},
    }
    assert stats["skipped"]["t2b_empty_mask"] == 2


# ---------------------------------------------------------------- tasks


def test_not_visible_exactly_on_empty_query_masks_and_task2a_is_that_subset(tmp_path):
    out, stats = build(tmp_path, mode="all")
    for split in ("train", "val"):
        t1 = read_jsonl(out / f"t1_{split}_multi.jsonl")
        for record in t1:
            empty = not read_mask(Path(record["masks"][0]["path"])).any()
            assert (record["answer"] == "NOT_VISIBLE") == empty == (record["meta"]["label"] == "not_visible")
            assert record["messages"][1]["content"][0]["text"] == record["answer"]
        concat = {r["id"].replace("T1_CONCAT", ""): r["answer"] for r in read_jsonl(out / f"t1_{split}_concat.jsonl")}
        assert {k: v == "NOT_VISIBLE" for k, v in concat.items()} == {r["id"].replace("T1_MULTI", ""): r["answer"] == "NOT_VISIBLE" for r in t1}
        t2a = read_jsonl(out / f"t2a_{split}_multi.jsonl")
        assert [r["id"].replace("T2A", "T1") for r in t2a] == [r["id"] for r in t1 if r["answer"] == "NOT_VISIBLE"]
        assert all(r["answer"] == "NOT_VISIBLE" and r["task"] == "t2a_multi" for r in t2a)
    assert stats["labels"]["t1_val_multi.jsonl"]["t1_multi"] == {"not_visible": 3, "visible": 6}


def test_concat_prompt_and_answer_are_in_the_whole_image_frame(tmp_path):
    assert reference_to_concat((0.4, 0.3)) == (0.2, 0.3) and query_to_concat((0.4, 0.3)) == (0.7, 0.3)
    out, _ = build(tmp_path)
    record = next(r for r in read_jsonl(out / "t1_train_concat.jsonl") if r["id"].endswith("A01_000100_B02_000200"))
    x3 = tmp_path / "x3" / "train" / "sceneA" / "uid_1"
    reference = gt_point(read_mask(x3 / "01_000100_mask_dialated.png"), None).xy_norm01
    query = gt_point(read_mask(x3 / "02_000200_mask_dialated.png"), item_rng(0, "x3", "pair", "train", "sceneA", "1", "01_000100", "02_000200")).xy_norm01
    assert f"[({reference[0] * 0.5:.4f}, {reference[1]:.4f})]" in record["messages"][0]["content"][1]["text"]
    assert record["answer"] == format_point((0.5 + query[0] * 0.5, query[1]))
    assert record["meta"]["query_original"] == str((x3 / "02_000200_original.png").resolve())
    with Image.open(out / record["images"][0]) as im:
        assert im.size == (2 * W, H)
        pixels = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(pixels[:, : W - 2] - COLOURS["01"]).max() <= 3  # the unmarked reference on the left (JPEG: not at the seam)
    assert np.abs(pixels[:, W + 2 :] - COLOURS["02"]).max() <= 3  # the query on the right


def test_a_query_of_another_size_is_resized_to_keep_the_halves_equal(tmp_path):
    root = tmp_path / "x3"
    write_view(root / "train" / "s" / "uid_1", "01", box(4, 4, 20, 20))
    write_view(root / "train" / "s" / "uid_1", "02", np.zeros((2 * H, 2 * W), bool), size=(2 * W, 2 * H))
    out, stats = build(tmp_path, input_root=root)
    [record] = read_jsonl(out / "t1_train_concat.jsonl")
    with Image.open(out / record["images"][0]) as im:
        assert im.size == (2 * W, H)
    assert stats["concat_query_resized"] == 1


def test_task2b_pairs_original_and_inpainted_and_answers_on_the_inpainted(tmp_path):
    out, _ = build(tmp_path)
    record = read_jsonl(out / "t2b_train_multi.jsonl")[0]
    assert [Path(p).name for p in record["images"]] == ["01_000100_original.png", "01_000100_inpainted.png"]
    assert record["meta"]["query_original"] == record["images"][1] and record["masks"][0]["image"] == 1


def test_red_overlay_blends_with_alpha_and_leaves_the_rest_untouched():
    rgb = np.array([[[0, 0, 0], [100, 100, 100], [255, 255, 255], [10, 20, 30]]], np.uint8)
    mask = np.array([[True, True, True, False]])
    assert overlay_mask(rgb, mask, 0.45).tolist() == [[[115, 0, 0], [170, 55, 55], [255, 140, 140], [10, 20, 30]]]
    assert overlay_mask(rgb, mask, 0.2).tolist() == [[[51, 0, 0], [131, 80, 80], [255, 204, 204], [10, 20, 30]]]


def test_the_marked_reference_image_has_the_overlay_on_its_mask_only(tmp_path):
    out, _ = build(tmp_path)
    marked = np.asarray(Image.open(out / "marked" / "train" / "sceneA" / "uid_1" / "01_000100_marked.png"))
    mask = dilate(box(5, 5, 15, 12))
    assert (marked[mask] == [170, 55, 55]).all() and (marked[~mask] == COLOURS["01"]).all()
    record = read_jsonl(out / "t1_train_multi.jsonl")[0]
    assert record["images"][0] == "marked/train/sceneA/uid_1/01_000100_marked.png"


def test_use_dilated_mask_chooses_the_mask_file(tmp_path):
    root = write_x3(tmp_path / "x3")
    plain, _ = build(tmp_path, "plain", root, use_dilated_mask=False)
    record = read_jsonl(plain / "t2b_train_multi.jsonl")[0]
    assert record["masks"][0]["path"].endswith("01_000100_mask.png") and record["meta"]["mask_variant"] == "mask"
    assert record["answer"] == format_point(gt_point(box(5, 5, 15, 12), None).xy_norm01)
    marked = np.asarray(Image.open(plain / "marked" / "train" / "sceneA" / "uid_1" / "01_000100_marked.png"))
    assert (marked[dilate(box(5, 5, 15, 12)) & ~box(5, 5, 15, 12)] == COLOURS["01"]).all()


def test_a_missing_preferred_mask_falls_back_to_the_other_and_is_counted(tmp_path):
    root = write_x3(tmp_path / "x3")
    (root / "train" / "sceneA" / "uid_1" / "01_000100_mask_dialated.png").unlink()
    out, stats = build(tmp_path, input_root=root)
    assert stats["mask_fallbacks"] == 1
    assert read_jsonl(out / "t2b_train_multi.jsonl")[0]["masks"][0]["path"].endswith("01_000100_mask.png")


def test_num_samples_keeps_a_seeded_subset_per_split(tmp_path):
    root = write_x3(tmp_path / "x3")
    full, _ = build(tmp_path, "full", root, mode="all")
    capped, stats = build(tmp_path, "capped", root, mode="all", num_samples=4)
    ids = [r["id"] for r in read_jsonl(capped / "t1_val_multi.jsonl")]
    all_ids = [r["id"] for r in read_jsonl(full / "t1_val_multi.jsonl")]
    assert len(ids) == 4 and [i for i in all_ids if i in ids] == ids
    assert len(read_jsonl(capped / "t2b_train_multi.jsonl")) == 4 and stats["per_split"]["validation"]["pairs_kept"] == 4


# ---------------------------------------------------------------- determinism, validity, CLI


def test_output_is_byte_identical_for_1_and_4_workers(tmp_path):
    root = write_x3(tmp_path / "x3")
    one, _ = build(tmp_path, "one", root, mode="all", workers=1)
    four, _ = build(tmp_path, "four", root, mode="all", workers=4)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(four) for p in four.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".jpg"]) == 15
    for name in files:
        assert (one / name).read_bytes() == (four / name).read_bytes(), name


def test_every_file_passes_record_validation_with_images(tmp_path):
    out, stats = build(tmp_path)
    names = ["t1_train_multi", "t1_train_concat", "t2a_train_multi", "t2b_train_multi", "t1_val_multi", "t1_val_concat", "t2a_val_multi", "t2b_val_multi"]
    assert sorted(stats["counts"]) == sorted(f"{n}.jsonl" for n in names)
    for name in names:
        for record in read_records(out / f"{name}.jsonl"):
            assert Path(record.meta["query_original"]).is_file()
            assert len(record.images) == (1 if "concat" in name else 2)


def test_records_are_scored_by_the_crossview_benchmark(tmp_path):
    from spatialtune.eval.benchmarks import get_benchmark

    out, _ = build(tmp_path, mode="all")
    bench = get_benchmark("crossview")
    kinds = {"t1_train_multi": "t1_multi", "t1_train_concat": "t1_concat", "t2a_train_multi": "t2a", "t2b_train_multi": "t2b"}
    for name, kind in kinds.items():
        answers = {r["id"]: r["answer"] for r in read_jsonl(out / f"{name}.jsonl")}
        rows = bench.load(out / f"{name}.jsonl", None, None)
        assert rows and {row["task"] for row in rows} == {kind}
        for row in rows:  # the GT answer, replayed as the model's reply, scores 1: hits its own mask, or NOT_VISIBLE
            assert bench.score(row, answers[row["id"]], None).score == 1.0, (name, row["id"])


def test_cli_builds_and_data_check_accepts_the_records(tmp_path):
    root = write_x3(tmp_path / "x3")
    runner = CliRunner()
    result = runner.invoke(app, ["data", "build", "crossview-x3", "--input", str(root), "--output", str(tmp_path / "cli"), "--mode", "all", "--no-emit-concat", "--alpha", "0.3"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "cli" / "t1_train_concat.jsonl").exists()
    stats = json.loads((tmp_path / "cli" / "stats.json").read_text())
    assert stats["settings"]["alpha"] == 0.3 and stats["settings"]["emit_concat"] is False
    check = runner.invoke(app, ["data", "check", str(tmp_path / "cli" / "t1_train_multi.jsonl"), "--model", "tiny-qwen3-vl"])
    assert check.exit_code == 0, check.output
    bad = runner.invoke(app, ["data", "build", "crossview-x3", "--input", str(root), "--output", str(tmp_path / "bad"), "--mode", "pairs"])
    assert bad.exit_code == 1 and "--mode must be one of anchor, all" in " ".join(bad.output.split())


# ---------------------------------------------------------------- bad input


def test_a_view_missing_its_mask_or_original_is_a_counted_skip(tmp_path):
    root = write_x3(tmp_path / "x3")
    uid = root / "train" / "sceneA" / "uid_1"
    (uid / "02_000200_mask.png").unlink()
    (uid / "02_000200_mask_dialated.png").unlink()
    (root / "validation" / "sceneB" / "uid_7" / "03_000300_original.png").unlink()
    out, stats = build(tmp_path, input_root=root, mode="all")
    assert stats["skipped"]["missing_mask"] == 1 and stats["skip_examples"]["missing_mask"] == [str(uid / "02_000200_mask_dialated.png")]
    assert stats["skipped"]["missing_original"] == 1 and stats["skip_examples"]["missing_original"][0].endswith("uid_7/03_000300_original.png")
    names = [json.dumps(r) for f in out.glob("*.jsonl") for r in read_jsonl(f)]
    assert not any("02_000200" in n and "uid1" in n for n in names) and not any("03_000300" in n and "uid7" in n for n in names)


def test_an_unreadable_image_is_a_counted_skip_naming_it(tmp_path):
    root = write_x3(tmp_path / "x3")
    broken = root / "train" / "sceneA" / "uid_2" / "02_000200_original.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    inpainted = root / "train" / "sceneA" / "uid_1" / "01_000100_inpainted.png"
    inpainted.write_bytes(b"garbage")
    out, stats = build(tmp_path, input_root=root)
    assert stats["skipped"]["unreadable_image"] == 2
    assert sorted(e.split(":")[0] for e in stats["skip_examples"]["unreadable_image"]) == sorted([str(broken.resolve()), str(inpainted.resolve())])
    assert stats["skipped"]["too_few_views"] == 1  # uid_2 is left with one view: no pairs
    assert not any("uid2" in r["id"] for r in read_jsonl(out / "t1_train_multi.jsonl"))
    assert [r["id"] for r in read_jsonl(out / "t2b_train_multi.jsonl")] == ["T2B_MULTI_sceneA_uid1_K02_000200", "T2B_MULTI_sceneA_uid2_K01_000100"]


def test_other_bad_views_are_counted_skips(tmp_path):
    root = write_x3(tmp_path / "x3")
    uid = root / "train" / "sceneA" / "uid_1"
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(uid / "03_000300_mask_dialated.png")
    (root / "train" / "sceneA" / "uid_2" / "02_000200_inpainted.png").unlink()
    (root / "train" / "sceneA" / "uid_9").mkdir()
    (root / "train" / "sceneA" / "uid_9" / "notes.txt").write_text("no views")
    _, stats = build(tmp_path, input_root=root)
    assert stats["skipped"]["mask_size_mismatch"] == 1 and stats["skipped"]["missing_inpainted"] == 1
    assert stats["skipped"]["empty_uid_folder"] == 1


def test_no_split_folders_is_an_error(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(BuildError, match="no split folders"):
        build(tmp_path, input_root=tmp_path / "empty")
    root = write_x3(tmp_path / "x3")
    with pytest.raises(BuildError, match="looks like a split folder"):
        build(tmp_path, input_root=root / "train")
    with pytest.raises(BuildError, match="not a folder"):
        build(tmp_path, input_root=tmp_path / "nowhere")


@pytest.mark.parametrize("settings, message", [({"mode": "pairs"}, "--mode"), ({"anchor_k": 0}, "--anchor-k"), ({"alpha": 1.5}, "--alpha")])
def test_impossible_settings_are_errors(tmp_path, settings, message):
    with pytest.raises(BuildError, match=message):
        build(tmp_path, **settings)
