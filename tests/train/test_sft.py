"""The SFT recipe: one real TRL step on each tiny architecture, offline, then generation from the saved model."""

from __future__ import annotations

import pytest
import torch
import yaml

from spatialtune.data.dataset import prepare_rows
from spatialtune.eval.generate import generate_batch
from spatialtune.models.loading import ModelConfig, load_model
from spatialtune.smoke import sample_dataset
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft


@pytest.mark.parametrize("name", ["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def test_one_sft_step_changes_the_weights_and_the_saved_model_generates(name, tmp_path):
    config = SFTRecipeConfig(
        model=ModelConfig(name=name),
        data=DataConfig(train_file=str(sample_dataset())),
        training=TrainingConfig(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3),
    )
    result = run_sft(config)
    assert result.global_step == 1 and result.train_loss > 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["name"] == name

    before, trained = load_model(name), load_model(str(result.output_dir))
    changed = [n for n, p in trained.model.named_parameters() if not torch.equal(p, before.model.state_dict()[n])]
    assert changed and not any(".visual.blocks." in n for n in changed)  # vision tower frozen by default

    rows = prepare_rows(sample_dataset(), trained.processor, trained.family.convention).rows[:2]
    outputs = generate_batch(trained.model, trained.processor, rows, max_new_tokens=4)
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)


def test_lora_run_saves_an_adapter(tmp_path):
    from spatialtune.models.adapters import AdapterSettings, LoraSettings

    config = SFTRecipeConfig(
        adapters=AdapterSettings(lora=LoraSettings(r=4, alpha=8)),
        data=DataConfig(train_file=str(sample_dataset())),
        training=TrainingConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2),
    )
    result = run_sft(config)
    assert (tmp_path / "adapter_config.json").is_file()
    assert result.trainable["lora/trainable"] > 0 and "language_model/trainable" not in result.trainable
