"""SFT recipe: config → run folder → model (+LoRA/freezing) → validated, rendered rows → TRL SFTTrainer → saved model.

Read top to bottom. The same recipe trains the tiny CPU default and an 8B model on a cluster (launch with
`accelerate launch`); only the config differs. A run writes `runs/<name>/<timestamp>/`: config.yaml, training.log,
checkpoint-N/ (resumable with optimizer, scheduler and RNG state) and model/ (the final model or LoRA adapter).
The common knobs are typed in `training:`; every other `trl.SFTConfig` field can be set in the `trl:` section.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from ..config import ConfigError
from ..data.collate import SpatialCollator
from ..data.dataset import DatasetError, DataSource, prepare_rows
from ..data.multiview import MultiViewCollator, prepare_multiview_rows
from ..data.render import dataset_row
from ..models.adapters import AdapterSettings, trainable_summary
from ..models.loading import ModelConfig
from ..models.multiview.processor import MultiViewProcessor
from ..models.rope import rope_index_function
from ..models.spatial_linking import linking_module
from ..models.tiny import TINY_MODELS
from ..runs import RunConfig
from . import RECIPES, Recipe
from .batch_probe import fitted_training
from .common import (
    TRL_DEFAULTS,
    check_before_loading,
    check_trl_options,
    linking_trl_defaults,
    load_policy,
    open_run,
    owned_fields,
    prepare_trainer,
    resolve_init,
    run_name_for,
    save_final_model,
    trl_arguments,
    typed_arguments,
)
from .evaluation import EvalConfig, Evaluator, check_evaluation, eval_every
from .multiview import MultiViewSFTTrainer

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """Where the training records are and how they are fitted to the model."""

    train_file: str = ""
    sources: list[DataSource] = field(default_factory=list)  # instead of train_file: weighted files, mixed at load time
    eval_file: str | None = None  # records evaluated every training.eval_steps (see the eval: section)
    image_root: str | None = None
    max_samples: int | None = None  # the first N records (after the task filter), for debugging
    tasks: list[str] | None = None  # train on these tasks of a mixed file (None = all)
    max_length: int | None = 2048
    on_truncated_image: Literal["error", "skip"] = "error"
    keep_columns: list[str] = field(default_factory=list)  # structured columns passed into batches
    view_dropout: float = 0.0  # multi-view models (model.multiview): each view dropped with this probability, ≥ 1 kept
    packing: Literal["none", "padding_free", "packed"] = "none"  # batches without padding, per-sample M-RoPE (docs/packing.md)

    def __post_init__(self):
        if self.train_file and self.sources:
            raise ConfigError("data: give data.train_file or data.sources, not both")
        if not 0.0 <= self.view_dropout < 1.0:
            raise ConfigError(f"data.view_dropout must be in [0, 1), got {self.view_dropout}")
        if self.packing == "packed" and self.max_length is None:
            raise ConfigError("data.packing=packed needs data.max_length (the row size); set it, or use padding_free")


@dataclass
class TrainingConfig:
    """The common training arguments, typed (names as in SFTConfig); any other SFTConfig field goes in `trl:`."""

    max_steps: int = -1
    num_train_epochs: float = 1.0
    learning_rate: float = 2e-4
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    warmup_steps: float = 0.0  # an int is steps, a float < 1 a ratio of the run
    lr_scheduler_type: str = "cosine"
    logging_steps: int = 10
    save_steps: int = 500
    eval_steps: int | None = None  # with data.eval_file: steps between evaluations (default: save_steps)
    save_total_limit: int | None = 2
    seed: int = 0
    bf16: bool = False
    gradient_checkpointing: bool = False
    report_to: list[str] = field(default_factory=list)  # [] = no tracker; or ["wandb"], ["tensorboard"]
    # module name or dotted prefix → learning rate, e.g. {visual.merger: 2.0e-4}; other parameters: learning_rate
    param_groups: dict[str, float] = field(default_factory=dict)
    # the largest per-device batch ≤ per_device_train_batch_size that fits, by real steps on the longest samples;
    # accumulation raised to keep the effective batch (train/batch_probe.py)
    auto_batch_size: bool = False
    # throughput/* with every training log: tokens, visual tokens and samples per second, padding, TFLOP/s, MFU
    # (train/throughput.py, docs/packing.md)
    throughput: bool = True


# SFTConfig fields the recipe sets itself: a `trl:` key for one of them is an error saying where it is set.
OWNED_SFT_FIELDS = owned_fields(
    ("training", TrainingConfig),
    max_length="set it as data.max_length",
    assistant_only_loss="the recipe trains on the assistant turns only",
    remove_unused_columns="the recipe's collator needs every column",
)


@dataclass
class SFTRecipeConfig:
    """Everything one SFT run needs."""

    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapters: AdapterSettings = field(default_factory=AdapterSettings)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)  # evaluation during training, when data.eval_file is set
    trl: dict[str, Any] = field(default_factory=dict)  # any other trl.SFTConfig field, e.g. {weight_decay: 0.01}

    def __post_init__(self):
        self.trl = check_trl_options(SFTConfig, self.trl, OWNED_SFT_FIELDS)


@dataclass
class SFTResult:
    """Where the model went and how training ended."""

    run_dir: Path
    model_dir: Path
    global_step: int
    train_loss: float
    skipped: list[tuple[str, str]]
    trainable: dict[str, int]
    log_history: list[dict]


def run_sft(
    config: SFTRecipeConfig,
    *,
    resume_from: str | Path | None = None,
    callbacks: list[TrainerCallback] | None = None,
    progress: bool = True,
    evaluate: Evaluator | None = None,
) -> SFTResult:
    """Train one SFT run (or resume it from a checkpoint) and save the model with its processor in `<run>/model`;
    with `data.eval_file`, `evaluate` scores the model every `training.eval_steps` (see `train.evaluation`)."""
    # Config mistakes as one-line errors before a folder is made or a model loads; a tiny model gets its own run name.
    check_before_loading(
        bf16=config.training.bf16, fp16=bool(config.trl.get("fp16")), report_to=config.training.report_to,
        train_file=config.data.train_file, tasks=config.data.tasks, model=config.model, lora=config.adapters.lora,
        multiview_ok=True,
    )
    check_evaluation(config.data.eval_file, evaluate)
    eval_steps = eval_every(config.training.eval_steps, config.training.save_steps)
    config = dataclasses.replace(config, model=resolve_init(config.model),
                                 run=run_name_for(config.run, config.model.name, TINY_MODELS))
    # 0. One run folder for all processes (made and locked by the main one), its resolved config and log.
    with open_run(config.run, config, job="train sft", resuming=resume_from is not None) as run:
        log.info("run folder %s%s", run.dir, f", resuming from {resume_from}" if resume_from else "")

        # 1. Model, processor, and what trains.
        loaded, model = load_policy(config.model, config.adapters, resume_from, multiview_ok=True)  # the base model, or model.init_from's run
        trainable = trainable_summary(model)
        log.info("trainable parameters: %s", trainable)

        # 2. Data: validated records → rendered rows (geometry in the model's convention) → TRL's collator (with the
        #    referred regions of every <|box_end|> when the model has spatial linking). A multi-view model gets its
        #    views, cameras and placeholders instead, with view dropout.
        multiview = isinstance(loaded.processor, MultiViewProcessor)
        rope_index = rope_index_function(model, config.data.packing) if config.data.packing != "none" else None
        data = dict(image_root=config.data.image_root, max_samples=config.data.max_samples, tasks=config.data.tasks,
                    max_length=config.data.max_length, on_truncated_image=config.data.on_truncated_image,
                    sources=config.data.sources, seed=config.training.seed)
        if multiview:
            collator = MultiViewCollator(loaded.processor, config.data.max_length, config.data.view_dropout, config.training.seed)
            prepared = prepare_multiview_rows(config.data.train_file, loaded.processor, **data)
        else:
            linking = linking_module(model) is not None  # model.spatial_linking, or init_from's; k-th <|box_end|> → refer_boxes[k]
            collator = SpatialCollator(loaded.processor, config.data.max_length, config.data.keep_columns, spatial_linking=linking,
                                       packing=config.data.packing, rope_index=rope_index)
            prepared = prepare_rows(config.data.train_file, loaded.processor, loaded.family.convention,
                                    chat_template=collator.chat_template, **data)
        for row_id, reason in prepared.skipped:
            log.warning("skipped record %s: %s", row_id, reason)
        if not prepared.rows:
            raise DatasetError(config.data.train_file or "data.sources", [], f"no trainable records left (skipped {len(prepared.skipped)})")

        # 3. With training.auto_batch_size: the largest per-device batch that fits, by real steps on the longest rows.
        training = fitted_training(config.training, model, collator, prepared.rows, loaded.processor, run.dir, config.trl)

        # 4. TRL trainer with assistant-only loss; our collator keeps the structured columns.
        args = trl_arguments(SFTConfig, defaults={**TRL_DEFAULTS, **linking_trl_defaults(model)}, options=config.trl, typed={
            **typed_arguments(config.run, run.dir, training),
            "assistant_only_loss": True,
            "max_length": config.data.max_length,
            "remove_unused_columns": False,
            **({"dataset_kwargs": {"skip_prepare_dataset": True}} if multiview else {}),  # our collator tokenizes
        })
        trainer = (MultiViewSFTTrainer if multiview else SFTTrainer)(
            model=model,
            args=args,
            train_dataset=Dataset.from_list([row if multiview else dataset_row(row) for row in prepared.rows]),
            processing_class=loaded.processor.tokenizer if multiview else loaded.processor,
            data_collator=collator,
            callbacks=[run.callback, *(callbacks or [])],
        )
        prepare_trainer(trainer, training, run.dir, evaluate=evaluate, loaded=loaded, eval_steps=eval_steps,
                        eval_settings=config.eval, progress=progress)
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

        # 5. Save the model (or LoRA adapter) with its processor as `model/`, atomically; the loss history for reports.
        model_dir = save_final_model(trainer, loaded.processor, run)
        log.info("saved %s after %d steps (train loss %.4f)", model_dir, trainer.state.global_step, output.training_loss)
        return SFTResult(
            run.dir, model_dir, trainer.state.global_step, float(output.training_loss), prepared.skipped, trainable,
            trainer.state.log_history,
        )


RECIPES.register("sft", Recipe(SFTRecipeConfig, run_sft))
