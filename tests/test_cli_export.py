"""`spatialtune export`: a trained run out as a folder that `spatialtune eval --model` scores; mistakes in one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.pipelines.smoke import sample_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("train") / "run"
    trained = runner.invoke(app, ["train", "sft", "configs/sft_tiny_cpu.yaml", f"run.dir={run}", f"data.train_file={sample_dataset()}",
                                  "training.max_steps=2", "training.per_device_train_batch_size=2",
                                  "adapters.lora={r: 4, alpha: 8}", "data.tasks=null", "--no-progress"])
    assert trained.exit_code == 0, trained.output
    return run


def test_export_merge_lora_writes_a_folder_that_eval_scores(lora_run, tmp_path):
    exported = runner.invoke(app, ["export", str(lora_run), "--to", str(tmp_path / "out"), "--merge-lora"])
    assert exported.exit_code == 0, exported.output
    assert "LoRA merged" in exported.output and (tmp_path / "out" / "README.md").is_file()
    built = runner.invoke(app, ["data", "build", "synthetic", "--output", str(tmp_path / "w"), "--num-samples", "2",
                                "--test-samples", "2", "--tasks", "counting"])
    assert built.exit_code == 0, built.output
    scored = runner.invoke(app, ["eval", "run", "--model", str(tmp_path / "out"), "--data", str(tmp_path / "w" / "test.jsonl"),
                                 "--output-dir", str(tmp_path / "e"), "--max-new-tokens", "4", "--no-progress"])
    assert scored.exit_code == 0, scored.output
    assert (tmp_path / "e" / "metrics.json").is_file()


def test_export_without_merge_lora_says_it_wrote_an_adapter(lora_run, tmp_path):
    exported = runner.invoke(app, ["export", str(lora_run), "--to", str(tmp_path / "out")])
    assert exported.exit_code == 0, exported.output
    assert "LoRA adapter" in exported.output and (tmp_path / "out" / "adapter_config.json").is_file()


def test_export_to_a_non_empty_folder_is_a_one_line_error(lora_run, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    result = runner.invoke(app, ["export", str(lora_run), "--to", str(tmp_path / "out")])
    assert result.exit_code == 1 and "--overwrite" in result.output and "Traceback" not in result.output
