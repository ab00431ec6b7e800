"""Sharded checkpoints (models/sharded.py): what is recognised, a clear error where DeepSpeed is needed, and a run's
spatial-linking module loaded and exported from one-process FSDP shards. The FSDP and ZeRO readers run on real
two-process shards in tests/train/test_distributed.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.config import to_dict
from spatialtune.models.adapters import AdapterSettings, LoraSettings, apply_adapters
from spatialtune.models.loading import ModelConfig, load_model, load_model_from_config
from spatialtune.models.sharded import FSDP_SHARDED_DIR, ShardedCheckpointError, read_sharded_state_dict, sharded_format
from spatialtune.models.spatial_linking import LINKING_CONFIG, LINKING_WEIGHTS, SpatialLinkingSettings, linking_module
from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.runs import CONFIG_FILE, RunConfig
from spatialtune.train.sft import DataConfig, SFTRecipeConfig


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


def _linking_run(run_dir: Path, adapters: AdapterSettings = AdapterSettings()) -> torch.nn.Module:
    """A full fine-tune (or LoRA) run with spatial linking whose checkpoint-2 is DCP shards, saved on one process as
    accelerate's `save_fsdp_model` lays out an FSDP SHARDED_STATE_DICT checkpoint; the model as saved."""
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(run_dir)),
        model=ModelConfig(name="tiny-qwen2.5-vl", spatial_linking=SpatialLinkingSettings(heads=4, rank=64)),
        adapters=adapters,
        data=DataConfig(train_file=str(sample_dataset())),
    )
    (run_dir / "checkpoint-2").mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(to_dict(config)))
    model = apply_adapters(load_model_from_config(config.model).model, adapters)
    with torch.no_grad():
        for param in linking_module(model).parameters():
            param.add_(torch.randn_like(param))  # trained: not what a fresh module starts with
    shards = run_dir / "checkpoint-2" / FSDP_SHARDED_DIR
    dcp.save({"model": model.state_dict()}, storage_writer=dcp.FileSystemWriter(str(shards)), no_dist=True)
    return model


def _same_linking(model: torch.nn.Module, saved: torch.nn.Module) -> bool:
    loaded, trained = linking_module(model), linking_module(saved)
    return loaded is not None and all(torch.equal(loaded.state_dict()[k], v) for k, v in trained.state_dict().items())


def test_a_sharded_checkpoint_of_a_run_with_spatial_linking_loads_its_trained_linking_module(tmp_path):
    saved = _linking_run(tmp_path / "run")
    loaded = load_model(str(tmp_path / "run" / "checkpoint-2"))
    assert linking_module(loaded.model).settings == SpatialLinkingSettings(heads=4, rank=64)
    assert _same_linking(loaded.model, saved)


def test_export_writes_a_sharded_checkpoints_linking_module_as_for_a_plain_checkpoint(tmp_path):
    saved = _linking_run(tmp_path / "run")
    saved.save_pretrained(tmp_path / "run" / "checkpoint-1")  # the same model saved plain, as without sharding
    load_model("tiny-qwen2.5-vl").processor.save_pretrained(tmp_path / "run" / "checkpoint-1")
    for step in (1, 2):
        exported = CliRunner().invoke(app, ["export", str(tmp_path / "run" / f"checkpoint-{step}"), "--to", str(tmp_path / f"out{step}")])
        assert exported.exit_code == 0, exported.output
    plain, sharded = tmp_path / "out1", tmp_path / "out2"
    assert sorted(p.name for p in sharded.iterdir()) == sorted(p.name for p in plain.iterdir())
    assert (sharded / LINKING_CONFIG).read_text() == (plain / LINKING_CONFIG).read_text()
    assert not any(key.startswith("spatial_linking.") for key in load_file(sharded / "model.safetensors"))
    assert _same_linking(load_model(str(sharded)).model, saved)
    assert all(torch.equal(v, load_file(sharded / LINKING_WEIGHTS)[k]) for k, v in load_file(plain / LINKING_WEIGHTS).items())


def test_a_sharded_checkpoint_of_a_lora_run_with_spatial_linking_is_refused(tmp_path):
    _linking_run(tmp_path / "run", AdapterSettings(lora=LoraSettings(r=4, alpha=8)))
    with pytest.raises(ShardedCheckpointError, match="LoRA weights in a sharded checkpoint"):
        load_model(str(tmp_path / "run" / "checkpoint-2"))
