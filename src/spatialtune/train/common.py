"""What every recipe shares: the run folder across processes, its config and log, TRL options, the final save.

A recipe opens its run with `open_run` (the main process makes and locks the folder, writes `config.yaml` and sends
log records to `training.log`; the other processes of an `accelerate launch` get the same folder), builds its TRL
config with `trl_arguments` and saves with `save_final_model` (`model.partial/` renamed to `model/` once complete,
plus `log_history.json`). A run that fails before its first step is marked failed, never taken for one to resume.
Before any of that, `check_before_loading` turns config mistakes (bf16 without the hardware, a tracker whose package is
missing, a task filter that matches nothing) into one-line errors; Ctrl-C leaves the run as `TrainingInterrupted`.
Progress lines and `training.log` lines: train/progress.py.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import yaml
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env
from peft import PeftModel
from transformers import PreTrainedModel, Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..config import ConfigError, to_dict
from ..errors import SpatialtuneError
from ..io import atomic_write_json, atomic_write_text, folder_lock
from ..models.adapters import AdapterSettings, apply_adapters
from ..models.export import write_run_card
from ..models.loading import (
    ADAPTER_CONFIG,
    LoadedModel,
    ModelConfig,
    attach_configured_linking,
    check_multiview_start,
    load_model,
    load_model_from_config,
    run_model_section,
)
from ..models.multiview.model import MultiViewModel
from ..models.quantization import check_quantization
from ..models.spatial_linking import LINKING_CONFIG, linking_module, restore_spatial_linking
from ..models.tiny import TINY_MODELS
from ..registry import did_you_mean
from ..runs import (
    CONFIG_FILE,
    LOG_FILE,
    MODEL_DIR,
    RunConfig,
    clear_failed,
    mark_failed,
    new_run_dir,
    trained_model_path,
)
from .evaluation import OWNED_EVAL_FIELDS, EvalConfig, Evaluator, attach_evaluation
from .fused_head import compact_fused_lm_head
from .progress import TrainingLogCallback, progress_callback
from .throughput import attach_throughput

TRACKER_PACKAGES = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow", "comet_ml": "comet_ml",
                    "clearml": "clearml", "trackio": "trackio"}  # report_to name → the module transformers imports
TRACKING_EXTRA = ("wandb", "tensorboard")  # what `pip install spatialtune[tracking]` brings

log = logging.getLogger(__name__)

RUN_LOGGERS = ("spatialtune", "transformers", "trl")  # whose records also go to a run's training.log


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: carries the run folder so that the command line can print how to resume it."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def check_precision(bf16: bool, fp16: bool) -> None:
    """bf16/fp16 training needs a GPU that does it: say which key to change instead of failing inside transformers."""
    import torch

    if bf16 and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        where = "this GPU has no bfloat16 support" if torch.cuda.is_available() else "no CUDA GPU is available"
        raise ConfigError(f"training.bf16=true: {where}; set training.bf16=false (float32) or train on a GPU that has it")
    if fp16 and not torch.cuda.is_available():
        raise ConfigError("trl.fp16=true: no CUDA GPU is available; remove trl.fp16 (float32) or train on a GPU")


def check_trackers(report_to: list[str] | str | None) -> None:
    """Every `training.report_to` tracker has its package installed (naming the extra that brings it)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        module = TRACKER_PACKAGES.get(name)
        if module is None or importlib.util.find_spec(module) is not None:
            continue  # "none", "all" and trackers we do not know: transformers decides
        install = "pip install 'spatialtune[tracking]'" if name in TRACKING_EXTRA else f"pip install {module}"
        raise ConfigError(
            f"training.report_to: {name!r} needs the {module} package, which is not installed; {install}, "
            "or set training.report_to=[]"
        )


def _tasks_in(path: Path) -> set[str] | None:
    """The task names of a JSONL record file, read cheaply (None when the file cannot be read this way)."""
    try:
        with path.open(encoding="utf-8") as f:
            return {str(json.loads(line).get("task")) for line in f if line.strip()}
    except (OSError, ValueError, AttributeError):
        return None  # the full record check reports it, with file:line


