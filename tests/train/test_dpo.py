"""The DPO recipe: real TRL steps on tiny models, offline; init from an SFT run (full, LoRA continued, LoRA merged);
the truncation guard; TRL loss types through `trl:`; run folders and resume after SIGKILL as SFT has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.config import ConfigError, load_config
from spatialtune.data.builders import run_builder
from spatialtune.data.builders.synthetic_preference import SyntheticPreferenceSettings
from spatialtune.data.collate import BatchError, label_start, sequence_layout
from spatialtune.data.dataset import DatasetError, prepare_rows
from spatialtune.data.preference import SpatialPreferenceCollator, preference_chat
from spatialtune.models.adapters import AdapterSettings, FreezeSettings, LoraSettings
from spatialtune.models.loading import ModelConfig, load_model, load_processor
from spatialtune.runs import RunConfig, resolve_resume
from spatialtune.train import RECIPES
from spatialtune.train.common import load_policy, resolve_init
from spatialtune.train.dpo import (
    DataConfig,
    DPORecipeConfig,
    DPOTrainingConfig,
    reference_model,
    run_dpo,
)
from spatialtune.train.preference_accuracy import pair_logps, preference_accuracy
from spatialtune.train.sft import SFTRecipeConfig, TrainingConfig, run_sft

CHOICE_TASKS = ["pairwise_left_right", "counting"]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """A few synthetic preference pairs (a wrong side, a wrong count, a moved box) on 64-pixel images."""
    root = tmp_path_factory.mktemp("pairs") / "data"
    settings = SyntheticPreferenceSettings(num_samples=6, test_samples=1, image_size=64, tasks=[*CHOICE_TASKS, "grounding"])
    run_builder("synthetic-preference", settings, root)
    return root / "train.jsonl"


def dpo_config(run_dir: Path, train_file: Path, **overrides) -> DPORecipeConfig:
    """One full fine-tuning DPO step of the tiny Qwen3-VL on the pairs (`overrides` replace whole sections)."""
    settings = {
        "run": RunConfig(dir=str(run_dir)),
        "data": DataConfig(train_file=str(train_file), max_length=256),
        "training": DPOTrainingConfig(max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1),
        **overrides,
    }
    return DPORecipeConfig(**settings)


def sft_run(run_dir: Path, train_file: Path, lora: bool) -> Path:
    """A one-step SFT run (LoRA or full) on the pairs' reference answers: what DPO starts from."""
    run_sft(SFTRecipeConfig(
        run=RunConfig(dir=str(run_dir)),
        adapters=AdapterSettings(lora=LoraSettings(r=4, alpha=8) if lora else None),
        data=DataConfig(train_file=str(train_file), max_length=256),
        training=TrainingConfig(max_steps=1, per_device_train_batch_size=2, learning_rate=1e-2),
    ), progress=False)
    return run_dir


