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
data_app = typer.Typer(help="Build and check spatial datasets.", no_args_is_help=True)
build_app = typer.Typer(help="Build a dataset by name (each builder documents its input layout and skip reasons).", no_args_is_help=True)
data_app.add_typer(build_app, name="build")
train_app = typer.Typer(help="Training recipes on TRL: sft.", no_args_is_help=True)
eval_app = typer.Typer(
    help="Score a model on a benchmark (`spatialtune eval --model M --benchmark NAME --data FILE --output-dir DIR`), "
    "or: list, score (re-score outside predictions), suite CONFIG.yaml, generate.",
    invoke_without_command=True,
)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
console = Console()
err_console = Console(stderr=True)


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors caused by the user's input: printed as one clear message, exit code 1, no traceback."""
    from .config import ConfigError
    from .data.builders import BuildError
    from .data.builders.synthetic import SyntheticError
    from .data.collate import BatchError
    from .data.dataset import DatasetError
    from .eval.benchmarks import UnknownBenchmarkError
    from .eval.runner import EvalError
    from .models.loading import UnknownModelError
    from .quickstart import QuickstartError
    from .records import RecordError
    from .runs import RunError

    return (
        ConfigError, BatchError, DatasetError, UnknownModelError, RecordError, RunError, SyntheticError, BuildError,
        UnknownBenchmarkError, EvalError, QuickstartError, _UsageError, FileNotFoundError,
    )


class _UsageError(ValueError):
    """A command called with arguments that do not fit together."""


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
    from .models.loading import load_processor

    try:
        processor, family = load_processor(model, min_pixels, max_pixels)
        report = check_file(file, processor, family.convention, batch_size, image_root, max_length)
    except (*_user_errors(), ValueError) as e:
        _fail(str(e))
        return
    console.print(f"[green]OK[/] {report.records} valid record(s) in {report.path}; model {model} (coordinates: {report.convention})")
    table = Table("id", "images", "image tokens", "tokens", "labelled tokens")
    for s in report.batch:
        table.add_row(s.id, str(s.images), str(s.image_tokens), str(s.tokens), str(s.labelled_tokens))
    console.print(table)
    for s in report.batch:
        console.print(f"labelled text of {s.id}: {s.labelled_text!r}", highlight=False, soft_wrap=True)
    console.print("batch: " + ", ".join(f"{k} {list(v)}" for k, v in report.batch_keys.items()))
    if report.refer_boxes_records:
        console.print(f"refer_boxes: {report.refer_boxes_groups} group(s) in {report.refer_boxes_records} record(s), inside their images")
    if report.preference_pairs:
        shapes = ", ".join(f"{k} {list(v)}" for k, v in report.preference_batch_keys.items())
        console.print(f"preference pairs: {report.preference_pairs}; first pairs through TRL's preference collator: {shapes}")


@build_app.command("synthetic")
def build_synthetic_cmd(
    output: Path = typer.Option(..., help="Folder to write train.jsonl, test.jsonl, images/, masks/ and stats.json into."),
    seed: int = typer.Option(0, help="Seed of the whole dataset (train and test use different streams of it)."),
    num_samples: int = typer.Option(8000, min=0, help="Training samples, spread evenly over the tasks."),
    test_samples: int = typer.Option(200, min=0, help="Test samples per task."),
    tasks: Optional[list[str]] = typer.Option(None, help="Tasks to build (repeat the option); default: all."),
    difficulty: int = typer.Option(0, min=0, max=2, help="0: large objects, no distractors (tiny models); 1, 2: harder."),
    image_size: int = typer.Option(128, min=64, help="Side of the square images in pixels."),
) -> None:
    """A procedural world of coloured shapes with exact ground truth (absolute/pairwise position, counting, occlusion, grounding, pointing)."""
    from rich.progress import Progress

    from .data.builders.synthetic import TASKS, SyntheticSettings, build_synthetic

    settings = SyntheticSettings(seed, num_samples, test_samples, list(tasks) if tasks else list(TASKS), difficulty, image_size)
    try:
        with Progress(console=err_console) as bar:
            job = bar.add_task("building synthetic world", total=None)
            stats = build_synthetic(output, settings, progress=lambda done, total: bar.update(job, completed=done, total=total))
    except _user_errors() as e:
        _fail(str(e))
        return
    table = Table("split", "task", "samples", "labels")
    for split, tasks_ in stats["labels"].items():
        for task, labels in tasks_.items():
            table.add_row(split, task, str(sum(labels.values())), ", ".join(f"{k}: {v}" for k, v in sorted(labels.items())))
    console.print(table)
    console.print(f"[green]done[/] {output} (stats.json beside the data)")