def check_task_filter(train_file: str | Path, tasks: list[str] | None) -> None:
    """A `data.tasks` filter names only tasks the training file has (suggesting `data.tasks=null` to train all)."""
    present = _tasks_in(Path(train_file)) if tasks is not None else None
    if present is None:
        return
    missing = sorted(set(tasks) - present)
    if missing:
        raise ConfigError(
            f"data.tasks: {train_file} has no records of task(s) {missing} (it has {sorted(present)}); "
            "set data.tasks=null to train on every task of the file, or name tasks it has"
        )


def refuse_auto_batch_size(training: Any, recipe: str) -> None:
    """`training.auto_batch_size` is the SFT recipe's (its collator and rows are what the probe steps on)."""
    if training.auto_batch_size:
        raise ConfigError(f"training.auto_batch_size is applied by the sft recipe only, not by {recipe}")


MULTIVIEW_SFT_ONLY = "multi-view models (model.multiview) train with the sft recipe only"


def check_before_loading(*, bf16: bool, fp16: bool, report_to, train_file: str | Path, tasks: list[str] | None,
                         model: ModelConfig | None = None, lora: object | None = None, multiview_ok: bool = False) -> None:
    """Config mistakes that would otherwise fail after the model loads (or deep inside transformers), as one line."""
    check_precision(bf16, fp16)
    check_trackers(report_to)
    check_task_filter(train_file, tasks)
    if model is not None:
        check_quantization(model.quantization, model.name, lora, TINY_MODELS)
        if model.multiview is not None and not multiview_ok:
            raise ConfigError(MULTIVIEW_SFT_ONLY)


def run_name_for(run: RunConfig, model_name: str, tiny_models) -> RunConfig:
    """The run's name from the config, except that an embedded tiny model never lands in a real model's folder:
    a tiny model's run whose name does not say `tiny` goes to `<name>-<tiny model>` (an explicit run.dir is kept)."""
    if run.dir or model_name not in tiny_models or "tiny" in run.name:
        return run
    return dataclasses.replace(run, name=f"{run.name}-{model_name}")


@dataclass
class Run:
    """An open run: its folder (the same in every process), whether this process writes it, and its log callback."""

    dir: Path
    is_main: bool
    callback: TrainingLogCallback


def _log_to_file(run_dir: Path) -> logging.Handler:
    """Send spatialtune/transformers/TRL log records to the run's `training.log` too."""
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in RUN_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    return handler


def _stop_logging_to_file(handler: logging.Handler) -> None:
    for name in RUN_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def _claim_run_dir(stack: ExitStack, run: RunConfig, config: Any, job: str) -> Path:
    """Make the folder, hold it for this job (a live holder refuses), and write the config and log of a new attempt."""
    run_dir = new_run_dir(run)
    stack.enter_context(folder_lock(run_dir, job))
    clear_failed(run_dir)
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(to_dict(config), sort_keys=False))
    stack.callback(_stop_logging_to_file, _log_to_file(run_dir))
    return run_dir


def process_state() -> PartialState:
    """This process's place in the launch (rank, world size), made the way the Trainer makes it: on CPUs under
    `torchrun` (ACCELERATE_USE_CPU=true) a gloo process group, where a bare `PartialState()` would leave every
    process thinking it is the only one."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def end_processes() -> None:
    """After a launch of several processes: wait for all, then end the process group, since a gloo or NCCL group
    left to the interpreter's exit can abort a process whose run already finished."""
    state = process_state()
    if state.num_processes > 1:
        state.wait_for_everyone()
        state.destroy_process_group()


