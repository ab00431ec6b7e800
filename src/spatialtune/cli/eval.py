"""`spatialtune eval …`: run a benchmark (`eval run`, or `eval` with the same options), list, score, suite, generate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .output import UsageError, console, fail, user_errors

ATTENTION_SAMPLES = 16  # samples `--visualize-attention` draws when --max-samples is not given

eval_app = typer.Typer(
    help="Score a model on a benchmark (`spatialtune eval run --model M --benchmark NAME --data FILE --output-dir DIR`; "
    "`spatialtune eval --model …` does the same), or: list, score (re-score outside predictions), suite CONFIG.yaml, generate.",
    invoke_without_command=True,
)


def _options(items: list[str]) -> dict:
    """`key=value` benchmark options (values read as YAML: `true`, `3`, `null`)."""
    from ..config import ConfigError, apply_overrides

    try:
        return apply_overrides({}, items)
    except ConfigError as e:
        raise UsageError(f"--option: {e}") from None


def _load_quietly(name: str):
    """`load_model` without transformers' per-weight-shard progress bar (our eval progress bar is the one to watch)."""
    from transformers.utils import logging as hf_logging

    from ..models.loading import load_model
    from ..runs import is_run_dir, trained_model_path

    hf_logging.disable_progress_bar()
    if Path(name).is_dir() and not is_run_dir(Path(name)) and trained_model_path(name) != Path(name):
        console.print(f"model: {trained_model_path(name)} (the newest run of {name})", highlight=False, soft_wrap=True)
    return load_model(name)


def _print_metrics(metrics: dict, where: Path) -> None:
    """The per-task table, the headline numbers and where the files went."""
    table = Table("task", "metric", "score", "samples", "unparsable")
    for task, score in metrics["scores"].items():
        table.add_row(task, metrics["metric"][task], f"{score:.3f}", str(metrics["counts"][task]), str(metrics["unparsable"][task]))
    console.print(table)
    headline = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.get("headline", {}).items())
    console.print(f"[green]done[/] {metrics['num_samples']} samples · {headline} · frame {metrics.get('frame')} → {where}")


def eval_run(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="Run folder (or runs/NAME: its newest run), checkpoint, local folder, hub id or embedded name."),
    benchmark: str = typer.Option("synthetic", help="Benchmark name (`spatialtune eval list` shows them)."),
    data: Optional[str] = typer.Option(None, help="Benchmark data: a local file or folder, or a hub dataset id when online."),
    output_dir: Optional[Path] = typer.Option(None, help="Where results.jsonl, metrics.json and report.html go (a rerun resumes)."),
    batch_size: int = typer.Option(16, min=1),
    max_samples: Optional[int] = typer.Option(None, min=1),
    max_new_tokens: int = typer.Option(32, min=1),
    image_root: Optional[Path] = typer.Option(None, help="Folder relative image paths resolve against."),
    option: list[str] = typer.Option([], "--option", "-o", help="Benchmark option key=value (repeatable)."),
    max_tool_calls: int = typer.Option(2, min=0, help="Crop tool calls executed per sample where the benchmark allows tools (0: none)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (plain output for logs and batch jobs)."),
    constrain: Optional[str] = typer.Option(
        None, "--constrain",
        help="Generate every reply under a grammar so it always parses (e.g. place-anchor, for roomplan); needs "
        "--max-new-tokens ≥ the grammar's longest reply (the error says how many)."),
    visualize_attention: bool = typer.Option(
        False, "--visualize-attention",
        help=f"Spatial-linking heatmaps of the first --max-samples samples with referred regions (default {ATTENTION_SAMPLES}) "
        "into OUTPUT_DIR/attention/ and the report; the model needs a linking module."),
) -> None:
    """Score a model on a benchmark: per-sample results.jsonl (resumable), metrics.json and report.html."""
    if ctx.invoked_subcommand is not None:  # `spatialtune eval SUBCOMMAND`: this ran as the group's callback
        return
    if model is None and data is None and output_dir is None and ctx.info_name == "eval":  # bare `spatialtune eval`
        console.print(ctx.get_help())
        raise typer.Exit(0)
    if model is None or data is None or output_dir is None:
        fail("spatialtune eval run needs --model, --data and --output-dir (see --help)")
    from ..eval.runner import check_constraint, run_eval
    from ..tools.crop import ToolSettings
    from ..viz.eval_report import write_eval_report

    with user_errors():
        if constrain is not None:
            check_constraint(constrain, max_new_tokens)  # before the model loads
        result = run_eval(
            _load_quietly(model), benchmark, data, output_dir, batch_size=batch_size, max_samples=max_samples,
            max_new_tokens=max_new_tokens, image_root=image_root, options=_options(option), tools=ToolSettings(max_calls=max_tool_calls),
            progress=not no_progress, attention_samples=(max_samples or ATTENTION_SAMPLES) if visualize_attention else 0,
            constrain=constrain,
        )
    report = write_eval_report(output_dir, result.metrics, result.rows)
    _print_metrics(result.metrics, report)


