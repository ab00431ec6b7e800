"""The GRPO recipe: real TRL steps on the tiny model, offline; rewards by name; run folders; starting from an SFT run;
config mistakes as one line; vision placeholders never sampled; resume after SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file

from helpers import grounding_record
from spatialtune import rewards as spatial_rewards
from spatialtune.config import ConfigError, load_config
from spatialtune.data.render import GeometryRenderer
from spatialtune.geometry import Convention
from spatialtune.models.adapters import AdapterSettings, FreezeSettings, LoraSettings
from spatialtune.models.loading import ModelConfig, load_model
from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.runs import RunConfig, resolve_resume
from spatialtune.train import RECIPES
from spatialtune.train.common import load_policy, resolve_init
from spatialtune.train.grpo import DataConfig, GRPORecipeConfig, GRPOSettings, ToolsConfig, TrainingConfig, run_grpo
from spatialtune.train.sft import DataConfig as SFTDataConfig
from spatialtune.train.sft import SFTRecipeConfig, run_sft
from spatialtune.train.sft import TrainingConfig as SFTTrainingConfig

SAMPLE_TASKS = ["grounding", "pointing", "counting"]  # one image each
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def varied_reward(prompts, completions, completion_ids, **columns):
    """Differs inside a group of a random-init model's completions, so advantages (and updates) are not all 0."""
    return [(sum(ids) % 5) / 4 for ids in completion_ids]


VARIED = SimpleNamespace(make_rewards=lambda weights, renderer, options=None: ([varied_reward], [1.0]),
                         reward_columns=lambda record: {})


def grpo_config(tmp_path, name="run") -> GRPORecipeConfig:
    """Two GRPO steps of two prompts × two completions of at most 4 tokens on the sample dataset."""
    return GRPORecipeConfig(
        run=RunConfig(dir=str(tmp_path / name)),
        adapters=AdapterSettings(freeze=FreezeSettings(vision_tower=False)),
        data=DataConfig(train_file=str(sample_dataset()), tasks=SAMPLE_TASKS),
        rewards={"varied": 1.0},
        grpo=GRPOSettings(num_generations=2, max_completion_length=4),
        training=TrainingConfig(max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3, save_steps=100),
    )


def test_grpo_steps_train_and_write_a_run_folder_like_sft(tmp_path):
    result = run_grpo(grpo_config(tmp_path), rewards=VARIED, progress=False)
    assert result.global_step == 2 and result.model_dir == tmp_path / "run" / "model"
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["rewards"] == {"varied": 1.0} and saved["grpo"]["loss_type"] == "dapo" and saved["grpo"]["beta"] == 0.0
    logged = [json.loads(line) for line in (tmp_path / "run" / "training.log").read_text().splitlines() if line.startswith("{")]
    assert [entry["step"] for entry in logged if "reward" in entry] == [1, 2] and "rewards/varied_reward/mean" in logged[0]
    assert (tmp_path / "run" / "log_history.json").is_file() and (tmp_path / "run" / "model" / "README.md").is_file()
    trained, base = load_model(str(result.run_dir)), load_model("tiny-qwen3-vl")
    assert any(not torch.equal(p, base.model.state_dict()[n]) for n, p in trained.model.named_parameters())


def test_rewards_come_by_name_with_their_weights_options_and_columns(tmp_path):
    seen = []

    def make_rewards(weights, renderer, options=None):
        functions, values = spatial_rewards.make_rewards(weights, renderer, options)
        seen.append((weights, options, values))

        def text(prompts, completions, **columns):
            seen.append(columns["expected"])
            return functions[0](prompts, completions, **columns)

        return [text], values

    config = grpo_config(tmp_path)
    config.data.tasks = ["relation", "counting"]  # a two-image, two-question chat and a count
    config.rewards, config.reward_options = {"text": 2.0}, {}
    config.training.max_steps = 1
    result = run_grpo(config, rewards=SimpleNamespace(make_rewards=make_rewards, reward_columns=spatial_rewards.reward_columns), progress=False)
    assert seen[0] == ({"text": 2.0}, {}, [2.0])
    assert {json.loads(e)["kind"] for e in seen[1]} == {"text", "count"}  # reward_columns reached the reward
    assert "rewards/text/mean" in result.log_history[0]


