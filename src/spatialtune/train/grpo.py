"""GRPO recipe: config → run folder → model (from an SFT run, +LoRA/freezing) → prompt rows → rewards by name →
TRL GRPOTrainer (HF generation; chain-of-focus crop tool in TRL's tool loop) → saved model.

Read top to bottom; it mirrors `train/sft.py`. A run writes the same folder as SFT (`runs/<name>/<timestamp>/`:
config.yaml, training.log, resumable checkpoint-N/, model/). The rewards come from the caller (`rewards=`, the
`spatialtune.rewards` package: rewards/ and train/ never import each other), chosen by name with their weights in
`rewards:` and their options in `reward_options:`. Group size, temperature, completion length, loss type and KL are
typed in `grpo:`; every other `trl.GRPOConfig` field (vLLM's included) can be set in the `trl:` section.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol

from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from ..config import ConfigError
from ..data.dataset import DatasetError
from ..data.prompts import open_prompt_images, prepare_prompt_rows
from ..data.render import GeometryRenderer
from ..models.adapters import AdapterSettings, trainable_summary
from ..models.loading import ModelConfig
from ..models.tiny import TINY_MODELS
from ..records import SpatialRecord
from ..runs import RunConfig
from ..tools.crop import ToolSettings
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
    process_state,
    refuse_auto_batch_size,
    resolve_init,
    run_name_for,
    save_final_model,
    trl_arguments,
    typed_arguments,
)
from .environments import CROP_ENVIRONMENT, check_tool_calling, crop_environments, declare_for_trl, environment_of
from .evaluation import EvalConfig, Evaluator, check_evaluation, eval_every
from .sft import TrainingConfig as SFTTrainingConfig

log = logging.getLogger(__name__)

LossType = Literal["dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo"]  # TRL 1.16's loss_type values
VISION_TOKENS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")  # model.config


class RewardSource(Protocol):
    """Where the rewards come from: the `spatialtune.rewards` package (or anything with its two functions)."""

    def make_rewards(self, weights: Mapping[str, float], renderer: GeometryRenderer, options: Mapping[str, Any] | None = None) -> tuple[list[Callable], list[float]]:
        """TRL reward functions and their weights, by name."""

    def reward_columns(self, record: SpatialRecord) -> dict[str, Any]:
        """The extra dataset columns the rewards read."""


@dataclass
class DataConfig:
    """Where the prompts come from, and how long a rollout may be."""

    train_file: str = ""
    eval_file: str | None = None  # records evaluated every training.eval_steps (see the eval: section)
    image_root: str | None = None
    max_samples: int | None = None  # the first N records (after the task filter), for debugging
    tasks: list[str] | None = None  # train on these tasks of a mixed file (None = all)
    max_length: int | None = None  # prompt (images expanded) + completion; None: the model's context length
    on_long_prompt: Literal["error", "skip"] = "error"  # a prompt that does not fit with its completion (never cut)


@dataclass
class GRPOSettings:
    """GRPO's own knobs, typed (names as in GRPOConfig)."""

    num_generations: int = 8  # completions sampled per prompt: the group whose rewards are compared
    temperature: float = 1.0
    max_completion_length: int = 256  # tokens the model writes per rollout (tool turns' tokens count too)
    loss_type: LossType = "dapo"
    beta: float = 0.0  # KL coefficient against the starting model; 0 keeps no reference model


@dataclass
class ToolsConfig:
    """Chain-of-focus rollouts: rows whose record declares the crop tool (`meta.tools`) may call it (Qwen3-VL)."""

    crop: bool = False
    max_calls: int = 2  # per rollout, as the eval runner's budget; the call past it is refused, the next reply is final
    min_size: int = 28  # smallest crop side in pixels


@dataclass
class TrainingConfig(SFTTrainingConfig):
    """SFT's typed training arguments with GRPO's defaults; the batch counts completions, not prompts."""

    learning_rate: float = 1e-6
    per_device_train_batch_size: int = 8  # × gradient_accumulation_steps: a multiple of grpo.num_generations
    lr_scheduler_type: str = "constant"
    logging_steps: int = 1


    def __post_init__(self):
        refuse_auto_batch_size(self, "grpo")


# GRPOConfig fields the recipe sets itself: a `trl:` key for one of them is an error saying where it is set.
OWNED_GRPO_FIELDS = owned_fields(
    ("training", TrainingConfig), ("grpo", GRPOSettings),
    reward_weights="weights go with the reward names in rewards: (e.g. rewards.choice=1.0)",
    max_tool_calling_iterations="set tools.max_calls",
    remove_unused_columns="the rewards read every column",
)