eval_app.callback()(eval_run)  # `spatialtune eval --model …`, as documented before `eval run` existed
eval_app.command("run")(eval_run)


@eval_app.command("list")
def eval_list() -> None:
    """The benchmarks `--benchmark` accepts, with their options."""
    from dataclasses import fields

    from ..eval.benchmarks import benchmark_names, get_benchmark

    table = Table("benchmark", "options (defaults)", "about")
    for name in benchmark_names():
        bench = get_benchmark(name)
        options = ", ".join(f"{f.name}={getattr(bench.options, f.name)!r}" for f in fields(bench.options))
        table.add_row(name, options, (type(bench).__doc__ or "").strip().splitlines()[0])
    console.print(table)


@eval_app.command("score")
def eval_score(
    benchmark: str = typer.Option(..., help="Benchmark name."),
    data: str = typer.Option(..., help="The benchmark data the predictions answer."),
    predictions: Path = typer.Option(..., help='JSONL of {"id": ..., "output": "<model text>"} produced elsewhere.'),
    output_dir: Path = typer.Option(..., help="Where results.jsonl, metrics.json and report.html go."),
    model: str = typer.Option("tiny-qwen3-vl", help="Model (or family's embedded name) whose processor and coordinate convention read the outputs; no weights are loaded."),
    image_root: Optional[Path] = typer.Option(None),
    max_samples: Optional[int] = typer.Option(None, min=1),
    option: list[str] = typer.Option([], "--option", "-o", help="Benchmark option key=value (repeatable)."),
    allow_missing: bool = typer.Option(False, help="Score samples without a prediction as empty outputs instead of failing."),
) -> None:
    """Re-score outputs produced elsewhere with the same parsers and metrics (no model is run)."""
    from ..eval.runner import score_predictions
    from ..models.loading import load_processor
    from ..viz.eval_report import write_eval_report

    with user_errors():
        processor, family = load_processor(model)
        result = score_predictions(
            benchmark, data, predictions, output_dir, processor=processor, convention=family.convention, model=model,
            image_root=image_root, max_samples=max_samples, options=_options(option), allow_missing=allow_missing,
        )
    _print_metrics(result.metrics, write_eval_report(output_dir, result.metrics, result.rows))


@eval_app.command("suite", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def eval_suite(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Suite YAML (see configs/eval_*.yaml); key=value overrides may follow."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (plain output for logs and batch jobs)."),
) -> None:
    """Run several benchmarks on one model and print one summary table (report.html links every run)."""
    from ..config import load_config
    from ..eval.suite import SuiteConfig, entry_names, run_suite

    with user_errors():
        suite = load_config(SuiteConfig, config, list(ctx.args))
        entry_names(suite)
        summary = run_suite(suite, _load_quietly(suite.model), progress=not no_progress)
    from ..viz.eval_report import headline_text

    show_headline = not suite.columns
    table = Table("run", "benchmark", "samples", *summary["columns"], *(["headline"] if show_headline else []))
    for run in summary["runs"]:
        cells = [f"{run[c]:.3f}" if isinstance(run[c], float) else ("—" if run[c] is None else str(run[c])) for c in summary["columns"]]
        table.add_row(run["name"], run["benchmark"], str(run["num_samples"]), *cells, *([headline_text(run["headline"])] if show_headline else []))
    console.print(table)
    console.print(f"[green]done[/] {len(summary['runs'])} runs → {Path(suite.output_dir) / 'report.html'}")


@eval_app.command("generate")
def eval_generate(
    model: str = typer.Option(..., help="Run folder (or runs/NAME), checkpoint, local folder, hub id or embedded name."),
    data: Path = typer.Option(..., help="JSONL dataset of spatial records."),
    max_samples: int = typer.Option(4, min=1),
    batch_size: int = typer.Option(4, min=1),
    max_new_tokens: int = typer.Option(64, min=1),
) -> None:
    """Greedy answers of a model for the first records of a dataset, unscored (`spatialtune eval run` scores them)."""
    from ..data.dataset import prepare_rows
    from ..eval.generate import generate_batch
    from ..models.loading import load_model

    with user_errors():
        loaded = load_model(model)
        rows = prepare_rows(data, loaded.processor, loaded.family.convention, max_samples=max_samples).rows
    table = Table("id", "output")
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        for row, out in zip(chunk, generate_batch(loaded.model, loaded.processor, chunk, max_new_tokens)):
            table.add_row(row["id"], repr(out))
    console.print(table)

