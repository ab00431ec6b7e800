"""The SFT recipe: real TRL steps on each tiny architecture, offline; run folders; resume after SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from safetensors.torch import load_file

from spatialtune.data.dataset import prepare_rows
from spatialtune.eval.generate import generate_batch
from spatialtune.models.adapters import AdapterSettings, LoraSettings
from spatialtune.models.loading import ModelConfig, load_model
from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.runs import RunConfig, resolve_resume
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft


@pytest.mark.parametrize("name", ["tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-qwen3.5"])
def test_one_sft_step_changes_the_weights_and_the_saved_model_generates(name, tmp_path):
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        model=ModelConfig(name=name),
        data=DataConfig(train_file=str(sample_dataset())),
        training=TrainingConfig(max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1),
    )
    result = run_sft(config, progress=False)
    assert result.global_step == 1 and result.train_loss > 0
    assert result.model_dir == tmp_path / "run" / "model"
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["name"] == name
    assert any("loss" in json.loads(line) for line in (tmp_path / "run" / "training.log").read_text().splitlines() if line.startswith("{"))

    saved = json.loads((result.model_dir / "tokenizer.json").read_text())
    before, trained = load_model(name), load_model(str(result.run_dir))  # a run folder loads its final model
    assert saved["truncation"] is not None and trained.processor.tokenizer._tokenizer.truncation is None  # training's cut-off is not kept
    changed = [n for n, p in trained.model.named_parameters() if not torch.equal(p, before.model.state_dict()[n])]
    assert changed and not any(".visual.blocks." in n for n in changed)  # vision tower frozen by default

    rows = prepare_rows(sample_dataset(), trained.processor, trained.family.convention).rows[:2]
    outputs = generate_batch(trained.model, trained.processor, rows, max_new_tokens=4)
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)


def test_runs_without_a_dir_get_a_timestamped_folder_under_their_name(tmp_path):
    config = SFTRecipeConfig(
        run=RunConfig(name="demo", root=str(tmp_path)),
        data=DataConfig(train_file=str(sample_dataset()), max_samples=2),
        training=TrainingConfig(max_steps=1, per_device_train_batch_size=2),
    )
    result = run_sft(config, progress=False)
    # a tiny model's run goes to `<name>-<tiny model>`, never into a real model's folder of the same name
    assert result.run_dir.parent == tmp_path / "demo-tiny-qwen3-vl" and (result.run_dir / "model").is_dir()


def test_a_lora_run_saves_an_adapter_that_loads_merged_onto_its_base(tmp_path):
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        adapters=AdapterSettings(lora=LoraSettings(r=4, alpha=8)),
        data=DataConfig(train_file=str(sample_dataset())),
        training=TrainingConfig(max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2),
    )
    result = run_sft(config, progress=False)
    assert (result.model_dir / "adapter_config.json").is_file()
    assert result.trainable["lora/trainable"] > 0 and "language_model/trainable" not in result.trainable
    merged, base = load_model(str(result.run_dir)), load_model("tiny-qwen3-vl")
    assert type(merged.model) is type(base.model)  # merged: a plain model again
    assert any(not torch.equal(p, base.model.state_dict()[n]) for n, p in merged.model.named_parameters())


def test_task_filter_and_max_samples_select_the_training_rows(tmp_path):
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        data=DataConfig(train_file=str(sample_dataset()), tasks=["pointing"], max_samples=1),
        training=TrainingConfig(max_steps=1, per_device_train_batch_size=1),
    )
    assert run_sft(config, progress=False).global_step == 1


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from spatialtune.config import load_config
    from spatialtune.train.sft import SFTRecipeConfig, run_sft

    class KillAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)  # as a crash or a pre-empted job would

    run_sft(load_config(SFTRecipeConfig, sys.argv[1]), callbacks=[KillAfterFirstCheckpoint()], progress=False)
    """
)


def _resume_config(tmp_path, run_dir, model: str = "tiny-qwen3-vl") -> str:
    config = {
        "run": {"dir": str(run_dir)},
        "model": {"name": model},
        "adapters": {"lora": None, "freeze": {"vision_tower": False}},
        "data": {"train_file": str(sample_dataset())},
        "training": {
            "max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
            "warmup_steps": 1, "lr_scheduler_type": "cosine", "logging_steps": 1, "seed": 7,
        },
    }
    path = tmp_path / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("model", ["tiny-qwen3-vl", "tiny-qwen3.5"])
def test_sft_killed_after_a_checkpoint_resumes_with_the_same_optimizer_and_scheduler_state(model, tmp_path):
    from spatialtune.config import load_config

    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, _resume_config(tmp_path, killed_dir, model)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (killed_dir / "model").exists()

    run_dir, checkpoint = resolve_resume(killed_dir)
    assert checkpoint.name == "checkpoint-2"
    resumed = run_sft(load_config(SFTRecipeConfig, _resume_config(tmp_path, killed_dir, model)), resume_from=checkpoint, progress=False)
    straight = run_sft(load_config(SFTRecipeConfig, _resume_config(tmp_path, straight_dir, model)), progress=False)

    assert resumed.global_step == straight.global_step == 4
    after_kill = lambda r, key: [h[key] for h in r.log_history if "loss" in h and h["step"] > 2]
    assert after_kill(resumed, "step") == after_kill(straight, "step") == [3, 4]
    assert after_kill(resumed, "learning_rate") == pytest.approx(after_kill(straight, "learning_rate"))  # scheduler state
    assert after_kill(resumed, "loss") == pytest.approx(after_kill(straight, "loss"), rel=1e-4)
    a, b = load_file(resumed.model_dir / "model.safetensors"), load_file(straight.model_dir / "model.safetensors")
    # 1e-5: the killed run's first steps ran on one thread, the straight run on torch's default (gated delta-net sums differ)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_sft_trains_on_packed_batches(tmp_path, monkeypatch):
    import spatialtune.data.collate as collate

    pack_batch, packed = collate.pack_batch, []
    monkeypatch.setattr(collate, "pack_batch", lambda *args, **kwargs: packed.append(pack_batch(*args, **kwargs)) or packed[-1])
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        model=ModelConfig(name="tiny-qwen2.5-vl"),
        data=DataConfig(train_file=str(sample_dataset()), packing="packed", max_length=1024),
        training=TrainingConfig(max_steps=2, per_device_train_batch_size=3, learning_rate=1e-3, logging_steps=1),
    )
    result = run_sft(config, progress=False)
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert result.global_step == 2 and len(losses) == 2 and all(loss > 0 for loss in losses)
    assert len(packed) >= 2 and all("attention_mask" not in batch and batch["position_ids"].shape[0] == 4 for batch in packed)
    assert any(int((batch["position_ids"][0] == 0).sum()) > batch["input_ids"].shape[0] for batch in packed)  # samples share rows