@contextmanager
def open_run(run: RunConfig, config: Any, *, job: str, resuming: bool = False) -> Iterator[Run]:
    """The run folder for all processes, locked by the main one while the run is live.

    An error before the run's first step (unknown model, unreadable data, a TRL option TRL refuses) goes to
    `training.log` and marks a new run failed (`runs.FAILED_FILE`), so `--resume` and `--model` refuse it; a resumed
    run keeps its checkpoints resumable.
    """
    state = process_state()
    with ExitStack() as stack:
        shared: list[Any] = [None]
        if state.is_main_process:
            try:
                shared = [str(_claim_run_dir(stack, run, config, job))]
            except Exception as e:  # e.g. the folder is held by another job: every process stops, none waits
                shared = [e]
        broadcast_object_list(shared)
        if isinstance(shared[0], Exception):
            raise shared[0]
        opened = Run(Path(shared[0]), state.is_main_process, TrainingLogCallback(Path(shared[0]) / LOG_FILE))
        try:
            yield opened
        except BaseException as e:
            if opened.is_main and not resuming and opened.callback.steps_taken == 0:
                log.error("run failed before its first step: %s", e, exc_info=not isinstance(e, SpatialtuneError))
                mark_failed(opened.dir, str(e) or type(e).__name__)
            if isinstance(e, KeyboardInterrupt) and not isinstance(e, TrainingInterrupted):
                raise TrainingInterrupted(opened.dir) from e
            raise


def trl_option_names(trl_config: type) -> list[str]:
    """The fields a TRL config dataclass takes (`trl.SFTConfig`, later `DPOConfig`, `GRPOConfig`)."""
    return sorted(f.name for f in dataclasses.fields(trl_config) if f.init)


def check_trl_options(trl_config: type, options: Mapping[str, Any] | None, owned: Mapping[str, str]) -> dict[str, Any]:
    """The `trl:` section, checked: every key is a field of `trl_config`, and not one the recipe sets itself.

    `owned` maps the fields the recipe sets (typed config fields, values it derives) to where they are set instead.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"trl: expected a section of {trl_config.__name__} options, got {options!r}")
    names = trl_option_names(trl_config)
    for key in options:
        if key in owned:
            raise ConfigError(f"'trl.{key}': {owned[key]}")
        if key not in names:
            raise ConfigError(
                f"unknown key 'trl.{key}'{did_you_mean(key, names)}: not a field of trl.{trl_config.__name__}"
            )
    return dict(options)


# TRL config values every recipe prefers to TRL's own defaults; `trl:` may change them.
TRL_DEFAULTS = {
    "disable_tqdm": True,  # TRL's rich progress bar instead
    "dataloader_pin_memory": False,
}


def owned_fields(*sections: tuple[str, type], **own: str) -> dict[str, str]:
    """The TRL config fields a recipe sets itself, each with where to set it instead (a `trl:` key for one is an
    error): every field of its typed sections (`("training", TrainingConfig)`, …), evaluation's, the run folder's, `own`."""
    return {
        **{f.name: f"set it as {name}.{f.name}" for name, section in sections for f in dataclasses.fields(section)},
        **OWNED_EVAL_FIELDS,
        "output_dir": "the run folder (set run.dir)",
        "run_name": "the run's name and folder (set run.name)",
        **own,
    }


def typed_arguments(run: RunConfig, run_dir: Path, *sections: Any) -> dict[str, Any]:
    """The recipe's typed sections (training first) and its run folder as TRL config fields; `param_groups` is ours
    (the optimizer's groups, see `prepare_trainer`)."""
    typed = {name: value for section in sections for name, value in dataclasses.asdict(section).items()}
    typed.pop("param_groups")
    typed.pop("auto_batch_size", None)  # the SFT recipe applies it before this (train/batch_probe.py)
    typed.pop("throughput")  # ours: prepare_trainer attaches it (train/throughput.py)
    return {**typed, "report_to": typed["report_to"] or "none", "output_dir": str(run_dir), "run_name": f"{run.name}/{run_dir.name}"}


def prepare_trainer(trainer: Trainer, training: Any, run_dir: Path, *, evaluate: Evaluator | None, loaded: LoadedModel,
                    eval_steps: int, eval_settings: EvalConfig, progress: bool) -> None:
    """What every recipe does to its TRL trainer before `train()`: the optimizer's groups (`training.param_groups`; the
    Trainer keeps it and builds its scheduler on it), our log and progress lines instead of transformers' printers,
    `throughput/*` in every training log (`training.throughput`), evaluation during training; TRL's fused LM head on
    the labelled positions only."""
    compact_fused_lm_head()  # on CPU too (train/fused_head.py)
    if training.param_groups:
        trainer.optimizer = grouped_optimizer(trainer, training.param_groups)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # logs go to training.log and our progress lines, not raw dicts
    if training.throughput:
        attach_throughput(trainer)
    attach_evaluation(trainer, evaluate, loaded, run_dir, eval_steps, eval_settings)
    if (shown := progress_callback(progress)) is not None:
        trainer.add_callback(shown)


def trl_arguments(trl_config: type, *, defaults: Mapping[str, Any], options: Mapping[str, Any], typed: Mapping[str, Any]):
    """`trl_config(...)` from the recipe's defaults, then the `trl:` options, then the typed and derived fields."""
    try:
        return trl_config(**{**defaults, **options, **typed})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"trl: {trl_config.__name__} refused the options: {e}") from None


