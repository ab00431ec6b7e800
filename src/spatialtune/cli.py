"""The `spatialtune` command line: argument plumbing only; the work lives in the components and recipes."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Post-train and measure Qwen-VL models for spatial reasoning.", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Check spatial datasets (builders arrive with `data build`).", no_args_is_help=True)
train_app = typer.Typer(help="Training recipes on TRL: sft.", no_args_is_help=True)
eval_app = typer.Typer(help="Run models on spatial data: generate.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
console = Console()
err_console = Console(stderr=True)


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors caused by the user's input: printed as one clear message, exit code 1, no traceback."""
    from .config import ConfigError
    from .data.collate import BatchError
    from .data.dataset import DatasetError
    from .models.loading import UnknownModelError
    from .records import RecordError

    return (ConfigError, BatchError, DatasetError, UnknownModelError, RecordError, FileNotFoundError)


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command("models")
def models_cmd() -> None:
    """List the embedded model names (any local checkpoint or hub id also works)."""
    from .models.tiny import TINY_MODELS

    table = Table("name", "description")
    for spec in TINY_MODELS.values():
        table.add_row(spec.name, spec.description)
    console.print(table)


@data_app.command("check")
def data_check(
    file: Path = typer.Argument(..., help="JSONL dataset of spatial records."),
    model: str = typer.Option("tiny-qwen3-vl", help="Model whose processor/template renders the batch."),
    batch_size: int = typer.Option(2, min=1, help="Records in the rendered batch."),
    image_root: Optional[Path] = typer.Option(None, help="Folder relative image paths resolve against (default: the file's folder)."),
    max_length: Optional[int] = typer.Option(None, help="Truncation length to check image tokens against."),
    min_pixels: Optional[int] = typer.Option(None),
    max_pixels: Optional[int] = typer.Option(None),
) -> None:
    """Validate every record and render one batch through the processor and TRL collator."""
    from .data.check import check_file

    try:
        report = check_file(file, model, batch_size, image_root, max_length, min_pixels, max_pixels)
    except (*_user_errors(), ValueError) as e:
        _fail(str(e))
        return
    console.print(f"[green]OK[/] {report.records} valid record(s) in {report.path}; model {report.model} (coordinates: {report.convention})")
    table = Table("id", "images", "image tokens", "tokens", "labelled tokens")
    for s in report.batch:
        table.add_row(s.id, str(s.images), str(s.image_tokens), str(s.tokens), str(s.labelled_tokens))
    console.print(table)
    for s in report.batch:
        console.print(f"labelled text of {s.id}: {s.labelled_text!r}", highlight=False, soft_wrap=True)
    console.print("batch: " + ", ".join(f"{k} {list(v)}" for k, v in report.batch_keys.items()))


@train_app.command("sft", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_sft(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="YAML recipe config."),
) -> None:
    """Supervised fine-tuning; extra `key=value` arguments override the config (dotted for nesting)."""
    from .config import load_config
    from .train.sft import SFTRecipeConfig, run_sft

    try:
        result = run_sft(load_config(SFTRecipeConfig, config, list(ctx.args)))
    except _user_errors() as e:
        _fail(str(e))
        return
    console.print(f"[green]done[/] step {result.global_step}, loss {result.train_loss:.4f} → {result.output_dir}")


@eval_app.command("generate")
def eval_generate(
    model: str = typer.Option(..., help="Embedded name, checkpoint folder or hub id."),
    data: Path = typer.Option(..., help="JSONL dataset of spatial records."),
    max_samples: int = typer.Option(4, min=1),
    batch_size: int = typer.Option(4, min=1),
    max_new_tokens: int = typer.Option(64, min=1),
) -> None:
    """Greedy answers of a model for the first records of a dataset (the scored runner comes with `eval run`)."""
    from .data.dataset import prepare_rows
    from .eval.generate import generate_batch
    from .models.loading import load_model

    try:
        loaded = load_model(model)
        rows = prepare_rows(data, loaded.processor, loaded.family.convention, max_samples=max_samples).rows
    except _user_errors() as e:
        _fail(str(e))
        return
    table = Table("id", "output")
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        for row, out in zip(chunk, generate_batch(loaded.model, loaded.processor, chunk, max_new_tokens)):
            table.add_row(row["id"], repr(out))
    console.print(table)


@app.command("smoke")
def smoke(
    model: str = typer.Option("tiny-qwen3-vl", help="Model to run the stages with."),
    output_dir: Path = typer.Option(Path("runs/smoke"), help="Where the SFT step writes its model."),
) -> None:
    """End-to-end check: tiny model → data check → one SFT step → one generation (offline, CPU)."""
    from .smoke import run_smoke

    result = run_smoke(model, output_dir)
    console.print(f"[green]1/4[/] model {model} built")
    console.print(f"[green]2/4[/] data check: {result.check.records} records; batch {result.check.batch_keys}")
    console.print(f"[green]3/4[/] SFT: {result.sft.global_step} step, loss {result.sft.train_loss:.3f}, saved to {result.sft.output_dir}")
    for prompt, out in zip(result.prompts, result.outputs):
        console.print(f"[green]4/4[/] generate: {prompt!r} → {out!r}")
    console.print("[bold green]smoke test passed[/]")


def main() -> None:
    """Entry point: quiet library logs unless SPATIALTUNE_LOG is set."""
    logging.basicConfig(level=os.environ.get("SPATIALTUNE_LOG", "WARNING"))
    app(prog_name="spatialtune")


if __name__ == "__main__":
    sys.exit(main())
