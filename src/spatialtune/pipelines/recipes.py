"""Running a recipe with what it needs from the other method packages: train never imports rewards or eval, so the
entry points hand them in (the reward library to a recipe that takes `rewards`, an evaluator when asked)."""

from __future__ import annotations

import inspect
from typing import Any

from .. import rewards
from ..train import RECIPES


def run_recipe(name: str, config: Any, **options: Any):
    """`RECIPES[name].run(config, **options)`, with the reward library when the recipe takes `rewards=`."""
    entry = RECIPES.get(name)
    if "rewards" in inspect.signature(entry.run).parameters:
        options.setdefault("rewards", rewards)
    return entry.run(config, **options)