def save_final_model(trainer, processor, run: Run) -> Path:
    """Save the model (or LoRA adapter) with its processor as `model/`, and the loss history as `log_history.json`.

    The weights go to `model.partial/` first and are renamed when complete, so a crash never leaves a `model/` that
    looks finished. Every process calls this: ZeRO-3 weights are gathered in `save_model`; FSDP's sharded ones, which
    `save_model` leaves out (it writes them only into checkpoints), are gathered here.
    """
    model_dir, partial = run.dir / MODEL_DIR, run.dir / f"{MODEL_DIR}.partial"
    if getattr(trainer, "is_fsdp_enabled", False) and "FULL_STATE_DICT" not in str(trainer.accelerator.state.fsdp_plugin.state_dict_type):
        # every process takes part in the gather; the Trainer's own FULL_STATE_DICT path, which writes on the main one
        trainer._save(str(partial), state_dict=trainer.accelerator.get_state_dict(trainer.model))
    else:
        trainer.save_model(str(partial))
    if run.is_main:
        processor.save_pretrained(str(partial))
        atomic_write_json(run.dir / "log_history.json", trainer.state.log_history)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        partial.rename(model_dir)
        card = write_run_card(run.dir, model_dir)  # names the base model, data and recipe (not "[None]")
        atomic_write_text(run.dir / card.name, card.read_text())
    process_state().wait_for_everyone()
    return model_dir


def resolve_init(model: ModelConfig) -> ModelConfig:
    """`model.init_from` as the saved model folder it names, absolute (a resumed or reloaded run finds the same one),
    checked to come from `model.name`."""
    if not model.init_from:
        return model
    path = trained_model_path(model.init_from)
    if not path.is_dir():
        raise ConfigError(f"model.init_from: {model.init_from} is no run folder, checkpoint or saved model folder")
    trained_from = (run_model_section(path) or {}).get("name")
    if trained_from and trained_from != model.name:
        raise ConfigError(f"model.init_from: {model.init_from} was trained from {trained_from!r} but model.name is "
                          f"{model.name!r}; set model.name={trained_from}")
    return dataclasses.replace(model, init_from=str(path.resolve()))


def continues_adapter(model: ModelConfig) -> bool:
    """Whether the run keeps training the LoRA adapter of `model.init_from` (resolved) rather than starting anew."""
    return bool(model.init_from) and model.init_adapter == "continue" and (Path(model.init_from) / ADAPTER_CONFIG).is_file()


