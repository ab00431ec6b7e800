"""Evaluation during training: a benchmark run on `data.eval_file` every `training.eval_steps`, its scores logged.

The recipe does not know how to evaluate (train never imports eval): the caller passes an `Evaluator`, a function
(model being trained, output folder) → scores by name; `spatialtune train` builds one with
`spatialtune.eval.during_training.benchmark_evaluator`, which runs the eval runner on the model as it is. Each
evaluation writes `evals/step-N/` in the run folder (results.jsonl, metrics.json) and logs `eval_<score>` (the
benchmark's headline scores, each task's score, the unparsable rate) to `training.log`, the progress lines and the
trackers. With `eval.best_metric`, the checkpoint of the best evaluation is saved and kept (transformers' rotation
spares `state.best_model_checkpoint`), and `evals/best.json` names it. With `eval.attention_samples`, a linked model's
spatial-linking heatmaps are drawn too (`evals/step-N/attention/`) and sent to TensorBoard and W&B when they track.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from PIL import Image
from transformers import Trainer, TrainerCallback

from ..config import ConfigError
from ..io import atomic_write_json
from ..models.loading import LoadedModel
from ..viz.eval_report import attention_figures

log = logging.getLogger(__name__)

EVALS_DIR = "evals"  # in the run folder: evals/step-N/ per evaluation, evals/best.json
Evaluator = Callable[[LoadedModel, Path], dict[str, float]]  # (the model as it trains, an output folder) → scores


@dataclass
class EvalConfig:
    """How `data.eval_file` is evaluated during training (generation with the eval runner, scored by a benchmark)."""

    benchmark: str = "records"  # any registered benchmark; `records` scores any file of spatial records
    max_samples: int | None = 64  # the first N samples of the file, to keep evaluations short
    batch_size: int = 16
    max_new_tokens: int = 64
    options: dict[str, Any] = field(default_factory=dict)  # the benchmark's options, as `eval run --option`
    at_start: bool = True  # also evaluate before the first step (the baseline); not when resuming
    best_metric: str | None = None  # e.g. "overall" or a task name: keep the checkpoint that scores best on it
    greater_is_better: bool = True
    attention_samples: int = 0  # a linked model's heatmaps of this many samples per evaluation, also sent to the trackers


# Trainer arguments the evaluation settings own: a `trl:` key for one of them says where to set it instead.
OWNED_EVAL_FIELDS = {
    "eval_strategy": "evaluation during training runs when data.eval_file is set, every training.eval_steps",
    "metric_for_best_model": "set eval.best_metric",
    "greater_is_better": "set eval.greater_is_better",
}


def eval_every(eval_steps: int | None, save_steps: int) -> int:
    """Steps between evaluations: `training.eval_steps`, by default the checkpoint interval."""
    every = save_steps if eval_steps is None else eval_steps
    if every < 1:
        raise ConfigError(f"training.eval_steps must be ≥ 1, got {every}")
    return every


def check_evaluation(eval_file: str | None, evaluate: Evaluator | None) -> None:
    """An eval file needs an evaluator (built by `spatialtune train`), and an evaluator an eval file."""
    if eval_file and evaluate is None:
        raise ConfigError(
            "data.eval_file is set but no evaluator was given: `spatialtune train` builds one; from Python pass "
            "evaluate=spatialtune.eval.during_training.benchmark_evaluator(...)"
        )
    if evaluate is not None and not eval_file:
        raise ConfigError("an evaluator was given but data.eval_file is not set: name the records to evaluate on")


def _log_scores(trainer: Trainer, control, scores: dict[str, float]) -> dict[str, float]:
    """Log the scores as `eval_<name>` through transformers' own `Trainer.log` (training.log, progress, trackers); returns them.

    TRL's trainers override `log` to add their running training metrics (and clear them); evaluation scores must not
    take those away from the next training log line, so the base class's method is called. Logging clears
    `should_log`, which this step's training log line still needs.
    """
    should_log = control.should_log
    metrics = {f"eval_{name}": value for name, value in scores.items()}
    Trainer.log(trainer, metrics)
    control.should_log = should_log
    return metrics


def log_images(trainer: Trainer, figures: list[dict], step: int) -> int:
    """Send an evaluation's heatmaps to the trackers that take images — TensorBoard (`add_image`) and W&B
    (`wandb.Image`), found among the trainer's callbacks by their writer — and return how many trackers got them."""
    images = [(f"eval_attention/{Path(f['file']).stem}", np.asarray(Image.open(io.BytesIO(f["png"])).convert("RGB")))
              for f in figures]
    sent = 0
    for callback in trainer.callback_handler.callbacks if images else []:
        writer = getattr(callback, "tb_writer", None)  # transformers' TensorBoardCallback, once training began
        if writer is not None:
            for tag, array in images:
                writer.add_image(tag, array, step, dataformats="HWC")
            sent += 1
        wandb = getattr(callback, "_wandb", None)  # transformers' WandbCallback
        if wandb is not None and getattr(callback, "_initialized", False):
            wandb.log({"eval/attention": [wandb.Image(array, caption=tag) for tag, array in images], "train/global_step": step})
            sent += 1
    return sent