@pytest.mark.parametrize("change, message", [
    (lambda c: setattr(c, "rewards", {}), "rewards: name at least one reward"),
    (lambda c: setattr(c.training, "per_device_train_batch_size", 3), "not a multiple of grpo.num_generations=2"),
    (lambda c: setattr(c, "tools", ToolsConfig(crop=True, max_calls=0)), "tools.max_calls=0"),
])
def test_config_mistakes_are_one_line_before_any_folder_is_made(tmp_path, change, message):
    config = grpo_config(tmp_path)
    change(config)
    with pytest.raises(ConfigError, match=message):
        run_grpo(config, rewards=VARIED, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, message", [
    ("trl.reward_weights=[1.0]", "weights go with the reward names"),
    ("trl.num_generations=4", "set it as grpo.num_generations"),
    ("grpo.loss_type=ppo", "expected one of .*'dapo'"),
    ("trl.max_tool_calling_iterations=3", "set tools.max_calls"),
])
def test_the_trl_section_is_checked_against_grpo_config_and_the_typed_fields(tmp_path, override, message):
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump({"rewards": {"choice": 1.0}}))
    with pytest.raises(ConfigError, match=message):
        load_config(GRPORecipeConfig, path, [override])


def test_the_recipe_is_registered_with_its_config():
    assert RECIPES.get("grpo").config is GRPORecipeConfig


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("grpo_*.yaml")))
def test_every_shipped_grpo_config_loads_and_names_rewards_that_exist(name):
    config = load_config(GRPORecipeConfig, CONFIGS / name)
    functions, weights = spatial_rewards.make_rewards(config.rewards, GeometryRenderer(Convention.QWEN3_1000), config.reward_options)
    assert [f.__name__ for f in functions] == list(config.rewards) and weights == list(config.rewards.values())


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory) -> Path:
    """A one-step full fine-tuning SFT run (the vision tower trains too, so its weights differ from the base)."""
    root = tmp_path_factory.mktemp("sft")
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(root / "sft")),
        adapters=AdapterSettings(freeze=FreezeSettings(vision_tower=False)),
        data=SFTDataConfig(train_file=str(sample_dataset()), tasks=SAMPLE_TASKS),
        training=SFTTrainingConfig(max_steps=1, per_device_train_batch_size=2, learning_rate=1e-2),
    )
    return run_sft(config, progress=False).run_dir


def test_init_from_loads_the_sft_runs_weights_and_refuses_another_base_model(sft_run):
    started, _ = load_policy(resolve_init(ModelConfig(name="tiny-qwen3-vl", init_from=str(sft_run.parent))), AdapterSettings())  # runs/NAME: newest
    trained = load_file(sft_run / "model" / "model.safetensors")
    assert all(torch.equal(started.model.state_dict()[k], v) for k, v in trained.items())
    with pytest.raises(ConfigError, match="was trained from 'tiny-qwen3-vl' but model.name is 'tiny-qwen2.5-vl'"):
        resolve_init(ModelConfig(name="tiny-qwen2.5-vl", init_from=str(sft_run)))


def test_a_lora_grpo_run_from_an_sft_run_loads_onto_the_sft_weights(tmp_path, sft_run):
    config = grpo_config(tmp_path)
    config.adapters = AdapterSettings(lora=LoraSettings(r=4, alpha=8))
    config.model = ModelConfig(init_from=str(sft_run))
    config.training.max_steps = 1
    result = run_grpo(config, rewards=VARIED, progress=False)
    assert (result.model_dir / "adapter_config.json").is_file()
    merged, sft = load_model(str(result.run_dir)), load_file(sft_run / "model" / "model.safetensors")
    vision = next(k for k in sft if ".visual.blocks.0." in k)  # not a LoRA target: the SFT run's value, not the base's
    assert torch.equal(merged.model.state_dict()[vision], sft[vision])


