"""`spatialtune export RUN --to DIR [--merge-lora]`: a run as a plain transformers folder with a model card."""

from __future__ import annotations

from pathlib import Path

import typer

from .output import console, user_errors


def export(
    run: Path = typer.Argument(..., help="Run folder (runs/NAME/TIMESTAMP) or one of its checkpoint-N folders."),
    to: Path = typer.Option(..., "--to", help="The folder to write (written as DIR.partial, renamed when complete)."),
    merge_lora: bool = typer.Option(False, help="Merge a LoRA run into plain weights (default: export the adapter, loadable by PEFT on its base)."),
    overwrite: bool = typer.Option(False, help="Replace a non-empty --to folder (only once the new export is complete)."),
    metrics: list[Path] = typer.Option([], "--metrics", help="An eval --output-dir (or its metrics.json) whose scores go in the model card (repeatable)."),
) -> None:
    """Export a run: safetensors weights (or the LoRA adapter), processor with its chat template, config, README.md.

    The model card names the base model, the training data, the recipe and the run's metrics. The folder loads with
    `AutoModelForImageTextToText.from_pretrained(DIR)` (a full fine-tune, or a LoRA run with --merge-lora) and with
    `spatialtune eval --model DIR`.
    """
    from transformers.utils import logging as hf_logging

    from ..models.export import export_run

    hf_logging.disable_progress_bar()
    with user_errors():
        result = export_run(run, to, merge_lora=merge_lora, overwrite=overwrite, metrics=metrics)
    what = "LoRA adapter (load onto its base with PEFT, or pass --merge-lora)" if result.adapter else (
        "model, LoRA merged" if result.merged else "model")
    console.print(f"[green]done[/] {what} from {result.source} → {result.dir}")