@dataclass
class GRPORecipeConfig:
    """Everything one GRPO run needs."""

    run: RunConfig = field(default_factory=lambda: RunConfig(name="grpo"))
    model: ModelConfig = field(default_factory=ModelConfig)  # model.init_from: the SFT run to start from
    adapters: AdapterSettings = field(default_factory=AdapterSettings)
    data: DataConfig = field(default_factory=DataConfig)
    rewards: dict[str, float] = field(default_factory=dict)  # reward name → weight, e.g. {task: 1.0, format: 0.1}
    reward_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # reward name → its options
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)  # evaluation during training, when data.eval_file is set
    trl: dict[str, Any] = field(default_factory=dict)  # any other trl.GRPOConfig field, e.g. {use_vllm: true}

    def __post_init__(self):
        self.trl = check_trl_options(GRPOConfig, self.trl, OWNED_GRPO_FIELDS)


@dataclass
class GRPOResult:
    """Where the model went and how training ended."""

    run_dir: Path
    model_dir: Path
    global_step: int
    train_loss: float
    skipped: list[tuple[str, str]]
    trainable: dict[str, int]
    log_history: list[dict]


def check_grpo_config(config: GRPORecipeConfig) -> None:
    """GRPO's config mistakes as one line, before anything loads: no reward, a batch that splits a group, vLLM asked
    for but not installed, a tool budget of nothing."""
    if not config.rewards:
        raise ConfigError("rewards: name at least one reward with its weight, e.g. rewards: {task: 1.0, format: 0.1}")
    completions = config.training.per_device_train_batch_size * config.training.gradient_accumulation_steps * process_state().num_processes
    if completions % config.grpo.num_generations:
        raise ConfigError(
            f"training.per_device_train_batch_size × gradient_accumulation_steps × processes = {completions} completions "
            f"per step, not a multiple of grpo.num_generations={config.grpo.num_generations} (each prompt's group must fit)"
        )
    if config.trl.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        raise ConfigError("trl.use_vllm=true: the vllm package is not installed; pip install vllm, or remove trl.use_vllm (HF generation)")
    if config.tools.crop and config.tools.max_calls < 1:
        raise ConfigError(f"tools.max_calls={config.tools.max_calls}: chain-of-focus rollouts need at least one call; or set tools.crop=false")


def placeholder_suppression(model, tokenizer, options: Mapping[str, Any]) -> dict[str, Any]:
    """`generation_kwargs` that keep rollouts from writing vision placeholder tokens (a sampled `<|image_pad|>` would
    not match any image features): HF generation's `suppress_tokens`, vLLM's `bad_words`; the `trl:` ones kept."""
    ids = sorted({i for name in VISION_TOKENS if (i := getattr(model.config, name, None)) is not None})
    kwargs = dict(options.get("generation_kwargs") or {})
    if options.get("use_vllm"):  # SamplingParams: banned words as text (JSON-safe for vLLM's server mode)
        kwargs["bad_words"] = sorted({*(kwargs.get("bad_words") or []), *tokenizer.convert_ids_to_tokens(ids)})
    else:
        kwargs["suppress_tokens"] = sorted({*(kwargs.get("suppress_tokens") or []), *ids})
    return kwargs


def row_columns(rewards: RewardSource, tools: bool, record: SpatialRecord) -> dict[str, Any]:
    """A prompt row's extra columns: what the rewards read and, with tools, which environment the row uses."""
    columns = rewards.reward_columns(record)
    if tools:
        columns["environment"] = environment_of(record)
    return columns


