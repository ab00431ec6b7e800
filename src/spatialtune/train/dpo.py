"""DPO recipe: config → run folder → the model DPO starts from → truncation-checked preference rows → TRL DPOTrainer →
saved model.

Read top to bottom; it has the shape of `train/sft.py` and writes the same run folder (config.yaml, training.log,
resumable checkpoint-N/, model/). Records are preference pairs (`chosen` / `rejected`, e.g. the `rlhf-v` builder's
output); their prompt is the record's messages before its last assistant turn. DPO usually starts from an SFT run:
`model.init_from: RUN` (a run folder, `runs/NAME` for its newest run, a checkpoint-N or model folder). When that run
saved a LoRA adapter, `model.init_adapter` says what happens to it: `continue` trains the same adapter further (its
own LoRA settings; `adapters:` must stay unset), `merge` merges it into its base and trains whatever `adapters:` asks
for (a new adapter, or every unfrozen weight). A full fine-tuned run is loaded as it is, then `adapters:` applies.
The reference model is the model as DPO starts: for a PEFT policy TRL's own choice, a frozen copy of the starting
adapter inside the same model (adapter `ref`; for a new adapter that is the base model); otherwise a frozen copy of
the starting weights. Loss types, `beta` and every other `trl.DPOConfig` field go in the `trl:` section.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset
from peft import PeftModel
from transformers import PreTrainedModel, TrainerCallback
from trl import DPOConfig, DPOTrainer

from ..config import ConfigError
from ..data.dataset import DatasetError, prepare_rows
from ..data.preference import SpatialPreferenceCollator
from ..data.render import dataset_row
from ..models.adapters import AdapterSettings, trainable_summary
from ..models.loading import (
    ModelConfig,
)
from ..models.tiny import TINY_MODELS
from ..runs import RunConfig
from . import RECIPES, Recipe
from .common import (
    TRL_DEFAULTS,
    check_before_loading,
    check_trl_options,
    linking_trl_defaults,
    load_policy,
    open_run,
    owned_fields,
    prepare_trainer,
    refuse_auto_batch_size,
    resolve_init,
    run_name_for,
    save_final_model,
    trl_arguments,
    typed_arguments,
)
from .evaluation import EvalConfig, Evaluator, check_evaluation, eval_every
from .sft import DataConfig, TrainingConfig

log = logging.getLogger(__name__)

REFERENCE_ADAPTER = "ref"  # the adapter DPOTrainer adds to a PEFT policy: a frozen copy of the starting one


@dataclass
class DPOTrainingConfig(TrainingConfig):
    """The common training arguments, typed (names as in DPOConfig); any other DPOConfig field goes in `trl:`."""

    learning_rate: float = 1e-6  # trl.DPOConfig's default: DPO moves far less than SFT


    def __post_init__(self):
        refuse_auto_batch_size(self, "dpo")


# DPOConfig fields the recipe sets itself: a `trl:` key for one of them is an error saying where it is set.
OWNED_DPO_FIELDS = owned_fields(
    ("training", DPOTrainingConfig),
    max_length="set it as data.max_length (the recipe checks that it never cuts image tokens)",
    remove_unused_columns="the recipe's collator needs every column",
    model_init_kwargs="the recipe loads the model (set model.dtype, model.attn_implementation)",
)


@dataclass
class DPORecipeConfig:
    """Everything one DPO run needs."""

    run: RunConfig = field(default_factory=lambda: RunConfig(name="dpo"))
    model: ModelConfig = field(default_factory=ModelConfig)
    adapters: AdapterSettings = field(default_factory=AdapterSettings)
    data: DataConfig = field(default_factory=DataConfig)
    training: DPOTrainingConfig = field(default_factory=DPOTrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)  # evaluation during training, when data.eval_file is set
    trl: dict[str, Any] = field(default_factory=dict)  # any other trl.DPOConfig field, e.g. {beta: 0.1, loss_type: [ipo]}

    def __post_init__(self):
        self.trl = check_trl_options(DPOConfig, self.trl, OWNED_DPO_FIELDS)
        if self.data.packing != "none":
            raise ConfigError(f"data.packing={self.data.packing}: DPO trains padded batches (TRL 1.16's DPO loss takes one "
                              "sequence per row; docs/packing.md); remove data.packing")


@dataclass
class DPOResult:
    """Where the model went and how training ended."""

    run_dir: Path
    model_dir: Path
    global_step: int
    train_loss: float
    skipped: list[tuple[str, str]]
    trainable: dict[str, int]
    log_history: list[dict]


def reference_model(policy: PreTrainedModel | PeftModel) -> PreTrainedModel | None:
    """The frozen reference: None for a PEFT policy (TRL keeps a frozen copy of its starting adapter), else a frozen copy
    of the starting weights (TRL would reload it from the hub id or folder, which a model built in code does not have)."""
    if isinstance(policy, PeftModel):
        return None
    reference = copy.deepcopy(policy).eval()
    reference.requires_grad_(False)
    return reference


def run_dpo(
    config: DPORecipeConfig,
    *,
    resume_from: str | Path | None = None,
    callbacks: list[TrainerCallback] | None = None,
    progress: bool = True,
    evaluate: Evaluator | None = None,
) -> DPOResult:
    """Train one DPO run (or resume it from a checkpoint) and save the model with its processor in `<run>/model`;
    with `data.eval_file`, `evaluate` scores the model every `training.eval_steps` (see `train.evaluation`)."""
    # Config mistakes as one-line errors before a folder is made or a model loads; a tiny model gets its own run name.
    check_before_loading(
        bf16=config.training.bf16, fp16=bool(config.trl.get("fp16")), report_to=config.training.report_to,
        train_file=config.data.train_file, tasks=config.data.tasks, model=config.model, lora=config.adapters.lora,
    )
    check_evaluation(config.data.eval_file, evaluate)
    eval_steps = eval_every(config.training.eval_steps, config.training.save_steps)
    config = dataclasses.replace(config, model=resolve_init(config.model),
                                 run=run_name_for(config.run, config.model.name, TINY_MODELS))
    # 0. One run folder for all processes (made and locked by the main one), its resolved config and log.
    with open_run(config.run, config, job="train dpo", resuming=resume_from is not None) as run:
        log.info("run folder %s%s", run.dir, f", resuming from {resume_from}" if resume_from else "")

        # 1. The starting model (a base, or an earlier run), what trains, and the frozen reference.
        loaded, model = load_policy(config.model, config.adapters, resume_from)
        reference = reference_model(model)
        trainable = trainable_summary(model)
        log.info("starting from %s; trainable parameters: %s", config.model.init_from or config.model.name, trainable)

        # 2. Data: validated pairs → rendered preference rows whose images max_length never cuts → TRL's collator.
        prepared = prepare_rows(
            config.data.train_file,
            loaded.processor,
            loaded.family.convention,
            image_root=config.data.image_root,
            max_samples=config.data.max_samples,
            tasks=config.data.tasks,
            max_length=config.data.max_length,
            on_truncated_image=config.data.on_truncated_image,
            rows="preference",  # TRL's preference collator renders with the processor's own template
            sources=config.data.sources,
            seed=config.training.seed,
        )
        for row_id, reason in prepared.skipped:
            log.warning("skipped record %s: %s", row_id, reason)
        if not prepared.rows:
            raise DatasetError(config.data.train_file or "data.sources", [], f"no trainable pairs left (skipped {len(prepared.skipped)})")

        # 3. TRL's DPO trainer; our collator opens the images and keeps the structured columns.
        args = trl_arguments(DPOConfig, defaults={**TRL_DEFAULTS, **linking_trl_defaults(model)}, options=config.trl, typed={
            **typed_arguments(config.run, run.dir, config.training),
            "max_length": config.data.max_length,
            "remove_unused_columns": False,
        })
        try:
            trainer = DPOTrainer(
                model=model,
                ref_model=reference,
                args=args,
                train_dataset=Dataset.from_list([dataset_row(row) for row in prepared.rows]),
                processing_class=loaded.processor,
                data_collator=SpatialPreferenceCollator(loaded.processor, config.data.max_length, config.data.keep_columns),
                callbacks=[run.callback, *(callbacks or [])],
            )
        except (ValueError, NotImplementedError) as e:  # option combinations DPOTrainer refuses (loss types, references)
            raise ConfigError(f"trl: DPOTrainer refused the options: {e}") from None
        prepare_trainer(trainer, config.training, run.dir, evaluate=evaluate, loaded=loaded, eval_steps=eval_steps,
                        eval_settings=config.eval, progress=progress)
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

        # 4. Save the model (or LoRA adapter) with its processor as `model/`, atomically; the loss history for reports.
        if isinstance(model, PeftModel) and REFERENCE_ADAPTER in model.peft_config:
            model.delete_adapter(REFERENCE_ADAPTER)  # TRL's frozen copy of the starting adapter is no part of the result
        model_dir = save_final_model(trainer, loaded.processor, run)
        log.info("saved %s after %d steps (train loss %.4f)", model_dir, trainer.state.global_step, output.training_loss)
        return DPOResult(
            run.dir, model_dir, trainer.state.global_step, float(output.training_loss), prepared.skipped, trainable,
            trainer.state.log_history,
        )


RECIPES.register("dpo", Recipe(DPORecipeConfig, run_dpo))
