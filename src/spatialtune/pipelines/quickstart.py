"""The quickstart: synthetic world → tiny model → eval → SFT (→ DPO → GRPO) → eval after each stage → metrics.json +
report.html, on a laptop CPU.

It runs the same components a real run uses (the synthetic builder, the SFT, DPO and GRPO recipes on TRL, the reward
library, the eval runner, the report); only the sizes are small. Every stage resumes: a finished stage is reused, a
killed one continues from its last checkpoint.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from transformers.utils import logging as hf_logging

from .. import rewards
from ..data.builders import run_builder
from ..data.builders._synthetic_scenes import chance_level
from ..data.builders.synthetic import SyntheticSettings, build_synthetic
from ..data.builders.synthetic_preference import SyntheticPreferenceSettings
from ..data.dataset import prepare_rows
from ..errors import SpatialtuneError
from ..eval.runner import run_eval
from ..io import atomic_write_json
from ..models.adapters import AdapterSettings, FreezeSettings
from ..models.loading import ModelConfig, load_model
from ..runs import MODEL_DIR, RunConfig, checkpoints
from ..train.dpo import DPORecipeConfig, DPOTrainingConfig, run_dpo
from ..train.grpo import DataConfig as GRPODataConfig
from ..train.grpo import GRPORecipeConfig, GRPOSettings, run_grpo
from ..train.grpo import TrainingConfig as GRPOTrainingConfig
from ..train.preference_accuracy import preference_accuracy
from ..train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft
from ..viz.report import write_report


class QuickstartError(SpatialtuneError):
    """Stages out of order, or an output folder that holds a quickstart made with other settings."""


TRAIN_TASKS = ["absolute_left_right", "absolute_top_bottom", "pairwise_left_right", "pairwise_above_below", "counting"]
EVAL_TASKS = [*TRAIN_TASKS, "front_behind", "grounding", "pointing"]  # the last three are reported, not trained here
STAGES = ("sft", "dpo", "grpo")  # the chain, in this order; SFT always runs, DPO and GRPO when asked
# GRPO's task: counting is the trained task SFT leaves furthest from perfect in the quickstart's budget (0.87 and 0.85
# on seeds 0 and 1), and the `choice` reward reads a count exactly as the synthetic benchmark scores it.
GRPO_TASK = "counting"


@dataclass
class StageBudget:
    """The size of a stage after SFT: steps, batch (GRPO: completions, a multiple of its 4 per prompt), learning rate."""

    max_steps: int
    batch_size: int
    learning_rate: float = 3e-4


@dataclass
class QuickstartSettings:
    """What the quickstart builds, trains and measures (defaults: the tuned CPU recipe, about 4 minutes on 2 quiet cores)."""

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
    stages: list[str] = field(default_factory=lambda: ["sft"])  # any of STAGES, in order; adding one later reuses the rest
    dpo: StageBudget = field(default_factory=lambda: StageBudget(max_steps=100, batch_size=16, learning_rate=3e-5))
    preference_samples: int = 2000  # DPO's training pairs (synthetic-preference, the trained tasks)
    grpo: StageBudget = field(default_factory=lambda: StageBudget(max_steps=80, batch_size=64, learning_rate=3e-5))
    threads: int | None = None  # torch threads; None keeps torch's default

    def __post_init__(self):
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages or self.stages[0] != "sft" or self.stages != sorted(set(self.stages), key=STAGES.index):
            raise QuickstartError(f"stages {','.join(self.stages) or '(none)'}: give sft first, then dpo and/or grpo in that order, "
                                  f"each once (e.g. sft,grpo or sft,dpo,grpo)")


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


def dpo_stage_recipe(settings: QuickstartSettings, train_file: Path, init_from: Path, run_dir: Path) -> DPORecipeConfig:
    """The DPO stage: from the SFT run, on synthetic preference pairs of the trained tasks (configs/dpo_tiny_cpu.yaml
    holds the same recipe for `train dpo`)."""
    return DPORecipeConfig(
        run=RunConfig(name="quickstart-dpo", dir=str(run_dir)),
        model=ModelConfig(name=settings.model, seed=settings.seed, init_from=str(init_from)),
        adapters=AdapterSettings(lora=None, freeze=FreezeSettings(vision_tower=False)),
        data=DataConfig(train_file=str(train_file), tasks=settings.train_tasks, max_length=256),
        training=DPOTrainingConfig(
            max_steps=settings.dpo.max_steps,
            learning_rate=settings.dpo.learning_rate,
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=0.03,
            per_device_train_batch_size=settings.dpo.batch_size,
            logging_steps=10,
            save_steps=50,
            save_total_limit=1,
            seed=settings.seed,
        ),
        trl={"beta": 0.1, "loss_type": ["sigmoid", "sft"]},  # the SFT term keeps the chosen answers likely
    )


def grpo_stage_recipe(settings: QuickstartSettings, train_file: Path, init_from: Path, run_dir: Path) -> GRPORecipeConfig:
    """The GRPO stage: from the previous stage's model, on GRPO_TASK's training prompts with the `choice` reward
    (configs/grpo_tiny_cpu.yaml holds the same recipe for `train grpo`)."""
    return GRPORecipeConfig(
        run=RunConfig(name="quickstart-grpo", dir=str(run_dir)),
        model=ModelConfig(name=settings.model, seed=settings.seed, init_from=str(init_from)),
        adapters=AdapterSettings(lora=None, freeze=FreezeSettings(vision_tower=False)),
        data=GRPODataConfig(train_file=str(train_file), tasks=[GRPO_TASK]),
        rewards={"choice": 1.0},
        reward_options={"choice": {"letters_too": False}},
        grpo=GRPOSettings(num_generations=4, temperature=1.0, max_completion_length=8, loss_type="dapo", beta=0.0),
        training=GRPOTrainingConfig(
            max_steps=settings.grpo.max_steps,
            learning_rate=settings.grpo.learning_rate,
            lr_scheduler_type="constant",
            per_device_train_batch_size=settings.grpo.batch_size,
            logging_steps=5,
            save_steps=20,
            save_total_limit=1,
            seed=settings.seed,
        ),
    )


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise QuickstartError(f"{path}: not valid JSON ({e}); delete it or use another --output-dir") from None


def check_same_settings(path: Path, settings: QuickstartSettings) -> None:
    """Record the settings of a new quickstart; refuse to resume one made with others (its stages would be stale).
    `stages` may differ: a stage added later starts from the stages already there."""
    wanted = asdict(settings)
    if path.is_file():
        kept = {**asdict(QuickstartSettings()), **_read_json(path)}  # a folder from before a setting existed had its default
        changed = sorted(k for k in wanted.keys() | kept.keys() if k not in ("threads", "stages") and wanted.get(k) != kept.get(k))
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


@dataclass
class QuickstartResult:
    """Where everything went, and the numbers of metrics.json."""

    output_dir: Path
    metrics: dict
    report: Path


def train_stage(run_dir: Path, train: Callable[..., object], recipe) -> None:
    """`train(recipe)` into `run_dir` unless its model is there; a killed run resumes from its last checkpoint."""
    if (run_dir / MODEL_DIR).is_dir():
        return
    found = checkpoints(run_dir) if run_dir.is_dir() else []
    train(recipe, resume_from=found[-1] if found else None)


def stage_folders(stages: list[str]) -> dict[str, str]:
    """Each stage's run folder, named after the chain that made it (`train` for SFT, then `dpo`, `grpo` or
    `dpo-grpo`), so that a GRPO run made from SFT is never reused as the GRPO after DPO."""
    folders, chain = {}, []
    for stage in stages:
        if stage != "sft":
            chain.append(stage)
        folders[stage] = "-".join(chain) or "train"
    return folders


def run_quickstart(output_dir: str | Path, settings: QuickstartSettings | None = None, say: Callable[[str], None] = print) -> QuickstartResult:
    """Run every stage (each resumable) and write metrics.json and report.html into `output_dir`."""
    settings = settings or QuickstartSettings()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    check_same_settings(output_dir / "settings.json", settings)
    hf_logging.disable_progress_bar()  # one progress display per stage (ours, TRL's), not one per weight shard
    clock = StageClock(output_dir / "timing.json")
    steps = 3 + 2 * len(settings.stages)  # data, eval before, (train, eval) per stage, report
    step = iter(range(1, steps + 1))
    folders = stage_folders(settings.stages)

    def evaluate(model, folder: str):
        return run_eval(model, "synthetic", data_dir / "test.jsonl", output_dir / folder,
                        batch_size=settings.eval_batch_size, max_new_tokens=settings.max_new_tokens)

    # 1. Data: train and test splits of the synthetic world (reused when already built with the same settings).
    data_dir = output_dir / "data"
    tasks = list(dict.fromkeys(settings.train_tasks + settings.eval_tasks))  # both lists, in order, once each
    with clock("data"):
        build_synthetic(data_dir, SyntheticSettings(seed=settings.seed, num_samples=settings.train_samples, test_samples=settings.test_samples,
                                                    tasks=tasks, workers=torch.get_num_threads()))  # the same files for any workers
    say(f"{next(step)}/{steps} data: {data_dir} ({settings.train_samples} train samples, {settings.test_samples} test samples per task)")

    # 2. Before training: the random-init tiny model.
    with clock("eval_before"):
        before = evaluate(load_model(settings.model, seed=settings.seed), "eval_before")
    say(f"{next(step)}/{steps} eval before training: {_summary(before.metrics)}")

    # 3. Each stage trains from the one before it through its real recipe, then the same evaluation scores it.
    scores, unparsable, histories, extra = {}, {"before": before.metrics["unparsable"]}, {}, {}
    timed = ["data", "eval_before"]  # this chain's clock entries (the folder may hold another chain's too)
    previous = None
    for stage in settings.stages:
        run_dir = output_dir / folders[stage]
        with clock(folders[stage]):  # "train" for SFT, then the chain's folder name: a GRPO after DPO is timed apart
            if stage == "sft":
                recipe, train = quickstart_recipe(settings, data_dir / "train.jsonl", run_dir), run_sft
            elif stage == "dpo":
                pairs = output_dir / "data_preference"
                run_builder("synthetic-preference", SyntheticPreferenceSettings(
                    seed=settings.seed, num_samples=settings.preference_samples, test_samples=20, tasks=settings.train_tasks), pairs)
                recipe, train = dpo_stage_recipe(settings, pairs / "train.jsonl", previous, run_dir), run_dpo
            else:
                recipe, train = grpo_stage_recipe(settings, data_dir / "train.jsonl", previous, run_dir), partial(run_grpo, rewards=rewards)
            train_stage(run_dir, train, recipe)
        if stage == "dpo":
            extra["preference_accuracy"] = {"before dpo": _preference_accuracy(previous, pairs), "after dpo": _preference_accuracy(run_dir, pairs)}
        histories[stage] = json.loads((run_dir / "log_history.json").read_text())
        say(f"{next(step)}/{steps} {stage}: trained {histories[stage][-1].get('step', '?')} steps → {run_dir / MODEL_DIR}")
        eval_folder = "eval_after" if stage == "sft" else f"eval_{folders[stage]}"
        timed += [folders[stage], eval_folder]
        with clock(eval_folder):
            result = evaluate(load_model(str(run_dir)), eval_folder)
        scores[stage], unparsable[stage] = result.metrics["scores"], result.metrics["unparsable"]
        say(f"{next(step)}/{steps} eval after {stage}: {_summary(result.metrics)}")
        previous = run_dir
    last = settings.stages[-1]

    # 4. metrics.json and the report.
    metrics = {
        "before": before.metrics["scores"],
        "after": scores[last],  # after the last stage
        "stages": scores,  # after each stage, in order
        "minutes": round(sum(clock.seconds.get(k, 0.0) for k in timed) / 60, 2),  # this chain's work, also across resumed runs
        "model": settings.model,
        "seed": settings.seed,
        "chance": {t: chance_level(t) for t in scores[last]},
        "trained_tasks": settings.train_tasks,
        "stage_tasks": {"sft": settings.train_tasks, "dpo": settings.train_tasks, "grpo": [GRPO_TASK]},
        "unparsable": {**unparsable, "after": unparsable[last]},
        "train": {"steps": settings.max_steps, "batch_size": settings.batch_size, "learning_rate": settings.learning_rate},
        "stage_budgets": {s: asdict(getattr(settings, s)) for s in settings.stages if s != "sft"},
        "seconds": {k: round(clock.seconds.get(k, 0.0), 1) for k in timed},
        **extra,
    }
    if len(settings.stages) > 1:
        metrics["chain"] = " → ".join(settings.stages)
    atomic_write_json(output_dir / "metrics.json", metrics)
    report = write_report(
        output_dir,
        metrics=metrics,
        log_history=histories["sft"],
        stage_histories={s: h for s, h in histories.items() if s != "sft"},
        results_before=before.rows,
        results_after=result.rows,
        title=f"spatialtune quickstart — {settings.model}, seed {settings.seed}",
    )
    say(f"{next(step)}/{steps} report: {report}")
    return QuickstartResult(output_dir, metrics, report)


def _preference_accuracy(model_dir: Path, pairs: Path) -> float:
    """Held-out preference accuracy (chosen more likely than rejected) of a stage's model on the test pairs."""
    loaded = load_model(str(model_dir))
    rows = prepare_rows(pairs / "test.jsonl", loaded.processor, loaded.family.convention, rows="preference").rows
    return preference_accuracy(loaded.model, loaded.processor, rows, batch_size=32)


def _summary(metrics: dict) -> str:
    return ", ".join(f"{task} {score:.2f}" for task, score in metrics["scores"].items())