def run_grpo(
    config: GRPORecipeConfig,
    *,
    rewards: RewardSource,
    resume_from: str | Path | None = None,
    callbacks: list[TrainerCallback] | None = None,
    progress: bool = True,
    evaluate: Evaluator | None = None,
) -> GRPOResult:
    """Train one GRPO run (or resume it from a checkpoint) and save the model with its processor in `<run>/model`;
    with `data.eval_file`, `evaluate` scores the model every `training.eval_steps` (see `train.evaluation`)."""
    # Config mistakes as one-line errors before a folder is made or a model loads; a tiny model gets its own run name.
    check_before_loading(
        bf16=config.training.bf16, fp16=bool(config.trl.get("fp16")), report_to=config.training.report_to,
        train_file=config.data.train_file, tasks=config.data.tasks, model=config.model, lora=config.adapters.lora,
    )
    check_grpo_config(config)
    check_evaluation(config.data.eval_file, evaluate)
    eval_steps = eval_every(config.training.eval_steps, config.training.save_steps)
    config = dataclasses.replace(config, model=resolve_init(config.model),
                                 run=run_name_for(config.run, config.model.name, TINY_MODELS))
    # 0. One run folder for all processes (made and locked by the main one), its resolved config and log.
    with open_run(config.run, config, job="train grpo", resuming=resume_from is not None) as run:
        log.info("run folder %s%s", run.dir, f", resuming from {resume_from}" if resume_from else "")

        # 1. Model (model.init_from: the SFT run's weights), processor, and what trains.
        loaded, model = load_policy(config.model, config.adapters, resume_from)
        if config.tools.crop:
            check_tool_calling(loaded.processor, config.model.name)
        trainable = trainable_summary(model)
        log.info("trainable parameters: %s", trainable)

        # 2. Rewards by name, then prompt rows (geometry in the model's convention) whose prompt fits with its rollout.
        renderer = GeometryRenderer.for_processor(loaded.processor, loaded.family.convention)
        reward_funcs, reward_weights = rewards.make_rewards(config.rewards, renderer, config.reward_options)
        prepared = prepare_prompt_rows(
            config.data.train_file,
            loaded.processor,
            loaded.family.convention,
            max_length=config.data.max_length or loaded.model.config.get_text_config().max_position_embeddings,
            completion_length=config.grpo.max_completion_length,
            image_root=config.data.image_root,
            max_samples=config.data.max_samples,
            tasks=config.data.tasks,
            on_long_prompt=config.data.on_long_prompt,
            extra_columns=partial(row_columns, rewards, config.tools.crop),
        )
        for row_id, reason in prepared.skipped:
            log.warning("skipped record %s: %s", row_id, reason)
        if not prepared.rows:
            raise DatasetError(config.data.train_file, [], f"no prompt fits (skipped {len(prepared.skipped)})")
        rows = [declare_for_trl(row, loaded.processor) for row in prepared.rows]
        with_tool = sum(row.get("environment") == CROP_ENVIRONMENT for row in rows)
        if config.tools.crop and not with_tool:
            raise ConfigError(f"tools.crop=true: no record of {config.data.train_file} declares the crop tool (meta.tools); "
                              "build chain-of-focus records (cof-tool-sft) or set tools.crop=false")

        # 3. TRL's GRPO trainer: HF generation (vision placeholders suppressed), the crop tool as an environment.
        args = trl_arguments(GRPOConfig, defaults={**TRL_DEFAULTS, **linking_trl_defaults(model)}, options=config.trl, typed={
            **typed_arguments(config.run, run.dir, config.training, config.grpo),
            "reward_weights": reward_weights,
            "max_tool_calling_iterations": config.tools.max_calls + 1,  # the reply after the budget refusal is final
            "remove_unused_columns": False,
            "generation_kwargs": placeholder_suppression(loaded.model, loaded.processor.tokenizer, config.trl),
        })
        tools = ToolSettings(max_calls=config.tools.max_calls, min_size=config.tools.min_size)
        loaded.processor.tokenizer.padding_side = "left"  # as TRL pads prompts: the processor's mm_token_type_ids too
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=Dataset.from_list(rows).with_transform(open_prompt_images),  # images opened as TRL reads
            processing_class=loaded.processor,
            callbacks=[run.callback, *(callbacks or [])],
            environment_factory=crop_environments(renderer, tools) if config.tools.crop else None,
        )
        prepare_trainer(trainer, config.training, run.dir, evaluate=evaluate, loaded=loaded, eval_steps=eval_steps,
                        eval_settings=config.eval, progress=progress)
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

        # 4. Save the model (or LoRA adapter) with its processor as `model/`, atomically; the history for reports.
        model_dir = save_final_model(trainer, loaded.processor, run)
        log.info("saved %s after %d steps (train loss %.4f)", model_dir, trainer.state.global_step, output.training_loss)
        return GRPOResult(
            run.dir, model_dir, trainer.state.global_step, float(output.training_loss), prepared.skipped, trainable,
            trainer.state.log_history,
        )


RECIPES.register("grpo", Recipe(GRPORecipeConfig, run_grpo))
