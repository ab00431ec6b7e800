"""Public-source converters: rlhf-v (preference / SFT), pixmo-cap (captions), spatial-vqa, and their shared row loader."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import folder_digest, read_jsonl
from spatialtune.cli import app
from spatialtune.data.builders import BuildError, run_builder
from spatialtune.data.builders._public import load_rows
from spatialtune.data.builders.pixmo_cap import PixmoCapSettings, pixmo_image_stem
from spatialtune.data.builders.rlhf_v import RlhfVSettings, trl_preference_row
from spatialtune.data.builders.spatial_vqa import SpatialVqaSettings
from spatialtune.records import read_records

runner = CliRunner()


def png(colour, size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_hf_parquet(path: Path, rows: dict[str, list], image_columns: dict[str, object]) -> Path:
    """A parquet file as `datasets` writes a dataset with Image features (images as {bytes, path} structs)."""
    from datasets import Dataset, Features, Sequence, Value
    from datasets import Image as ImageFeature

    features = {k: Value("string") if isinstance(v[0], str) else Value("int64") for k, v in rows.items() if k not in image_columns}
    features.update({k: ImageFeature() if kind == "image" else Sequence(ImageFeature()) for k, kind in image_columns.items()})
    if "messages" in rows:
        features["messages"] = [{"role": Value("string"), "content": [{"type": Value("string"), "text": Value("string"), "index": Value("int64")}]}]
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows, features=Features(features)).to_parquet(str(path))
    return path






def check_cli(path: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(path), "--model", "tiny-qwen3-vl"])
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- RLHF-V


def rlhf_text(question="<image>\nWhat is in the image?", chosen="A red square.", rejected="A blue circle.", **drop) -> str:
    text = {"question": question, "chosen": chosen, "rejected": rejected}
    return json.dumps({k: v for k, v in text.items() if k not in drop})


@pytest.fixture
def rlhf(tmp_path) -> Path:
    """RLHF-V's parquet layout: 8 rows, 3 usable as pairs, 4 as SFT, one bad row of each kind."""
    Image.open(io.BytesIO(png("green"))).save(tmp_path / "on_disk.png")
    red = {"bytes": png("red"), "path": None}
    texts_images = [
        (rlhf_text(), red),
        (rlhf_text(question="Describe the image in detail.", chosen="A red square on grey.", rejected="Two cats."), red),
        ("{oops", red),
        (rlhf_text(rejected=None), red),
        (rlhf_text(chosen="Same.", rejected="Same."), red),
        (rlhf_text(), {"bytes": b"not an image", "path": None}),
        (rlhf_text(), None),
        (rlhf_text(chosen="Green."), None),
    ]
    rows = {
        "ds_name": ["RLHF-V"] * 8,
        "image": [image for _, image in texts_images],
        "text": [text for text, _ in texts_images],
        "origin_dataset": ["VQAv2", "COCO", "VQAv2", "VQAv2", "VQAv2", "VQAv2", "VQAv2", "COCO"],
        "origin_split": [json.dumps({"model": "muffin", "type": "qa"})] * 8,
        "idx": list(range(100, 108)),
        "image_path": ["coco/1.jpg"] * 6 + ["missing.jpg", "on_disk.png"],
    }
    return write_hf_parquet(tmp_path / "RLHF-V-Dataset.parquet", rows, {"image": "image"})


def test_rlhf_v_pairs_are_records_with_trl_chosen_and_rejected_and_bad_rows_are_counted(rlhf, tmp_path):
    stats = run_builder("rlhf-v", RlhfVSettings(input=str(rlhf)), tmp_path / "out")
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [r["id"] for r in records] == ["rlhf-v/000001", "rlhf-v/000002", "rlhf-v/000008"]
    first = records[0]
    assert first["task"] == "preference" and first["messages"][0]["content"] == [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]
    assert first["chosen"] == [{"role": "assistant", "content": [{"type": "text", "text": "A red square."}]}] == first["messages"][1:]
    assert first["rejected"] == [{"role": "assistant", "content": [{"type": "text", "text": "A blue circle."}]}]
    assert first["meta"] == {"source": "RLHF-V", "idx": 100, "ds_name": "RLHF-V", "origin_dataset": "VQAv2",
                             "origin_split": '{"model": "muffin", "type": "qa"}', "label": "VQAv2"}
    assert stats["skipped"] == {"identical_pair": 1, "invalid_text": 2, "missing_image": 1, "unreadable_image": 1}
    assert records[2]["images"] == [str((rlhf.parent / "on_disk.png").resolve())]
    assert len(read_records(tmp_path / "out" / "train.jsonl")) == 3