class BenchmarkEvalCallback(TrainerCallback):
    """Runs the evaluator every `every` steps (and at the start and the end) on the main process; every process logs
    the same scores and takes the same best-checkpoint decision."""

    def __init__(self, trainer: Trainer, evaluate: Evaluator, loaded: LoadedModel, run_dir: Path, every: int,
                 settings: EvalConfig):
        self.trainer, self.evaluate, self.loaded = trainer, evaluate, loaded
        self.run_dir, self.every, self.settings = run_dir, every, settings
        self.last_step: int | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.settings.at_start and state.global_step == 0:
            self._evaluate(state, control, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps:
            self._evaluate(state, control, model)

    def _evaluate(self, state, control, model) -> None:
        step = state.global_step
        if step == self.last_step:
            return
        self.last_step = step
        scores: list[Any] = [None]
        if PartialState().is_main_process:
            was_training = model.training
            try:
                folder = self.run_dir / EVALS_DIR / f"step-{step}"
                scores = [self.evaluate(LoadedModel(model, self.loaded.processor, self.loaded.family,
                                                    f"{self.run_dir}@step-{step}"), folder)]
                if self.settings.attention_samples:
                    log_images(self.trainer, attention_figures(folder), step)
            finally:
                model.train(was_training)
        broadcast_object_list(scores)
        metrics = _log_scores(self.trainer, control, scores[0])
        if self.settings.best_metric is not None:
            self._keep_if_best(state, control, scores[0])
        # announced as `Trainer.evaluate` announces one (the throughput meter restarts its clock: not training time)
        self.trainer.callback_handler.on_evaluate(self.trainer.args, state, control, metrics)

    def _keep_if_best(self, state, control, scores: dict[str, float]) -> None:
        """A new best score saves this step's checkpoint, which transformers then keeps as `best_model_checkpoint`."""
        name = self.settings.best_metric
        if name not in scores:
            raise ConfigError(f"eval.best_metric: {name!r} is not among the evaluation's scores {sorted(scores)}")
        value = scores[name]
        best = state.best_metric
        better = best is None or (value > best if self.settings.greater_is_better else value < best)
        if not (better and math.isfinite(value)) or state.global_step == 0:
            return  # the untrained model is the baseline, never the checkpoint to keep
        state.best_metric, state.best_global_step = value, state.global_step
        control.should_save = True
        checkpoint = self.run_dir / f"checkpoint-{state.global_step}"
        if PartialState().is_main_process:
            atomic_write_json(self.run_dir / EVALS_DIR / "best.json",
                              {"metric": name, "value": value, "step": state.global_step, "checkpoint": str(checkpoint)})
        log.info("best eval_%s so far: %.4f at step %d (%s is kept)", name, value, state.global_step, checkpoint.name)


def attach_evaluation(trainer: Trainer, evaluate: Evaluator | None, loaded: LoadedModel, run_dir: Path, every: int,
                      settings: EvalConfig) -> None:
    """Evaluate during training when the caller gave an evaluator (see `BenchmarkEvalCallback`)."""
    if evaluate is None:
        return
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if trainer.is_fsdp_enabled or (plugin is not None and plugin.zero_stage == 3):
        raise ConfigError(
            "data.eval_file: evaluation during training generates on the main process alone, which a sharded model "
            "(FSDP, DeepSpeed ZeRO-3) cannot do; drop data.eval_file and evaluate the checkpoints with `spatialtune eval`"
        )
    trainer.add_callback(BenchmarkEvalCallback(trainer, evaluate, loaded, run_dir, every, settings))
