"""`spatialtune data …`: check a dataset, build one by name (options generated from each builder's settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .output import console, err_console, user_errors

data_app = typer.Typer(help="Build and check spatial datasets.", no_args_is_help=True)
build_app = typer.Typer(help="Build a dataset by name (each builder documents its input layout and skip reasons).", no_args_is_help=True)
data_app.add_typer(build_app, name="build")


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
    from ..data.check import check_file
    from ..models.loading import load_processor

    with user_errors():
        processor, family = load_processor(model, min_pixels, max_pixels)
        report = check_file(file, processor, family.convention, batch_size, image_root, max_length)
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
    if report.zero_token_samples:
        shown = ", ".join((report.unlabelled + report.no_assistant)[:5]) + (" …" if report.zero_token_samples > 5 else "")
        console.print(f"[yellow]warning[/] {report.zero_token_samples} sample(s) would train on zero tokens ({len(report.unlabelled)} "
                      f"cut by max_length {max_length} before the answer (skipped in training with on_truncated_image=skip, "
                      f"else an error), {len(report.no_assistant)} without an assistant turn): {shown}", highlight=False)
    else:
        console.print("zero-token samples: 0 (every sample keeps at least one labelled token)")
    if report.normalised:
        shown = ", ".join(report.normalised[:5]) + (" …" if len(report.normalised) > 5 else "")
        console.print(f"[yellow]warning[/] {len(report.normalised)} record(s) with boxes/points all within [0, 1]: records hold "
                      f"pixels of the original image, not normalised coordinates: {shown}", highlight=False)
    if report.preference_pairs:
        shapes = ", ".join(f"{k} {list(v)}" for k, v in report.preference_batch_keys.items())
        console.print(f"preference pairs: {report.preference_pairs}; first pairs through TRL's preference collator: {shapes}")


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

    from ..data.builders import get_builder, settings_fields

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

        from ..data.builders import run_builder

        output, overwrite = kwargs.pop("output"), kwargs.pop("overwrite")
        with user_errors():
            settings = spec.settings(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()})
            with Progress(console=err_console) as bar:
                job = bar.add_task(f"building {name}", total=None)
                stats = run_builder(name, settings, output, overwrite=overwrite, progress=lambda done, total: bar.update(job, completed=done, total=total))
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


def add_builder_commands() -> None:
    """One `spatialtune data build NAME` command per registered builder."""
    from ..data.builders import builder_names

    for name in builder_names():
        _add_builder_command(name)


add_builder_commands()
