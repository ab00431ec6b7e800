"""Embedded defaults: the real Qwen2.5-VL / Qwen3-VL / Qwen3.5 architectures at toy size, random weights, offline.

They exist so that every code path (collation, SFT, generation, eval) runs on a laptop CPU and in CI.
The vocabulary is the first `TINY_BPE_RANKS` ranks of the family's real BPE plus its real special tokens (Qwen2.5-VL
and Qwen3-VL share one BPE, Qwen3.5 has its own): the embedding and LM head of the full 151,936- or 248,320-row
vocabulary would dominate CPU time. Regenerate the tokenizers with `scripts/make_tiny_tokenizer.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from transformers import (
    AutoTokenizer,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen3_5Config,
    Qwen3_5ForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from ..registry import Registry
from .tokenizer import QWEN2_BPE, QWEN3_5_BPE, QwenBpe

TINY_BPE_RANKS = 4000
ASSETS = Path(__file__).parent / "assets"
TINY_TOKENIZER_DIRS: dict[QwenBpe, Path] = {QWEN2_BPE: ASSETS / "tiny_qwen_tokenizer", QWEN3_5_BPE: ASSETS / "tiny_qwen3_5_tokenizer"}
TINY_VOCAB_ROWS = 4096  # embedding rows: tokenizer size rounded up, as the real models pad 151,669 to 151,936
TINY_SEED = 0

# Shared toy sizes: 4 vision + 4 language layers, hidden 128 (head_dim 32, so M-RoPE sections sum to 16).
_TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2)
_VISION = dict(depth=4, hidden_size=128, intermediate_size=256, num_heads=4, out_hidden_size=128, spatial_merge_size=2)
# With head_dim 32 the real rope_theta (1e6 / 5e6) leaves about one rotary frequency per image axis that turns
# noticeably across a 4x4 grid of visual tokens, so the language model barely sees where a token is. Measured on the
# quickstart (2 cores, lr 3e-4, batch 32): absolute left/right at chance after 700 steps with 5e6, 1.0 by step 400
# with 100. Real checkpoints keep their own theta; this is a choice for the random-init tiny models only.
TINY_ROPE_THETA = 100.0
# Qwen3-VL's learned absolute position embedding of the vision tower, drawn at std 1 instead of 0.02 so that a
# random-init tower already tells patches apart by position (measured: absolute top/bottom 1.0 by step 200).
TINY_VISION_POS_STD = 1.0


def official_chat_template(family: str) -> str:
    """The official chat template of a Qwen-VL family, as TRL ships it (`trl/chat_templates/*.jinja`; Qwen3.5:
    `qwen3_5_nothink`, shipped by Qwen3.5-2B and smaller, or `qwen3_5_think`, by Qwen3.5-4B and larger)."""
    return (resources.files("trl") / "chat_templates" / f"{family}.jinja").read_text()


def tiny_tokenizer(bpe: QwenBpe = QWEN2_BPE):
    """The embedded small-vocabulary tokenizer of a Qwen BPE generation, with its real special-token strings."""
    return AutoTokenizer.from_pretrained(str(TINY_TOKENIZER_DIRS[bpe]))


def _special_ids(tokenizer) -> dict[str, int]:
    """Vision token ids read from the tokenizer (never hard-coded)."""
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _text_token_ids(tokenizer) -> dict[str, int | None]:
    """End/pad ids of the language model, read from the tokenizer (Qwen chat models have no BOS)."""
    return dict(bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _image_processor(patch_size: int, mean: tuple, std: tuple) -> Qwen2VLImageProcessor:
    """A Qwen-VL image processor with a small pixel budget: 2×2 to 8×8 merged visual tokens."""
    token_px = patch_size * 2
    return Qwen2VLImageProcessor(
        size={"shortest_edge": token_px * token_px * 4, "longest_edge": token_px * token_px * 64},
        patch_size=patch_size,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=list(mean),
        image_std=list(std),
    )


def _build_qwen2_5_vl(tokenizer) -> tuple[PreTrainedModel, ProcessorMixin]:
    config = Qwen2_5_VLConfig(
        text_config=dict(
            **_TEXT,
            **_text_token_ids(tokenizer),
            vocab_size=TINY_VOCAB_ROWS,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": TINY_ROPE_THETA, "mrope_section": [4, 6, 6]},
        ),
        vision_config=dict(**_VISION, patch_size=14, window_size=56, fullatt_block_indexes=[1, 3]),
        tie_word_embeddings=True,
        **_special_ids(tokenizer),
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=_image_processor(14, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=official_chat_template("qwen2_5_vl"),
    )
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _build_qwen3_vl(tokenizer) -> tuple[PreTrainedModel, ProcessorMixin]:
    config = Qwen3VLConfig(
        text_config=dict(
            **_TEXT,
            **_text_token_ids(tokenizer),
            head_dim=32,
            vocab_size=TINY_VOCAB_ROWS,
            max_position_embeddings=4096,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": TINY_ROPE_THETA,
                "mrope_section": [6, 5, 5],
                "mrope_interleaved": True,
            },
        ),
        vision_config=dict(**_VISION, patch_size=16, num_position_embeddings=256, deepstack_visual_indexes=[1, 2]),
        tie_word_embeddings=True,
        **_special_ids(tokenizer),
    )
    processor = Qwen3VLProcessor(
        image_processor=_image_processor(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        video_processor=Qwen3VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=official_chat_template("qwen3_vl"),
    )
    model = Qwen3VLForConditionalGeneration(config)
    torch.nn.init.normal_(model.model.visual.pos_embed.weight, std=TINY_VISION_POS_STD)
    return model, processor


def _build_qwen3_5(tokenizer, template: str = "qwen3_5_nothink") -> tuple[PreTrainedModel, ProcessorMixin]:
    """Qwen3.5: gated-delta-net linear attention in three layers of four, gated full attention with partial M-RoPE in
    the fourth (the released layout), a Qwen3-VL-style vision tower without DeepStack (Qwen3.5 has none); the no-think
    template of the small checkpoints, or the thinking one of 4B and larger."""
    config = Qwen3_5Config(
        text_config=dict(
            **_TEXT,
            **_text_token_ids(tokenizer),
            head_dim=32,
            layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            linear_key_head_dim=32,
            linear_value_head_dim=32,
            vocab_size=TINY_VOCAB_ROWS,
            max_position_embeddings=4096,
            # Real: head_dim 256 x 0.25 = 64 rotary dims, sections [11, 11, 10]; here 32 x 0.5 = 16 dims, 8 frequencies.
            rope_parameters={
                "rope_type": "default",
                "rope_theta": TINY_ROPE_THETA,
                "partial_rotary_factor": 0.5,
                "mrope_section": [3, 3, 2],
                "mrope_interleaved": True,
            },
        ),
        vision_config=dict(**_VISION, patch_size=16, num_position_embeddings=256),
        # Qwen3_5Config's default. Tied, the random-init model answers every prompt alike: three linear-attention layers
        # barely move the residual stream off the last prompt token's embedding, whose own row wins the logits.
        tie_word_embeddings=False,
        **_special_ids(tokenizer),
    )
    processor = Qwen3VLProcessor(  # what AutoProcessor gives for model_type qwen3_5
        image_processor=_image_processor(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        video_processor=Qwen3VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=official_chat_template(template),
    )
    model = Qwen3_5ForConditionalGeneration(config)
    torch.nn.init.normal_(model.model.visual.pos_embed.weight, std=TINY_VISION_POS_STD)
    return model, processor


@dataclass(frozen=True)
class TinySpec:
    """An embedded default: its name, what it is, its BPE generation, and how to build it."""

    name: str
    description: str
    build: Callable[[object], tuple[PreTrainedModel, ProcessorMixin]]
    bpe: QwenBpe = QWEN2_BPE


TINY_MODELS: Registry[TinySpec] = Registry("tiny model")
for _spec in (
    TinySpec("tiny-qwen2.5-vl", "Qwen2.5-VL architecture, 4+4 layers, hidden 128, random init", _build_qwen2_5_vl),
    TinySpec("tiny-qwen3-vl", "Qwen3-VL architecture, 4+4 layers, hidden 128, random init", _build_qwen3_vl),
    TinySpec("tiny-qwen3.5", "Qwen3.5 architecture, 4 vision + 3 linear-attention + 1 full-attention layers, hidden 128, "
             "random init, no-think template (as Qwen3.5-2B and smaller)", _build_qwen3_5, QWEN3_5_BPE),
    TinySpec("tiny-qwen3.5-think", "tiny-qwen3.5 with the thinking template (as Qwen3.5-4B and larger): prompts open <think>",
             partial(_build_qwen3_5, template="qwen3_5_think"), QWEN3_5_BPE),
):
    TINY_MODELS.register(_spec.name, _spec)


def build_tiny(name: str, seed: int = TINY_SEED) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build an embedded tiny model and its processor; the same seed gives the same weights (unknown names: did you mean)."""
    spec = TINY_MODELS.get(name)
    torch.manual_seed(seed)
    model, processor = spec.build(tiny_tokenizer(spec.bpe))
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    return model, processor
