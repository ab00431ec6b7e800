"""Run folders shared by every recipe: `runs/<name>/<timestamp>/` with the resolved config, a log, checkpoints, the model.

A run folder is what `--resume` and `--model` accept: resuming picks its latest complete checkpoint, evaluation its
final `model/` (or, while training is still running, its latest checkpoint).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from .errors import SpatialtuneError

CONFIG_FILE = "config.yaml"
LOG_FILE = "training.log"
MODEL_DIR = "model"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
RUN_LOGGERS = ("spatialtune", "transformers", "trl")  # whose records also go to a run's training.log


@dataclass
class RunConfig:
    """Where a run writes: `dir` if given, else a new `<root>/<name>/<YYYYmmdd-HHMMSS>/`."""

    name: str = "sft"
    root: str = "runs"
    dir: str | None = None


class RunError(SpatialtuneError):
    """A run folder or checkpoint that cannot be resumed or loaded."""


def new_run_dir(run: RunConfig) -> Path:
    """The folder of a new run (made now); a second run in the same second gets a `-2` suffix."""
    if run.dir:
        path = Path(run.dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = Path(run.root) / run.name / time.strftime("%Y%m%d-%H%M%S")
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    path.mkdir(parents=True)
    return path


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run (those with trainer_state.json), oldest first."""
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()]
    return [p for _, p in sorted(found)]


def is_run_dir(path: Path) -> bool:
    """Whether `path` looks like a run folder (its resolved config is there)."""
    return (path / CONFIG_FILE).is_file()


def resolve_resume(path: str | Path) -> tuple[Path, Path]:
    """(run folder, checkpoint) for `--resume RUN_DIR|CHECKPOINT`: a run folder resumes from its latest checkpoint."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"--resume {path}: no such run folder or checkpoint")
    if CHECKPOINT.match(path.name):
        if not (path / "trainer_state.json").is_file():
            raise RunError(f"--resume {path}: incomplete checkpoint (no trainer_state.json)")
        return path.parent, path
    if not is_run_dir(path):
        raise RunError(f"--resume {path}: not a run folder (no {CONFIG_FILE}) and not a checkpoint-N folder")
    found = checkpoints(path)
    if not found:
        raise RunError(f"--resume {path}: the run has no complete checkpoint yet; start it again instead")
    return path, found[-1]


def trained_model_path(path: str | Path) -> Path:
    """The model a run folder holds: its final `model/`, else its latest checkpoint; other paths are returned as is."""
    path = Path(path)
    if not path.is_dir() or not is_run_dir(path):
        return path
    if (path / MODEL_DIR).is_dir():
        return path / MODEL_DIR
    found = checkpoints(path)
    if not found:
        raise RunError(f"{path}: run folder without a saved model or checkpoint yet")
    return found[-1]


class TrainingLogCallback(TrainerCallback):
    """Appends every logged metrics dict to `training.log` as one JSON line (readable while training runs)."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def log_to_file(run_dir: Path) -> logging.Handler:
    """Send spatialtune/transformers/TRL log records to the run's `training.log` too; remove the handler when done."""
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in RUN_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    return handler


def stop_logging_to_file(handler: logging.Handler) -> None:
    """Detach and close a handler made by `log_to_file`."""
    for name in RUN_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()
