"""What every recipe shares: the run folder across processes, its config and log, TRL options, the final save.

A recipe opens its run with `open_run` (the main process makes and locks the folder, writes `config.yaml` and sends
log records to `training.log`; the other processes of an `accelerate launch` get the same folder), builds its TRL
config with `trl_arguments` and saves with `save_final_model` (`model.partial/` renamed to `model/` once complete,
plus `log_history.json`). A run that fails before its first step is marked failed, never taken for one to resume.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import TrainerCallback

from ..config import ConfigError, to_dict
from ..errors import SpatialtuneError
from ..io import atomic_write_json, atomic_write_text, folder_lock
from ..registry import did_you_mean
from ..runs import CONFIG_FILE, LOG_FILE, MODEL_DIR, RunConfig, clear_failed, mark_failed, new_run_dir

log = logging.getLogger(__name__)

RUN_LOGGERS = ("spatialtune", "transformers", "trl")  # whose records also go to a run's training.log


class TrainingLogCallback(TrainerCallback):
    """Appends every logged metrics dict to `training.log` as one JSON line (readable while training runs)."""

    def __init__(self, path: Path):
        self.path = path
        self.steps_taken = 0  # optimizer steps of this attempt: 0 when a failure comes before the first one

    def on_step_end(self, args, state, control, **kwargs):
        self.steps_taken += 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


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


@contextmanager
def open_run(run: RunConfig, config: Any, *, job: str, resuming: bool = False) -> Iterator[Run]:
    """The run folder for all processes, locked by the main one while the run is live.

    An error before the run's first step (unknown model, unreadable data, a TRL option TRL refuses) goes to
    `training.log` and marks a new run failed (`runs.FAILED_FILE`), so `--resume` and `--model` refuse it; a resumed
    run keeps its checkpoints resumable.
    """
    state = PartialState()
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


def trl_arguments(trl_config: type, *, defaults: Mapping[str, Any], options: Mapping[str, Any], typed: Mapping[str, Any]):
    """`trl_config(...)` from the recipe's defaults, then the `trl:` options, then the typed and derived fields."""
    try:
        return trl_config(**{**defaults, **options, **typed})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"trl: {trl_config.__name__} refused the options: {e}") from None


def save_final_model(trainer, processor, run: Run) -> Path:
    """Save the model (or LoRA adapter) with its processor as `model/`, and the loss history as `log_history.json`.

    The weights go to `model.partial/` first and are renamed when complete, so a crash never leaves a `model/` that
    looks finished. Every process calls this: sharded or ZeRO weights are gathered in `save_model`.
    """
    model_dir, partial = run.dir / MODEL_DIR, run.dir / f"{MODEL_DIR}.partial"
    trainer.save_model(str(partial))
    if run.is_main:
        processor.save_pretrained(str(partial))
        atomic_write_json(run.dir / "log_history.json", trainer.state.log_history)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        partial.rename(model_dir)
    PartialState().wait_for_everyone()
    return model_dir
