"""The `spatialtune` command line: argument plumbing only; the work lives in the components, recipes and pipelines.

One module per command group: `data` (check, build), `train` (recipes), `eval` (run, list, score, suite, generate),
`models`, `rewards` (list, score), `pipelines` (smoke, quickstart); `output` holds the consoles and the one error handler they share.
"""

from __future__ import annotations

import logging
import os

import typer

from .data import data_app
from .eval import eval_app
from .export import export
from .models import models
from .pipelines import quickstart, smoke
from .rewards import rewards_app
from .train import train

app = typer.Typer(help="Post-train and measure Qwen-VL models for spatial reasoning.", no_args_is_help=True, add_completion=False)
app.command("models")(models)
app.add_typer(data_app, name="data")
app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(train)
app.add_typer(eval_app, name="eval")
app.add_typer(rewards_app, name="rewards")
app.command("export")(export)
app.command("smoke")(smoke)
app.command("quickstart")(quickstart)


def main() -> None:
    """Entry point: quiet library logs unless SPATIALTUNE_LOG is set."""
    logging.basicConfig(level=os.environ.get("SPATIALTUNE_LOG", "WARNING"))
    app(prog_name="spatialtune")
