"""The command line: groups that say what exists, recipes with dotted overrides, the end-to-end smoke run."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.smoke import sample_dataset

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def test_help_lists_the_groups_and_what_exists():
    output = runner.invoke(app, ["--help"]).output
    for group in ("data", "train", "eval", "smoke", "models"):
        assert group in output
    assert "check" in runner.invoke(app, ["data", "--help"]).output
    assert "sft" in runner.invoke(app, ["train", "--help"]).output


def test_models_lists_the_embedded_defaults():
    output = runner.invoke(app, ["models"]).output
    assert "tiny-qwen2.5-vl" in output and "tiny-qwen3-vl" in output


def test_train_sft_runs_the_shipped_tiny_config_with_overrides(tmp_path):
    result = runner.invoke(app, [
        "train", "sft", str(REPO / "configs" / "sft_tiny_cpu.yaml"),
        f"data.train_file={sample_dataset()}", f"training.output_dir={tmp_path}", "training.max_steps=1",
    ])
    assert result.exit_code == 0, result.output
    assert "step 1" in result.output and (tmp_path / "model.safetensors").is_file()


def test_train_sft_rejects_an_unknown_override_key(tmp_path):
    result = runner.invoke(app, ["train", "sft", str(REPO / "configs" / "sft_tiny_cpu.yaml"), "training.lr=1"])
    assert result.exit_code != 0
    assert "unknown key 'training.lr'" in " ".join(result.output.split())


def test_smoke_runs_every_stage(tmp_path):
    result = runner.invoke(app, ["smoke", "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for stage in ("1/4", "2/4", "3/4", "4/4", "smoke test passed"):
        assert stage in result.output
