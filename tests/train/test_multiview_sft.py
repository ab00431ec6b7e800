"""Multi-view models through the SFT recipe: batches (placeholders, labels, views, dropout), per-group learning rates,
LoRA, the fused loss TRL computes, save → `eval --model RUN`, and resume."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from spatialtune.data.builders import run_builder
from spatialtune.data.builders.room_world import RoomWorldSettings
from spatialtune.data.multiview import MultiViewCollator, kept_views, prepare_multiview_rows
from spatialtune.eval.runner import run_eval
from spatialtune.models.adapters import AdapterSettings, LoraSettings
from spatialtune.models.loading import ModelConfig, load_model, load_model_from_config
from spatialtune.models.multiview.geometry import GeometrySettings
from spatialtune.models.multiview.model import (
    GEOMETRY_TOKEN,
    SCENE_TOKEN,
    EncoderSettings,
    MultiViewConfig,
    MultiViewModel,
)
from spatialtune.models.multiview.projector import PerceiverSettings
from spatialtune.runs import RunConfig
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft

LATENTS, VIEWS, SIZE = 8, 6, 64
GROUPS = {"projector": 1e-2, "geometry": 3e-3, "llm": 1e-3}


def multiview(**overrides) -> MultiViewConfig:
    """A tiny encoder, a 2-layer 8-latent Perceiver and geometry tokens at the room world's 64-px test views."""
    projector = PerceiverSettings(latents=LATENTS, layers=2, heads=4, width=64, max_views=8)
    return MultiViewConfig(**{"encoder": EncoderSettings(kind="tiny"), "projector": projector, "geometry": GeometrySettings(width=64),
                              "view_size": SIZE, **overrides})


