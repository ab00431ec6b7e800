"""The embedded tiny defaults: real architectures, small real-BPE vocabulary, offline, train and generate."""

from __future__ import annotations

import pytest
import torch

from spatialtune.errors import UnknownNameError
from spatialtune.models.loading import UnknownModelError, load_model, load_processor
from spatialtune.models.tiny import TINY_BPE_RANKS, TINY_MODELS, TINY_TOKENIZER_DIRS, build_tiny, tiny_tokenizer
from spatialtune.models.tokenizer import QWEN2_BPE, QWEN3_5_BPE, real_qwen_tokenizer

TINY = TINY_MODELS.names()
BPES = {"qwen": QWEN2_BPE, "qwen3.5": QWEN3_5_BPE}


@pytest.mark.parametrize("bpe", BPES)
def test_tiny_tokenizer_is_small_and_carries_the_real_special_tokens(bpe):
    tokenizer = tiny_tokenizer(BPES[bpe])
    assert len(tokenizer) == TINY_BPE_RANKS + len(BPES[bpe].special_tokens) < 5000
    for token, _ in BPES[bpe].special_tokens:
        assert tokenizer.convert_tokens_to_ids(token) is not None
        assert tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(token)) == token
    # tool-call and thinking tags survive skip_special_tokens decoding, as in the released tokenizers
    ids = tokenizer("<think>x</think><tool_call>{}</tool_call><|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>x</think><tool_call>{}</tool_call>"


@pytest.mark.parametrize("bpe", BPES)
def test_shipped_tiny_tokenizer_is_the_real_bpe_truncated(bpe):
    fresh = real_qwen_tokenizer(BPES[bpe], limit=TINY_BPE_RANKS)
    assert fresh.get_vocab() == tiny_tokenizer(BPES[bpe]).get_vocab()
    text = "Is the red square left of the blue circle? [12, 340, 56, 789] café"
    assert fresh(text)["input_ids"] == tiny_tokenizer(BPES[bpe])(text)["input_ids"]


def test_each_tiny_model_uses_the_tokenizer_of_its_generation():
    assert {name: TINY_TOKENIZER_DIRS[TINY_MODELS.get(name).bpe].name for name in TINY} == {
        "tiny-qwen2.5-vl": "tiny_qwen_tokenizer", "tiny-qwen3-vl": "tiny_qwen_tokenizer", "tiny-qwen3.5": "tiny_qwen3_5_tokenizer",
        "tiny-qwen3.5-think": "tiny_qwen3_5_tokenizer"}
    _, processor = build_tiny("tiny-qwen3.5")
    assert processor.tokenizer.convert_tokens_to_ids("<|audio_pad|>") == TINY_BPE_RANKS + 32  # the 33rd added token


@pytest.mark.parametrize("name", TINY)
def test_tiny_config_reads_token_ids_from_the_tokenizer(name):
    model, processor = build_tiny(name)
    ids = processor.tokenizer.convert_tokens_to_ids
    assert model.config.image_token_id == ids("<|image_pad|>") == processor.image_token_id
    assert model.config.vision_start_token_id == ids("<|vision_start|>")
    assert model.config.get_text_config().vocab_size >= len(processor.tokenizer)
    assert model.generation_config.eos_token_id == ids("<|im_end|>")


@pytest.mark.parametrize("name", TINY)
def test_same_seed_gives_the_same_weights(name):
    a, _ = build_tiny(name, seed=3)
    b, _ = build_tiny(name, seed=3)
    c, _ = build_tiny(name, seed=4)
    first = lambda m: next(iter(m.parameters()))
    assert torch.equal(first(a), first(b)) and not torch.equal(first(a), first(c))


@pytest.mark.parametrize("name", TINY)
def test_tiny_checkpoint_reloads_through_the_auto_classes(name, tmp_path):
    loaded = load_model(name)
    loaded.model.save_pretrained(tmp_path)
    loaded.processor.save_pretrained(tmp_path)
    again = load_model(str(tmp_path))
    assert again.family == loaded.family
    assert again.processor.chat_template == loaded.processor.chat_template
    for (n, p), (_, q) in zip(loaded.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(p, q), n


def test_pixel_budget_override_reaches_the_image_processor():
    processor, _ = load_processor("tiny-qwen2.5-vl", min_pixels=28 * 28, max_pixels=28 * 28 * 16)
    assert processor.image_processor.size == {"shortest_edge": 784, "longest_edge": 12544}
    with pytest.raises(ValueError, match="min_pixels"):
        load_processor("tiny-qwen2.5-vl", min_pixels=10_000, max_pixels=100)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(UnknownModelError, match="tiny-qwen2.5-vl, tiny-qwen3-vl"):
        load_model("not-a-model-anywhere")


def test_a_misspelt_model_name_suggests_the_closest_tiny_model():
    with pytest.raises(UnknownModelError, match=r"unknown model 'tiny-qwen3vl' \(did you mean 'tiny-qwen3-vl'\?\)"):
        load_model("tiny-qwen3vl")


def test_tiny_models_are_one_registry():
    assert TINY_MODELS.names() == ["tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-qwen3.5", "tiny-qwen3.5-think"]
    with pytest.raises(UnknownNameError, match="did you mean 'tiny-qwen2.5-vl'"):
        build_tiny("tiny-qwen25-vl")


def test_a_cached_hub_id_loads_offline(tmp_path, monkeypatch):
    """A hub id resolves from the Hugging Face cache with HF_HUB_OFFLINE=1 (here: tiny-qwen3.5 saved as a snapshot)."""
    from huggingface_hub import constants

    model, processor = build_tiny("tiny-qwen3.5")
    snapshot = tmp_path / "models--Qwen--Qwen3.5-Tiny" / "snapshots" / ("0" * 40)
    model.save_pretrained(snapshot)
    processor.save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # read at each lookup by huggingface_hub and transformers
    loaded = load_model("Qwen/Qwen3.5-Tiny")
    assert (loaded.family.model_type, loaded.family.convention.value) == ("qwen3_5", "qwen3_1000")
    assert loaded.processor.chat_template == processor.chat_template


def test_the_two_tiny_qwen3_5_differ_only_in_the_official_template():
    (plain, nothink), (same, think) = build_tiny("tiny-qwen3.5"), build_tiny("tiny-qwen3.5-think")
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), same.parameters()))
    asked = [{"role": "user", "content": [{"type": "text", "text": "Left or right?"}]}]
    assert nothink.apply_chat_template(asked, add_generation_prompt=True).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert think.apply_chat_template(asked, add_generation_prompt=True).endswith("<|im_start|>assistant\n<think>\n")
