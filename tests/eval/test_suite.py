"""Suites, re-scoring outside predictions, and the eval report (self-contained, every referenced file exists)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from test_runner import oracle_generate
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.eval import tool_use
from spatialtune.eval.runner import EvalError, run_eval, score_predictions
from spatialtune.eval.suite import SuiteConfig, SuiteEntry, run_suite
from spatialtune.io import FolderBusyError
from spatialtune.viz.eval_report import pick_gallery, write_eval_report


def local_references(page: str) -> list[str]:
    """Every src/href of a page that is not a data URI or an in-page anchor."""
    return [ref for ref in re.findall(r'(?:src|href)="([^"]+)"', page) if not ref.startswith(("data:", "#"))]


def assert_self_contained(page_path: Path) -> None:
    """No external URL, and every file the page references exists beside it."""
    page = page_path.read_text()
    assert not re.search(r"https?://", page)
    for ref in local_references(page):
        assert (page_path.parent / ref).is_file(), ref


def test_a_suite_runs_each_entry_writes_reports_and_a_summary(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    data = synthetic_dataset(8)
    config = SuiteConfig(
        output_dir=str(tmp_path / "suite"), data_root=str(data.parent),
        benchmarks=[SuiteEntry(benchmark="synthetic", data="test.jsonl", name="all"), SuiteEntry(benchmark="synthetic", data=str(data), name="four", max_samples=4)],
    )
    summary = run_suite(config, tiny_models("tiny-qwen3-vl"), progress=False)
    assert [r["name"] for r in summary["runs"]] == ["all", "four"] and [r["num_samples"] for r in summary["runs"]] == [8, 4]
    assert summary["columns"] == ["overall"] and summary["runs"][0]["overall"] == 1.0
    assert json.loads((tmp_path / "suite" / "summary.json").read_text()) == summary
    page = tmp_path / "suite" / "report.html"
    assert_self_contained(page)
    assert local_references(page.read_text()) == ["all/report.html", "four/report.html"]
    for name in ("all", "four"):
        assert_self_contained(tmp_path / "suite" / name / "report.html")


def test_a_suite_with_a_repeated_name_is_refused_before_running(tiny_models, tmp_path):
    config = SuiteConfig(output_dir=str(tmp_path), benchmarks=[SuiteEntry("synthetic", "a.jsonl"), SuiteEntry("synthetic", "b.jsonl")])
    with pytest.raises(EvalError, match="used twice"):
        run_suite(config, tiny_models("tiny-qwen3-vl"), progress=False)


def test_a_second_suite_into_a_folder_in_use_is_refused_and_the_first_finishes(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    data, refusals = synthetic_dataset(4), []
    config = SuiteConfig(output_dir=str(tmp_path / "suite"), benchmarks=[SuiteEntry("synthetic", str(data), name="a"), SuiteEntry("synthetic", str(data), name="b")])

    def start_another(name, result):
        try:
            run_suite(config, tiny_models("tiny-qwen3-vl"), progress=False)
        except FolderBusyError as e:
            refusals.append(str(e))

    summary = run_suite(config, tiny_models("tiny-qwen3-vl"), progress=False, on_run=start_another)
    assert len(refusals) == 2 and f"in use by eval suite (process {os.getpid()} on " in refusals[0]
    assert [r["overall"] for r in summary["runs"]] == [1.0, 1.0]


def test_the_suite_command_prints_one_summary_table(synthetic_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    data = synthetic_dataset(8)
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump({"model": "tiny-qwen3-vl", "benchmarks": [{"benchmark": "synthetic", "data": str(data)}]}))
    result = CliRunner().invoke(app, ["eval", "suite", str(config), f"output_dir={tmp_path / 'out'}", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.output and "1.000" in result.output and (tmp_path / "out" / "synthetic" / "report.html").is_file()


def _answers(data: Path) -> list[dict]:
    return [json.loads(line) for line in data.read_text().splitlines()]


def test_rescoring_outside_predictions_matches_the_runner(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    loaded = tiny_models("tiny-qwen3-vl")
    data = synthetic_dataset(8)
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    ran = run_eval(loaded, "synthetic", data, tmp_path / "ran", progress=False)
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": r["id"], "output": r["output"]}) + "\n" for r in ran.rows))
    scored = score_predictions("synthetic", data, predictions, tmp_path / "scored", processor=loaded.processor,
                               convention=loaded.family.convention, model="tiny-qwen3-vl")
    assert scored.metrics["scores"] == ran.metrics["scores"] and [r["parsed"] for r in scored.rows] == [r["parsed"] for r in ran.rows]


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": "test-0000", "output": "left"}', "{oops"], "predictions.jsonl:2: invalid JSON"),
        (['{"id": "test-0000", "output": "left"}', '{"id": "test-0000", "output": "right"}'], "appears twice"),
        (['{"id": "nope", "output": "left"}'], "not in"),
        (['{"id": "test-0000"}'], 'expected {"id"'),
        (['{"id": "test-0000", "output": "left"}'], "no output for 3 of 4"),
    ],
)
def test_bad_prediction_files_are_refused_naming_the_line(lines, message, synthetic_dataset, tiny_models, tmp_path):
    loaded = tiny_models("tiny-qwen3-vl")
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("\n".join(lines) + "\n")
    with pytest.raises(EvalError, match=re.escape(message)):
        score_predictions("synthetic", synthetic_dataset(4), predictions, tmp_path / "out", processor=loaded.processor,
                          convention=loaded.family.convention, model="m")


def test_the_score_command_writes_metrics_and_a_report(synthetic_dataset, tmp_path):
    data = synthetic_dataset(8)
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": r["id"], "output": str(r["answer"])}) + "\n" for r in _answers(data)))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "score", "--benchmark", "synthetic", "--data", str(data), "--predictions", str(predictions), "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scores"]["absolute_left_right"] == 1.0 and metrics["scores"]["grounding"] == 0.0  # the answer field of a box task is null
    assert_self_contained(out / "report.html")


def test_an_unknown_option_is_a_clear_cli_error(synthetic_dataset, tmp_path):
    result = CliRunner().invoke(app, ["eval", "--model", "tiny-qwen3-vl", "--data", str(synthetic_dataset(2)), "--output-dir", str(tmp_path / "o"), "-o", "colour=red"])
    assert result.exit_code == 1 and "has no option 'colour'" in result.output and "tools" in result.output


def test_the_gallery_shows_the_worst_cases_first_then_a_seeded_sample():
    results = [{"id": str(i), "score": s, "parsed": p} for i, (s, p) in enumerate([(1, "a"), (0, "a"), (0, None), (0.5, "a"), (1, "a"), (1, "a")])]
    picked = pick_gallery(results, worst=2, others=2, seed=0)
    assert [(kind, r["id"]) for kind, r in picked[:2]] == [("worst", "2"), ("worst", "1")]  # unparsable before wrong
    assert picked == pick_gallery(results, worst=2, others=2, seed=0) and all(kind == "sample" for kind, _ in picked[2:])


def test_the_run_report_draws_charts_definitions_and_a_gallery(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    result = run_eval(tiny_models("tiny-qwen2.5-vl"), "synthetic", synthetic_dataset(8), tmp_path / "out", progress=False)
    page = write_eval_report(tmp_path / "out", result.metrics, result.rows)
    html = page.read_text()
    assert_self_contained(page)
    assert html.count('<div class="chart">') == 1 and "macro average over tasks" in html  # per-task chart; definitions
    assert html.count('<article class="card') == 8 and html.count("data:image/") >= 9
