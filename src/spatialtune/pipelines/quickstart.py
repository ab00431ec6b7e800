"""The quickstart: synthetic world → tiny model → eval → SFT → eval → metrics.json + report.html, on a laptop CPU.

It runs the same components a real run uses (the synthetic builder, the SFT recipe on TRL, the eval runner, the
report); only the sizes are small. Every stage resumes: a finished stage is reused, a killed one continues.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from transformers.utils import logging as hf_logging

from ..data.builders._synthetic_scenes import chance_level
from ..data.builders.synthetic import SyntheticSettings, build_synthetic
from ..errors import SpatialtuneError
from ..eval.runner import run_eval
from ..io import atomic_write_json
from ..models.adapters import AdapterSettings, FreezeSettings
from ..models.loading import ModelConfig, load_model
from ..runs import MODEL_DIR, RunConfig, checkpoints
from ..train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft
from ..viz.report import write_report

TRAIN_TASKS = ["absolute_left_right", "absolute_top_bottom", "pairwise_left_right", "pairwise_above_below", "counting"]
EVAL_TASKS = [*TRAIN_TASKS, "front_behind", "grounding", "pointing"]  # the last three are reported, not trained here


@dataclass
class QuickstartSettings:
    """What the quickstart builds, trains and measures (defaults: the tuned CPU recipe, ~7 minutes on 2 cores)."""

    seed: int = 0
    model: str = "tiny-qwen3-vl"
    train_samples: int = 8000
    test_samples: int = 200  # per task
    train_tasks: list[str] = field(default_factory=lambda: list(TRAIN_TASKS))
    eval_tasks: list[str] = field(default_factory=lambda: list(EVAL_TASKS))
    max_steps: int = 700
    learning_rate: float = 3e-4
    batch_size: int = 32
    eval_batch_size: int = 32
    max_new_tokens: int = 24
    threads: int | None = None  # torch threads; None keeps torch's default


def quickstart_recipe(settings: QuickstartSettings, train_file: Path, run_dir: Path) -> SFTRecipeConfig:
    """The SFT recipe of the quickstart (configs/sft_tiny_cpu.yaml holds the same recipe for `train sft`)."""
    return SFTRecipeConfig(
        run=RunConfig(name="quickstart", dir=str(run_dir)),
        model=ModelConfig(name=settings.model, seed=settings.seed),
        adapters=AdapterSettings(lora=None, freeze=FreezeSettings(vision_tower=False)),  # full fine-tuning of a tiny model
        data=DataConfig(train_file=str(train_file), tasks=settings.train_tasks, max_length=256),
        training=TrainingConfig(
            max_steps=settings.max_steps,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=0.03,
            per_device_train_batch_size=settings.batch_size,
            logging_steps=10,
            save_steps=100,
            save_total_limit=1,
            seed=settings.seed,
        ),
    )


class QuickstartError(SpatialtuneError):
    """An output folder that holds a quickstart made with other settings."""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise QuickstartError(f"{path}: not valid JSON ({e}); delete it or use another --output-dir") from None


def check_same_settings(path: Path, settings: QuickstartSettings) -> None:
    """Record the settings of a new quickstart; refuse to resume one made with others (its stages would be stale)."""
    wanted = asdict(settings)
    if path.is_file():
        kept = _read_json(path)
        changed = sorted(k for k in wanted.keys() | kept.keys() if k != "threads" and wanted.get(k) != kept.get(k))
        if changed:
            raise QuickstartError(f"{path.parent} holds a quickstart with other settings ({', '.join(changed)}); use another --output-dir")
    else:
        atomic_write_json(path, wanted)


class StageClock:
    """Seconds spent per stage, kept in a file so that a resumed quickstart still reports the whole run's time."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds: dict[str, float] = _read_json(path) if path.is_file() else {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
        atomic_write_json(self.path, self.seconds)

    def total_seconds(self) -> float:
        return sum(self.seconds.values())


@dataclass
class QuickstartResult:
    """Where everything went, and the numbers of metrics.json."""

    output_dir: Path
    metrics: dict
    report: Path


def run_quickstart(output_dir: str | Path, settings: QuickstartSettings | None = None, say: Callable[[str], None] = print) -> QuickstartResult:
    """Run every stage (each resumable) and write metrics.json and report.html into `output_dir`."""
    settings = settings or QuickstartSettings()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    check_same_settings(output_dir / "settings.json", settings)
    hf_logging.disable_progress_bar()  # one progress display per stage (ours, TRL's), not one per weight shard
    stages = StageClock(output_dir / "timing.json")

    # 1. Data: train and test splits of the synthetic world (reused when already built with the same settings).
    data_dir = output_dir / "data"
    tasks = list(dict.fromkeys(settings.train_tasks + settings.eval_tasks))  # both lists, in order, once each
    with stages("data"):
        build_synthetic(data_dir, SyntheticSettings(seed=settings.seed, num_samples=settings.train_samples, test_samples=settings.test_samples, tasks=tasks))
    say(f"1/5 data: {data_dir} ({settings.train_samples} train samples, {settings.test_samples} test samples per task)")

    # 2. Before training: the random-init tiny model.
    with stages("eval_before"):
        base = load_model(settings.model, seed=settings.seed)
        before = run_eval(base, "synthetic", data_dir / "test.jsonl", output_dir / "eval_before", batch_size=settings.eval_batch_size, max_new_tokens=settings.max_new_tokens)
    say(f"2/5 eval before training: {_summary(before.metrics)}")

    # 3. SFT through the real recipe (TRL SFTTrainer, assistant-only loss); resumes from its last checkpoint.
    run_dir = output_dir / "train"
    if not (run_dir / MODEL_DIR).is_dir():
        resume = checkpoints(run_dir)[-1] if run_dir.is_dir() and checkpoints(run_dir) else None
        with stages("train"):
            run_sft(quickstart_recipe(settings, data_dir / "train.jsonl", run_dir), resume_from=resume)
    log_history = json.loads((run_dir / "log_history.json").read_text())
    say(f"3/5 trained {log_history[-1].get('step', settings.max_steps)} steps → {run_dir / MODEL_DIR}")

    # 4. After training.
    with stages("eval_after"):
        trained = load_model(str(run_dir))
        after = run_eval(trained, "synthetic", data_dir / "test.jsonl", output_dir / "eval_after", batch_size=settings.eval_batch_size, max_new_tokens=settings.max_new_tokens)
    say(f"4/5 eval after training: {_summary(after.metrics)}")

    # 5. metrics.json and the report.
    metrics = {
        "before": before.metrics["scores"],
        "after": after.metrics["scores"],
        "minutes": round(stages.total_seconds() / 60, 2),  # the work of every stage, also across resumed runs
        "model": settings.model,
        "seed": settings.seed,
        "chance": {t: chance_level(t) for t in after.metrics["scores"]},
        "trained_tasks": settings.train_tasks,
        "unparsable": {"before": before.metrics["unparsable"], "after": after.metrics["unparsable"]},
        "train": {"steps": settings.max_steps, "batch_size": settings.batch_size, "learning_rate": settings.learning_rate},
    }
    atomic_write_json(output_dir / "metrics.json", metrics)
    report = write_report(
        output_dir,
        metrics=metrics,
        log_history=log_history,
        results_before=before.rows,
        results_after=after.rows,
        title=f"spatialtune quickstart — {settings.model}, seed {settings.seed}",
    )
    say(f"5/5 report: {report}")
    return QuickstartResult(output_dir, metrics, report)


def _summary(metrics: dict) -> str:
    return ", ".join(f"{task} {score:.2f}" for task, score in metrics["scores"].items())
