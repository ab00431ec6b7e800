"""`spatialtune rewards list / score`: what exists, per-sample rewards and the summary on real outputs, clear errors."""

from __future__ import annotations

import json

from hacking_suite import write_hacking_suite
from typer.testing import CliRunner

from spatialtune.cli import app

runner = CliRunner()


def test_list_shows_every_reward_with_its_range_and_options():
    output = runner.invoke(app, ["rewards", "list"], terminal_width=200, env={"COLUMNS": "200"}).output
    for name in ("format", "choice", "count", "iou-hit", "hit-at-mask", "action", "task", "tool-use"):
        assert name in output
    assert "partial_credit=0.5" in output


def test_score_on_the_hacking_suite_prints_every_case_and_the_summary(tmp_path):
    records, completions, cases = write_hacking_suite(tmp_path / "suite")
    result = runner.invoke(app, ["rewards", "score", "--data", str(records), "--completions", str(completions), "--per-sample",
                                 "-r", "task", "-r", "format", "-o", "task.weights={box: 2.0}"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert all(case.id in result.output for case in cases) and "guarded" in result.output
    rows = [json.loads(line) for line in (tmp_path / "suite" / "completions.rewards.jsonl").read_text().splitlines()]
    by_id = {row["id"]: row for row in rows}
    assert by_id["box/correct"]["rewards"] == {"task": 2.0, "format": 1.0}
    assert by_id["choice/every-option"]["guards"] == {"task": "several options"}
    assert len(rows) == len(cases)


def test_score_errors_name_the_line_or_the_id(tmp_path):
    records, completions, _ = write_hacking_suite(tmp_path / "suite")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "box/correct", "completion": "x"}\n{"id": "box/wrong"}\n')
    result = runner.invoke(app, ["rewards", "score", "--data", str(records), "--completions", str(bad)])
    assert result.exit_code == 1 and "bad.jsonl:2: expected" in result.output
    bad.write_text('{"id": "nobody", "output": "x"}\n')
    result = runner.invoke(app, ["rewards", "score", "--data", str(records), "--completions", str(bad), "-r", "task"])
    assert result.exit_code == 1 and "'nobody'" in result.output
    result = runner.invoke(app, ["rewards", "score", "--data", str(records), "--completions", str(completions), "-r", "taks"])
    assert result.exit_code == 1 and "did you mean 'task'" in result.output
