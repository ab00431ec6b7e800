"""`train RECIPE CONFIG --debug`: the stage's checks on a handful of samples, printed, with nothing written."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.pipelines.smoke import sample_dataset


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
