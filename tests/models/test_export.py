"""`export_run`: a trained run as a plain transformers folder (or PEFT adapter) with a model card, atomically."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

from spatialtune.data.dataset import prepare_rows
from spatialtune.eval.generate import generate_batch
from spatialtune.models.adapters import AdapterSettings, LoraSettings
from spatialtune.models.export import ExportError, export_run, write_run_card
from spatialtune.models.loading import clear_call_state, load_model
from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.runs import RunConfig
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft


def _train(run_dir, lora: bool):
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(run_dir)),
        adapters=AdapterSettings(lora=LoraSettings(r=4, alpha=8)) if lora else AdapterSettings(),
        data=DataConfig(train_file=str(sample_dataset())),
        training=TrainingConfig(max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=1),
    )
    return run_sft(config, progress=False).run_dir


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("lora") / "run", lora=True)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("full") / "run", lora=False)


def _greedy(model, processor) -> list[str]:
    rows = prepare_rows(sample_dataset(), processor, load_model("tiny-qwen3-vl").family.convention).rows[:3]
    return generate_batch(model, processor, rows, max_new_tokens=8)


def _plain(folder):
    model = AutoModelForImageTextToText.from_pretrained(str(folder))
    processor = AutoProcessor.from_pretrained(str(folder))
    return model, processor


def test_a_merged_lora_export_loads_with_plain_transformers_and_answers_as_the_run_does(lora_run, tmp_path):
    result = export_run(lora_run, tmp_path / "out", merge_lora=True)
    assert result.merged and not result.adapter and (tmp_path / "out" / "model.safetensors").is_file()
    model, processor = _plain(tmp_path / "out")
    from_run = load_model(str(lora_run))
    assert type(model) is type(from_run.model)  # a plain model: nothing of PEFT left
    merged = from_run.model.state_dict()
    assert all(torch.equal(p, merged[n]) for n, p in model.state_dict().items())
    assert processor.chat_template == from_run.processor.chat_template
    assert _greedy(model, processor) == _greedy(from_run.model, from_run.processor)


def test_a_full_fine_tune_export_holds_the_trained_weights(full_run, tmp_path):
    export_run(full_run, tmp_path / "out")
    model, processor = _plain(tmp_path / "out")
    from_run = load_model(str(full_run))
    trained = from_run.model.state_dict()
    assert all(torch.equal(p, trained[n]) for n, p in model.state_dict().items())
    assert _greedy(model, processor) == _greedy(from_run.model, from_run.processor)


def test_an_export_loads_through_spatialtune_load_model(full_run, tmp_path):
    export_run(full_run, tmp_path / "out")
    loaded = load_model(str(tmp_path / "out"))  # what `spatialtune eval --model DIR` does
    assert loaded.family.model_type == "qwen3_vl"


def test_the_exported_tokenizer_does_not_carry_trainings_truncation(full_run, tmp_path):
    export_run(full_run, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "tokenizer.json").read_text())["truncation"] is None


def test_a_lora_export_without_merging_is_an_adapter_that_names_its_base(lora_run, tmp_path):
    result = export_run(lora_run, tmp_path / "out")
    assert result.adapter and not (tmp_path / "out" / "model.safetensors").exists()
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-qwen3-vl"
    base = load_model("tiny-qwen3-vl")
    merged = PeftModel.from_pretrained(base.model, str(tmp_path / "out")).merge_and_unload()
    processor = AutoProcessor.from_pretrained(str(tmp_path / "out"))
    clear_call_state(processor)
    from_run = load_model(str(lora_run))
    assert _greedy(merged, processor) == _greedy(from_run.model, from_run.processor)
    assert load_model(str(tmp_path / "out")).family.model_type == "qwen3_vl"  # `eval --model DIR` merges it on its base


def test_a_non_empty_target_is_refused_without_overwrite(full_run, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty.*--overwrite"):
        export_run(full_run, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine" and not (tmp_path / "out.partial").exists()


def test_overwrite_replaces_the_target_and_leaves_no_partial_folder(full_run, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("old")
    export_run(full_run, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "stale.txt").exists() and (tmp_path / "out" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_empty_target_folder_is_used(full_run, tmp_path):
    (tmp_path / "out").mkdir()
    export_run(full_run, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_exporting_into_the_run_folder_itself_is_refused(full_run):
    with pytest.raises(ExportError, match="would replace the run"):
        export_run(full_run, full_run / "model", overwrite=True)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(ExportError, match="not a run folder"):
        export_run(tmp_path, tmp_path / "out")


def test_the_model_card_names_base_model_data_recipe_and_metrics(lora_run, tmp_path):
    export_run(lora_run, tmp_path / "out", merge_lora=True)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "[None]" not in card and "tiny-qwen3-vl" in card
    assert str(sample_dataset()) in card and "4 records in the file" in card and "`training_config.yaml` in this folder" in card
    assert "recipe `sft`" in card and "LoRA (r=4, alpha=8" in card and "merged into the base weights" in card
    assert "| learning_rate | 0.01 |" in card and "| max_steps | 2 |" in card
    history = json.loads((lora_run / "log_history.json").read_text())
    assert f"mean train loss {history[-1]['train_loss']:.4g}" in card and "2 steps" in card
    assert (tmp_path / "out" / "training_config.yaml").read_text() == (lora_run / "config.yaml").read_text()


def test_a_hub_base_model_goes_in_the_card_front_matter(full_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("name: tiny-qwen3-vl", "name: Qwen/Qwen3-VL-8B-Instruct"))
    export_run(run, tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "base_model: Qwen/Qwen3-VL-8B-Instruct" in card
    assert "[Qwen/Qwen3-VL-8B-Instruct](https://huggingface.co/Qwen/Qwen3-VL-8B-Instruct)" in card


def test_eval_metrics_given_with_metrics_go_in_the_card(full_run, tmp_path):
    evals = tmp_path / "eval"
    evals.mkdir()
    (evals / "metrics.json").write_text(json.dumps({"num_samples": 40, "headline": {"accuracy": 0.625}, "scores": {"left_right": 0.75}}))
    (evals / "run.json").write_text(json.dumps({"benchmark": "records", "data": "held_out.jsonl"}))
    export_run(full_run, tmp_path / "out", metrics=[evals])
    card = (tmp_path / "out" / "README.md").read_text()
    assert "`records` on `held_out.jsonl` (40 samples): accuracy 0.625" in card and "left_right: 0.75" in card


def test_metrics_logged_during_training_go_in_the_card(full_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    history = json.loads((run / "log_history.json").read_text())
    history.insert(-1, {"eval_records/accuracy": 0.5, "step": 2})
    (run / "log_history.json").write_text(json.dumps(history))
    export_run(run, tmp_path / "out")
    assert "evaluation during training (step 2): eval_records/accuracy 0.5" in (tmp_path / "out" / "README.md").read_text()


def test_a_missing_metrics_folder_is_refused(full_run, tmp_path):
    with pytest.raises(ExportError, match="--metrics"):
        export_run(full_run, tmp_path / "out", metrics=[tmp_path / "nowhere"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_finished_run_carries_a_card_that_names_its_base_model(lora_run):
    for card in (lora_run / "model" / "README.md", lora_run / "README.md"):
        text = card.read_text()
        assert "[None]" not in text and "base_model: ''" not in text
        assert "tiny-qwen3-vl" in text and "shipped as a PEFT adapter" in text and "`config.yaml` in the run folder" in text


def test_the_run_card_is_written_again_on_demand(lora_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    (run / "model" / "README.md").write_text("stale")
    assert "tiny-qwen3-vl" in write_run_card(run, run / "model").read_text()


def test_a_run_names_folder_exports_its_newest_run(lora_run, tmp_path):
    import shutil

    named = tmp_path / "runs" / "demo"
    shutil.copytree(lora_run, named / "20260101-000000")
    shutil.copytree(lora_run, named / "20260102-000000")
    result = export_run(named, tmp_path / "out", merge_lora=True)
    assert result.run_dir == named / "20260102-000000" and result.source == named / "20260102-000000" / "model"


def test_a_relative_dot_target_gets_a_partial_folder_beside_it(full_run, tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "out")
    export_run(full_run, ".")
    assert (tmp_path / "out" / "model.safetensors").is_file() and not (tmp_path / "out.partial").exists()


def test_a_checkpoint_of_a_run_exports_with_the_runs_card(lora_run, tmp_path):
    checkpoint = sorted(lora_run.glob("checkpoint-*"))[-1]
    result = export_run(checkpoint, tmp_path / "out", merge_lora=True)
    assert result.run_dir == lora_run and result.source == checkpoint
    model, _ = _plain(tmp_path / "out")
    assert type(model) is type(load_model(str(checkpoint)).model)
    assert f"weights from `{checkpoint.name}/`" in (tmp_path / "out" / "README.md").read_text()