def test_embedded_images_are_written_once_unchanged(rlhf, tmp_path):
    run_builder("rlhf-v", RlhfVSettings(input=str(rlhf)), tmp_path / "out")
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert records[0]["images"] == records[1]["images"] == [f"images/{hashlib.sha256(png('red')).hexdigest()[:16]}.png"]
    assert (tmp_path / "out" / records[0]["images"][0]).read_bytes() == png("red")
    assert len(list((tmp_path / "out" / "images").iterdir())) == 1


def test_rlhf_v_preference_rows_feed_trl_vision_dpo_collator(rlhf, tmp_path):
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    from spatialtune.models.loading import load_processor

    run_builder("rlhf-v", RlhfVSettings(input=str(rlhf)), tmp_path / "out")
    row = trl_preference_row(read_jsonl(tmp_path / "out" / "train.jsonl")[0], tmp_path / "out")
    processor, _ = load_processor("tiny-qwen3-vl")
    batch = DataCollatorForVisionPreference(processor)([{**row, "images": [Image.open(p) for p in row["images"]]}])
    chosen = batch["input_ids"][0][batch["completion_mask"][0] == 1]
    rejected = batch["input_ids"][1][batch["completion_mask"][1] == 1]
    assert processor.tokenizer.decode(chosen).startswith("A red square.") and processor.tokenizer.decode(rejected).startswith("A blue circle.")


def test_rlhf_v_sft_mode_keeps_chosen_answers_only(rlhf, tmp_path):
    stats = run_builder("rlhf-v", RlhfVSettings(input=str(rlhf), mode="sft"), tmp_path / "out")
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [r["id"] for r in records] == ["rlhf-v/000001", "rlhf-v/000002", "rlhf-v/000005", "rlhf-v/000008"]
    assert all(r["task"] == "vqa" and "chosen" not in r and r["answer"] == r["messages"][1]["content"][0]["text"] for r in records)
    assert "identical_pair" not in stats["skipped"]
    check_cli(tmp_path / "out" / "train.jsonl")


def test_rlhf_v_output_is_the_same_for_one_and_four_workers_and_the_sample_is_seeded(rlhf, tmp_path):
    run_builder("rlhf-v", RlhfVSettings(input=str(rlhf), mode="sft", workers=1), tmp_path / "w1")
    run_builder("rlhf-v", RlhfVSettings(input=str(rlhf), mode="sft", workers=4), tmp_path / "w4")
    assert folder_digest(tmp_path / "w1") == folder_digest(tmp_path / "w4")

    def picked(seed: int, name: str) -> list[str]:
        run_builder("rlhf-v", RlhfVSettings(input=str(rlhf), mode="sft", num_samples=2, seed=seed), tmp_path / name, overwrite=True)
        return [r["id"] for r in read_jsonl(tmp_path / name / "train.jsonl")]

    assert picked(3, "a") == picked(3, "b") == sorted(picked(3, "a")) and len(picked(3, "a")) == 2
    assert len({tuple(picked(seed, f"s{seed}")) for seed in range(6)}) > 1


