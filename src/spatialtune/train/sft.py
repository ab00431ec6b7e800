"""SFT recipe: config → model (+LoRA/freezing) → validated, rendered rows → TRL SFTTrainer → saved model.

Read top to bottom. The same recipe trains the tiny CPU default and an 8B model on a cluster (launch with
`accelerate launch`); only the config differs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from ..config import to_dict
from ..data.collate import SpatialCollator
from ..data.dataset import prepare_rows
from ..io import atomic_write_text
from ..models.adapters import AdapterSettings, apply_adapters, trainable_summary
from ..models.loading import ModelConfig, load_model_from_config

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """Where the training records are and how they are fitted to the model."""

    train_file: str = ""
    image_root: str | None = None
    max_samples: int | None = None
    max_length: int | None = 2048
    on_truncated_image: Literal["error", "skip"] = "error"
    keep_columns: list[str] = field(default_factory=list)  # structured columns passed into batches


@dataclass
class TrainingConfig:
    """The TRL/transformers training arguments we expose (names as in SFTConfig)."""

    output_dir: str = "runs/sft"
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

    model: ModelConfig = field(default_factory=ModelConfig)
    adapters: AdapterSettings = field(default_factory=AdapterSettings)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


@dataclass
class SFTResult:
    """Where the model went and how training ended."""

    output_dir: Path
    global_step: int
    train_loss: float
    skipped: list[tuple[str, str]]
    trainable: dict[str, int]


def run_sft(config: SFTRecipeConfig) -> SFTResult:
    """Train one SFT run and save the model (or adapter) with its processor in `training.output_dir`."""
    output_dir = Path(config.training.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))

    # 1. Model, processor, and what trains.
    loaded = load_model_from_config(config.model)
    model = apply_adapters(loaded.model, config.adapters)
    trainable = trainable_summary(model)

    # 2. Data: validated records → rendered rows (geometry in the model's convention) → TRL's collator.
    collator = SpatialCollator(loaded.processor, config.data.max_length, config.data.keep_columns)
    prepared = prepare_rows(
        config.data.train_file,
        loaded.processor,
        loaded.family.convention,
        image_root=config.data.image_root,
        max_samples=config.data.max_samples,
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
        output_dir=str(output_dir),
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
        assistant_only_loss=True,
        max_length=config.data.max_length,
        remove_unused_columns=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(prepared.rows),
        processing_class=loaded.processor,
        data_collator=collator,
    )
    output = trainer.train()

    # 4. Save: the model (or LoRA adapter) and the processor it was trained with.
    trainer.save_model(str(output_dir))
    loaded.processor.save_pretrained(str(output_dir))
    return SFTResult(output_dir, trainer.state.global_step, float(output.training_loss), prepared.skipped, trainable)
