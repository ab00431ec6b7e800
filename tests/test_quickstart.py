"""The quickstart's plumbing on a few samples and steps: every stage, metrics.json, report.html, and resume."""

from __future__ import annotations

import json

import pytest

from spatialtune.pipelines.quickstart import EVAL_TASKS, QuickstartError, QuickstartSettings, run_quickstart


def _small(**kw) -> QuickstartSettings:
    return QuickstartSettings(train_samples=40, test_samples=2, max_steps=2, batch_size=4, eval_batch_size=8, max_new_tokens=4, **kw)


def test_quickstart_writes_metrics_and_report_and_a_rerun_reuses_every_stage(tmp_path):
    lines = []
    result = run_quickstart(tmp_path, _small(), say=lines.append)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["before"]) == set(metrics["after"]) == set(EVAL_TASKS)
    assert metrics["model"] == "tiny-qwen3-vl" and metrics["seed"] == 0 and metrics["minutes"] > 0
    assert metrics["chance"]["counting"] == 0.25 and metrics["chance"]["grounding"] is None
    assert result.report == tmp_path / "report.html" and "pairwise_left_right" in result.report.read_text()
    assert (tmp_path / "train" / "model").is_dir() and len(lines) == 5

    results_after = (tmp_path / "eval_after" / "results.jsonl").read_text()
    trained = (tmp_path / "train" / "model" / "model.safetensors").stat().st_mtime_ns
    again = run_quickstart(tmp_path, _small(), say=lambda _: None)
    assert (tmp_path / "train" / "model" / "model.safetensors").stat().st_mtime_ns == trained  # not retrained
    assert (tmp_path / "eval_after" / "results.jsonl").read_text() == results_after  # nothing recomputed or duplicated
    assert again.metrics["after"] == metrics["after"]


def test_a_folder_made_with_other_settings_is_refused_before_any_work(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({**QuickstartSettings().__dict__, "max_steps": 5}))
    with pytest.raises(QuickstartError, match="max_steps"):
        run_quickstart(tmp_path, QuickstartSettings(), say=lambda _: None)


def test_the_quickstart_runs_every_stage_on_tiny_qwen3_5(tmp_path):
    result = run_quickstart(tmp_path, _small(model="tiny-qwen3.5"), say=lambda _: None)
    assert result.metrics["model"] == "tiny-qwen3.5" and set(result.metrics["after"]) == set(EVAL_TASKS)
    assert json.loads((tmp_path / "train" / "model" / "config.json").read_text())["model_type"] == "qwen3_5"
    assert "tiny-qwen3.5" in result.report.read_text()
