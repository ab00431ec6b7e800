"""The quickstart's plumbing on a few samples and steps: every stage, metrics.json, report.html, and resume."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from spatialtune.pipelines.quickstart import (
    EVAL_TASKS,
    QuickstartError,
    QuickstartSettings,
    StageBudget,
    check_same_settings,
    run_quickstart,
)


def _small(**kw) -> QuickstartSettings:
    return QuickstartSettings(train_samples=40, test_samples=2, max_steps=2, batch_size=4, eval_batch_size=8, max_new_tokens=4,
                              dpo=StageBudget(max_steps=2, batch_size=4), grpo=StageBudget(max_steps=2, batch_size=8),
                              preference_samples=20, **kw)


def _mtime(path) -> int:
    return (path / "model" / "model.safetensors").stat().st_mtime_ns


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
    (tmp_path / "settings.json").write_text(json.dumps({**asdict(QuickstartSettings()), "max_steps": 5}))
    with pytest.raises(QuickstartError, match="max_steps"):
        run_quickstart(tmp_path, QuickstartSettings(), say=lambda _: None)


def test_the_quickstart_runs_every_stage_on_tiny_qwen3_5(tmp_path):
    result = run_quickstart(tmp_path, _small(model="tiny-qwen3.5"), say=lambda _: None)
    assert result.metrics["model"] == "tiny-qwen3.5" and set(result.metrics["after"]) == set(EVAL_TASKS)
    assert json.loads((tmp_path / "train" / "model" / "config.json").read_text())["model_type"] == "qwen3_5"
    assert "tiny-qwen3.5" in result.report.read_text()


def test_stages_chain_from_a_finished_sft_and_each_is_scored_and_reused(tmp_path):
    run_quickstart(tmp_path, _small(), say=lambda _: None)
    sft = _mtime(tmp_path / "train")

    lines = []
    chain = run_quickstart(tmp_path, _small(stages=["sft", "dpo", "grpo"]), say=lines.append)
    assert _mtime(tmp_path / "train") == sft and len(lines) == 9  # the SFT stage is reused; data, before, 3 × (train, eval), report
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["stages"]) == ["sft", "dpo", "grpo"] and metrics["after"] == metrics["stages"]["grpo"]
    assert set(metrics["stages"]["dpo"]) == set(EVAL_TASKS) and metrics["chain"] == "sft → dpo → grpo"
    assert 0 <= metrics["preference_accuracy"]["before dpo"] <= 1 and metrics["stage_tasks"]["grpo"] == ["counting"]
    assert {"dpo", "eval_dpo", "dpo-grpo", "eval_dpo-grpo"} <= set(metrics["seconds"])
    assert "<th>DPO</th><th>GRPO</th>" in chain.report.read_text()
    grpo_config = (tmp_path / "dpo-grpo" / "config.yaml").read_text()
    assert str(tmp_path / "dpo") in grpo_config  # GRPO started from the DPO model

    trained = {d: _mtime(tmp_path / d) for d in ("train", "dpo", "dpo-grpo")}
    run_quickstart(tmp_path, _small(stages=["sft", "dpo", "grpo"]), say=lambda _: None)
    assert {d: _mtime(tmp_path / d) for d in trained} == trained  # nothing retrained

    direct = run_quickstart(tmp_path, _small(stages=["sft", "grpo"]), say=lambda _: None)
    assert (tmp_path / "grpo" / "model").is_dir() and list(direct.metrics["stages"]) == ["sft", "grpo"]  # not the GRPO after DPO
    assert set(direct.metrics["seconds"]) == {"data", "eval_before", "train", "eval_after", "grpo", "eval_grpo"}  # its own stages


@pytest.mark.parametrize("stages", [["grpo"], ["sft", "grpo", "dpo"], ["sft", "sft"], ["sft", "ppo"], []])
def test_stages_out_of_order_or_unknown_are_refused(stages):
    with pytest.raises(QuickstartError, match="sft first, then dpo and/or grpo"):
        QuickstartSettings(stages=stages)


def test_a_folder_from_before_the_stage_settings_existed_is_resumed(tmp_path):
    old = {k: v for k, v in asdict(QuickstartSettings()).items() if k not in ("stages", "dpo", "grpo", "preference_samples")}
    (tmp_path / "settings.json").write_text(json.dumps(old))
    check_same_settings(tmp_path / "settings.json", QuickstartSettings(stages=["sft", "grpo"]))  # no error
    with pytest.raises(QuickstartError, match="grpo"):
        check_same_settings(tmp_path / "settings.json", QuickstartSettings(grpo=StageBudget(max_steps=5, batch_size=8)))
