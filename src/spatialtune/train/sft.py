"""SFT recipe: config → run folder → model (+LoRA/freezing) → validated, rendered rows → TRL SFTTrainer → saved model.

Read top to bottom. The same recipe trains the tiny CPU default and an 8B model on a cluster (launch with
`accelerate launch`); only the config differs. A run writes `runs/<name>/<timestamp>/`: config.yaml, training.log,
checkpoint-N/ (resumable with optimizer, scheduler and RNG state) and model/ (the final model or LoRA adapter).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from datasets import Dataset
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import SFTConfig, SFTTrainer
from trl.trainer.callbacks import RichProgressCallback

from ..config import to_dict
from ..data.collate import SpatialCollator
from ..data.dataset import prepare_rows
from ..io import atomic_write_json, atomic_write_text
from ..models.adapters import AdapterSettings, apply_adapters, trainable_summary
from ..models.loading import ModelConfig, load_model_from_config
from ..runs import (
    CONFIG_FILE,
    LOG_FILE,
    MODEL_DIR,
    RunConfig,
    TrainingLogCallback,
    log_to_file,
    new_run_dir,
    stop_logging_to_file,
)

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """Where the training records are and how they are fitted to the model."""

    train_file: str = ""
    image_root: str | None = None
    max_samples: int | None = None  # the first N records (after the task filter), for debugging
    tasks: list[str] | None = None  # train on these tasks of a mixed file (None = all)
    max_length: int | None = 2048
    on_truncated_image: Literal["error", "skip"] = "error"
    keep_columns: list[str] = field(default_factory=list)  # structured columns passed into batches


@dataclass
class TrainingConfig:
    """The TRL/transformers training arguments we expose (names as in SFTConfig)."""

    max_steps: int = -1
    num_train_epochs: float = 1.0
    learning_rate: float = 2e-4
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    warmup_steps: float = 0.0  # an int is steps, a float < 1 a ratio of the run
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    seed: int = 0
    bf16: bool = False
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = 0
    report_to: list[str] = field(default_factory=list)  # [] = no tracker; or ["wandb"], ["tensorboard"]


@dataclass
class SFTRecipeConfig:
    """Everything one SFT run needs."""

    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapters: AdapterSettings = field(default_factory=AdapterSettings)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


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
) -> SFTResult:
    """Train one SFT run (or resume it from a checkpoint) and save the model with its processor in `<run>/model`."""
    # 0. One run folder for all processes (made by the main one), its resolved config and log.
    state = PartialState()
    shared = [str(new_run_dir(config.run)) if state.is_main_process else None]
    broadcast_object_list(shared)
    run_dir = Path(shared[0])
    file_log = None
    if state.is_main_process:
        atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(to_dict(config), sort_keys=False))
        file_log = log_to_file(run_dir)
    try:
        log.info("run folder %s%s", run_dir, f", resuming from {resume_from}" if resume_from else "")

        # 1. Model, processor, and what trains.
        loaded = load_model_from_config(config.model)
        model = apply_adapters(loaded.model, config.adapters)
        trainable = trainable_summary(model)
        log.info("trainable parameters: %s", trainable)

        # 2. Data: validated records → rendered rows (geometry in the model's convention) → TRL's collator.
        collator = SpatialCollator(loaded.processor, config.data.max_length, config.data.keep_columns)
        prepared = prepare_rows(
            config.data.train_file,
            loaded.processor,
            loaded.family.convention,
            image_root=config.data.image_root,
            max_samples=config.data.max_samples,
            tasks=config.data.tasks,
            max_length=config.data.max_length,
            on_truncated_image=config.data.on_truncated_image,
            chat_template=collator.chat_template,
        )
        for row_id, reason in prepared.skipped:
            log.warning("skipped record %s: %s", row_id, reason)
        if not prepared.rows:
            raise ValueError(f"{config.data.train_file}: no trainable records left (skipped {len(prepared.skipped)})")

        # 3. TRL trainer with assistant-only loss; our collator keeps the structured columns.
        t = config.training
        args = SFTConfig(
            output_dir=str(run_dir),
            max_steps=t.max_steps,
            num_train_epochs=t.num_train_epochs,
            learning_rate=t.learning_rate,
            per_device_train_batch_size=t.per_device_train_batch_size,
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            warmup_steps=t.warmup_steps,
            lr_scheduler_type=t.lr_scheduler_type,
            weight_decay=t.weight_decay,
            max_grad_norm=t.max_grad_norm,
            logging_steps=t.logging_steps,
            save_steps=t.save_steps,
            save_total_limit=t.save_total_limit,
            seed=t.seed,
            bf16=t.bf16,
            gradient_checkpointing=t.gradient_checkpointing,
            dataloader_num_workers=t.dataloader_num_workers,
            report_to=t.report_to or "none",
            run_name=f"{config.run.name}/{run_dir.name}",
            assistant_only_loss=True,
            max_length=config.data.max_length,
            remove_unused_columns=False,
            disable_tqdm=True,  # TRL's rich progress bar instead
            dataloader_pin_memory=False,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(prepared.rows),
            processing_class=loaded.processor,
            data_collator=collator,
            callbacks=[TrainingLogCallback(run_dir / LOG_FILE), *(callbacks or [])],
        )
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)  # logs go to training.log and the rich bar, not raw dicts on stdout
        if progress:
            trainer.add_callback(RichProgressCallback())
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

        # 4. Save the model (or LoRA adapter) with its processor into a partial folder, renamed to `model/` when
        #    complete (a crash never leaves a `model/` that looks finished); the loss history for reports.
        model_dir, partial = run_dir / MODEL_DIR, run_dir / f"{MODEL_DIR}.partial"
        trainer.save_model(str(partial))  # every process: sharded/ZeRO weights are gathered here
        if state.is_main_process:
            loaded.processor.save_pretrained(str(partial))
            atomic_write_json(run_dir / "log_history.json", trainer.state.log_history)
            if model_dir.exists():
                shutil.rmtree(model_dir)
            partial.rename(model_dir)
        state.wait_for_everyone()
        log.info("saved %s after %d steps (train loss %.4f)", model_dir, trainer.state.global_step, output.training_loss)
        return SFTResult(
            run_dir, model_dir, trainer.state.global_step, float(output.training_loss), prepared.skipped, trainable, trainer.state.log_history
        )
    finally:
        if file_log is not None:
            stop_logging_to_file(file_log)
