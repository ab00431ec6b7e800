"""The layout of a run folder: `runs/<name>/<timestamp>/` with the resolved config, a log, checkpoints, the model.

A run folder is what `--resume` and `--model` accept: resuming picks its latest complete checkpoint, evaluation its
final `model/` (or, while training is still running, its latest checkpoint). A run that failed before its first step
holds a `FAILED` file with the error; both refuse it. Writing a run (logging, saving) is `train/common.py`'s job.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import SpatialtuneError
from .io import atomic_write_text

CONFIG_FILE = "config.yaml"
LOG_FILE = "training.log"
MODEL_DIR = "model"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
FAILED_FILE = "FAILED"  # a run that failed before its first step: the error, so it is never taken for one to resume


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


def mark_failed(run_dir: Path, message: str) -> None:
    """Mark a run that failed before its first step, with the error, so that `--resume` and `--model` refuse it."""
    atomic_write_text(run_dir / FAILED_FILE, message.rstrip() + "\n")


def clear_failed(run_dir: Path) -> None:
    """Forget an earlier attempt's failure: a new run starts in the folder."""
    (run_dir / FAILED_FILE).unlink(missing_ok=True)


def refuse_failed(run_dir: Path, what: str) -> None:
    """Raise RunError when `run_dir` holds a run that failed before its first step (nothing to resume or load)."""
    marker = run_dir / FAILED_FILE
    if marker.is_file():
        reason = marker.read_text(encoding="utf-8", errors="replace").strip()
        raise RunError(
            f"{what}: the run failed before its first step ({reason}); see its {LOG_FILE}, fix the cause and start "
            "the run again (same run.dir, or a new one)"
        )


def resolve_resume(path: str | Path) -> tuple[Path, Path]:
    """(run folder, checkpoint) for `--resume RUN_DIR|CHECKPOINT`: a run folder resumes from its latest checkpoint."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"--resume {path}: no such run folder or checkpoint")
    if CHECKPOINT.match(path.name):
        if not (path / "trainer_state.json").is_file():
            raise RunError(f"--resume {path}: incomplete checkpoint (no trainer_state.json)")
        return path.parent, path
    refuse_failed(path, f"--resume {path}")
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
    refuse_failed(path, str(path))
    if (path / MODEL_DIR).is_dir():
        return path / MODEL_DIR
    found = checkpoints(path)
    if not found:
        raise RunError(f"{path}: run folder without a saved model or checkpoint yet")
    return found[-1]
