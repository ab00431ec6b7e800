"""Tiny image-text-to-text models outside the Qwen family, built from their configs and saved as checkpoint folders.

Each reuses the embedded tiny Qwen BPE plus its own special tokens, carries the chat template TRL ships for the family,
and stops on its own end-of-turn token: `spatialtune eval --model FOLDER` loads it through the Auto classes as it would
a released checkpoint. Idefics3 is SmolVLM's architecture (SmolVLM's own processor needs `num2words`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from tokenizers import AddedToken
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3Processor,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
)
from transformers.models.gemma3.image_processing_gemma3 import Gemma3ImageProcessor
from transformers.models.idefics3.image_processing_idefics3 import Idefics3ImageProcessor

from spatialtune.models.tiny import official_chat_template, tiny_tokenizer

VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16)
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024)


def tokenizer_with(tokens: list[str], **special) -> PreTrainedTokenizerFast:
    """The tiny Qwen BPE with `tokens` added as special tokens after it, and the given bos/eos/pad/extra tokens."""
    backend = tiny_tokenizer().backend_tokenizer
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in tokens])
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False, **special)


def tiny_idefics3() -> tuple[PreTrainedModel, ProcessorMixin]:
    """Idefics3 (SmolVLM's architecture): a Llama text model, a SigLIP-style tower, 4 tokens per 64-px image, no splitting."""
    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tokenizer = tokenizer_with(["<|begin_of_text|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>", *grid],
                               bos_token="<|begin_of_text|>", eos_token="<end_of_utterance>", pad_token="<|endoftext|>")
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    config = Idefics3Config(
        text_config=dict(model_type="llama", **TEXT, **ids, vocab_size=4160),
        vision_config=VISION, scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,  # tied, the random model repeats the prompt's last token ("Assistant:") for every sample
    )
    image_processor = Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": 64}, max_image_size={"longest_edge": 64})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=official_chat_template("idefics3"))
    return Idefics3ForConditionalGeneration(config), processor


def tiny_gemma3() -> tuple[PreTrainedModel, ProcessorMixin]:
    """Gemma 3: a Gemma 3 text model (sliding and global attention), a SigLIP tower pooled to 4 tokens per 64-px image."""
    tokenizer = tokenizer_with(
        ["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"],
        bos_token="<bos>", eos_token="<end_of_turn>", pad_token="<pad>",
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    )
    token = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        text_config=dict(**TEXT, head_dim=32, vocab_size=4096, sliding_window=64, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id),
        vision_config=VISION, mm_tokens_per_image=4, image_token_index=token("<image_soft_token>"),
        boi_token_index=token("<start_of_image>"), eoi_token_index=token("<end_of_image>"),
    )
    image_processor = Gemma3ImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4, chat_template=official_chat_template("gemma3"))
    return Gemma3ForConditionalGeneration(config), processor


OTHER_FAMILIES: dict[str, Callable[[], tuple[PreTrainedModel, ProcessorMixin]]] = {"idefics3": tiny_idefics3, "gemma3": tiny_gemma3}


def write_other_family(name: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny model of another family with its processor as a checkpoint folder (generation stops at its end of turn)."""
    torch.manual_seed(seed)
    model, processor = OTHER_FAMILIES[name]()
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