def load_policy(model: ModelConfig, adapters: AdapterSettings, resume_from: str | Path | None = None, *,
                multiview_ok: bool = False) -> tuple[LoadedModel, PreTrainedModel | PeftModel]:
    """The model a recipe trains, as loaded and as wrapped for training (LoRA / freezing per `adapters`, or the adapter of
    `model.init_from` kept trainable), with its spatial-linking module (`model.init_from`'s, or a fresh one per
    `model.spatial_linking`) holding a resumed run's trained weights."""
    if not model.init_from:
        loaded = load_model_from_config(model)
        policy = apply_adapters(loaded.model, adapters)
    else:
        continuing = continues_adapter(model)
        if continuing and adapters != AdapterSettings():
            raise ConfigError(f"model.init_adapter=continue trains the LoRA adapter of {model.init_from} as it was set up; "
                              "remove the adapters: section, or set model.init_adapter=merge to train a new one on the merged model")
        loaded = load_model(model.init_from, dtype=model.dtype, min_pixels=model.min_pixels, max_pixels=model.max_pixels,
                            attn_implementation=model.attn_implementation, merge_adapter=not continuing,
                            quantization=model.quantization)  # restores the module init_from was saved with
        check_multiview_start(loaded, model.multiview, model.init_from)
        attach_configured_linking(loaded.model.get_base_model() if continuing else loaded.model, loaded.processor,
                                  model.spatial_linking)
        policy = loaded.model if continuing else apply_adapters(loaded.model, adapters)
    if isinstance(loaded.model, MultiViewModel) and not multiview_ok:
        raise ConfigError(f"{model.init_from or model.name}: {MULTIVIEW_SFT_ONLY}")
    if resume_from is not None:
        restore_linking_checkpoint(policy, Path(resume_from))
    return loaded, policy


def restore_linking_checkpoint(policy: PreTrainedModel | PeftModel, checkpoint: Path) -> None:
    """A resumed run's spatial-linking weights from its checkpoint: the Trainer reloads only `model.safetensors` or the
    adapter, which leave the module out (it is saved beside them)."""
    module, saved = linking_module(policy), (checkpoint / LINKING_CONFIG).is_file()
    if module is None and saved:
        raise ConfigError(f"{checkpoint} holds a spatial-linking module but the run's model has none: resume with the "
                          "run's own config (model.spatial_linking as it was)")
    if module is not None and not saved:
        raise ConfigError(f"{checkpoint} holds no spatial-linking module but the run's model has one: resume without "
                          "model.spatial_linking, as the run was trained")
    if saved:
        restore_spatial_linking(policy, checkpoint)


def linking_trl_defaults(policy: PreTrainedModel | PeftModel) -> dict[str, Any]:
    """TRL config defaults a policy with spatial linking needs: under DDP, a batch without `refer_boxes` leaves the
    module without gradients, so DDP must look for unused parameters (transformers turns that off with gradient
    checkpointing); `trl.ddp_find_unused_parameters` still overrides it."""
    return {"ddp_find_unused_parameters": True} if linking_module(policy) is not None else {}


def _names_module_of(key: str, name: str) -> bool:
    """Whether `key` names whole modules of parameter `name` (`visual.merger` in `model.visual.merger.mlp.0.weight`)."""
    return f".{key}." in f".{name}."


def grouped_optimizer(trainer: Trainer, learning_rates: Mapping[str, float]) -> Any:
    """The Trainer's own optimizer (`optim`, betas, eps; weight decay except on biases and norms) with one learning
    rate per `training.param_groups` key: a trainable parameter takes the rate of the longest key naming one of its
    modules, every other one `training.learning_rate`; the Trainer's scheduler then warms up and decays each group."""
    if trainer.is_fsdp_enabled:
        raise ConfigError("training.param_groups: not supported with FSDP; remove it, or train with DDP or DeepSpeed")
    model, args = trainer.model, trainer.args
    optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(args, model)
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)) or {
            "params", "model", "optimizer_dict"} & set(kwargs):
        raise ConfigError(f"training.param_groups: optimizer {args.optim!r} builds its own parameter groups; "
                          "use an AdamW/SGD-style trl.optim or remove training.param_groups")
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    for key in learning_rates:
        if not any(_names_module_of(key, name) for name, _ in named):
            example = f"; trainable parameters are named like {named[0][0]!r}" if named else "; no parameter trains"
            raise ConfigError(f"training.param_groups: {key!r} names no module of a trainable parameter{example}")
    decay = set(trainer.get_decay_parameter_names(model))
    groups: dict[tuple[float, float], list] = {}
    for name, param in named:
        key = max((k for k in learning_rates if _names_module_of(k, name)), key=len, default=None)
        rate = args.learning_rate if key is None else float(learning_rates[key])
        groups.setdefault((rate, args.weight_decay if name in decay else 0.0), []).append(param)
    return optimizer_cls([{"params": params, "lr": rate, "weight_decay": wd} for (rate, wd), params in groups.items()],
                         **kwargs)
