"""`train RECIPE CONFIG --debug`: the stage's checks on a handful of samples, printed, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.pipelines.smoke import sample_dataset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_debug_prints_what_it_checked_and_writes_no_run(tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({
        "run": {"name": "mine", "root": str(tmp_path / "runs")},
        "data": {"train_file": str(sample_dataset())},
        "training": {"per_device_train_batch_size": 2, "max_steps": 500},
    }))
    result = CliRunner().invoke(app, ["train", "sft", str(config), "--debug", "--max-samples", "2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "records: 4 valid in" in out and "trains on 21 tokens: '[63, 250, 375, 667]<|im_end|>\\n'" in out
    assert "<|image_pad|>×20 (160×120 px)<|vision_end|>Give the box of the red square." in out
    assert out.count("generation ") == 2 and "(reference '[63, 250, 375, 667]')" in out
    assert "sft: 2 training step(s) ran, losses " in out and "debug OK" in out
    assert not (tmp_path / "runs").exists()


def test_debug_checks_quantisation_before_loading(tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({"data": {"train_file": str(sample_dataset())}, "model": {"quantization": {"bits": 4}}}))
    result = CliRunner().invoke(app, ["train", "sft", str(config), "--debug"])
    assert result.exit_code != 0 and "model.quantization (4-bit)" in result.output


def test_debug_does_not_resume(tmp_path):
    result = CliRunner().invoke(app, ["train", "sft", "--debug", "--resume", str(tmp_path)])
    assert result.exit_code != 0 and "--debug checks a config; it does not resume a run" in result.output


def _built(tmp_path, builder: str):
    out = tmp_path / builder
    result = CliRunner().invoke(app, ["data", "build", builder, "--output", str(out), "--num-samples", "4",
                                      "--test-samples", "1", "--tasks", "counting"])
    assert result.exit_code == 0, result.output
    return out / "train.jsonl"


def test_debug_of_grpo_prints_every_rewards_value_for_the_generations(tmp_path):
    train = _built(tmp_path, "synthetic")
    result = CliRunner().invoke(app, [
        "train", "grpo", str(CONFIGS / "grpo_tiny_cpu.yaml"), "model.init_from=null", f"data.train_file={train}",
        "training.per_device_train_batch_size=8", "rewards={choice: 1.0, format: 0.5}", "--debug", "--max-samples", "2",
    ])
    assert result.exit_code == 0, result.output
    assert "reward choice (weight 1.0): " in result.output and "reward format (weight 0.5): " in result.output
    assert "grpo: 2 training step(s) ran" in result.output


def test_debug_of_dpo_refuses_a_pair_whose_answers_are_the_same(tmp_path):
    train = _built(tmp_path, "synthetic-preference")
    ok = CliRunner().invoke(app, ["train", "dpo", str(CONFIGS / "dpo_tiny_cpu.yaml"), "model.init_from=null", f"data.train_file={train}",
                                  "data.tasks=null", "training.per_device_train_batch_size=2", "--debug", "--max-samples", "2"])
    assert ok.exit_code == 0 and "preference pairs: 2 checked, chosen and rejected differ in each" in ok.output, ok.output
    records = [json.loads(line) for line in train.read_text().splitlines()]
    records[0]["rejected"] = records[0]["chosen"]
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    same = CliRunner().invoke(app, ["train", "dpo", str(CONFIGS / "dpo_tiny_cpu.yaml"), "model.init_from=null", f"data.train_file={train}",
                                    "data.tasks=null", "--debug", "--max-samples", "2"])
    assert same.exit_code != 0 and "have identical chosen and rejected answers" in same.output
