"""Training recipes on TRL, chosen by name: `spatialtune train RECIPE CONFIG [key=value …]`.

Each recipe module registers a `Recipe` (its config dataclass and its run function) in `RECIPES`; the registry
imports the modules of this package on the first lookup, so a new recipe is one new file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from ..registry import Registry


class RecipeResult(Protocol):
    """What every recipe's run returns, at least: where the run and its model went and how training ended."""

    run_dir: Path
    model_dir: Path
    global_step: int
    train_loss: float


@dataclass(frozen=True)
class Recipe:
    """A training recipe: the config dataclass its YAML loads into, and the function that runs it."""

    config: type
    run: Callable[..., RecipeResult]  # run(config, *, resume_from=None, callbacks=None, progress=True, evaluate=None)


RECIPES: Registry[Recipe] = Registry("recipe", package="spatialtune.train")