def test_rlhf_v_builds_from_the_cli(rlhf, tmp_path):
    result = runner.invoke(app, ["data", "build", "rlhf-v", "--input", str(rlhf), "--mode", "sft", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "invalid_text" in result.output and len(read_jsonl(tmp_path / "out" / "train.jsonl")) == 4
    bad = runner.invoke(app, ["data", "build", "rlhf-v", "--input", str(rlhf), "--mode", "both", "--output", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "--mode must be one of preference, sft" in bad.output


# ---------------------------------------------------------------- the shared row loader


def test_a_snapshot_folder_reads_the_shards_of_the_split_in_order(tmp_path):
    for name, idx in [("train-00001-of-00002", 2), ("train-00000-of-00002", 1), ("test-00000-of-00001", 9)]:
        write_hf_parquet(tmp_path / "snap" / "data" / f"{name}.parquet", {"text": [rlhf_text()], "idx": [idx], "image": [{"bytes": png("red"), "path": None}]}, {"image": "image"})
    assert [r["idx"] for r in load_rows(tmp_path / "snap", "train").rows] == [1, 2]
    assert [r["idx"] for r in load_rows(tmp_path / "snap", "test").rows] == [9]


def test_json_rows_may_be_a_list_or_an_object_holding_one(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"q": 1}]))
    (tmp_path / "b.json").write_text(json.dumps({"info": "x", "data": [{"q": 2}]}))
    assert load_rows(tmp_path / "a.json", "train").rows == [{"q": 1}] and load_rows(tmp_path / "b.json", "train").rows == [{"q": 2}]


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"text": "x"}\n{oops\n', r"bad.jsonl:2: invalid JSON"),
    ("list.jsonl", '{"text": "x"}\n[1, 2]\n', r"list.jsonl:2: expected a JSON object per line"),
    ("bad.parquet", "not parquet", r"bad.parquet: cannot read it as parquet"),
    ("two.json", '{"a": [], "b": []}', r"two.json: expected a list of rows, or an object holding exactly one list"),
])
def test_a_malformed_input_file_is_an_error_naming_it(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(BuildError, match=message):
        run_builder("rlhf-v", RlhfVSettings(input=str(tmp_path / name)), tmp_path / "out")


def test_a_missing_file_or_an_unreachable_hub_id_is_an_error_that_says_which(tmp_path):
    with pytest.raises(BuildError, match="no such file or folder"):
        load_rows(tmp_path / "nope.parquet", "train")
    with pytest.raises(BuildError, match="nobody-here/no-such-dataset: not a local file or folder, and loading it from the Hugging Face hub failed"):
        load_rows("nobody-here/no-such-dataset", "train")


def test_hub_rows_keep_images_as_bytes_for_the_builders(tmp_path, monkeypatch):
    import datasets

    local = write_hf_parquet(tmp_path / "hub.parquet", {"text": [rlhf_text()], "image": [{"bytes": png("red"), "path": None}]}, {"image": "image"})
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: calls.append((name, split)) or datasets.Dataset.from_parquet(str(local)))
    rows = load_rows("openbmb/RLHF-V-Dataset", "train")
    assert calls == [("openbmb/RLHF-V-Dataset", "train")] and rows.image_root is None
    assert rows.rows[0]["image"] == {"bytes": png("red"), "path": None}


# ---------------------------------------------------------------- PixMo-Cap

URLS = [f"https://images.example.com/{k}.jpg" for k in range(6)]


@pytest.fixture
def pixmo(tmp_path) -> tuple[Path, Path]:
    """PixMo-Cap rows (jsonl) and an image folder following the sha256(url) naming rule."""
    images = tmp_path / "pixmo_images"
    images.mkdir()
    (images / f"{pixmo_image_stem(URLS[0])}.jpg").write_bytes(jpeg("red"))
    (images / f"{pixmo_image_stem(URLS[1])}.png").write_bytes(png("blue"))
    (images / f"{pixmo_image_stem(URLS[3])}.jpg").write_bytes(b"broken")
    (images / f"{pixmo_image_stem(URLS[4])}.jpg").write_bytes(jpeg("green"))
    rows = [
        {"image_url": URLS[0], "caption": "A red picture, seen from the front.", "transcripts": ["it is red", "red image"]},
        {"image_url": URLS[1], "caption": "A blue picture.", "transcripts": []},
        {"image_url": URLS[2], "caption": "Its file was never downloaded.", "transcripts": []},
        {"image_url": URLS[3], "caption": "Its file is broken.", "transcripts": []},
        {"image_url": URLS[4], "caption": "   ", "transcripts": []},
        {"caption": "No URL at all.", "transcripts": []},
    ]
    path = tmp_path / "pixmo-cap.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, images


