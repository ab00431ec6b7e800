"""Every registered benchmark runs end to end on its fixture with a trained tiny model, through `spatialtune eval suite`."""

from __future__ import annotations

import json

import pytest
from fixtures_all import FIXTURES, write_fixture_suite
from test_suite import assert_self_contained
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.eval.benchmarks import benchmark_names
from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.train.sft import DataConfig, RunConfig, SFTRecipeConfig, TrainingConfig, run_sft


def test_every_registered_benchmark_has_a_fixture():
    assert sorted(FIXTURES) == benchmark_names()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny Qwen3-VL trained for two steps through the SFT recipe: a run folder, as the quickstart leaves one."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(run_dir)),
        data=DataConfig(train_file=str(sample_dataset())),
        training=TrainingConfig(max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3),
    )
    return run_sft(config, progress=False).run_dir


def test_the_suite_of_every_benchmark_runs_on_a_trained_model_and_reports(trained_run, tmp_path):
    out = tmp_path / "suite-out"
    suite = write_fixture_suite(tmp_path / "fixtures", str(trained_run), out, max_new_tokens=12, batch_size=4)
    result = CliRunner().invoke(app, ["eval", "suite", str(suite), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == list(FIXTURES)
    for name in FIXTURES:
        metrics = json.loads((out / name / "metrics.json").read_text())
        results = (out / name / "results.jsonl").read_text().splitlines()
        assert metrics["num_samples"] == len(results) > 0 and metrics["definitions"] and "overall" in metrics
        assert_self_contained(out / name / "report.html")
    assert_self_contained(out / "report.html")


def test_the_suite_of_every_benchmark_runs_on_the_embedded_qwen3_5(tmp_path):
    out = tmp_path / "suite-out"
    suite = write_fixture_suite(tmp_path / "fixtures", "tiny-qwen3.5", out, max_new_tokens=4, batch_size=8)
    result = CliRunner().invoke(app, ["eval", "suite", str(suite), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == list(FIXTURES) and summary["frame"] == "qwen3_1000"
    assert all(json.loads((out / name / "metrics.json").read_text())["num_samples"] > 0 for name in FIXTURES)
