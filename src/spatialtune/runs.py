"""The layout of a run folder: `runs/<name>/<timestamp>/` with the resolved config, a log, checkpoints, the model.

A run folder is what `--resume` and `--model` accept: resuming picks its latest complete checkpoint, evaluation its
final `model/` (or, while training is still running, its latest checkpoint). Both also accept a run name's folder
(`runs/<name>`) and take its newest run when that one is usable; when it is not, they list the runs and their state
instead of guessing. A run that failed before its first step holds a `FAILED` file with the error; both refuse it. Writing a run (logging, saving) is `train/common.py`'s job.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import SpatialtuneError
from .io import atomic_write_text

CONFIG_FILE = "config.yaml"
LOG_FILE = "training.log"
MODEL_DIR = "model"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
FAILED_FILE = "FAILED"  # a run that failed before its first step: the error, so it is never taken for one to resume


@dataclass
class RunConfig:
    """Where a run writes: `dir` if given, else a new `<root>/<name>/<YYYYmmdd-HHMMSS>/`.

    A recipe run of an embedded tiny model whose name does not contain `tiny` writes under `<name>-<tiny model>`
    (`train/common.py::run_name_for`), so a smoke run of a real recipe never mixes with that model's runs.
    """

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


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was saved at (its trainer_state.json, else its folder name)."""
    try:
        return int(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        match = CHECKPOINT.match(checkpoint.name)
        return int(match.group(1)) if match else 0


def runs_named(folder: Path) -> list[Path]:
    """The runs inside a run name's folder (`runs/<name>/<timestamp>/`), oldest first (timestamps sort by name)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and is_run_dir(p)), key=lambda p: p.name)


def run_state(run_dir: Path) -> str:
    """A few words on what a run holds: failed, its final model, its latest checkpoint, or nothing yet."""
    if (run_dir / FAILED_FILE).is_file():
        return "failed before its first step"
    found = checkpoints(run_dir)
    parts = (["final model"] if (run_dir / MODEL_DIR).is_dir() else []) + ([found[-1].name] if found else [])
    return ", ".join(parts) or "no checkpoint yet"


def latest_run(folder: Path, usable: Callable[[Path], bool], what: str, wanted: str) -> Path:
    """The newest run of a run name's folder when `usable`; otherwise RunError listing the runs and their state."""
    found = runs_named(folder)
    listing = "; ".join(f"{run} ({run_state(run)})" for run in found[-10:])
    if not found:
        raise RunError(f"{what}: no run folder (no {CONFIG_FILE}) and no runs inside it")
    if usable(found[-1]):
        return found[-1]
    if any(usable(run) for run in found):
        raise RunError(f"{what}: the newest run {found[-1].name} has no {wanted}, older ones do; name the run to use: {listing}")
    raise RunError(f"{what}: none of its runs has a {wanted}: {listing}")


def _resumable(run_dir: Path) -> bool:
    return not (run_dir / FAILED_FILE).is_file() and bool(checkpoints(run_dir))


def _loadable(run_dir: Path) -> bool:
    return not (run_dir / FAILED_FILE).is_file() and ((run_dir / MODEL_DIR).is_dir() or bool(checkpoints(run_dir)))


def resolve_resume(path: str | Path) -> tuple[Path, Path]:
    """(run folder, checkpoint) for `--resume RUN_DIR|CHECKPOINT|runs/NAME`: a run resumes from its latest checkpoint.

    A run name's folder stands for its newest run, which must have a complete checkpoint (else the runs are listed).
    """
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"--resume {path}: no such run folder or checkpoint")
    if not CHECKPOINT.match(path.name) and not is_run_dir(path) and runs_named(path):
        path = latest_run(path, _resumable, f"--resume {path}", "complete checkpoint")
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
    """The model a run folder holds: its final `model/`, else its latest checkpoint; other paths are returned as is.

    A run name's folder (`runs/<name>`) stands for its newest run, which must hold a model or checkpoint.
    """
    path = Path(path)
    if path.is_dir() and not is_run_dir(path) and runs_named(path):
        path = latest_run(path, _loadable, str(path), "saved model or checkpoint")
    if not path.is_dir() or not is_run_dir(path):
        return path
    refuse_failed(path, str(path))
    if (path / MODEL_DIR).is_dir():
        return path / MODEL_DIR
    found = checkpoints(path)
    if not found:
        raise RunError(f"{path}: run folder without a saved model or checkpoint yet")
    return found[-1]
