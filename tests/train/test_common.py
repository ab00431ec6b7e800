"""What every recipe shares: the locked run folder, failure marking, `trl:` options, the final save (train/common.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import yaml
from trl import SFTConfig
from trl.trainer.callbacks import RichProgressCallback

from spatialtune.config import ConfigError, load_config
from spatialtune.io import FolderBusyError
from spatialtune.runs import FAILED_FILE, RunConfig, RunError, resolve_resume, trained_model_path
from spatialtune.train.common import (
    TrainingInterrupted,
    check_precision,
    check_task_filter,
    check_trackers,
    check_trl_options,
    open_run,
    run_name_for,
    save_final_model,
    trl_arguments,
)
from spatialtune.train.progress import PlainProgressCallback, RichProgress, progress_callback
from spatialtune.train.sft import SFTRecipeConfig


@dataclass
class TinyConfig:
    name: str = "test"


def test_open_run_writes_the_config_and_logs_into_training_log(tmp_path):
    with open_run(RunConfig(dir=str(tmp_path / "run")), TinyConfig("lr"), job="test") as run:
        logging.getLogger("spatialtune.test").warning("hello from the recipe")
    assert yaml.safe_load((run.dir / "config.yaml").read_text()) == {"name": "lr"}
    assert "hello from the recipe" in (run.dir / "training.log").read_text()


def test_a_second_run_into_a_live_run_folder_is_refused_naming_the_holder(tmp_path):
    run_config = RunConfig(dir=str(tmp_path / "run"))
    with open_run(run_config, TinyConfig("first"), job="train sft"):
        with pytest.raises(FolderBusyError, match=r"in use by train sft \(process"):
            with open_run(run_config, TinyConfig("second"), job="train sft"):
                pass
        assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == {"name": "first"}  # untouched


def test_a_finished_run_frees_its_folder(tmp_path):
    run_config = RunConfig(dir=str(tmp_path / "run"))
    with open_run(run_config, TinyConfig(), job="first"):
        pass
    with open_run(run_config, TinyConfig(), job="second") as run:
        assert run.dir == tmp_path / "run"


def test_a_run_failing_before_its_first_step_is_marked_failed_with_the_error_in_its_log(tmp_path):
    with pytest.raises(ValueError, match="no such data"):
        with open_run(RunConfig(dir=str(tmp_path / "run")), TinyConfig(), job="test"):
            raise ValueError("no such data")
    assert "no such data" in (tmp_path / "run" / FAILED_FILE).read_text()
    assert "run failed before its first step: no such data" in (tmp_path / "run" / "training.log").read_text()


def test_a_failed_run_is_refused_by_resume_and_by_model(tmp_path):
    with pytest.raises(ValueError):
        with open_run(RunConfig(dir=str(tmp_path / "run")), TinyConfig(), job="test"):
            raise ValueError("unknown model 'nope'")
    with pytest.raises(RunError, match="failed before its first step .unknown model 'nope'."):
        resolve_resume(tmp_path / "run")
    with pytest.raises(RunError, match="failed before its first step"):
        trained_model_path(tmp_path / "run")


def test_a_failing_resumed_run_keeps_its_checkpoints_resumable(tmp_path):
    with pytest.raises(ValueError):
        with open_run(RunConfig(dir=str(tmp_path / "run")), TinyConfig(), job="test", resuming=True):
            raise ValueError("data moved")
    assert not (tmp_path / "run" / FAILED_FILE).exists()


def test_a_new_attempt_in_a_failed_run_folder_clears_the_mark(tmp_path):
    run_config = RunConfig(dir=str(tmp_path / "run"))
    with pytest.raises(ValueError):
        with open_run(run_config, TinyConfig(), job="test"):
            raise ValueError("typo")
    with open_run(run_config, TinyConfig(), job="test"):
        assert not (tmp_path / "run" / FAILED_FILE).exists()


def test_a_run_failing_after_its_first_step_is_not_marked_failed(tmp_path):
    with pytest.raises(RuntimeError):
        with open_run(RunConfig(dir=str(tmp_path / "run")), TinyConfig(), job="test") as run:
            run.callback.on_step_end(None, None, None)
            raise RuntimeError("out of memory at step 3")
    assert not (tmp_path / "run" / FAILED_FILE).exists()


def test_trl_options_pass_through_to_the_trl_config(tmp_path):
    args = trl_arguments(SFTConfig, defaults={"disable_tqdm": True}, options={"max_grad_norm": 0.5, "disable_tqdm": False},
                         typed={"output_dir": str(tmp_path), "report_to": "none", "bf16": False})
    assert args.max_grad_norm == 0.5 and args.disable_tqdm is False


def test_an_unknown_trl_option_names_the_key_and_the_closest_field():
    with pytest.raises(ConfigError, match=r"unknown key 'trl.weight_decya' \(did you mean 'weight_decay'\?\)"):
        check_trl_options(SFTConfig, {"weight_decya": 0.1}, owned={})


def test_a_trl_option_the_recipe_types_says_where_to_set_it():
    with pytest.raises(ConfigError, match=r"'trl.learning_rate': set it as training.learning_rate"):
        SFTRecipeConfig(trl={"learning_rate": 1e-4})


def test_a_value_trl_refuses_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="SFTConfig refused"):
        trl_arguments(SFTConfig, defaults={}, options={"lr_scheduler_type": "no-such-schedule"},
                      typed={"output_dir": str(tmp_path), "report_to": "none", "bf16": False})


def test_dotted_overrides_reach_the_trl_section(tmp_path):
    config = load_config(SFTRecipeConfig, None, ["trl.max_grad_norm=0.5", "trl.weight_decay=0.01"])
    assert config.trl == {"max_grad_norm": 0.5, "weight_decay": 0.01}


def test_an_unknown_trl_key_in_a_config_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"trl": {"max_grad_nrom": 1.0}}))
    with pytest.raises(ConfigError, match=r"recipe.yaml: unknown key 'trl.max_grad_nrom' \(did you mean 'max_grad_norm'\?\)"):
        load_config(SFTRecipeConfig, path)


def test_the_final_save_renames_a_complete_partial_folder_to_model(tmp_path):
    saved = []

    class Trainer:
        state = SimpleNamespace(log_history=[{"loss": 1.0, "step": 1}])

        def save_model(self, folder):
            saved.append(folder)
            (tmp_path / "run" / "model.partial").mkdir(parents=True)

    processor = SimpleNamespace(save_pretrained=lambda folder: (tmp_path / "run" / "model.partial" / "processor.json").write_text("{}"))
    (tmp_path / "run" / "model").mkdir(parents=True)  # a previous attempt's model is replaced
    with open_run(RunConfig(dir=str(tmp_path / "run")), TinyConfig(), job="test") as run:
        model_dir = save_final_model(Trainer(), processor, run)
    assert model_dir == tmp_path / "run" / "model" and (model_dir / "processor.json").is_file()
    assert not (tmp_path / "run" / "model.partial").exists()
    assert json.loads((tmp_path / "run" / "log_history.json").read_text()) == [{"loss": 1.0, "step": 1}]


def test_the_sft_recipe_is_registered_with_its_config_and_run():
    from spatialtune.train import RECIPES
    from spatialtune.train.sft import run_sft

    assert "sft" in RECIPES.names() and RECIPES.get("sft").config is SFTRecipeConfig and RECIPES.get("sft").run is run_sft


def _log(progress, step, logs, max_steps=10):
    state = SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=True)
    progress.on_log(None, state, None, logs=logs)


def test_plain_progress_prints_one_line_per_log_with_the_learning_rate_in_scientific_notation(capsys):
    progress = PlainProgressCallback()
    progress.on_train_begin(None, SimpleNamespace(global_step=0), None)
    _log(progress, 2, {"loss": 1.25, "learning_rate": 3e-4, "num_tokens": 400.0})
    _log(progress, 4, {"train_runtime": 1.0})  # the end-of-training summary is no progress line
    line = capsys.readouterr().out.strip()
    assert line.startswith("step 2/10 · loss 1.2500 · lr 3.0e-04 · ") and "tok/s" in line and "ETA" in line
    assert "\n" not in line


def test_the_rich_panel_shows_the_learning_rate_in_scientific_notation(monkeypatch):
    shown = {}
    monkeypatch.setattr(RichProgressCallback, "on_log", lambda self, args, state, control, logs=None, **kw: shown.update(logs))
    RichProgress().on_log(None, None, None, logs={"loss": 1.0, "learning_rate": 3e-4})
    assert shown["learning_rate"] == "3.0e-04"


def test_progress_off_a_terminal_is_plain_lines(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False, raising=False)
    assert isinstance(progress_callback(True), PlainProgressCallback) and progress_callback(False) is None


def test_bf16_without_gpu_support_names_the_key_and_the_fix(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"training.bf16=true: no CUDA GPU is available; set training.bf16=false"):
        check_precision(bf16=True, fp16=False)


def test_a_tracker_without_its_package_names_the_extra(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"'tensorboard' needs the tensorboard package.*spatialtune\[tracking\]"):
        check_trackers(["tensorboard"])
    check_trackers(["none"])


def test_a_task_filter_matching_no_record_suggests_training_every_task(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "task": "left_right"}\n')
    with pytest.raises(ConfigError, match=r"no records of task\(s\) \['counting'\].*data.tasks=null"):
        check_task_filter(data, ["counting"])
    check_task_filter(data, ["left_right"])
    check_task_filter(data, None)


def test_a_tiny_model_never_runs_in_a_real_models_folder():
    assert run_name_for(RunConfig(name="qwen3-vl-8b-sft"), "tiny-qwen3-vl", {"tiny-qwen3-vl"}).name == "qwen3-vl-8b-sft-tiny-qwen3-vl"
    assert run_name_for(RunConfig(name="tiny-cpu"), "tiny-qwen3-vl", {"tiny-qwen3-vl"}).name == "tiny-cpu"
    assert run_name_for(RunConfig(name="qwen3-vl-8b-sft"), "Qwen/Qwen3-VL-8B-Instruct", {"tiny-qwen3-vl"}).name == "qwen3-vl-8b-sft"
    assert run_name_for(RunConfig(name="x", dir="here"), "tiny-qwen3-vl", {"tiny-qwen3-vl"}).dir == "here"


def test_ctrl_c_in_a_run_leaves_it_as_training_interrupted_with_its_folder(tmp_path):
    with pytest.raises(TrainingInterrupted) as caught:
        with open_run(RunConfig(dir=str(tmp_path / "run")), TinyConfig(), job="test"):
            raise KeyboardInterrupt
    assert caught.value.run_dir == tmp_path / "run"