def _cli_annotation(tp):
    """A settings field type typer understands: `X | None` → Optional[X], Literal → str (the builder validates)."""
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return Optional[_cli_annotation(inner[0])] if len(inner) == 1 else str
    if origin is typing.Literal:
        return str
    return tp


def _add_builder_command(name: str) -> None:
    """`spatialtune data build NAME`: options generated from the builder's settings dataclass (help from field metadata)."""
    import dataclasses
    import inspect
    import typing

    from .data.builders import get_builder, settings_fields

    spec = get_builder(name)
    hints = typing.get_type_hints(spec.settings)
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("output", kw, annotation=Path, default=typer.Option(..., help="Folder to write the dataset (JSONL files, images, stats.json) into.")),
        inspect.Parameter("overwrite", kw, annotation=bool, default=typer.Option(False, help="Replace a non-empty --output (only once the new build is complete).")),
    ]
    for f in settings_fields(spec.settings):
        if f.metadata.get("required"):
            default = ...
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default
        params.append(inspect.Parameter(f.name, kw, annotation=_cli_annotation(hints[f.name]), default=typer.Option(default, help=f.metadata.get("help"))))

    def command(**kwargs) -> None:
        from rich.progress import Progress

        from .data.builders import run_builder

        output, overwrite = kwargs.pop("output"), kwargs.pop("overwrite")
        try:
            settings = spec.settings(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()})
            with Progress(console=err_console) as bar:
                job = bar.add_task(f"building {name}", total=None)
                stats = run_builder(name, settings, output, overwrite=overwrite, progress=lambda done, total: bar.update(job, completed=done, total=total))
        except _user_errors() as e:
            _fail(str(e))
            return
        _print_build_summary(stats, output)

    command.__signature__ = inspect.Signature(params)
    command.__doc__ = (spec.build.__doc__ or spec.help).strip().split("\n\n")[0]
    build_app.command(name)(command)


def _print_build_summary(stats: dict, output: Path) -> None:
    """Records per file and task with their labels, then every skip by reason."""
    table = Table("file", "task", "records", "labels")
    for file_name, tasks in stats["labels"].items():
        for task, labels in tasks.items():
            shown = ", ".join(f"{k}: {v}" for k, v in list(labels.items())[:8]) + (" …" if len(labels) > 8 else "")
            table.add_row(file_name, task, str(sum(labels.values())), shown)
    console.print(table)
    if stats["skipped"]:
        skips = Table("skipped because", "count")
        for reason, count in stats["skipped"].items():
            skips.add_row(reason, str(count))
        console.print(skips)
    for key, value in stats.items():  # builder extras shaped as {row: {column: value}} (e.g. mix proportions)
        if key not in ("settings", "counts", "labels", "skip_examples") and isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(c for v in value.values() for c in v))
            extra = Table("", *columns, title=key)
            for row, cells in value.items():
                extra.add_row(str(row), *(f"{cells.get(c):.3f}" if isinstance(cells.get(c), float) else str(cells.get(c, "")) for c in columns))
            console.print(extra)
    console.print(f"[green]done[/] {output} (stats.json beside the data)")


def _add_builder_commands() -> None:
    from .data.builders import builder_names

    for name in builder_names():
        _add_builder_command(name)


