"""The command line: groups that say what exists, recipes with dotted overrides, the end-to-end smoke run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.io import folder_lock
from spatialtune.pipelines.smoke import sample_dataset

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def test_help_lists_the_groups_and_what_exists():
    output = runner.invoke(app, ["--help"]).output
    for group in ("data", "train", "eval", "smoke", "models", "quickstart"):
        assert group in output
    assert "check" in runner.invoke(app, ["data", "--help"]).output
    assert "sft" in runner.invoke(app, ["train", "--help"]).output


def test_models_lists_the_embedded_defaults():
    output = runner.invoke(app, ["models"]).output
    assert "tiny-qwen2.5-vl" in output and "tiny-qwen3-vl" in output


def test_train_sft_runs_the_shipped_tiny_config_with_overrides(tmp_path):
    result = runner.invoke(app, [
        "train", "sft", str(REPO / "configs" / "sft_tiny_cpu.yaml"),
        f"data.train_file={sample_dataset()}", f"run.dir={tmp_path}", "training.max_steps=1", "data.tasks=null", "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    assert "step 1" in result.output and (tmp_path / "model" / "model.safetensors").is_file()


def test_train_sft_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "config.yaml").write_text("model: {}\n")
    result = runner.invoke(app, ["train", "sft", "--resume", str(tmp_path)])
    assert result.exit_code == 1 and "no complete checkpoint" in result.output


def test_train_sft_needs_a_config_or_resume():
    result = runner.invoke(app, ["train", "sft"])
    assert result.exit_code == 1 and "--resume" in result.output


def test_data_build_synthetic_then_eval_scores_every_task(tmp_path):
    built = runner.invoke(app, ["data", "build", "synthetic", "--output", str(tmp_path / "w"), "--num-samples", "4",
                                "--test-samples", "2", "--tasks", "counting", "--tasks", "grounding"])
    assert built.exit_code == 0, built.output
    assert (tmp_path / "w" / "stats.json").is_file() and "counting" in built.output
    scored = runner.invoke(app, ["eval", "run", "--model", "tiny-qwen3-vl", "--data", str(tmp_path / "w" / "test.jsonl"),
                                 "--output-dir", str(tmp_path / "e"), "--max-new-tokens", "4"])
    assert scored.exit_code == 0, scored.output
    assert "grounding" in scored.output and (tmp_path / "e" / "metrics.json").is_file()


def test_bare_eval_shows_its_help():
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 0 and "Usage" in result.output and "run" in result.output


def test_eval_run_without_its_options_says_what_is_missing():
    result = runner.invoke(app, ["eval", "run", "--model", "tiny-qwen3-vl"])
    assert result.exit_code == 1 and "--data" in result.output


def test_eval_with_an_unknown_benchmark_lists_the_known_ones(tmp_path):
    result = runner.invoke(app, ["eval", "--model", "tiny-qwen3-vl", "--benchmark", "nope", "--data", str(tmp_path), "--output-dir", str(tmp_path / "e")])
    assert result.exit_code == 1 and "synthetic" in result.output


def test_train_sft_rejects_an_unknown_override_key(tmp_path):
    result = runner.invoke(app, ["train", "sft", str(REPO / "configs" / "sft_tiny_cpu.yaml"), "training.lr=1"])
    assert result.exit_code != 0
    assert "unknown key 'training.lr'" in " ".join(result.output.split())


def test_smoke_runs_every_stage(tmp_path):
    result = runner.invoke(app, ["smoke", "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for stage in ("1/4", "2/4", "3/4", "4/4", "smoke test passed"):
        assert stage in result.output


def test_train_sft_resume_takes_overrides_without_a_config(tmp_path):
    first = runner.invoke(app, [
        "train", "sft", str(REPO / "configs" / "sft_tiny_cpu.yaml"), f"data.train_file={sample_dataset()}", "data.tasks=null",
        f"run.dir={tmp_path}", "training.max_steps=1", "training.save_steps=1", "training.per_device_train_batch_size=2", "--no-progress",
    ])
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, ["train", "sft", "--resume", str(tmp_path), "training.max_steps=2", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert "step 2" in resumed.output and "max_steps: 2" in (tmp_path / "config.yaml").read_text()


def test_train_with_an_unknown_recipe_suggests_the_closest():
    result = runner.invoke(app, ["train", "sfft", str(REPO / "configs" / "sft_tiny_cpu.yaml")])
    assert result.exit_code == 1 and "unknown recipe 'sfft' (did you mean 'sft'?)" in " ".join(result.output.split())


def test_train_rejects_an_unknown_trl_option_naming_it(tmp_path):
    result = runner.invoke(app, ["train", "sft", str(REPO / "configs" / "sft_tiny_cpu.yaml"), "trl.weight_decya=0.1", f"run.dir={tmp_path}"])
    assert result.exit_code == 1 and "unknown key 'trl.weight_decya' (did you mean 'weight_decay'?)" in " ".join(result.output.split())
    assert not (tmp_path / "config.yaml").exists()  # a bad config leaves no run behind


def test_train_into_a_run_folder_another_job_holds_is_refused_naming_it(tmp_path):
    with folder_lock(tmp_path, "train sft"):
        result = runner.invoke(app, [
            "train", "sft", str(REPO / "configs" / "sft_tiny_cpu.yaml"), f"data.train_file={sample_dataset()}", f"run.dir={tmp_path}",
            "data.tasks=null",
        ])
    assert result.exit_code == 1 and "in use by train sft (process" in " ".join(result.output.split())
    assert not (tmp_path / "config.yaml").exists()


def test_a_run_with_unreadable_data_is_marked_failed_and_not_resumable(tmp_path):
    result = runner.invoke(app, [
        "train", "sft", str(REPO / "configs" / "sft_tiny_cpu.yaml"), f"data.train_file={tmp_path / 'missing.jsonl'}",
        f"run.dir={tmp_path / 'run'}", "--no-progress",
    ])
    assert result.exit_code == 1 and "missing.jsonl" in result.output
    assert "missing.jsonl" in (tmp_path / "run" / "training.log").read_text() and (tmp_path / "run" / "FAILED").is_file()
    resumed = runner.invoke(app, ["train", "sft", "--resume", str(tmp_path / "run")])
    assert resumed.exit_code == 1 and "failed before its first step" in " ".join(resumed.output.split())


def test_resume_of_a_run_another_job_holds_is_refused_naming_it(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO / "configs" / "sft_tiny_cpu.yaml").read_text())
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    with folder_lock(tmp_path, "train sft"):
        result = runner.invoke(app, ["train", "sft", "--resume", str(tmp_path)])
    assert result.exit_code == 1 and "in use by train sft (process" in " ".join(result.output.split())


TINY = str(REPO / "configs" / "sft_tiny_cpu.yaml")


def _no_model_loads(monkeypatch, error=AssertionError("the model loader was called")):
    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr("spatialtune.train.sft.load_policy", refuse)


def test_training_off_a_terminal_prints_plain_progress_lines(tmp_path):
    result = runner.invoke(app, [
        "train", "sft", TINY, f"data.train_file={sample_dataset()}", "data.tasks=null", f"run.dir={tmp_path}",
        "training.max_steps=2", "training.logging_steps=1", "training.per_device_train_batch_size=2",
    ])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("step ")]
    assert len(lines) == 2 and lines[0].startswith("step 1/2 · loss ") and "ETA" in lines[0]
    assert " · lr 3.0e-04 · " in lines[1] and "tok/s" in lines[1]  # after the warmup step


@pytest.mark.parametrize("override, message", [
    ("training.bf16=true", "training.bf16=true: no CUDA GPU is available; set training.bf16=false"),
    ("training.report_to=[tensorboard]", "pip install 'spatialtune[tracking]'"),
    ("data.tasks=[nope]", "set data.tasks=null"),
])
def test_a_config_mistake_is_one_line_before_any_model_loads(override, message, tmp_path, monkeypatch):
    _no_model_loads(monkeypatch)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setitem(__import__("spatialtune.train.common").train.common.TRACKER_PACKAGES, "tensorboard", "no_such_module_x")
    result = runner.invoke(app, ["train", "sft", TINY, f"data.train_file={sample_dataset()}", f"run.dir={tmp_path / 'run'}", override])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output and not (tmp_path / "run").exists()


def test_resume_of_a_run_name_says_which_checkpoint_and_step_it_continues(tmp_path):
    first = runner.invoke(app, [
        "train", "sft", TINY, f"data.train_file={sample_dataset()}", "data.tasks=null", f"run.root={tmp_path}", "run.name=tiny-exp",
        "training.max_steps=1", "training.save_steps=1", "training.per_device_train_batch_size=2", "--no-progress",
    ])
    assert first.exit_code == 0, first.output
    (run,) = (tmp_path / "tiny-exp").iterdir()
    resumed = runner.invoke(app, ["train", "sft", "--resume", str(tmp_path / "tiny-exp"), "training.max_steps=2", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run} from checkpoint-1 (step 1)" in resumed.output and "step 2" in resumed.output


def _resumable_run(tmp_path: Path) -> Path:
    (tmp_path / "config.yaml").write_text(Path(TINY).read_text())
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    return tmp_path


def test_ctrl_c_prints_the_command_that_resumes_the_run(tmp_path, monkeypatch):
    _no_model_loads(monkeypatch, KeyboardInterrupt())
    result = runner.invoke(app, ["train", "sft", "--resume", str(_resumable_run(tmp_path))])
    assert result.exit_code == 130
    assert "from checkpoint-2 (step 2)" in result.output and f"spatialtune train sft --resume {tmp_path}" in result.output


def test_ctrl_c_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path, monkeypatch):
    _no_model_loads(monkeypatch, KeyboardInterrupt())
    result = runner.invoke(app, ["train", "sft", TINY, f"data.train_file={sample_dataset()}", "data.tasks=null", f"run.dir={tmp_path}"])
    assert result.exit_code == 130 and "nothing to resume" in result.output


@pytest.mark.parametrize("command", [["train"], ["eval", "run"], ["eval", "suite"]])
def test_no_progress_is_described_in_every_help(command):
    output = " ".join(runner.invoke(app, [*command, "--help"], terminal_width=200).output.split())
    assert "--no-progress" in output and ("No progress bar" in output or "--no-progress: none" in output)


def test_eval_generate_help_points_to_a_command_that_exists():
    output = " ".join(runner.invoke(app, ["eval", "generate", "--help"]).output.split())
    assert "spatialtune eval run" in output and runner.invoke(app, ["eval", "run", "--help"]).exit_code == 0


def test_eval_of_a_run_name_says_which_run_it_scores(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "exp" / "20260101-000000"
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    monkeypatch.setattr("spatialtune.models.loading.load_model", lambda name: (_ for _ in ()).throw(SystemExit(3)))
    result = runner.invoke(app, ["eval", "run", "--model", str(tmp_path / "runs" / "exp"), "--data", str(sample_dataset()),
                                 "--output-dir", str(tmp_path / "e")])
    assert f"model: {run / 'model'} (the newest run of" in result.output


def test_init_from_is_the_model_init_from_override_checked_before_a_run_folder_is_made(tmp_path):
    result = runner.invoke(app, ["train", "sft", TINY, f"data.train_file={sample_dataset()}", "data.tasks=null",
                                 f"run.dir={tmp_path / 'run'}", "--init-from", str(tmp_path / "no-such-run")])
    assert result.exit_code == 1 and "model.init_from:" in result.output and "no-such-run" in result.output
    assert not (tmp_path / "run").exists()


def test_a_file_whose_every_record_is_skipped_says_so(tmp_path):
    result = runner.invoke(app, ["train", "sft", TINY, f"data.train_file={sample_dataset()}", "data.tasks=null", f"run.dir={tmp_path}",
                                 "data.max_length=8", "data.on_truncated_image=skip", "training.max_steps=1"])
    assert result.exit_code == 1 and "no trainable records left (skipped 4)" in result.output, result.output


@pytest.mark.parametrize("main_process", [True, False])
def test_only_the_main_process_prints_the_run_summary_after_the_processes_end_their_group(main_process, tmp_path, monkeypatch):
    finished = SimpleNamespace(global_step=3, train_loss=0.5, model_dir=tmp_path / "model", run_dir=tmp_path)
    calls = []
    state = SimpleNamespace(is_main_process=main_process, num_processes=2, wait_for_everyone=lambda: calls.append("wait"),
                            destroy_process_group=lambda: calls.append("destroy"))
    monkeypatch.setattr("spatialtune.pipelines.recipes.run_recipe", lambda *args, **kwargs: finished)
    monkeypatch.setattr("spatialtune.train.common.process_state", lambda: state)
    result = runner.invoke(app, ["train", "sft", TINY, f"data.train_file={sample_dataset()}", f"run.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert ("done step 3" in result.output) is main_process
    assert calls == ["wait", "destroy"]  # a gloo/NCCL group left to the interpreter's exit can abort a finished process
