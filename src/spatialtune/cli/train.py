"""`spatialtune train RECIPE CONFIG [key=value …]`: one command over the recipe registry (`sft` today)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .output import UsageError, console, user_errors


def train(
    ctx: typer.Context,
    recipe: str = typer.Argument(..., help="Recipe name: sft (DPO and GRPO register the same way)."),
    config: Optional[Path] = typer.Argument(None, help="YAML recipe config (default with --resume: the run's own config.yaml)."),
    resume: Optional[Path] = typer.Option(None, help="Run folder (its latest checkpoint) or checkpoint-N folder to continue."),
    max_samples: Optional[int] = typer.Option(None, min=1, help="Train on the first N records only (debugging)."),
    progress: bool = typer.Option(True, help="Show the rich progress bar."),
) -> None:
    """Train with a recipe, e.g. `spatialtune train sft configs/sft_tiny_cpu.yaml training.max_steps=50`.

    Extra `key=value` arguments override the config (dotted for nesting; `trl.NAME=value` for any other TRL option).
    """
    from ..config import load_config
    from ..runs import CONFIG_FILE, resolve_resume
    from ..train import RECIPES

    with user_errors():
        entry = RECIPES.get(recipe)
        overrides = list(ctx.args)
        if config is not None and "=" in config.name and not config.exists():  # `--resume RUN key=value`: no CONFIG
            overrides.insert(0, str(config))
            config = None
        checkpoint = None
        if resume is not None:
            run_dir, checkpoint = resolve_resume(resume)
            config = config or run_dir / CONFIG_FILE
            overrides.append(f"run.dir={run_dir}")
        if config is None:
            raise UsageError("give a CONFIG.yaml, or --resume RUN_DIR")
        if max_samples is not None:
            overrides.append(f"data.max_samples={max_samples}")
        result = entry.run(load_config(entry.config, config, overrides), resume_from=checkpoint, progress=progress)
    console.print(f"[green]done[/] step {result.global_step}, loss {result.train_loss:.4f} → {result.model_dir}")
