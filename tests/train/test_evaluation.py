"""Evaluation during training: the benchmark runs on `data.eval_file` at intervals, its scores are logged, the best
checkpoint is kept; mistakes are one-line errors before a model loads."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.config import ConfigError
from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
from spatialtune.eval.benchmarks import UnknownBenchmarkError
from spatialtune.eval.during_training import benchmark_evaluator
from spatialtune.eval.runner import EvalError
from spatialtune.runs import RunConfig, checkpoints
from spatialtune.train.evaluation import EvalConfig
from spatialtune.train.progress import PlainProgressCallback
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    build_synthetic(root, SyntheticSettings(seed=0, num_samples=4, test_samples=2, tasks=["absolute_left_right", "grounding"]))
    return root


def _config(tmp_path: Path, data: Path, **training) -> SFTRecipeConfig:
    return SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        data=DataConfig(train_file=str(data / "train.jsonl"), eval_file=str(data / "test.jsonl")),
        training=TrainingConfig(**{"max_steps": 2, "per_device_train_batch_size": 2, "logging_steps": 1, **training}),
        eval=EvalConfig(max_samples=4, max_new_tokens=4),
    )


def _log_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "training.log").read_text().splitlines() if line.startswith("{")]


def test_the_benchmark_runs_at_the_start_every_eval_steps_and_is_logged_beside_the_loss(synthetic, tmp_path, capsys):
    config = _config(tmp_path, synthetic, eval_steps=1)
    evaluate = benchmark_evaluator("records", synthetic / "test.jsonl", max_samples=4, max_new_tokens=4)
    result = run_sft(config, progress=False, evaluate=evaluate, callbacks=[PlainProgressCallback()])

    lines = _log_lines(result.run_dir)
    evals = [line for line in lines if "eval_overall" in line]
    assert [line["step"] for line in evals] == [0, 1, 2]
    assert {"eval_absolute_left_right", "eval_grounding", "eval_iou@0.5", "eval_unparsable"} <= set(evals[0])
    assert [line["step"] for line in lines if "loss" in line] == [1, 2]  # an evaluation never swallows a loss line
    for step in (0, 1, 2):
        metrics = json.loads((result.run_dir / "evals" / f"step-{step}" / "metrics.json").read_text())
        assert metrics["benchmark"] == "records" and metrics["num_samples"] == 4
    printed = capsys.readouterr().out
    assert "eval step 0/2 · overall " in printed and "eval step 2/2 · " in printed and "step 1/2 · loss " in printed


def _scripted(scores_by_call: list[float]):
    """An evaluator returning the given overall scores in turn (the callback's decisions, without generation)."""
    calls = iter(scores_by_call)

    def evaluate(loaded, output_dir):
        return {"overall": next(calls), "left": 0.5}

    return evaluate


def test_the_best_checkpoint_is_saved_at_its_evaluation_and_kept_through_rotation(synthetic, tmp_path):
    config = _config(tmp_path, synthetic, max_steps=4, eval_steps=1, save_steps=3, save_total_limit=1)
    config.eval.best_metric = "overall"
    # step 0 is the untrained baseline and never the kept checkpoint, whatever it scores
    result = run_sft(config, progress=False, evaluate=_scripted([0.99, 0.2, 0.8, 0.5, 0.4]))

    best = json.loads((result.run_dir / "evals" / "best.json").read_text())
    assert (best["metric"], best["value"], best["step"]) == ("overall", 0.8, 2)
    assert [c.name for c in checkpoints(result.run_dir)] == ["checkpoint-2"]  # the later ones rotated away
    state = json.loads((result.run_dir / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["best_metric"] == 0.8 and state["best_global_step"] == 2


def test_lower_is_better_when_asked(synthetic, tmp_path):
    config = _config(tmp_path, synthetic, max_steps=3, eval_steps=1, save_steps=10)
    config.eval.best_metric, config.eval.greater_is_better = "overall", False
    result = run_sft(config, progress=False, evaluate=_scripted([0.0, 0.5, 0.3, 0.4]))
    assert json.loads((result.run_dir / "evals" / "best.json").read_text())["step"] == 2


def test_a_best_metric_the_evaluation_does_not_report_lists_the_scores(synthetic, tmp_path):
    config = _config(tmp_path, synthetic, eval_steps=1)
    config.eval.best_metric = "acuracy"
    with pytest.raises(ConfigError, match=r"eval.best_metric: 'acuracy' is not among the evaluation's scores \['left', 'overall'\]"):
        run_sft(config, progress=False, evaluate=_scripted([0.1, 0.2, 0.3]))


def test_an_eval_file_without_an_evaluator_is_refused_before_anything_loads(synthetic, tmp_path):
    with pytest.raises(ConfigError, match="data.eval_file is set but no evaluator"):
        run_sft(_config(tmp_path, synthetic), progress=False)
    assert not (tmp_path / "run").exists()


def test_the_evaluator_checks_the_benchmark_its_options_and_the_file_when_built(synthetic, tmp_path):
    with pytest.raises(UnknownBenchmarkError, match="recods"):
        benchmark_evaluator("recods", synthetic / "test.jsonl")
    with pytest.raises(UnknownBenchmarkError, match="no option 'tool'"):
        benchmark_evaluator("records", synthetic / "test.jsonl", options={"tool": True})
    with pytest.raises(EvalError, match="data.eval_file: .*missing.jsonl: no such file"):
        benchmark_evaluator("records", tmp_path / "missing.jsonl")


def test_trainer_evaluation_settings_say_where_they_are_set():
    with pytest.raises(ConfigError, match="trl.metric_for_best_model': set eval.best_metric"):
        SFTRecipeConfig(trl={"metric_for_best_model": "eval_loss"})


def test_the_command_line_builds_the_evaluator_from_the_config_and_names_the_best_checkpoint(synthetic, tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({
        "run": {"dir": str(tmp_path / "run")},
        "data": {"train_file": str(synthetic / "train.jsonl"), "eval_file": str(synthetic / "test.jsonl")},
        "training": {"max_steps": 1, "per_device_train_batch_size": 2, "logging_steps": 1, "eval_steps": 1},
        "eval": {"max_samples": 2, "max_new_tokens": 4, "best_metric": "overall", "at_start": False},
    }))
    result = CliRunner().invoke(app, ["train", "sft", str(config)])
    assert result.exit_code == 0, result.output
    assert "eval step 1/1 · overall " in result.output
    assert f"best eval_overall 0.0000 at step 1: {tmp_path / 'run' / 'checkpoint-1'}" in result.output.replace("\n", "")

    bad = CliRunner().invoke(app, ["train", "sft", str(config), "eval.benchmark=records2", f"run.dir={tmp_path / 'other'}"])
    assert bad.exit_code != 0 and "records2" in bad.output and not (tmp_path / "other").exists()


class _Writer:
    """Records what a TensorBoard SummaryWriter is asked to draw."""

    def __init__(self):
        self.images = []

    def add_image(self, tag, array, step, dataformats):
        self.images.append((tag, array.shape, step, dataformats))


class _Wandb:
    """Records what W&B is asked to log (the module's `Image` and `log`)."""

    def __init__(self):
        self.logged = []

    def Image(self, array, caption):  # noqa: N802 — wandb's own name
        return (caption, array.shape)

    def log(self, data):
        self.logged.append(data)


def test_attention_heatmaps_go_to_the_trackers_that_take_images():
    import io
    from types import SimpleNamespace

    from PIL import Image

    from spatialtune.train.evaluation import log_images

    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(buffer, format="PNG")
    figures = [{"file": "s1-region0.png", "png": buffer.getvalue()}]
    tensorboard = SimpleNamespace(tb_writer=_Writer())
    wandb = SimpleNamespace(_wandb=_Wandb(), _initialized=True)
    other = SimpleNamespace()  # a callback that takes no images
    trainer = SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[other, tensorboard, wandb]))

    assert log_images(trainer, figures, step=20) == 2
    assert tensorboard.tb_writer.images == [("eval_attention/s1-region0", (6, 8, 3), 20, "HWC")]
    assert wandb._wandb.logged == [{"eval/attention": [("eval_attention/s1-region0", (6, 8, 3))], "train/global_step": 20}]
    assert log_images(trainer, [], step=30) == 0 and len(tensorboard.tb_writer.images) == 1


def test_time_spent_evaluating_is_not_counted_as_training_time_in_the_throughput(synthetic, tmp_path):
    def slow(loaded, output_dir, seconds=4.0):
        time.sleep(seconds)  # longer than two tiny steps take, even on a busy machine
        return {"overall": 0.5}

    config = _config(tmp_path, synthetic, eval_steps=1, save_steps=10)  # at the start and after each step, no saves
    result = run_sft(config, progress=False, evaluate=slow)
    logged = [line for line in _log_lines(result.run_dir) if "loss" in line]
    assert [line["step"] for line in logged] == [1, 2]
    for line in logged:  # 2 samples per step: a second evaluation's 4 s would make this < 0.5
        assert line["throughput/samples_per_second"] > 2 / 4.0, line
