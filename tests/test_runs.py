"""Run folders: naming, the latest complete checkpoint for --resume, the model a run folder stands for."""

from __future__ import annotations

from pathlib import Path

import pytest

from spatialtune.runs import (
    RunConfig,
    RunError,
    checkpoints,
    clear_failed,
    mark_failed,
    new_run_dir,
    resolve_resume,
    trained_model_path,
)


def _run(tmp_path: Path, steps: list[int], complete: bool = True) -> Path:
    run = tmp_path / "runs" / "sft" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    for step in steps:
        (run / f"checkpoint-{step}").mkdir()
        if complete:
            (run / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    return run


def test_new_run_dirs_are_timestamped_under_the_name_and_never_reused(tmp_path):
    first = new_run_dir(RunConfig(name="exp", root=str(tmp_path)))
    second = new_run_dir(RunConfig(name="exp", root=str(tmp_path)))
    assert first.parent == second.parent == tmp_path / "exp" and first != second


def test_an_explicit_dir_is_used_as_is(tmp_path):
    assert new_run_dir(RunConfig(dir=str(tmp_path / "here"))) == tmp_path / "here"


def test_resume_from_a_run_folder_takes_the_latest_complete_checkpoint(tmp_path):
    run = _run(tmp_path, [5, 20, 100])
    (run / "checkpoint-300").mkdir()  # killed while saving: no trainer_state.json
    assert resolve_resume(run) == (run, run / "checkpoint-100")
    assert [p.name for p in checkpoints(run)] == ["checkpoint-5", "checkpoint-20", "checkpoint-100"]


def test_resume_from_a_checkpoint_folder_uses_its_run(tmp_path):
    run = _run(tmp_path, [5, 20])
    assert resolve_resume(run / "checkpoint-5") == (run, run / "checkpoint-5")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "missing", "no such run folder"),
        (lambda tmp: _run(tmp, []), "no complete checkpoint"),
        (lambda tmp: _run(tmp, [3], complete=False) / "checkpoint-3", "incomplete checkpoint"),
        (lambda tmp: tmp, "not a run folder"),
    ],
)
def test_resume_errors_say_what_is_wrong(tmp_path, make, message):
    with pytest.raises(RunError, match=message):
        resolve_resume(make(tmp_path))


def test_a_run_folder_stands_for_its_final_model_else_its_latest_checkpoint(tmp_path):
    run = _run(tmp_path, [10, 20])
    assert trained_model_path(run) == run / "checkpoint-20"
    (run / "model").mkdir()
    assert trained_model_path(run) == run / "model"
    assert trained_model_path("tiny-qwen3-vl") == Path("tiny-qwen3-vl")


def test_a_run_marked_failed_is_refused_by_resume_and_model_with_its_error(tmp_path):
    run = _run(tmp_path, [])
    mark_failed(run, "unknown model 'nope'")
    for refuse in (resolve_resume, trained_model_path):
        with pytest.raises(RunError, match=r"failed before its first step \(unknown model 'nope'\); see its training.log"):
            refuse(run)


def test_clearing_the_failure_mark_makes_the_folder_a_run_again(tmp_path):
    run = _run(tmp_path, [2])
    mark_failed(run, "typo")
    clear_failed(run)
    assert resolve_resume(run) == (run, run / "checkpoint-2")


def _named_runs(tmp_path: Path, states: dict[str, str]) -> Path:
    """runs/exp/<timestamp>/ for each timestamp: 'checkpoint', 'model', 'failed' or 'empty'."""
    folder = tmp_path / "runs" / "exp"
    for stamp, state in states.items():
        run = folder / stamp
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("model: {}\n")
        if state in ("checkpoint", "model"):
            (run / "checkpoint-3").mkdir()
            (run / "checkpoint-3" / "trainer_state.json").write_text('{"global_step": 3}')
        if state == "model":
            (run / "model").mkdir()
        if state == "failed":
            mark_failed(run, "boom")
    return folder


def test_resume_of_a_run_name_takes_its_newest_run(tmp_path):
    folder = _named_runs(tmp_path, {"20260101-000000": "checkpoint", "20260102-000000": "checkpoint"})
    assert resolve_resume(folder) == (folder / "20260102-000000", folder / "20260102-000000" / "checkpoint-3")


def test_model_of_a_run_name_is_its_newest_runs_final_model(tmp_path):
    folder = _named_runs(tmp_path, {"20260101-000000": "model", "20260102-000000": "model"})
    assert trained_model_path(folder) == folder / "20260102-000000" / "model"


def test_a_run_name_whose_newest_run_is_unusable_lists_the_runs_instead_of_guessing(tmp_path):
    folder = _named_runs(tmp_path, {"20260101-000000": "checkpoint", "20260102-000000": "empty"})
    with pytest.raises(RunError, match="newest run 20260102-000000 has no complete checkpoint") as caught:
        resolve_resume(folder)
    assert "20260101-000000 (checkpoint-3)" in str(caught.value) and "20260102-000000 (no checkpoint yet)" in str(caught.value)


def test_a_run_name_without_a_usable_run_lists_its_runs(tmp_path):
    folder = _named_runs(tmp_path, {"20260101-000000": "failed", "20260102-000000": "empty"})
    with pytest.raises(RunError, match="none of its runs has a saved model or checkpoint") as caught:
        trained_model_path(folder)
    assert "20260101-000000 (failed before its first step)" in str(caught.value)
