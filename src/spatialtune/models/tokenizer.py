"""Qwen BPE tokenizers rebuilt offline: the real one (tests) and the small embedded one (tiny defaults)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

from transformers import PreTrainedTokenizerFast

# The pre-tokenizer pattern of Qwen2/2.5/3 (single digits, unlike tiktoken's cl100k pattern).
QWEN_PRETOKENIZE_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# The real Qwen special-token strings, in their real order (ids 151643.. in the full vocabulary).
# `special=False` ones survive `skip_special_tokens=True` decoding, as in the released tokenizers,
# so tool calls and thinking stay readable in decoded outputs.
QWEN_SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)


def read_tiktoken_ranks(path: str | Path, limit: int | None = None) -> dict[bytes, int]:
    """Read a `.tiktoken` file (base64 token, rank per line), optionally keeping only ranks below `limit`."""
    ranks: dict[bytes, int] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        token_b64, rank = line.split()
        if limit is not None and int(rank) >= limit:
            continue
        ranks[base64.b64decode(token_b64)] = int(rank)
    return ranks


def qwen_tokenizer_from_ranks(ranks: dict[bytes, int]) -> PreTrainedTokenizerFast:
    """Build a Qwen-style byte-level BPE tokenizer from BPE ranks with transformers' TikTokenConverter.

    Special tokens take the ids right after the BPE ranks, in the real order, as in the released tokenizers.
    """
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter

    with tempfile.TemporaryDirectory() as tmp:
        ranks_file = Path(tmp) / "ranks.tiktoken"
        ranks_file.write_text(
            "".join(f"{base64.b64encode(tok).decode()} {rank}\n" for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]))
        )
        backend = TikTokenConverter(vocab_file=str(ranks_file), pattern=QWEN_PRETOKENIZE_PATTERN).converted()
    backend.add_special_tokens([AddedToken(t, normalized=False, special=s) for t, s in QWEN_SPECIAL_TOKENS if s])
    backend.add_tokens([AddedToken(t, normalized=False, special=False) for t, s in QWEN_SPECIAL_TOKENS if not s])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
