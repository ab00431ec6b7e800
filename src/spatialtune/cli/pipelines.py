"""`spatialtune smoke` and `spatialtune quickstart`: the end-to-end pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .output import console, user_errors


def smoke(
    model: str = typer.Option("tiny-qwen3-vl", help="Model to run the stages with."),
    output_dir: Path = typer.Option(Path("runs/smoke"), help="Where the SFT step writes its model."),
) -> None:
    """End-to-end check: tiny model → data check → one SFT step → one generation (offline, CPU)."""
    from ..pipelines.smoke import run_smoke

    with user_errors():
        result = run_smoke(model, output_dir)
    console.print(f"[green]1/4[/] model {model} built")
    console.print(f"[green]2/4[/] data check: {result.check.records} records; batch {result.check.batch_keys}")
    console.print(f"[green]3/4[/] SFT: {result.sft.global_step} step, loss {result.sft.train_loss:.3f}, saved to {result.sft.model_dir}")
    for prompt, out in zip(result.prompts, result.outputs):
        console.print(f"[green]4/4[/] generate: {prompt!r} → {out!r}")
    console.print("[bold green]smoke test passed[/]")


def quickstart(
    output_dir: Path = typer.Option(Path("runs/quickstart"), help="Where data, runs, metrics.json and report.html go (a rerun resumes)."),
    seed: int = typer.Option(0, help="Seed of the data and of the tiny model's weights."),
    model: str = typer.Option("tiny-qwen3-vl", help="Embedded tiny model to train (`spatialtune models` lists them)."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="SFT steps (default: the tuned recipe's)."),
    stages: str = typer.Option("sft", help="The chain: sft, then dpo and/or grpo (e.g. sft,dpo,grpo); each stage starts from the one before and is scored like it."),
) -> None:
    """The learning loop on a CPU: synthetic data → eval → SFT (→ DPO → GRPO) → eval after each stage → metrics.json +
    report.html (SFT alone: about 7 minutes on 2 cores)."""
    from ..pipelines.quickstart import QuickstartSettings, run_quickstart

    with user_errors():
        settings = QuickstartSettings(seed=seed, model=model, stages=[s.strip() for s in stages.split(",") if s.strip()])
        if max_steps is not None:
            settings.max_steps = max_steps
        result = run_quickstart(output_dir, settings, say=lambda line: console.print(f"[green]{line}[/]", highlight=False))
    m = result.metrics
    table = Table("task", "chance", "before", *m["stages"])
    for task in m["after"]:
        chance = m["chance"].get(task)
        scores = [f"{m['stages'][s][task]:.3f}" for s in m["stages"]]
        scores[-1] = f"[bold]{scores[-1]}[/]"
        table.add_row(task, "—" if chance is None else f"{chance:.2f}", f"{m['before'][task]:.3f}", *scores)
    console.print(table)
    if "preference_accuracy" in m:
        pa = m["preference_accuracy"]
        console.print(f"held-out preference accuracy: {pa['before dpo']:.3f} before DPO → {pa['after dpo']:.3f} after")
    console.print(f"[bold green]done[/] in {m['minutes']:.1f} min → open {result.report}")