def model_config(**overrides) -> ModelConfig:
    return ModelConfig(name="tiny-qwen3", multiview=multiview(**overrides))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small room world: 12 training rooms, 2 test rooms per task, six 64-px views each."""
    out = tmp_path_factory.mktemp("room-world") / "data"
    run_builder("room-world", RoomWorldSettings(num_samples=12, test_samples=2, image_size=SIZE), out)
    return out


@pytest.fixture(scope="module")
def loaded():
    return load_model_from_config(model_config())


def recipe(tmp_path, world, **training) -> SFTRecipeConfig:
    settings = dict(max_steps=2, per_device_train_batch_size=4, learning_rate=1e-4, warmup_steps=0, save_steps=1, logging_steps=1)
    return SFTRecipeConfig(run=RunConfig(dir=str(tmp_path / "run")), model=model_config(),
                           data=DataConfig(train_file=str(world / "train.jsonl"), view_dropout=0.3, max_length=512),
                           training=TrainingConfig(**{**settings, **training}))


def test_kept_views_never_drop_every_view_and_drop_at_the_rate():
    rng = random.Random(0)
    assert all(len(kept_views(3, 0.95, rng)) >= 1 for _ in range(2000))
    assert kept_views(4, 0.0, rng) == [0, 1, 2, 3]
    kept = [len(kept_views(6, 0.3, rng)) for _ in range(4000)]
    assert sum(kept) / len(kept) == pytest.approx(6 * 0.7, abs=0.08)


def test_batches_hold_placeholders_for_kept_views_and_label_only_the_answer(world, loaded):
    processor = loaded.processor
    rows = prepare_multiview_rows(world / "train.jsonl", processor, max_length=512).rows[:4]
    batch = MultiViewCollator(processor, 512, view_dropout=0.5, seed=3)(rows)
    tokenizer = processor.tokenizer
    scene, geometry = (tokenizer.convert_tokens_to_ids(t) for t in (SCENE_TOKEN, GEOMETRY_TOKEN))
    kept = batch["view_mask"].sum(1)
    assert kept.min() >= 1 and kept.max() <= VIEWS and kept.sum() < VIEWS * len(rows)  # some views dropped, never all
    assert batch["views"].shape == (len(rows), int(kept.max()), 3, SIZE, SIZE) and batch["cameras"].shape[:2] == batch["views"].shape[:2]
    assert torch.equal((batch["input_ids"] == scene).sum(1), torch.full((len(rows),), LATENTS))
    assert torch.equal((batch["input_ids"] == geometry).sum(1), kept)
    for i, row in enumerate(rows):
        labelled = batch["labels"][i][batch["labels"][i] != -100]
        answer = json.loads(row["answer"])
        assert tokenizer.decode(labelled) == f"{answer}<|im_end|>\n"  # as TRL's training template marks it
        # a kept view's camera is its record's: the padded tail is zeros
        assert batch["cameras"][i, kept[i]:].abs().sum() == 0
    with torch.no_grad():
        assert torch.isfinite(loaded.model(**batch).loss)


def test_too_long_rows_are_refused_naming_the_record(world, loaded):
    from spatialtune.data.collate import BatchError

    with pytest.raises(BatchError, match=r"record 'train-world_\w+-\d+'.*exceed data.max_length 20"):
        prepare_multiview_rows(world / "train.jsonl", loaded.processor, max_length=20)
    records = len((world / "train.jsonl").read_text().splitlines())
    assert len(prepare_multiview_rows(world / "train.jsonl", loaded.processor, max_length=20, on_truncated_image="skip").skipped) == records


def test_trl_fused_loss_equals_the_models_own_loss(world, loaded):
    """TRL patches `forward` with a fused LM head that calls `base_model` (the decoder on spliced embeddings)."""
    from trl.trainer.utils import add_fused_lm_head

    rows = prepare_multiview_rows(world / "train.jsonl", loaded.processor, max_length=512).rows[:3]
    batch = MultiViewCollator(loaded.processor, 512)(rows)
    model = MultiViewModel.from_config(loaded.model.settings)
    with torch.no_grad():
        plain = model(**batch).loss
        add_fused_lm_head(model, outputs=("log_probs",))
        fused = model(**batch, fused_lm_head=True).loss
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)


class OptimizerGroups(TrainerCallback):
    """Each trainable parameter's learning rate as the optimizer holds it at the first step."""

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if state.global_step == 0:
            group_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
            self.rate = {n: group_of[id(p)] for n, p in model.named_parameters() if p.requires_grad}


def test_sft_trains_projector_geometry_and_llm_at_their_rates_then_eval_loads_the_run(tmp_path, world):
    seen = OptimizerGroups()
    result = run_sft(recipe(tmp_path, world, param_groups=GROUPS), callbacks=[seen], progress=False)
    assert {n.split(".")[0] for n in seen.rate} == {"projector", "geometry", "llm"}  # the frozen encoder is not there
    assert all(rate == GROUPS[n.split(".")[0]] for n, rate in seen.rate.items())
    assert result.trainable["encoder/total"] > 0 and "encoder/trainable" not in result.trainable
    assert (result.model_dir / "multiview.json").is_file() and (result.model_dir / "llm" / "chat_template.jinja").is_file()

    reloaded = load_model(str(result.run_dir))
    assert isinstance(reloaded.model, MultiViewModel) and reloaded.family.model_type == "multiview"
    evaluation = run_eval(reloaded, "records", world / "test.jsonl", tmp_path / "eval", batch_size=4, max_new_tokens=4, progress=False)
    assert evaluation.metrics["num_samples"] == 6
    assert {r["task"] for r in evaluation.rows} == {"world_closer", "world_count", "world_distance"}