def test_pixmo_image_names_are_the_sha256_of_the_url():
    assert pixmo_image_stem("https://images.example.com/0.jpg") == hashlib.sha256(b"https://images.example.com/0.jpg").hexdigest()
    assert pixmo_image_stem("a") == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"


def test_pixmo_captions_become_records_and_missing_images_are_counted(pixmo, tmp_path):
    rows, images = pixmo
    stats = run_builder("pixmo-cap", PixmoCapSettings(input=str(rows), image_dir=images), tmp_path / "out")
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [r["id"] for r in records] == ["pixmo-cap/0000001", "pixmo-cap/0000002"]
    assert records[0]["images"] == [str((images / f"{pixmo_image_stem(URLS[0])}.jpg").resolve())]
    assert records[0]["messages"][0]["content"][1]["text"] == "Describe this image in detail."
    assert records[0]["answer"] == records[0]["messages"][1]["content"][0]["text"] == "A red picture, seen from the front."
    assert records[0]["meta"] == {"source": "PixMo-Cap", "image_url": URLS[0], "transcripts": ["it is red", "red image"]}
    assert stats["skipped"] == {"empty_caption": 1, "missing_image": 1, "missing_url": 1, "unreadable_image": 1}
    assert len(read_records(tmp_path / "out" / "train.jsonl")) == 2


def test_pixmo_without_an_image_folder_is_an_error_unless_rows_embed_images(pixmo, tmp_path):
    rows, _ = pixmo
    with pytest.raises(BuildError, match="download the images and pass --image-dir"):
        run_builder("pixmo-cap", PixmoCapSettings(input=str(rows)), tmp_path / "out")
    embedded = write_hf_parquet(tmp_path / "mirror.parquet", {"image_url": URLS[:2], "caption": ["Red.", "Blue."],
                                "image": [{"bytes": png("red"), "path": None}, {"bytes": png("blue"), "path": None}]}, {"image": "image"})
    run_builder("pixmo-cap", PixmoCapSettings(input=str(embedded)), tmp_path / "emb")
    assert [r["answer"] for r in read_jsonl(tmp_path / "emb" / "train.jsonl")] == ["Red.", "Blue."]