@train_app.command("sft", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_sft(
    ctx: typer.Context,
    config: Optional[Path] = typer.Argument(None, help="YAML recipe config (default with --resume: the run's own config.yaml)."),
    resume: Optional[Path] = typer.Option(None, help="Run folder (its latest checkpoint) or checkpoint-N folder to continue."),
    max_samples: Optional[int] = typer.Option(None, min=1, help="Train on the first N records only (debugging)."),
    progress: bool = typer.Option(True, help="Show the rich progress bar."),
) -> None:
    """Supervised fine-tuning; extra `key=value` arguments override the config (dotted for nesting)."""
    from .config import load_config
    from .runs import CONFIG_FILE, resolve_resume
    from .train.sft import SFTRecipeConfig, run_sft

    try:
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
            raise _UsageError("give a CONFIG.yaml, or --resume RUN_DIR")
        if max_samples is not None:
            overrides.append(f"data.max_samples={max_samples}")
        result = run_sft(load_config(SFTRecipeConfig, config, overrides), resume_from=checkpoint, progress=progress)
    except _user_errors() as e:
        _fail(str(e))
        return
    console.print(f"[green]done[/] step {result.global_step}, loss {result.train_loss:.4f} → {result.model_dir}")


def _options(items: list[str]) -> dict:
    """`key=value` benchmark options (values read as YAML: `true`, `3`, `null`)."""
    from .config import ConfigError, apply_overrides

    try:
        return apply_overrides({}, items)
    except ConfigError as e:
        raise _UsageError(f"--option: {e}") from None


def _load_quietly(name: str):
    """`load_model` without transformers' per-weight-shard progress bar (our eval progress bar is the one to watch)."""
    from transformers.utils import logging as hf_logging

    from .models.loading import load_model

    hf_logging.disable_progress_bar()
    return load_model(name)


def _print_metrics(metrics: dict, where: Path) -> None:
    """The per-task table, the headline numbers and where the files went."""
    table = Table("task", "metric", "score", "samples", "unparsable")
    for task, score in metrics["scores"].items():
        table.add_row(task, metrics["metric"][task], f"{score:.3f}", str(metrics["counts"][task]), str(metrics["unparsable"][task]))
    console.print(table)
    headline = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.get("headline", {}).items())
    console.print(f"[green]done[/] {metrics['num_samples']} samples · {headline} → {where}")