@pytest.fixture(scope="module")
def sft_runs(pairs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sft")
    return {"full": sft_run(root / "full", pairs, lora=False), "lora": sft_run(root / "lora", pairs, lora=True)}


def _differs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    other = b.state_dict()
    return any(not torch.equal(p, other[n]) for n, p in a.state_dict().items())


@pytest.mark.parametrize("name", ["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def test_one_dpo_step_changes_the_weights_and_logs_trls_preference_metrics(name, pairs, tmp_path):
    result = run_dpo(dpo_config(tmp_path / "run", pairs, model=ModelConfig(name=name)), progress=False)
    assert result.global_step == 1 and result.model_dir == tmp_path / "run" / "model"
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["name"] == name
    logged = [json.loads(line) for line in (tmp_path / "run" / "training.log").read_text().splitlines() if line.startswith("{")]
    assert {"loss", "rewards/accuracies", "rewards/margins", "logps/chosen"} <= set(logged[0])
    assert _differs(load_model(str(result.run_dir)).model, load_model(name).model)


@pytest.mark.parametrize("loss_type, first_loss", [("sigmoid", 0.6931), ("ipo", 25.0)])
def test_the_loss_type_comes_from_the_trl_section(loss_type, first_loss, pairs, tmp_path):
    # before the first update policy = reference: sigmoid loss = log 2, IPO loss = (1 / (2 beta))^2 = 25 at beta 0.1
    config = dpo_config(tmp_path / "run", pairs, trl={"loss_type": [loss_type], "beta": 0.1})
    assert run_dpo(config, progress=False).log_history[0]["loss"] == pytest.approx(first_loss, rel=1e-3)


def test_trls_max_length_is_owned_by_the_data_section():
    with pytest.raises(ConfigError, match=r"'trl.max_length': set it as data.max_length"):
        DPORecipeConfig(trl={"max_length": 1024})


def test_an_option_combination_dpotrainer_refuses_is_a_config_error(pairs, tmp_path):
    with pytest.raises(ConfigError, match=r"DPOTrainer refused the options: `precompute_ref_log_probs=True` is not supported"):
        run_dpo(dpo_config(tmp_path / "run", pairs, trl={"precompute_ref_log_probs": True}), progress=False)


@pytest.mark.parametrize("name", ["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def test_the_guard_measures_the_sequences_trls_preference_collator_builds(name, pairs):
    processor, family = load_processor(name)
    rows = prepare_rows(pairs, processor, family.convention, rows="preference").rows
    lengths = SpatialPreferenceCollator(processor)(rows)["attention_mask"].sum(dim=1).tolist()[: len(rows)]
    assert lengths == [sequence_layout({**row, "messages": preference_chat(row)}, processor).length for row in rows]


def test_pairs_that_max_length_would_cut_are_refused_or_skipped_and_counted(pairs, tmp_path):
    with pytest.raises(BatchError, match=r"field 'images': image tokens end at 8 > max_length 6"):
        run_dpo(dpo_config(tmp_path / "a", pairs, data=DataConfig(train_file=str(pairs), max_length=6)), progress=False)
    with pytest.raises(DatasetError, match=r"no trainable pairs left \(skipped 6\)"):
        skip_all = DataConfig(train_file=str(pairs), max_length=6, on_truncated_image="skip")
        run_dpo(dpo_config(tmp_path / "b", pairs, data=skip_all), progress=False)

    processor, family = load_processor("tiny-qwen3-vl")
    rows = prepare_rows(pairs, processor, family.convention, rows="preference").rows
    starts = {row["id"]: label_start({**row, "messages": preference_chat(row)}, processor) for row in rows}
    cut = min(starts.values()) + 1  # the pairs whose answers start later would train on no token
    skip_some = DataConfig(train_file=str(pairs), max_length=cut, on_truncated_image="skip")
    result = run_dpo(dpo_config(tmp_path / "c", pairs, data=skip_some), progress=False)
    assert result.global_step == 1 and 0 < len(result.skipped) < len(rows)
    assert {i for i, _ in result.skipped} == {i for i, start in starts.items() if start >= cut}
    assert all(reason.startswith("no labelled token") for _, reason in result.skipped)


def test_a_lora_dpo_run_saves_only_the_trained_adapter(pairs, tmp_path):
    config = dpo_config(tmp_path / "run", pairs, adapters=AdapterSettings(lora=LoraSettings(r=4, alpha=8)))
    result = run_dpo(config, progress=False)
    assert (result.model_dir / "adapter_config.json").is_file() and not (result.model_dir / "ref").exists()
    assert _differs(load_model(str(result.run_dir)).model, load_model("tiny-qwen3-vl").model)


def test_init_from_a_full_run_starts_from_its_weights_and_they_are_the_frozen_reference(pairs, sft_runs, tmp_path):
    model = resolve_init(ModelConfig(init_from=str(sft_runs["full"])))
    assert model.init_from == str((sft_runs["full"] / "model").resolve())
    loaded, policy = load_policy(model, AdapterSettings())
    sft = load_model(str(sft_runs["full"])).model
    reference = reference_model(policy)
    assert not _differs(policy, sft) and not _differs(reference, sft) and reference is not policy
    assert not any(p.requires_grad for p in reference.parameters())


def test_train_dpo_runs_the_shipped_tiny_config_after_an_sft_run_and_resumes_from_the_same_start(pairs, sft_runs, tmp_path):
    runs_root = tmp_path / "runs"
    (runs_root / "tiny-cpu").mkdir(parents=True)
    (runs_root / "tiny-cpu" / sft_runs["full"].name).symlink_to(sft_runs["full"])  # runs/NAME: its newest run
    result = runner.invoke(app, [
        "train", "dpo", str(CONFIGS / "dpo_tiny_cpu.yaml"), f"model.init_from={runs_root / 'tiny-cpu'}",
        f"data.train_file={pairs}", "data.tasks=null", f"run.dir={tmp_path / 'run'}", "training.max_steps=1",
        "training.save_steps=1", "training.per_device_train_batch_size=2", "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["init_from"]
    assert recorded == str((sft_runs["full"] / "model").resolve())
    resumed = runner.invoke(app, ["train", "dpo", "--resume", str(tmp_path / "run"), "training.max_steps=2", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert "done step 2" in resumed.output and _differs(load_model(str(tmp_path / "run")).model, load_model(str(sft_runs["full"])).model)


def test_continue_trains_the_sft_adapter_itself(pairs, sft_runs, tmp_path):
    model = resolve_init(ModelConfig(init_from=str(sft_runs["lora"])))
    _, policy = load_policy(model, AdapterSettings())
    sft_adapter = load_file(sft_runs["lora"] / "model" / "adapter_model.safetensors")
    trained = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert isinstance(policy, PeftModel) and trained and all("lora_" in n or "modules_to_save" in n for n in trained)
    state = policy.state_dict()
    assert all(torch.equal(state[k.replace(".weight", ".default.weight")], v) for k, v in sft_adapter.items() if "lora_" in k)

    config = dpo_config(tmp_path / "run", pairs, model=ModelConfig(init_from=str(sft_runs["lora"])))
    result = run_dpo(config, progress=False)
    # the continued adapter goes onto the SFT run's own base, and it moved away from the SFT adapter
    manual = PeftModel.from_pretrained(load_model("tiny-qwen3-vl").model, str(result.model_dir)).merge_and_unload()
    loaded = load_model(str(result.run_dir)).model
    assert not _differs(loaded, manual) and _differs(loaded, load_model(str(sft_runs["lora"])).model)


def test_merge_trains_a_new_adapter_on_the_merged_sft_model_and_loads_onto_it(pairs, sft_runs, tmp_path):
    init = ModelConfig(init_from=str(sft_runs["lora"]), init_adapter="merge")
    config = dpo_config(tmp_path / "run", pairs, model=init, adapters=AdapterSettings(lora=LoraSettings(r=2, alpha=4)))
    result = run_dpo(config, progress=False)
    assert json.loads((result.model_dir / "adapter_config.json").read_text())["r"] == 2
    merged_sft = load_model(str(sft_runs["lora"])).model
    manual = PeftModel.from_pretrained(merged_sft, str(result.model_dir)).merge_and_unload()
    assert not _differs(load_model(str(result.run_dir)).model, manual)  # not onto the raw base


def test_continue_with_an_adapters_section_is_refused(sft_runs):
    model = resolve_init(ModelConfig(init_from=str(sft_runs["lora"])))
    with pytest.raises(ConfigError, match="init_adapter=continue trains the LoRA adapter of .* remove the adapters: section"):
        load_policy(model, AdapterSettings(lora=LoraSettings(r=2)))


def test_init_from_a_run_of_another_base_model_is_refused(sft_runs):
    with pytest.raises(ConfigError, match=r"was trained from 'tiny-qwen3-vl' but model.name is 'tiny-qwen2.5-vl'; set model.name=tiny-qwen3-vl"):
        resolve_init(ModelConfig(name="tiny-qwen2.5-vl", init_from=str(sft_runs["full"])))


def test_init_from_nothing_there_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="model.init_from: .*missing is no run folder"):
        resolve_init(ModelConfig(init_from=str(tmp_path / "missing")))


def test_pair_log_probs_are_the_ones_dpo_trains_on(pairs, tmp_path):
    # one batch holding every pair: TRL's logged mean log-probabilities before the update are ours
    config = dpo_config(tmp_path / "run", pairs, training=DPOTrainingConfig(max_steps=1, per_device_train_batch_size=6, logging_steps=1))
    first = run_dpo(config, progress=False).log_history[0]
    start = load_model("tiny-qwen3-vl")
    rows = prepare_rows(pairs, start.processor, start.family.convention, rows="preference").rows
    logps = pair_logps(start.model, start.processor, rows, batch_size=4)
    assert sum(c for c, _ in logps) / len(logps) == pytest.approx(first["logps/chosen"], rel=1e-4)
    assert sum(r for _, r in logps) / len(logps) == pytest.approx(first["logps/rejected"], rel=1e-4)
    swapped = [{**row, "chosen": row["rejected"], "rejected": row["chosen"]} for row in rows]
    assert preference_accuracy(start.model, start.processor, rows) + preference_accuracy(start.model, start.processor, swapped) == 1


def test_the_dpo_recipe_is_registered_and_its_shipped_configs_load():
    assert RECIPES.get("dpo").config is DPORecipeConfig
    tiny = load_config(DPORecipeConfig, CONFIGS / "dpo_tiny_cpu.yaml")
    assert tiny.model.init_from == "runs/tiny-cpu" and tiny.adapters.freeze == FreezeSettings(vision_tower=False)
    real = load_config(DPORecipeConfig, CONFIGS / "dpo_qwen2_5_vl_3b.yaml")
    assert real.model.init_adapter == "continue" and real.adapters == AdapterSettings() and real.data.max_length == 4096


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from spatialtune.config import load_config
    from spatialtune.train.dpo import DPORecipeConfig, run_dpo

    class KillAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)  # as a crash or a pre-empted job would

    run_dpo(load_config(DPORecipeConfig, sys.argv[1]), callbacks=[KillAfterFirstCheckpoint()], progress=False)
    """
)


def _resume_config(tmp_path: Path, run_dir: Path, train_file: Path) -> str:
    config = {
        "run": {"dir": str(run_dir)},
        "model": {"name": "tiny-qwen3-vl"},
        "adapters": {"lora": None, "freeze": {"vision_tower": False}},
        "data": {"train_file": str(train_file), "max_length": 256},
        "training": {
            "max_steps": 3, "save_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
            "warmup_steps": 1, "lr_scheduler_type": "cosine", "logging_steps": 1, "seed": 7,
        },
    }
    path = tmp_path / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_dpo_killed_after_a_checkpoint_resumes_with_the_same_optimizer_and_scheduler_state(pairs, tmp_path):
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, _resume_config(tmp_path, killed_dir, pairs)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (killed_dir / "model").exists()

    _, checkpoint = resolve_resume(killed_dir)
    assert checkpoint.name == "checkpoint-1"
    resumed = run_dpo(load_config(DPORecipeConfig, _resume_config(tmp_path, killed_dir, pairs)), resume_from=checkpoint, progress=False)
    straight = run_dpo(load_config(DPORecipeConfig, _resume_config(tmp_path, straight_dir, pairs)), progress=False)

    assert resumed.global_step == straight.global_step == 3
    after_kill = lambda r, key: [h[key] for h in r.log_history if "loss" in h and h["step"] > 1]  # noqa: E731
    assert after_kill(resumed, "step") == after_kill(straight, "step") == [2, 3]
    assert after_kill(resumed, "learning_rate") == pytest.approx(after_kill(straight, "learning_rate"))  # scheduler state
    assert after_kill(resumed, "loss") == pytest.approx(after_kill(straight, "loss"), rel=1e-4)
    a, b = load_file(resumed.model_dir / "model.safetensors"), load_file(straight.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