def test_resume_from_a_checkpoint_restores_the_multiview_weights(tmp_path, world):
    straight = run_sft(recipe(tmp_path / "a", world, max_steps=2), progress=False)
    first = run_sft(recipe(tmp_path / "b", world, max_steps=2), progress=False)
    checkpoint = first.run_dir / "checkpoint-1"
    assert (checkpoint / "multiview.safetensors").is_file()
    resumed = run_sft(recipe(tmp_path / "b", world, max_steps=2), resume_from=checkpoint, progress=False)
    a, b = (MultiViewModel.from_pretrained(r.model_dir).state_dict() for r in (straight, resumed))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_lora_trains_adapters_beside_projector_and_geometry(tmp_path, world):
    config = dataclasses.replace(recipe(tmp_path, world, max_steps=1), adapters=AdapterSettings(lora=LoraSettings(r=4, alpha=8)))
    result = run_sft(config, progress=False)
    assert set(k.split("/")[0] for k in result.trainable if k.endswith("/trainable")) == {"projector", "geometry", "lora"}
    assert (result.model_dir / "llm" / "adapter_config.json").is_file()
    assert isinstance(load_model(str(result.model_dir)).model, MultiViewModel)



def test_batched_prompts_answer_as_one_at_a_time(world, loaded):
    """Generation prompts are left-padded: each sample's next-token logits are the same alone or in a batch."""
    from spatialtune.eval.generate import prompt_inputs

    rows = [dict(row, images=row["views"], meta=json.loads(row["meta"]))
            for row in prepare_multiview_rows(world / "test.jsonl", loaded.processor, max_length=512).rows[:3]]
    model = loaded.model.eval()
    with torch.no_grad():
        batched = model(**prompt_inputs(model, loaded.processor, rows)).logits[:, -1]
        for i, row in enumerate(rows):
            alone = model(**prompt_inputs(model, loaded.processor, [row])).logits[0, -1]
            assert torch.allclose(alone, batched[i], atol=1e-4)


def test_stage_two_starts_from_a_stage_one_run_and_refuses_other_settings(tmp_path, world):
    from spatialtune.config import ConfigError

    first = run_sft(recipe(tmp_path / "one", world, max_steps=1), progress=False)
    second = recipe(tmp_path / "two", world, max_steps=1)
    second = dataclasses.replace(second, model=dataclasses.replace(second.model, init_from=str(first.run_dir)),
                                 data=dataclasses.replace(second.data, train_file=str(world / "anchors_train.jsonl")))
    result = run_sft(second, progress=False)
    assert isinstance(load_model(str(result.run_dir)).model, MultiViewModel)
    other = dataclasses.replace(second.model, multiview=multiview(view_size=32))
    with pytest.raises(ConfigError, match="model.multiview differs from the multi-view model saved in"):
        run_sft(dataclasses.replace(second, run=RunConfig(dir=str(tmp_path / "three")), model=other), progress=False)


def test_debug_checks_a_multiview_stage_in_seconds(world):
    from spatialtune.pipelines.debug import debug_recipe

    said: list[str] = []
    report = debug_recipe("sft", recipe(Path("/nonexistent"), world), samples=3, steps=1, max_new_tokens=4, say=said.append)
    assert report.records == 3 and len(report.losses) == 1 and len(report.replies) == 3
    assert f"{SCENE_TOKEN}×{LATENTS}" in report.prompt
    assert any(f"{LATENTS} scene and" in line and "trains on 3 tokens" in line for line in said)


def test_dpo_and_grpo_refuse_multiview_models_before_a_run_folder_is_made(tmp_path, world):
    from spatialtune.config import ConfigError
    from spatialtune.train.dpo import DPORecipeConfig, run_dpo
    from spatialtune.train.grpo import DataConfig as GRPODataConfig
    from spatialtune.train.grpo import GRPORecipeConfig, run_grpo

    run = RunConfig(dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="train with the sft recipe only"):
        run_dpo(DPORecipeConfig(run=run, model=model_config(), data=DataConfig(train_file=str(world / "train.jsonl"))), progress=False)
    with pytest.raises(ConfigError, match="train with the sft recipe only"):
        run_grpo(GRPORecipeConfig(run=run, model=model_config(), data=GRPODataConfig(train_file=str(world / "train.jsonl"))),
                 rewards=lambda *a, **k: None, progress=False)
    assert not (tmp_path / "run").exists()