def test_pixmo_builds_from_the_cli_with_its_own_prompt(pixmo, tmp_path):
    rows, images = pixmo
    result = runner.invoke(app, ["data", "build", "pixmo-cap", "--input", str(rows), "--image-dir", str(images),
                                 "--prompt", "Caption it.", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert read_jsonl(tmp_path / "out" / "train.jsonl")[1]["messages"][0]["content"][1]["text"] == "Caption it."
    check_cli(tmp_path / "out" / "train.jsonl")


# ---------------------------------------------------------------- SpatialVLM-style VQA


@pytest.fixture
def flat_vqa(tmp_path) -> Path:
    """Flat rows: an image path, a question, an answer, a category; plus a LLaVA conversation row and bad rows."""
    (tmp_path / "imgs").mkdir()
    Image.open(io.BytesIO(png("red"))).save(tmp_path / "imgs" / "a.png")
    rows = [
        {"id": "q1", "image": "imgs/a.png", "question": "<image>\nHow far is the red square from the camera?", "answer": "About 1.2 meters.", "category": "distance"},
        {"id": "q2", "image": "imgs/a.png", "question": "Is the red square left of the blue circle?"},
        {"id": "q3", "image": "imgs/gone.png", "question": "Which is taller?", "answer": "The lamp."},
        {"image": "imgs/a.png", "conversations": [{"from": "human", "value": "<image>\nIs the square above the floor?"}, {"from": "gpt", "value": "Yes."}]},
    ]
    path = tmp_path / "vqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_conversation_turns_outside_a_question_answer_pair_are_counted(flat_vqa, tmp_path):
    turns = [{"from": "human", "value": "First question?"}, {"from": "human", "value": "Second question?"}, {"from": "gpt", "value": "An answer."},
             {"from": "human", "value": "A question left without an answer?"}]
    flat_vqa.write_text(json.dumps({"image": "imgs/a.png", "conversations": turns}) + "\n")
    stats = run_builder("spatial-vqa", SpatialVqaSettings(input=str(flat_vqa)), tmp_path / "out")
    assert [r["answer"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")] == ["An answer."]
    assert stats["skipped"] == {"unpaired_turn": 2}


def openspaces_row(questions_answers: list[tuple[str, str]]) -> list[dict]:
    messages = []
    for k, (q, a) in enumerate(questions_answers):
        parts = [{"type": "image", "text": None, "index": 0}] if k == 0 else []
        messages += [{"role": "user", "content": parts + [{"type": "text", "text": q, "index": None}]},
                     {"role": "assistant", "content": [{"type": "text", "text": a, "index": None}]}]
    return messages


@pytest.fixture
def openspaces(tmp_path) -> Path:
    """OpenSpaces' parquet layout: `images` (list of Image) and multi-turn `messages` with typed parts."""
    rows = {
        "images": [[{"bytes": png("red"), "path": None}], [{"bytes": png("blue"), "path": None}]],
        "messages": [
            openspaces_row([("How wide is the table?", "It is 1.5 meters wide."), ("Is the chair behind the table?", ""),
                            ("Which is closer, the chair or the lamp?", "The chair.")]),
            [{"role": "user", "content": [{"type": "text", "text": "Only a question.", "index": None}]}],
        ],
    }
    return write_hf_parquet(tmp_path / "openspaces" / "train-00000-of-00001.parquet", rows, {"images": "list"})


def test_flat_vqa_rows_become_records_with_their_category_as_label(flat_vqa, tmp_path):
    stats = run_builder("spatial-vqa", SpatialVqaSettings(input=str(flat_vqa)), tmp_path / "out")
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [r["id"] for r in records] == ["spatial-vqa/0000001", "spatial-vqa/0000004-0"]
    assert records[0]["messages"][0]["content"] == [{"type": "image"}, {"type": "text", "text": "How far is the red square from the camera?"}]
    assert records[0]["answer"] == "About 1.2 meters." and records[0]["meta"] == {"source": "vqa.jsonl", "source_id": "q1", "label": "distance"}
    assert records[1]["messages"][0]["content"][1]["text"] == "Is the square above the floor?" and records[1]["answer"] == "Yes."
    assert stats["skipped"] == {"invalid_row": 1, "missing_image": 1}
    assert stats["labels"]["train.jsonl"]["spatial_vqa"] == {"Yes.": 1, "distance": 1}


def test_openspaces_conversations_give_one_record_per_question_answer_pair(openspaces, tmp_path):
    stats = run_builder("spatial-vqa", SpatialVqaSettings(input=str(openspaces.parent)), tmp_path / "out")
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [(r["id"], r["answer"]) for r in records] == [("spatial-vqa/0000001-0", "It is 1.5 meters wide."), ("spatial-vqa/0000001-2", "The chair.")]
    assert records[1]["messages"][0]["content"] == [{"type": "image"}, {"type": "text", "text": "Which is closer, the chair or the lamp?"}]
    assert records[0]["images"] == records[1]["images"] and (tmp_path / "out" / records[0]["images"][0]).read_bytes() == png("red")
    assert stats["skipped"] == {"empty_turn": 1, "no_pairs": 1}
    assert len(read_records(tmp_path / "out" / "train.jsonl")) == 2


def test_spatial_vqa_builds_from_the_cli_with_the_same_output_for_any_workers(flat_vqa, openspaces, tmp_path):
    for workers in ("1", "4"):
        result = runner.invoke(app, ["data", "build", "spatial-vqa", "--input", str(openspaces), "--workers", workers,
                                     "--output", str(tmp_path / f"w{workers}")])
        assert result.exit_code == 0, result.output
    assert folder_digest(tmp_path / "w1") == folder_digest(tmp_path / "w4")
    check_cli(tmp_path / "w1" / "train.jsonl")
