"""Sharded checkpoints (models/sharded.py): what is recognised, and a clear error where DeepSpeed is needed. The FSDP
and ZeRO readers run on real two-process shards in tests/train/test_distributed.py."""

from __future__ import annotations

import sys

import pytest

from spatialtune.models.sharded import ShardedCheckpointError, read_sharded_state_dict, sharded_format


def test_a_zero_checkpoint_without_deepspeed_is_an_error_that_says_how_to_read_it(tmp_path, monkeypatch):
    (tmp_path / "latest").write_text("global_step4")
    for name in ["deepspeed", *(name for name in sys.modules if name.startswith("deepspeed."))]:
        monkeypatch.setitem(sys.modules, name, None)  # as where DeepSpeed is not installed (or not yet imported)
    with pytest.raises(ShardedCheckpointError, match="pip install deepspeed.*zero_to_fp32.py"):
        read_sharded_state_dict(tmp_path)


def test_a_zero_checkpoint_with_gathered_weights_is_read_as_plain_weights(tmp_path):
    (tmp_path / "latest").write_text("global_step4")
    assert sharded_format(tmp_path) == "zero"
    (tmp_path / "model.safetensors").write_bytes(b"")  # stage3_gather_16bit_weights_on_model_save wrote them too
    assert sharded_format(tmp_path) is None
