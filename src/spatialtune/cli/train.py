"""`spatialtune train RECIPE CONFIG [key=value …]`: one command over the recipe registry (`sft` today)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .output import UsageError, console, err_console, user_errors


def _interrupted(recipe: str, run_dir: Path) -> None:
    """After Ctrl-C: the exact command that continues the run, or why there is nothing to continue."""
    from ..runs import checkpoints

    found = checkpoints(run_dir) if run_dir.is_dir() else []
    if found:
        err_console.print(
            f"interrupted; {found[-1].name} is the latest checkpoint (later steps are lost). Continue with:\n"
            f"  spatialtune train {recipe} --resume {run_dir}", highlight=False, soft_wrap=True,
        )
    else:
        err_console.print(f"interrupted before the first checkpoint of {run_dir} (see training.save_steps); "
                          "nothing to resume: start the run again", highlight=False, soft_wrap=True)
    raise typer.Exit(130)


def _evaluator(config):
    """The evaluation during training a config asks for (`data.eval_file` + its `eval:` section), checked before any
    model loads; None without an eval file."""
    eval_file = getattr(getattr(config, "data", None), "eval_file", None)
    if not eval_file:
        return None
    from ..eval.during_training import benchmark_evaluator

    settings = config.eval
    return benchmark_evaluator(
        settings.benchmark, eval_file, image_root=config.data.image_root, max_samples=settings.max_samples,
        batch_size=settings.batch_size, max_new_tokens=settings.max_new_tokens, options=settings.options,
        attention_samples=settings.attention_samples,
    )


def train(
    ctx: typer.Context,
    recipe: str = typer.Argument(..., help="Recipe name: sft, dpo or grpo."),
    config: Optional[Path] = typer.Argument(None, help="YAML recipe config (default with --resume: the run's own config.yaml)."),
    resume: Optional[Path] = typer.Option(None, help="Run folder (its latest checkpoint), checkpoint-N folder, or run "
                                          "name's folder runs/NAME (its newest run) to continue."),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Start from a trained run (runs/NAME, a run folder, "
                                            "checkpoint or model folder): the override model.init_from=RUN."),
    max_samples: Optional[int] = typer.Option(None, min=1, help="Train on the first N records only (debugging)."),
    debug: bool = typer.Option(False, "--debug", help="Check the stage in seconds instead of running it: records, one "
                               "rendered prompt, generations, the recipe's own checks (rewards, preference pairs) and "
                               "a few training steps on --max-samples (default 4) records, in a throwaway folder."),
    progress: bool = typer.Option(True, help="Progress (--no-progress: none): the rich panel on a terminal, else one plain "
                                  "line per logging step (step, loss, lr, tokens/s, ETA)."),
) -> None:
    """Train with a recipe, e.g. `spatialtune train sft configs/sft_tiny_cpu.yaml training.max_steps=50`.

    Extra `key=value` arguments override the config (dotted for nesting; `trl.NAME=value` for any other TRL option).
    """
    from ..config import load_config
    from ..pipelines.recipes import run_recipe
    from ..runs import CONFIG_FILE, checkpoint_step, resolve_resume
    from ..train import RECIPES
    from ..train.common import TrainingInterrupted, end_processes, process_state
    from ..train.evaluation import EVALS_DIR

    with user_errors():
        if debug and resume is not None:
            raise UsageError("--debug checks a config; it does not resume a run (drop --resume)")
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
            console.print(f"resuming {run_dir} from {checkpoint.name} (step {checkpoint_step(checkpoint)})", highlight=False, soft_wrap=True)
        if config is None:
            raise UsageError("give a CONFIG.yaml, or --resume RUN_DIR")
        if max_samples is not None:
            overrides.append(f"data.max_samples={max_samples}")
        if init_from is not None:
            overrides.append(f"model.init_from={init_from}")
        loaded = load_config(entry.config, config, overrides)
        if debug:
            from ..pipelines.debug import debug_recipe

            debug_recipe(recipe, loaded, samples=max_samples or 4, say=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True))
            console.print(f"[green]debug OK[/] {recipe} with {config}: nothing was written")
            return
        evaluate = _evaluator(loaded)
        try:
            result = run_recipe(recipe, loaded, resume_from=checkpoint, progress=progress, evaluate=evaluate)
        except TrainingInterrupted as e:
            _interrupted(recipe, e.run_dir)
        end_processes()  # only after a finished run: after an error another process may still be inside a collective
    if not process_state().is_main_process:  # several processes (torchrun, accelerate launch): one summary, not one each
        return
    console.print(f"[green]done[/] step {result.global_step}, loss {result.train_loss:.4f} → {result.model_dir}")
    best = result.run_dir / EVALS_DIR / "best.json"
    if best.is_file():
        kept = json.loads(best.read_text())
        console.print(f"best eval_{kept['metric']} {kept['value']:.4f} at step {kept['step']}: {kept['checkpoint']}",
                      highlight=False, soft_wrap=True)