@eval_app.callback()
def eval_run(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="Run folder, checkpoint, local folder, hub id or embedded name."),
    benchmark: str = typer.Option("synthetic", help="Benchmark name (`spatialtune eval list` shows them)."),
    data: Optional[str] = typer.Option(None, help="Benchmark data: a local file or folder, or a hub dataset id when online."),
    output_dir: Optional[Path] = typer.Option(None, help="Where results.jsonl, metrics.json and report.html go (a rerun resumes)."),
    batch_size: int = typer.Option(16, min=1),
    max_samples: Optional[int] = typer.Option(None, min=1),
    max_new_tokens: int = typer.Option(32, min=1),
    image_root: Optional[Path] = typer.Option(None, help="Folder relative image paths resolve against."),
    option: list[str] = typer.Option([], "--option", "-o", help="Benchmark option key=value (repeatable)."),
    max_tool_calls: int = typer.Option(2, min=0, help="Crop tool calls executed per sample where the benchmark allows tools (0: none)."),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """Score a model on a benchmark: per-sample results.jsonl (resumable), metrics.json and report.html."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None or data is None or output_dir is None:
        _fail("spatialtune eval needs --model, --data and --output-dir (see --help)")
    from .eval.runner import run_eval
    from .eval.tools import ToolSettings
    from .viz.eval_report import write_eval_report

    try:
        result = run_eval(
            _load_quietly(model), benchmark, data, output_dir, batch_size=batch_size, max_samples=max_samples,
            max_new_tokens=max_new_tokens, image_root=image_root, options=_options(option), tools=ToolSettings(max_calls=max_tool_calls),
            progress=not no_progress,
        )
    except _user_errors() as e:
        _fail(str(e))
        return
    report = write_eval_report(output_dir, result.metrics, result.rows)
    _print_metrics(result.metrics, report)


@eval_app.command("list")
def eval_list() -> None:
    """The benchmarks `--benchmark` accepts, with their options."""
    from dataclasses import fields

    from .eval.benchmarks import benchmark_names, get_benchmark

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
    from .eval.runner import score_predictions
    from .models.loading import load_processor
    from .viz.eval_report import write_eval_report

    try:
        processor, family = load_processor(model)
        result = score_predictions(
            benchmark, data, predictions, output_dir, processor=processor, convention=family.convention, model=model,
            image_root=image_root, max_samples=max_samples, options=_options(option), allow_missing=allow_missing,
        )
    except _user_errors() as e:
        _fail(str(e))
        return
    _print_metrics(result.metrics, write_eval_report(output_dir, result.metrics, result.rows))


@eval_app.command("suite", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def eval_suite(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Suite YAML (see configs/eval_*.yaml); key=value overrides may follow."),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """Run several benchmarks on one model and print one summary table (report.html links every run)."""
    from .config import load_config
    from .eval.suite import SuiteConfig, entry_names, run_suite

    try:
        suite = load_config(SuiteConfig, config, list(ctx.args))
        entry_names(suite)
        summary = run_suite(suite, _load_quietly(suite.model), progress=not no_progress)
    except _user_errors() as e:
        _fail(str(e))
        return
    from .viz.eval_report import headline_text

    show_headline = not suite.columns
    table = Table("run", "benchmark", "samples", *summary["columns"], *(["headline"] if show_headline else []))
    for run in summary["runs"]:
        cells = [f"{run[c]:.3f}" if isinstance(run[c], float) else ("—" if run[c] is None else str(run[c])) for c in summary["columns"]]
        table.add_row(run["name"], run["benchmark"], str(run["num_samples"]), *cells, *([headline_text(run["headline"])] if show_headline else []))
    console.print(table)
    console.print(f"[green]done[/] {len(summary['runs'])} runs → {Path(suite.output_dir) / 'report.html'}")


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
    console.print(f"[green]3/4[/] SFT: {result.sft.global_step} step, loss {result.sft.train_loss:.3f}, saved to {result.sft.model_dir}")
    for prompt, out in zip(result.prompts, result.outputs):
        console.print(f"[green]4/4[/] generate: {prompt!r} → {out!r}")
    console.print("[bold green]smoke test passed[/]")


@app.command("quickstart")
def quickstart(
    output_dir: Path = typer.Option(Path("runs/quickstart"), help="Where data, runs, metrics.json and report.html go (a rerun resumes)."),
    seed: int = typer.Option(0, help="Seed of the data and of the tiny model's weights."),
    model: str = typer.Option("tiny-qwen3-vl", help="Embedded tiny model to train."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="Training steps (default: the tuned recipe's)."),
) -> None:
    """The learning loop on a CPU: synthetic data → eval → SFT → eval → metrics.json + report.html (about 7 minutes on 2 cores)."""
    from .quickstart import QuickstartSettings, run_quickstart

    settings = QuickstartSettings(seed=seed, model=model)
    if max_steps is not None:
        settings.max_steps = max_steps
    try:
        result = run_quickstart(output_dir, settings, say=lambda line: console.print(f"[green]{line}[/]", highlight=False))
    except _user_errors() as e:
        _fail(str(e))
        return
    m = result.metrics
    table = Table("task", "chance", "before", "after")
    for task in m["after"]:
        chance = m["chance"].get(task)
        table.add_row(task, "—" if chance is None else f"{chance:.2f}", f"{m['before'][task]:.3f}", f"[bold]{m['after'][task]:.3f}[/]")
    console.print(table)
    console.print(f"[bold green]done[/] in {m['minutes']:.1f} min → open {result.report}")


_add_builder_commands()


def main() -> None:
    """Entry point: quiet library logs unless SPATIALTUNE_LOG is set."""
    logging.basicConfig(level=os.environ.get("SPATIALTUNE_LOG", "WARNING"))
    app(prog_name="spatialtune")


if __name__ == "__main__":
    sys.exit(main())