def test_rollouts_never_write_vision_placeholder_tokens(tmp_path, monkeypatch):
    """A model whose head prefers the vision tokens above all others still never samples them."""
    import spatialtune.train.grpo as grpo

    loaded = load_model("tiny-qwen3-vl")
    banned = [loaded.model.config.image_token_id, loaded.model.config.video_token_id,
              loaded.model.config.vision_start_token_id, loaded.model.config.vision_end_token_id]
    bias = torch.zeros(loaded.model.config.get_text_config().vocab_size)
    bias[banned] = 100.0
    loaded.model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + bias)
    monkeypatch.setattr(grpo, "load_policy", lambda model, adapters, resume_from=None: (loaded, loaded.model))
    sampled = []

    def spy(prompts, completions, completion_ids, **columns):
        sampled.extend(completion_ids)
        return [0.0] * len(completion_ids)

    source = SimpleNamespace(make_rewards=lambda *a, **k: ([spy], [1.0]), reward_columns=lambda record: {})
    config = grpo_config(tmp_path)
    config.training.max_steps = 1
    run_grpo(config, rewards=source, progress=False)
    assert len(sampled) == 4 and all(ids and not set(ids) & set(banned) for ids in sampled)


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from spatialtune.config import load_config
    from spatialtune.train.grpo import GRPORecipeConfig, run_grpo

    sys.path[:0] = [sys.argv[2], os.path.dirname(sys.argv[2])]  # this test module and tests/helpers.py
    from test_grpo import VARIED

    class KillAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)  # as a crash or a pre-empted job would

    run_grpo(load_config(GRPORecipeConfig, sys.argv[1]), rewards=VARIED, callbacks=[KillAfterFirstCheckpoint()], progress=False)
    """
)


def _resume_config(tmp_path, train_file, run_dir) -> str:
    config = {
        "run": {"dir": str(run_dir)},
        "adapters": {"lora": None, "freeze": {"vision_tower": False}},
        "data": {"train_file": str(train_file)},
        "rewards": {"varied": 1.0},
        "grpo": {"num_generations": 2, "max_completion_length": 4},
        "training": {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-3,
                     "warmup_steps": 1, "lr_scheduler_type": "cosine", "logging_steps": 1, "seed": 7},
    }
    path = tmp_path / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_grpo_killed_after_a_checkpoint_resumes_with_the_same_rollouts_optimizer_and_scheduler(tmp_path, write_dataset):
    # 8 prompts: the 4 steps of 2 prompts stay in one epoch (TRL's prompt sampler restarts its order at a resumed epoch)
    train_file = write_dataset([grounding_record(f"r{i}", bbox=(10 + i, 30, 60 + i, 80)) for i in range(8)])
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, _resume_config(tmp_path, train_file, killed), str(Path(__file__).parent)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (killed / "model").exists()

    run_dir, checkpoint = resolve_resume(killed)
    assert checkpoint.name == "checkpoint-2"
    resumed = run_grpo(load_config(GRPORecipeConfig, _resume_config(tmp_path, train_file, killed)), rewards=VARIED, resume_from=checkpoint, progress=False)
    whole = run_grpo(load_config(GRPORecipeConfig, _resume_config(tmp_path, train_file, straight)), rewards=VARIED, progress=False)

    after_kill = lambda result: [h for h in result.log_history if "loss" in h and h["step"] > 2]
    assert [h["step"] for h in after_kill(resumed)] == [h["step"] for h in after_kill(whole)] == [3, 4]
    for key in ("learning_rate", "reward", "num_tokens", "loss"):  # scheduler, the same rollouts, the same update
        assert [h[key] for h in after_kill(resumed)] == pytest.approx([h[key] for h in after_kill(whole)], rel=1e-4), key
    a, b = load_file(resumed.model_dir / "model.safetensors"), load_file(whole.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
